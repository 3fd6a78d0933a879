"""Per-profile analytics: overview, time series, recent views."""

from __future__ import annotations

from datetime import datetime

import strawberry

from schema.common import Granularity, Money, ResolvedRange
from schema.gov_alerts import GovAlert


@strawberry.type(description="A referrer and how many views it brought.")
class ReferrerCount:
    referrer: str = strawberry.field(description="Referring site (domain), or `direct` when there was none.")
    views: int = strawberry.field(description="Views it brought in the range.")


@strawberry.type(description="Headline numbers of one profile over a range.")
class ProfileOverview:
    profile_id: strawberry.ID = strawberry.field(description="The profile.")
    range: ResolvedRange = strawberry.field(description="The range covered.")
    views: int = strawberry.field(description="Profile views (profile.viewed events).")
    unique_visitors: int = strawberry.field(description="Distinct visitors who viewed (HyperLogLog estimate, exact for small counts, within 2%).")
    inquiries: int = strawberry.field(description="Inquiries (profile.inquiry events).")
    conversions: int = strawberry.field(description="Completed bookings (booking.completed events).")
    conversion_rate: float = strawberry.field(description="Share of unique visitors who sent an inquiry (0..1).")
    avg_time_on_profile_seconds: float = strawberry.field(description="Engagement time reported by page-leave beacons, divided by views.")
    favorites: int = strawberry.field(description="Favorites (profile.favorited) net of unfavorites (profile.unfavorited); may be negative.")
    shares: int = strawberry.field(description="Shares (profile.shared events).")
    clicks: int = strawberry.field(description="Clicks on the profile's links (profile.clicked events).")
    revenue: list[Money] = strawberry.field(description="Revenue attributed to the profile, one entry per currency.")
    top_referrers: list[ReferrerCount] = strawberry.field(description="Top 10 referring sites by views.")


@strawberry.type(description="A zero-filled time series in compact form: parallel lists, one entry per bucket.")
class ProfileTimeseries:
    profile_id: strawberry.ID = strawberry.field(description="The profile.")
    range: ResolvedRange = strawberry.field(description="The range covered.")
    granularity: Granularity = strawberry.field(description="Bucket size.")
    buckets: list[datetime] = strawberry.field(description="Start of each bucket (UTC instant of the local bucket start).")
    views: list[int] = strawberry.field(description="Views per bucket.")
    unique_visitors: list[int] = strawberry.field(description="Distinct visitors per bucket.")
    inquiries: list[int] = strawberry.field(description="Inquiries per bucket.")
    conversions: list[int] = strawberry.field(description="Completed bookings per bucket.")
    engagement_seconds: list[float] = strawberry.field(description="Total engagement time per bucket, in seconds.")
    favorites: list[int] = strawberry.field(description="Favorites net of unfavorites per bucket.")
    shares: list[int] = strawberry.field(description="Shares per bucket.")
    clicks: list[int] = strawberry.field(description="Link clicks per bucket.")


@strawberry.type(description="One view of a profile, as its provider sees it.")
class ProfileView:
    event_id: str = strawberry.field(description="Id of the underlying event.")
    profile_id: strawberry.ID = strawberry.field(description="The profile viewed.")
    occurred_at: datetime = strawberry.field(description="When it happened.")
    country: str | None = strawberry.field(description="ISO country code from GeoIP, when known.")
    city: str | None = strawberry.field(description="City from GeoIP, when known.")
    device_type: str | None = strawberry.field(description="desktop, mobile, tablet, bot or other.")
    browser: str | None = strawberry.field(description="Browser family.")
    os: str | None = strawberry.field(description="Operating system family.")
    referrer: str | None = strawberry.field(description="Referring domain, when there was one.")
    utm_source: str | None = strawberry.field(description="utm_source of the visit.")
    is_gov: bool = strawberry.field(
        description="The view came from a government or law-enforcement network (its gov confidence reached the organization's threshold)."
    )
    gov_alert: GovAlert | None = strawberry.field(
        default=None, description="Why the view was flagged (confidence, network, reasons); null unless `isGov`."
    )
