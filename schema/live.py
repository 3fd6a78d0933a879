"""Types pushed over websocket subscriptions."""

from __future__ import annotations

from datetime import datetime

import strawberry


@strawberry.type(description="Running totals of a profile for today (organization time zone), pushed after each processed batch.")
class EngagementSnapshot:
    profile_id: strawberry.ID = strawberry.field(description="The profile.")
    since: datetime = strawberry.field(description="Start of today in the organization's time zone.")
    views: int = strawberry.field(description="Views since `since`.")
    unique_visitors: int = strawberry.field(description="Distinct visitors since `since`.")
    inquiries: int = strawberry.field(description="Inquiries since `since`.")
    conversion_rate: float = strawberry.field(description="Share of today's visitors who sent an inquiry (0..1).")
    favorites: int = strawberry.field(description="Favorites since `since`, net of unfavorites (may be negative).")
    shares: int = strawberry.field(description="Shares since `since` (profile.shared events).")
    clicks: int = strawberry.field(description="Clicks on the profile's links since `since` (profile.clicked events).")
    updated_at: datetime = strawberry.field(description="When the worker computed it.")
