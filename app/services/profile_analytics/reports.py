"""The profile reports the resolvers call: overview, time series and recent views.

One query-runner class per report, PostHog style: scope, validate, plan (see `planner`),
fetch, compute. Counters add up over rollup rows and raw hours; unique visitors are the
estimate of the union of every sketch in the range plus the raw visitor ids, never a sum.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import asyncpg

from app.auth import ReadableProfile, Viewer, readable_profile
from app.database import connection
from app.errors import BadInput
from app.live_messages import ProfileViewMessage
from app.runners import QueryRunner, Tenant
from app.services.gov_alerts import alerts_of_views
from app.services.profile_analytics.effects import view_message
from app.services.profile_analytics.planner import (
    Params,
    Segment,
    plan_segments,
    raw_filter,
    rollup_filter,
    union_query,
)
from app.services.profile_analytics.sketches import Uniques, conversion_rate
from app.timebuckets import BucketIndex, Grain, RangeSpec, TimeRange, bucket_starts, resolve_range, utcnow
from app.vocabulary import (
    BOOKING_COMPLETED,
    MONEY_EVENT_TYPES,
    PROFILE_CLICKED,
    PROFILE_EVENT_KIND,
    PROFILE_FAVORITED,
    PROFILE_INQUIRY,
    PROFILE_SHARED,
    PROFILE_UNFAVORITED,
    PROFILE_VIEWED,
)

TOP_REFERRERS = 10
MAX_SERIES_BUCKETS = 1500  # ~62 days of hours; a year of days or weeks or months is fine
MAX_RECENT_VIEWS = 200
PROFILE_TYPES = sorted(PROFILE_EVENT_KIND)
MONEY_TYPES = sorted(MONEY_EVENT_TYPES)


ROLLUP_ROWS = """
SELECT r.grain, r.bucket_start, r.views, r.inquiries, r.conversions, r.engagement_ms,
       r.visitors_hll, r.inquirers_hll, r.favorites, r.shares, r.clicks
FROM profile_rollups r
WHERE r.organization_id = $1 AND r.profile_id = $2 AND ({segments})
"""

# Raw events grouped by local hour start: the same shape as an hour rollup row. The local
# hour start is the instant minus the local minutes and seconds (see timebuckets.hour_start).
RAW_HOURS = """
SELECT e.occurred_at - ((e.occurred_at AT TIME ZONE $3) - date_trunc('hour', e.occurred_at AT TIME ZONE $3))
           AS bucket_start,
       count(*) FILTER (WHERE e.type = $5) AS views,
       count(*) FILTER (WHERE e.type = $6) AS inquiries,
       count(*) FILTER (WHERE e.type = $7) AS conversions,
       COALESCE(sum(e.engagement_ms), 0) AS engagement_ms,
       count(*) FILTER (WHERE e.type = $8) - count(*) FILTER (WHERE e.type = $9) AS favorites,
       count(*) FILTER (WHERE e.type = $10) AS shares,
       count(*) FILTER (WHERE e.type = $11) AS clicks,
       array_agg(DISTINCT e.visitor_id) FILTER (WHERE e.type = $5 AND e.visitor_id IS NOT NULL) AS visitors,
       array_agg(DISTINCT e.visitor_id) FILTER (WHERE e.type = $6 AND e.visitor_id IS NOT NULL) AS inquirers
FROM events e
WHERE e.organization_id = $1 AND e.profile_id = $2 AND e.type = ANY($4::text[]) AND ({segments})
GROUP BY 1
"""

REFERRER_ROLLUPS = """
SELECT r.referrer, r.views FROM profile_referrer_rollups r
WHERE r.organization_id = $1 AND r.profile_id = $2 AND ({segments})
"""
REFERRER_EVENTS = """
SELECT COALESCE(NULLIF(e.referrer_domain, ''), 'direct'), 1 FROM events e
WHERE e.organization_id = $1 AND e.profile_id = $2 AND e.type = {event_type} AND ({segments})
"""
TOP_REFERRERS_SQL = """
SELECT referrer, sum(views)::bigint AS views FROM ({parts}) AS x(referrer, views)
GROUP BY referrer
ORDER BY views DESC, referrer
LIMIT $3
"""

REVENUE_ROLLUPS = """
SELECT r.currency::text, r.amount_minor FROM profile_revenue_rollups r
WHERE r.organization_id = $1 AND r.profile_id = $2 AND ({segments})
"""
REVENUE_EVENTS = """
SELECT e.currency::text, e.amount_minor FROM events e
WHERE e.organization_id = $1 AND e.profile_id = $2 AND e.type = ANY({event_types}::text[])
  AND e.amount_minor IS NOT NULL AND e.currency IS NOT NULL AND ({segments})
"""
REVENUE_SQL = """
SELECT currency, sum(amount_minor)::bigint AS amount_minor FROM ({parts}) AS x(currency, amount_minor)
GROUP BY currency
ORDER BY currency
"""


@dataclass
class Totals:
    """Counters and visitor unions of one report bucket (or a whole range)."""

    views: int = 0
    inquiries: int = 0
    conversions: int = 0
    engagement_ms: int = 0
    favorites: int = 0
    shares: int = 0
    clicks: int = 0
    visitors: Uniques = field(default_factory=Uniques)
    inquirers: Uniques = field(default_factory=Uniques)

    def add_rollup(self, row: Mapping[str, Any]) -> None:
        self.views += row["views"]
        self.inquiries += row["inquiries"]
        self.conversions += row["conversions"]
        self.engagement_ms += row["engagement_ms"]
        self.add_engagement(row)
        self.visitors.add_sketch(row["visitors_hll"])
        self.inquirers.add_sketch(row["inquirers_hll"])

    def add_raw(self, row: Mapping[str, Any]) -> None:
        self.views += row["views"]
        self.inquiries += row["inquiries"]
        self.conversions += row["conversions"]
        self.engagement_ms += row["engagement_ms"]
        self.add_engagement(row)
        self.visitors.add_ids(row["visitors"])
        self.inquirers.add_ids(row["inquirers"])

    def add_engagement(self, row: Mapping[str, Any]) -> None:
        self.favorites += row["favorites"]
        self.shares += row["shares"]
        self.clicks += row["clicks"]



@dataclass(frozen=True)
class Overview:
    profile_id: uuid.UUID
    range: TimeRange
    views: int
    unique_visitors: int
    inquiries: int
    conversions: int
    conversion_rate: float
    avg_time_on_profile_seconds: float
    favorites: int  # net of unfavorites
    shares: int
    clicks: int
    revenue: list[tuple[str, int]]  # (currency, amount in minor units), by currency
    top_referrers: list[tuple[str, int]]  # (referrer, views), most views first


@dataclass(frozen=True)
class Timeseries:
    profile_id: uuid.UUID
    range: TimeRange
    granularity: Grain
    buckets: list[datetime]
    views: list[int]
    unique_visitors: list[int]
    inquiries: list[int]
    conversions: list[int]
    engagement_seconds: list[float]
    favorites: list[int]
    shares: list[int]
    clicks: list[int]


R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class RangePlan:
    """Where a range report reads: the range in the profile's zone and its segments."""

    range: TimeRange
    segments: list[Segment]
    now: datetime


class ProfileRangeReport(QueryRunner[ReadableProfile, RangePlan, R]):
    """Shared steps of the range reports: the profile the viewer may read, the range in its
    zone, the segments (rollups for closed buckets, raw events for the open part)."""

    whole_days = True
    whole_months = True

    async def scope(self) -> ReadableProfile:
        return await readable_profile(self.viewer, self.inputs["profile_id"])

    def tenant(self, profile: ReadableProfile) -> Tenant:
        return Tenant(profile.organization_id, profile.id)

    def plan(self, profile: ReadableProfile) -> RangePlan:
        now = self.inputs.get("now") or utcnow()
        span = resolve_range(self.inputs["time_range"], profile.timezone, now=now)
        self.check(span)
        segments = plan_segments(span, now=now, whole_days=self.whole_days, whole_months=self.whole_months)
        return RangePlan(span, segments, now)

    def check(self, span: TimeRange) -> None:
        """Report-specific argument checks, once the range is known."""

    async def rollup_rows(self, conn: asyncpg.Connection, profile: ReadableProfile, plan: RangePlan) -> list[asyncpg.Record]:
        params = Params(profile.organization_id, profile.id)
        condition = rollup_filter(params, plan.segments)
        if condition is None:
            return []
        return await conn.fetch(ROLLUP_ROWS.format(segments=condition), *params.values)

    async def raw_hours(self, conn: asyncpg.Connection, profile: ReadableProfile, plan: RangePlan) -> list[asyncpg.Record]:
        params = Params(
            profile.organization_id, profile.id, profile.timezone, PROFILE_TYPES, PROFILE_VIEWED, PROFILE_INQUIRY,
            BOOKING_COMPLETED, PROFILE_FAVORITED, PROFILE_UNFAVORITED, PROFILE_SHARED, PROFILE_CLICKED,
        )  # fmt: skip
        condition = raw_filter(params, plan.segments)
        if condition is None:
            return []
        return await conn.fetch(RAW_HOURS.format(segments=condition), *params.values)


class ProfileOverviewQuery(ProfileRangeReport[Overview]):
    """Headline numbers of one profile over a range."""

    kind = "profile_overview"

    async def fetch(self, profile: ReadableProfile, plan: RangePlan) -> Overview:
        totals = Totals()
        async with connection() as conn:
            for row in await self.rollup_rows(conn, profile, plan):
                totals.add_rollup(row)
            for row in await self.raw_hours(conn, profile, plan):
                totals.add_raw(row)
            referrers = await self._fetch_union(
                conn, profile, plan, REFERRER_ROLLUPS, REFERRER_EVENTS, TOP_REFERRERS_SQL, TOP_REFERRERS,
                event_type=PROFILE_VIEWED,
            )  # fmt: skip
            revenue = await self._fetch_union(
                conn, profile, plan, REVENUE_ROLLUPS, REVENUE_EVENTS, REVENUE_SQL, event_types=MONEY_TYPES
            )
        unique_visitors = totals.visitors.estimate()
        return Overview(
            profile_id=profile.id,
            range=plan.range,
            views=totals.views,
            unique_visitors=unique_visitors,
            inquiries=totals.inquiries,
            conversions=totals.conversions,
            conversion_rate=conversion_rate(totals.inquirers.estimate(), unique_visitors),
            avg_time_on_profile_seconds=(totals.engagement_ms / 1000 / totals.views) if totals.views else 0.0,
            favorites=totals.favorites,
            shares=totals.shares,
            clicks=totals.clicks,
            revenue=[(r["currency"], int(r["amount_minor"])) for r in revenue],
            top_referrers=[(r["referrer"], int(r["views"])) for r in referrers],
        )

    async def _fetch_union(
        self, conn: asyncpg.Connection, profile: ReadableProfile, plan: RangePlan, rollups: str, events: str, outer: str,
        *outer_args: Any, **event_args: Any,
    ) -> list[asyncpg.Record]:  # fmt: skip
        params = Params(profile.organization_id, profile.id, *outer_args)
        sql = union_query(params, plan.segments, rollups, events, outer, event_args)
        return await conn.fetch(sql, *params.values) if sql else []


class ProfileTimeseriesQuery(ProfileRangeReport[Timeseries]):
    """A zero-filled series, one entry per local hour/day/ISO week/month bucket."""

    kind = "profile_timeseries"

    def __init__(self, *, granularity: Grain | str = Grain.DAY, **inputs: Any) -> None:
        super().__init__(granularity=Grain(granularity), **inputs)
        self.granularity = Grain(granularity)
        # Day rollups cannot be split into hours, nor month rollups into days or weeks.
        self.whole_days = self.granularity is not Grain.HOUR
        self.whole_months = self.granularity is Grain.MONTH

    def check(self, span: TimeRange) -> None:
        self.buckets = bucket_starts(span, self.granularity)
        if len(self.buckets) > MAX_SERIES_BUCKETS:
            raise BadInput(
                f"{len(self.buckets)} {self.granularity.value} buckets requested; at most {MAX_SERIES_BUCKETS}: "
                "choose a coarser granularity or a shorter range",
                field="granularity",
            )

    async def fetch(self, profile: ReadableProfile, plan: RangePlan) -> Timeseries:
        index = BucketIndex(self.buckets)
        totals = [Totals() for _ in self.buckets]
        async with connection() as conn:
            rollups = await self.rollup_rows(conn, profile, plan)
            raw = await self.raw_hours(conn, profile, plan)
        # Every rollup row and raw hour lies inside one report bucket: hours and days never
        # straddle a local day, week or month boundary.
        for rows, add in ((rollups, Totals.add_rollup), (raw, Totals.add_raw)):
            for row in rows:
                position = index.find(row["bucket_start"])
                if position is None:  # a raw partial hour starting before the range
                    position = 0
                add(totals[position], row)
        return Timeseries(
            profile_id=profile.id,
            range=plan.range,
            granularity=self.granularity,
            buckets=self.buckets,
            views=[t.views for t in totals],
            unique_visitors=[t.visitors.estimate() for t in totals],
            inquiries=[t.inquiries for t in totals],
            conversions=[t.conversions for t in totals],
            engagement_seconds=[t.engagement_ms / 1000 for t in totals],
            favorites=[t.favorites for t in totals],
            shares=[t.shares for t in totals],
            clicks=[t.clicks for t in totals],
        )


RECENT_VIEWS = """
SELECT event_id, profile_id, occurred_at, country, city, device_type, browser, os,
       referrer_domain, utm_source, is_gov
FROM profile_events
WHERE organization_id = $1 AND profile_id = $2 AND kind = 'view'
ORDER BY occurred_at DESC, event_id DESC
LIMIT $3
"""


class RecentProfileViewsQuery(QueryRunner[ReadableProfile, None, list[ProfileViewMessage]]):
    """The latest processed views of a profile, newest first."""

    kind = "recent_profile_views"

    async def scope(self) -> ReadableProfile:
        return await readable_profile(self.viewer, self.inputs["profile_id"])

    def tenant(self, profile: ReadableProfile) -> Tenant:
        return Tenant(profile.organization_id, profile.id)

    def validate(self, profile: ReadableProfile) -> None:
        if not 1 <= self.inputs["limit"] <= MAX_RECENT_VIEWS:
            raise BadInput(f"limit must be between 1 and {MAX_RECENT_VIEWS}", field="limit")

    async def fetch(self, profile: ReadableProfile, plan: None) -> list[ProfileViewMessage]:
        async with connection() as conn:
            rows = await conn.fetch(RECENT_VIEWS, profile.organization_id, profile.id, self.inputs["limit"])
        alerts = await alerts_of_views(profile.organization_id, [r["event_id"] for r in rows if r["is_gov"]])
        return [view_message(r, alerts.get(r["event_id"])) for r in rows]


async def profile_overview(
    *, viewer: Viewer, profile_id: uuid.UUID | str, time_range: RangeSpec, now: datetime | None = None
) -> Overview:
    return await ProfileOverviewQuery(viewer=viewer, profile_id=profile_id, time_range=time_range, now=now).run()


async def profile_timeseries(
    *,
    viewer: Viewer,
    profile_id: uuid.UUID | str,
    time_range: RangeSpec,
    granularity: Grain | str = Grain.DAY,
    now: datetime | None = None,
) -> Timeseries:
    query = ProfileTimeseriesQuery(
        viewer=viewer, profile_id=profile_id, time_range=time_range, granularity=granularity, now=now
    )
    return await query.run()


async def recent_profile_views(
    *, viewer: Viewer, profile_id: uuid.UUID | str, limit: int = 50
) -> list[ProfileViewMessage]:
    return await RecentProfileViewsQuery(viewer=viewer, profile_id=profile_id, limit=limit).run()
