"""Profile traffic for the analytics and rollup tests: a seeded, mixed stream of profile and
money events sent through the ingestion service (as a backend would), and what the worker
still has to process."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from app.auth import Role, Viewer
from app.database import connection
from app.services.ingestion import track_events
from app.vocabulary import (
    BOOKING_COMPLETED,
    GIFT_PURCHASED,
    MONEY_EVENT_TYPES,
    PROFILE_CLICKED,
    PROFILE_ENGAGED,
    PROFILE_FAVORITED,
    PROFILE_INQUIRY,
    PROFILE_SHARED,
    PROFILE_UNFAVORITED,
    PROFILE_VIEWED,
    SUBSCRIPTION_CHARGED,
)
from tests.support.tenants import Tenant

REFERRERS = [None, None, None] + [f"https://site{i}.example/post/{i}" for i in range(14)]


async def send(app: Any, settings: Any, tenant: Tenant, events: list[dict[str, Any]]) -> None:
    """Through the ingestion service, as a backend with a service token would."""
    viewer = Viewer(subject="test-service", role=Role.SERVICE, organization_id=tenant.organization.id)
    for i in range(0, len(events), 1000):
        chunk = events[i : i + 1000]
        outcome = await track_events(viewer=viewer, events=chunk, geo=app.state.geo, settings=settings)
        assert outcome.accepted == len(chunk), outcome.rejected[:3]


def event(
    kind: str,
    profile_id: str,
    at: datetime,
    visitor: str,
    *,
    referrer: str | None = None,
    rnd: random.Random | None = None,
) -> dict[str, Any]:
    rnd = rnd or random.Random(0)
    body: dict[str, Any] = {
        "type": kind,
        "event_id": f"e-{uuid.uuid4().hex}",
        "profile_id": profile_id,
        "occurred_at": at,
        "anonymous_id": visitor,
    }
    if kind == PROFILE_VIEWED:
        body["context"] = {"referrer": referrer} if referrer else {}
        if rnd.random() < 0.2:
            body["context"]["utm_source"] = rnd.choice(["newsletter", "ads"])
    if kind == PROFILE_ENGAGED or (kind == PROFILE_VIEWED and rnd.random() < 0.1):
        body["engagement_ms"] = rnd.randrange(500, 180_000)
    if kind == PROFILE_CLICKED:
        body["properties"] = {"target": rnd.choice(["website", "phone", "booking_link"])}
    if kind in MONEY_EVENT_TYPES:
        body["amount_minor"] = rnd.randrange(100, 50_000)
        body["currency"] = rnd.choice(["USD", "USD", "EUR"])
    return body


def generate(tenant: Tenant, *, now: datetime, count: int, days: int, visitors: int, seed: int) -> list[dict[str, Any]]:
    """A mixed stream for both profiles of a tenant, denser towards now, with some events
    in the current hour."""
    rnd = random.Random(seed)
    kinds = [PROFILE_VIEWED, PROFILE_INQUIRY, PROFILE_ENGAGED, BOOKING_COMPLETED, GIFT_PURCHASED, SUBSCRIPTION_CHARGED,
             PROFILE_FAVORITED, PROFILE_UNFAVORITED, PROFILE_SHARED, PROFILE_CLICKED]  # fmt: skip
    weights = [70, 9, 12, 4, 3, 2, 4, 1, 2, 3]
    out = []
    for i in range(count):
        if i < 25:  # the open hour
            at = now - timedelta(seconds=rnd.uniform(0, 600))
        else:
            at = now - timedelta(seconds=(rnd.random() ** 1.4) * days * 86_400)
        profile = tenant.profile_id if rnd.random() < 0.85 else str(tenant.other_profile.id)
        out.append(
            event(
                rnd.choices(kinds, weights)[0],
                profile,
                at,
                f"visitor-{seed}-{rnd.randrange(visitors)}",
                referrer=rnd.choice(REFERRERS),
                rnd=rnd,
            )
        )
    return out


async def pending(tenant: Tenant) -> int:
    async with connection() as conn:
        return await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE organization_id = $1 AND processed_at IS NULL", tenant.organization.id
        )
