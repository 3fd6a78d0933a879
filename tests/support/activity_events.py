"""Seeded random product events for the retention, lifecycle and stickiness tests: users and
anonymous devices (some linked to users by an identify), equal timestamps, events that
arrive late (a later batch with earlier times), in an organization's zone across a DST
change. Plain facts the references compute from."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from app.database import connection
from app.services.insights import persons
from app.timebuckets import utcnow
from tests.support.product_events import ProductEvent, send
from tests.support.tenants import Tenant, make_tenant

ZONES = ("America/New_York", "Asia/Kolkata")  # New York falls back on 2026-11-01; Kolkata is +05:30
TYPES = ("signup", "visit", "buy")
PLANS = ("free", "pro", "team", None)


@dataclass
class World:
    events: list[ProductEvent]
    links: dict[str, str] = field(default_factory=dict)  # 'a:<anonymous id>' -> 'u:<user id>'
    linked_after: list[tuple[str, str]] = field(default_factory=list)  # (anonymous id, user id), linked after sending
    linked_before: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Seeded:
    tenant: Tenant
    world: World
    timezone: str
    now: datetime  # the runners' now: a few days before the last events (which must not count)


async def seeded_world(client: Any, settings: Any, timezone: str, *, seed: int) -> Seeded:
    """A new organization in `timezone` with 100 days of random events up to now, sent
    through trackEvents; half the identify links made before the events, half after."""
    tenant = await make_tenant(settings, timezone=timezone)
    real_now = utcnow()
    world = random_world(seed, start=real_now - timedelta(days=100), end=real_now - timedelta(minutes=5))
    async with connection() as conn:
        for device, user in world.linked_before:
            await persons.link(conn, organization_id=tenant.organization.id, anonymous_id=device, user_id=user)
    await send(client, tenant.ingestion_key, world.events)
    async with connection() as conn:  # identifies after the events: their history moves too
        for device, user in world.linked_after:
            await persons.link(conn, organization_id=tenant.organization.id, anonymous_id=device, user_id=user)
    return Seeded(tenant, world, timezone, real_now - timedelta(days=3, hours=5))


def random_world(seed: int, *, start: datetime, end: datetime, users: int = 30, devices: int = 24) -> World:
    """Events between `start` and `end` (UTC instants)."""
    rng = random.Random(seed)
    span = (end - start).total_seconds()
    events: list[ProductEvent] = []
    world = World(events)
    user_ids = [f"user-{seed}-{i}" for i in range(users)]
    device_ids = [f"device-{seed}-{i}" for i in range(devices)]
    for i, device in enumerate(device_ids):
        if i % 3 != 2:  # two devices in three identify; some users have two devices
            user = user_ids[rng.randrange(users // 2)]
            world.links[f"a:{device}"] = f"u:{user}"
            (world.linked_before if i % 2 else world.linked_after).append((device, user))
    actors = [("user", u) for u in user_ids] + [("device", d) for d in device_ids]
    for kind, ident in actors:
        activity = rng.random()
        when = start + timedelta(seconds=rng.random() * span * 0.6)
        for _ in range(rng.randrange(2, 24)):
            when += timedelta(seconds=rng.expovariate(1 / (span * activity / 12 + 3600)))
            if when >= end:
                break
            repeats = 2 if rng.random() < 0.15 else 1  # equal timestamps, different events
            for _ in range(repeats):
                kind_of = rng.choices(TYPES, weights=(1, 6, 2))[0]
                plan = rng.choice(PLANS)
                events.append(
                    ProductEvent(
                        event_id=f"ev-{uuid.uuid4()}",
                        type=kind_of,
                        occurred_at=when,
                        user_id=ident if kind == "user" else None,
                        anonymous_id=ident if kind == "device" else None,
                        properties={} if plan is None else {"plan": plan},
                        # at most 400 events a batch (one call: one arrival time); late ones arrive a batch later
                        batch=2 * (len(events) // 400) + (rng.random() < 0.15),
                    )
                )
    return world


def ordinal(instant: datetime, grain: str, timezone: str) -> int:
    """The local period of `instant` as a number, consecutive periods consecutive numbers
    (days, ISO weeks from Monday, months), computed with zoneinfo alone."""
    day = instant.astimezone(ZoneInfo(timezone)).date()
    if grain == "day":
        return day.toordinal()
    if grain == "week":
        return (day.toordinal() - 1) // 7  # 0001-01-01 was a Monday
    if grain == "month":
        return day.year * 12 + day.month - 1
    raise ValueError(grain)


def local_midnight(day: date, timezone: str) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=ZoneInfo(timezone))


def periods_back(now: datetime, timezone: str, grain: str, back: int) -> tuple[datetime, list[int]]:
    """The local start of the period `back` periods before now's, and the ordinals of the
    periods from there to now's."""
    today = now.astimezone(ZoneInfo(timezone)).date()
    if grain == "day":
        first = today - timedelta(days=back)
    elif grain == "week":
        first = today - timedelta(days=today.weekday() + 7 * back)
    else:
        months = today.year * 12 + today.month - 1 - back
        first = date(months // 12, months % 12 + 1, 1)
    start = local_midnight(first, timezone).astimezone(ZoneInfo("UTC"))
    return start, list(range(ordinal(start, grain, timezone), ordinal(now, grain, timezone) + 1))


async def send_posthog_rows(
    client: Any, tenant: Tenant, rows: list[tuple], event: str = "$pageview", *, aliases: dict[str, str],
    tagged: bool = False,
) -> None:  # fmt: skip
    """PostHog test rows (distinct id, time[, properties]) as pulsegraph events: a distinct id
    in `aliases` is an anonymous device identified as that user (linked first), any other
    one a user id. `tagged`: even-indexed events carry {"$some_property": "value"}, as in
    PostHog's retention tests."""
    events = []
    for i, (distinct, when, *props) in enumerate(rows):
        properties = {"$some_property": "value"} if tagged and i % 2 == 0 else {}
        properties.update(props[0] if props else {})
        anonymous = distinct in aliases
        events.append(ProductEvent(
            event_id=f"ph-{event}-{i}-{distinct}-{when.isoformat()}", type=event, occurred_at=when,
            user_id=None if anonymous else distinct, anonymous_id=distinct if anonymous else None, properties=properties,
        ))  # fmt: skip
    async with connection() as conn:
        for device, user in aliases.items():
            await persons.link(conn, organization_id=tenant.organization.id, anonymous_id=device, user_id=user)
    await send(client, tenant.ingestion_key, events)


async def set_person_properties(tenant: Tenant, user_id: str, properties: dict[str, Any]) -> None:
    """What an identify with $set stores for a user (written directly: the insights read it)."""
    import json

    async with connection() as conn:
        await conn.execute(
            "INSERT INTO persons (organization_id, id, properties) VALUES ($1, 'u:' || $2::text, $3::jsonb)"
            " ON CONFLICT (organization_id, id) DO UPDATE SET properties = persons.properties || EXCLUDED.properties",
            tenant.organization.id, user_id, json.dumps(properties),
        )  # fmt: skip
