"""Subscriptions: a profile's views and running totals, pushed by the worker via the bus.

Access is checked once, when the subscription starts (tokens carry their scope and do not
change during a connection); each payload was decoded once per process by the bus and is
only read here. Over a websocket, each payload is handed to the operation's fan-out
(app/fanout.py), which sends a result shared by every subscriber with the same operation;
what it cannot share is yielded and takes strawberry's own path.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, TypeVar

import strawberry
from strawberry.types import Info

from app.auth import readable_profile
from app.errors import SlowConsumer
from app.eventbus import SubscriberDropped
from app.fanout import current_operation
from app.vocabulary import engagement_channel, view_channel
from resolvers.common import app_state, viewer_of
from schema.live import EngagementSnapshot
from schema.profile_analytics import ProfileView

T = TypeVar("T")
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


async def _follow(info: Info, profile_id: strawberry.ID, channel_of: Callable[[str], str], convert: Callable[[Mapping[str, Any]], T]) -> AsyncGenerator[T, None]:
    profile = await readable_profile(viewer_of(info), profile_id)
    live = current_operation()
    async with app_state(info).bus.subscribe(channel_of(str(profile.id))) as subscription:
        try:
            async for payload in subscription:
                if live is None or not await live.deliver(payload, convert):
                    yield convert(payload)
        except SubscriberDropped as exc:
            raise SlowConsumer(f"{exc}; subscribe again to continue") from exc


async def profile_views(info: Info, profile_id: ProfileIdArg) -> AsyncGenerator[ProfileView, None]:
    async for view in _follow(info, profile_id, view_channel, to_profile_view):
        yield view


async def engagement_updates(info: Info, profile_id: ProfileIdArg) -> AsyncGenerator[EngagementSnapshot, None]:
    async for snapshot in _follow(info, profile_id, engagement_channel, to_engagement):
        yield snapshot
