"""Profile analytics: overview, time series, recent views (thin: convert, call, map)."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from app.auth import Access
from app.live_messages import ProfileViewMessage
from app.services.profile_analytics import reports
from app.timebuckets import Grain
from resolvers.common import ProfileIdArg, RangeArg, guarded, to_range_spec, to_resolved_range, viewer_of
from resolvers.gov_alerts import gov_alert_of
from schema.common import Granularity, Money
from schema.profile_analytics import ProfileOverview, ProfileTimeseries, ProfileView, ReferrerCount


def profile_view_of(view: ProfileViewMessage) -> ProfileView:
    """The one ProfileView mapper: stored views (recentProfileViews) and live ones (profileViews)."""
    return ProfileView(
        event_id=view.event_id,
        profile_id=strawberry.ID(str(view.profile_id)),
        occurred_at=view.occurred_at,
        country=view.country,
        city=view.city,
        device_type=view.device_type,
        browser=view.browser,
        os=view.os,
        referrer=view.referrer,
        utm_source=view.utm_source,
        is_gov=view.is_gov,
        gov_alert=gov_alert_of(view.gov_alert) if view.gov_alert is not None else None,
    )


async def profile_overview(info: Info, profile_id: ProfileIdArg, range_: RangeArg) -> ProfileOverview:
    result = await reports.profile_overview(
        viewer=viewer_of(info), profile_id=str(profile_id), time_range=to_range_spec(range_)
    )
    return ProfileOverview(
        profile_id=strawberry.ID(str(result.profile_id)),
        range=to_resolved_range(result.range),
        views=result.views,
        unique_visitors=result.unique_visitors,
        inquiries=result.inquiries,
        conversions=result.conversions,
        conversion_rate=result.conversion_rate,
        avg_time_on_profile_seconds=result.avg_time_on_profile_seconds,
        favorites=result.favorites,
        shares=result.shares,
        clicks=result.clicks,
        revenue=[Money(amount_minor=amount, currency=currency) for currency, amount in result.revenue],
        top_referrers=[ReferrerCount(referrer=referrer, views=views) for referrer, views in result.top_referrers],
    )


async def profile_timeseries(
    info: Info,
    profile_id: ProfileIdArg,
    range_: RangeArg,
    granularity: Annotated[
        Granularity, strawberry.argument(description="Bucket size (HOUR series are limited to about 62 days).")
    ] = Granularity.DAY,
) -> ProfileTimeseries:
    result = await reports.profile_timeseries(
        viewer=viewer_of(info),
        profile_id=str(profile_id),
        time_range=to_range_spec(range_),
        granularity=Grain(granularity.value),
    )
    return ProfileTimeseries(
        profile_id=strawberry.ID(str(result.profile_id)),
        range=to_resolved_range(result.range),
        granularity=Granularity(result.granularity.value),
        buckets=result.buckets,
        views=result.views,
        unique_visitors=result.unique_visitors,
        inquiries=result.inquiries,
        conversions=result.conversions,
        engagement_seconds=result.engagement_seconds,
        favorites=result.favorites,
        shares=result.shares,
        clicks=result.clicks,
    )


async def recent_profile_views(
    info: Info,
    profile_id: ProfileIdArg,
    limit: Annotated[int, strawberry.argument(description="How many, newest first (1..200).")] = 50,
) -> list[ProfileView]:
    views = await reports.recent_profile_views(viewer=viewer_of(info), profile_id=str(profile_id), limit=limit)
    return [profile_view_of(v) for v in views]


# -- the domain's fields ------------------------------------------------------------------


@strawberry.type
class Query:
    """The profile analytics domain's reads, merged into the root by schema.root."""

    profile_overview: ProfileOverview = guarded(
        Access.READERS, profile_overview,
        "Views, unique visitors, inquiries, conversion, time on profile and top referrers of a profile over a range.",
    )
    profile_timeseries: ProfileTimeseries = guarded(
        Access.READERS, profile_timeseries,
        "A zero-filled series of a profile's numbers, bucketed in the organization's time zone.",
    )
    recent_profile_views: list[ProfileView] = guarded(
        Access.READERS, recent_profile_views,
        "The latest views of a profile, newest first.",
    )
