"""Subscriptions: a profile's views and running totals, pushed by the worker via the bus.

Following a channel (access checked once, payloads shared by every subscriber of the same
operation through the fan-out) is `resolvers.common.follow_profile`; each payload is read
as its typed message (app/live_messages.py) and mapped to the schema's type.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated

import strawberry
from strawberry.types import Info

from app.auth import Access
from app.live_messages import EngagementSnapshotMessage, ProfileViewMessage
from resolvers.common import follow_profile, from_bus, guarded
from resolvers.profile_analytics import profile_view_of
from schema.live import EngagementSnapshot
from schema.profile_analytics import ProfileView

ProfileIdArg = Annotated[strawberry.ID, strawberry.argument(description="The profile to follow.")]


def engagement_snapshot_of(snapshot: EngagementSnapshotMessage) -> EngagementSnapshot:
    """The one EngagementSnapshot mapper."""
    return EngagementSnapshot(
        profile_id=strawberry.ID(str(snapshot.profile_id)),
        since=snapshot.since,
        views=snapshot.views,
        unique_visitors=snapshot.unique_visitors,
        inquiries=snapshot.inquiries,
        conversion_rate=snapshot.conversion_rate,
        favorites=snapshot.favorites,
        shares=snapshot.shares,
        clicks=snapshot.clicks,
        updated_at=snapshot.updated_at,
    )


# What the subscriptions hand to the fan-out: a bus payload as its GraphQL type.
to_profile_view = from_bus(ProfileViewMessage, profile_view_of)
to_engagement = from_bus(EngagementSnapshotMessage, engagement_snapshot_of)


async def profile_views(info: Info, profile_id: ProfileIdArg) -> AsyncGenerator[ProfileView, None]:
    async for view in follow_profile(info, profile_id, ProfileViewMessage.channel_of, to_profile_view):
        yield view


async def engagement_updates(info: Info, profile_id: ProfileIdArg) -> AsyncGenerator[EngagementSnapshot, None]:
    async for snapshot in follow_profile(info, profile_id, EngagementSnapshotMessage.channel_of, to_engagement):
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
