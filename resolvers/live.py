"""Subscriptions: a profile's views and running totals, pushed by the worker via the bus.

Following a channel (access checked once, payloads shared by every subscriber of the same
operation through the fan-out) is `resolvers.common.follow_profile`; this module converts
the payloads the worker publishes into the schema's types.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry.types import Info

from app.auth import Access
from app.services.gov_alerts import alert_from_payload
from app.vocabulary import engagement_channel, view_channel
from resolvers.common import follow_profile, guarded
from resolvers.gov_alerts import to_gov_alert
from schema.live import EngagementSnapshot
from schema.profile_analytics import ProfileView

ProfileIdArg = Annotated[strawberry.ID, strawberry.argument(description="The profile to follow.")]


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def to_profile_view(payload: Mapping[str, Any]) -> ProfileView:
    return ProfileView(
        event_id=payload["eventId"],
        profile_id=strawberry.ID(payload["profileId"]),
        occurred_at=_time(payload["occurredAt"]),
        country=payload.get("country"),
        city=payload.get("city"),
        device_type=payload.get("deviceType"),
        browser=payload.get("browser"),
        os=payload.get("os"),
        referrer=payload.get("referrer"),
        utm_source=payload.get("utmSource"),
        is_gov=bool(payload.get("isGov")),
        gov_alert=to_gov_alert(alert_from_payload(alert)) if (alert := payload.get("govAlert")) else None,
    )


def to_engagement(payload: Mapping[str, Any]) -> EngagementSnapshot:
    return EngagementSnapshot(
        profile_id=strawberry.ID(payload["profileId"]),
        since=_time(payload["since"]),
        views=int(payload["views"]),
        unique_visitors=int(payload["uniqueVisitors"]),
        inquiries=int(payload["inquiries"]),
        conversion_rate=float(payload["conversionRate"]),
        updated_at=_time(payload["updatedAt"]),
    )


async def profile_views(info: Info, profile_id: ProfileIdArg) -> AsyncGenerator[ProfileView, None]:
    async for view in follow_profile(info, profile_id, view_channel, to_profile_view):
        yield view


async def engagement_updates(info: Info, profile_id: ProfileIdArg) -> AsyncGenerator[EngagementSnapshot, None]:
    async for snapshot in follow_profile(info, profile_id, engagement_channel, to_engagement):
        yield snapshot


# -- the domain's fields ------------------------------------------------------------------


@strawberry.type
class Subscription:
    """The live domain's live updates, merged into the root by schema.root."""

    profile_views: ProfileView = guarded(
        Access.READERS, profile_views,
        "Each view of a profile, as the worker processes it.", subscription=True,
    )
    engagement_updates: EngagementSnapshot = guarded(
        Access.READERS, engagement_updates,
        "Running totals of a profile for today, after each processed batch.", subscription=True,
    )
