"""Profile analytics through GraphQL, checked against from-scratch SQL over raw events.

Events go in through the ingestion service (as a backend would send them), the worker
drains the outbox into rollups, and every report must equal what a plain COUNT over the
`events` table says for the same range: counters exactly, unique visitors within 2%.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from datasketches import hll_sketch, hll_union, tgt_hll_type

from app.auth import Role, issue_token
from app.database import connection
from app.services.profile_analytics.effects import merged_sketch
from app.services.profile_analytics.planner import plan_segments
from app.services.profile_analytics.sketches import (
    HLL_LG_K,
    HLL_TYPE,
    coupon_estimates,
    coupon_key,
    new_sketch,
    register_estimate,
)
from app.timebuckets import (
    Grain,
    RangeSpec,
    TimeRange,
    bucket_starts,
    day_start,
    hour_start,
    month_ceil,
    month_start,
    resolve_range,
)
from app.vocabulary import (
    BOOKING_COMPLETED,
    MONEY_EVENT_TYPES,
    PROFILE_EVENT_TYPES,
    PROFILE_INQUIRY,
    PROFILE_VIEWED,
)
from tests.support.graphql import error_codes, gql
from tests.support.profile_traffic import event, generate, pending, send
from tests.support.tenants import Tenant, make_tenant

OVERVIEW = """
query Overview($id: ID!, $range: TimeRangeInput!) {
  profileOverview(profileId: $id, range: $range) {
    profileId
    range { from to timezone }
    views uniqueVisitors inquiries conversions conversionRate avgTimeOnProfileSeconds favorites shares clicks
    revenue { amountMinor currency }
    topReferrers { referrer views }
  }
}
"""

SERIES = """
query Series($id: ID!, $range: TimeRangeInput!, $granularity: Granularity!) {
  profileTimeseries(profileId: $id, range: $range, granularity: $granularity) {
    profileId
    range { from to timezone }
    granularity buckets views uniqueVisitors inquiries conversions engagementSeconds favorites shares clicks
  }
}
"""

RECENT = """
query Recent($id: ID!, $limit: Int!) {
  recentProfileViews(profileId: $id, limit: $limit) {
    eventId profileId occurredAt country deviceType referrer utmSource isGov
  }
}
"""

PROFILE_TYPES = sorted(PROFILE_EVENT_TYPES)


# -- helpers: sending events and asking the truth --------------------------------------


async def truth_overview(tenant: Tenant, start: datetime, end: datetime) -> dict[str, Any]:
    async with connection() as conn:
        row = await conn.fetchrow(
            """
            SELECT count(*) FILTER (WHERE type = 'profile.viewed') AS views,
                   count(DISTINCT visitor_id) FILTER (WHERE type = 'profile.viewed') AS visitors,
                   count(*) FILTER (WHERE type = 'profile.inquiry') AS inquiries,
                   count(DISTINCT visitor_id) FILTER (WHERE type = 'profile.inquiry') AS inquirers,
                   count(*) FILTER (WHERE type = 'booking.completed') AS conversions,
                   COALESCE(sum(engagement_ms), 0) AS engagement_ms,
                   count(*) FILTER (WHERE type = 'profile.favorited')
                       - count(*) FILTER (WHERE type = 'profile.unfavorited') AS favorites,
                   count(*) FILTER (WHERE type = 'profile.shared') AS shares,
                   count(*) FILTER (WHERE type = 'profile.clicked') AS clicks
            FROM events
            WHERE organization_id = $1 AND profile_id = $2 AND occurred_at >= $3 AND occurred_at < $4
              AND type = ANY($5)
            """,
            tenant.organization.id, tenant.profile.id, start, end, PROFILE_TYPES,
        )  # fmt: skip
        referrers = await conn.fetch(
            """
            SELECT COALESCE(referrer_domain, 'direct') AS referrer, count(*) AS views
            FROM events
            WHERE organization_id = $1 AND profile_id = $2 AND occurred_at >= $3 AND occurred_at < $4
              AND type = 'profile.viewed'
            GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10
            """,
            tenant.organization.id, tenant.profile.id, start, end,
        )  # fmt: skip
        revenue = await conn.fetch(
            """
            SELECT currency::text AS currency, sum(amount_minor) AS amount
            FROM events
            WHERE organization_id = $1 AND profile_id = $2 AND occurred_at >= $3 AND occurred_at < $4
              AND type = ANY($5) AND amount_minor IS NOT NULL
            GROUP BY 1 ORDER BY 1
            """,
            tenant.organization.id, tenant.profile.id, start, end, sorted(MONEY_EVENT_TYPES),
        )  # fmt: skip
    return {
        **dict(row),
        "referrers": [{"referrer": r["referrer"], "views": r["views"]} for r in referrers],
        "revenue": [{"amountMinor": r["amount"], "currency": r["currency"]} for r in revenue],
    }


async def truth_series(tenant: Tenant, unit: str, start: datetime, end: datetime) -> dict[datetime, dict[str, int]]:
    """Raw bucketing in SQL: date_trunc on the local wall-clock time (naive keys)."""
    async with connection() as conn:
        rows = await conn.fetch(
            """
            SELECT date_trunc($6, occurred_at AT TIME ZONE $5) AS local_bucket,
                   count(*) FILTER (WHERE type = 'profile.viewed') AS views,
                   count(DISTINCT visitor_id) FILTER (WHERE type = 'profile.viewed') AS visitors,
                   count(*) FILTER (WHERE type = 'profile.inquiry') AS inquiries,
                   count(*) FILTER (WHERE type = 'booking.completed') AS conversions,
                   COALESCE(sum(engagement_ms), 0) AS engagement_ms,
                   count(*) FILTER (WHERE type = 'profile.favorited')
                       - count(*) FILTER (WHERE type = 'profile.unfavorited') AS favorites,
                   count(*) FILTER (WHERE type = 'profile.shared') AS shares,
                   count(*) FILTER (WHERE type = 'profile.clicked') AS clicks
            FROM events
            WHERE organization_id = $1 AND profile_id = $2 AND occurred_at >= $3 AND occurred_at < $4
              AND type = ANY($7)
            GROUP BY 1
            """,
            tenant.organization.id, tenant.profile.id, start, end, tenant.organization.timezone, unit, PROFILE_TYPES,
        )  # fmt: skip
    return {r["local_bucket"]: dict(r) for r in rows}


def within(estimate: int, exact: int, share: float = 0.02) -> bool:
    return abs(estimate - exact) <= max(1.0, share * exact)


def utc(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


async def overview(client: Any, tenant: Tenant, range_: dict[str, Any], *, token: str | None = None) -> dict[str, Any]:
    body = await gql(client, OVERVIEW, {"id": tenant.profile_id, "range": range_}, token=token or tenant.provider_token)
    assert "errors" not in body, body
    return body["data"]["profileOverview"]


async def series(client: Any, tenant: Tenant, range_: dict[str, Any], granularity: str) -> dict[str, Any]:
    variables = {"id": tenant.profile_id, "range": range_, "granularity": granularity}
    body = await gql(client, SERIES, variables, token=tenant.provider_token)
    assert "errors" not in body, body
    return body["data"]["profileTimeseries"]


async def assert_overview_matches_raw(client: Any, tenant: Tenant, range_: dict[str, Any]) -> dict[str, Any]:
    got = await overview(client, tenant, range_)
    start, end = utc(got["range"]["from"]), utc(got["range"]["to"])
    want = await truth_overview(tenant, start, end)
    label = f"{tenant.organization.timezone} {range_}"
    assert got["range"]["timezone"] == tenant.organization.timezone
    assert got["views"] == want["views"], label
    assert got["inquiries"] == want["inquiries"], label
    assert got["conversions"] == want["conversions"], label
    assert (got["favorites"], got["shares"], got["clicks"]) == (want["favorites"], want["shares"], want["clicks"]), label
    assert got["topReferrers"] == want["referrers"], label
    assert got["revenue"] == want["revenue"], label
    assert within(got["uniqueVisitors"], want["visitors"]), (label, got["uniqueVisitors"], want["visitors"])
    expected_avg = want["engagement_ms"] / 1000 / want["views"] if want["views"] else 0.0
    assert got["avgTimeOnProfileSeconds"] == pytest.approx(expected_avg, rel=1e-9), label
    expected_rate = min(1.0, want["inquirers"] / want["visitors"]) if want["visitors"] else 0.0
    assert got["conversionRate"] == pytest.approx(expected_rate, rel=0.05, abs=0.002), label
    return got


async def assert_series_matches_raw(
    client: Any, tenant: Tenant, range_: dict[str, Any], granularity: str
) -> dict[str, Any]:
    got = await series(client, tenant, range_, granularity)
    tz = ZoneInfo(tenant.organization.timezone)
    start, end = utc(got["range"]["from"]), utc(got["range"]["to"])
    buckets = [utc(b) for b in got["buckets"]]
    n = len(buckets)
    assert all(len(got[k]) == n for k in ("views", "uniqueVisitors", "inquiries", "conversions", "engagementSeconds"))
    expected_buckets = bucket_starts(TimeRange(start, end, tenant.organization.timezone), Grain(granularity.lower()))
    assert buckets == expected_buckets
    assert buckets[0] <= start < (buckets[1] if n > 1 else end) and buckets[-1] < end

    # Group ours by local wall-clock bucket: SQL's date_trunc on local time folds the two
    # 01:00 hours of a fall-back night into one, so do the same here.
    ours: dict[datetime, dict[str, Any]] = {}
    for i, bucket in enumerate(buckets):
        key = bucket.astimezone(tz).replace(tzinfo=None)
        slot = ours.setdefault(
            key, {"views": 0, "inquiries": 0, "conversions": 0, "engagement": 0.0, "uniques": [], "parts": 0,
                  "favorites": 0, "shares": 0, "clicks": 0}
        )  # fmt: skip
        for name in ("favorites", "shares", "clicks"):
            slot[name] += got[name][i]
        slot["views"] += got["views"][i]
        slot["inquiries"] += got["inquiries"][i]
        slot["conversions"] += got["conversions"][i]
        slot["engagement"] += got["engagementSeconds"][i]
        slot["uniques"].append(got["uniqueVisitors"][i])
        slot["parts"] += 1
    want = await truth_series(tenant, granularity.lower(), start, end)
    assert set(want) <= set(ours), f"raw buckets missing from the series: {sorted(set(want) - set(ours))}"
    label = f"{tenant.organization.timezone} {granularity} {range_}"
    for key, slot in ours.items():
        raw = want.get(key, {"views": 0, "visitors": 0, "inquiries": 0, "conversions": 0, "engagement_ms": 0,
                             "favorites": 0, "shares": 0, "clicks": 0})  # fmt: skip
        assert [slot[n] for n in ("favorites", "shares", "clicks")] == [raw[n] for n in ("favorites", "shares", "clicks")], (label, key)
        assert slot["views"] == raw["views"], (label, key)
        assert slot["inquiries"] == raw["inquiries"], (label, key)
        assert slot["conversions"] == raw["conversions"], (label, key)
        assert slot["engagement"] == pytest.approx(raw["engagement_ms"] / 1000, abs=1e-6), (label, key)
        if slot["parts"] == 1:
            assert within(slot["uniques"][0], raw["visitors"]), (label, key, slot["uniques"][0], raw["visitors"])
    return got


async def away_from_hour_boundary(tz: str, margin: float = 45.0) -> None:
    """Reports read the open hour from raw events; a test that inserts, drains and queries
    must not straddle a local hour boundary, or a just-closed hour would be read from
    rollups that (by design) lag behind unprocessed events."""
    now = datetime.now(UTC)
    next_hour = hour_start(now, tz) + timedelta(hours=1)
    if (next_hour - now).total_seconds() < margin:
        await asyncio.sleep((next_hour - now).total_seconds() + 1)


def iso(value: datetime) -> str:
    return value.isoformat()


# -- time buckets and the planner (no database) ------------------------------------------

H = timedelta(hours=1)


def test_local_days_and_hours_follow_the_zone():
    ny = "America/New_York"
    fall = bucket_starts(
        TimeRange(datetime(2026, 10, 31, 4, tzinfo=UTC), datetime(2026, 11, 3, 5, tzinfo=UTC), ny), "day"
    )
    assert [b - a for a, b in itertools.pairwise(fall)] == [24 * H, 25 * H]
    spring = bucket_starts(
        TimeRange(datetime(2026, 3, 7, 5, tzinfo=UTC), datetime(2026, 3, 10, 4, tzinfo=UTC), ny), "day"
    )
    assert [b - a for a, b in itertools.pairwise(spring)] == [24 * H, 23 * H]
    # The two 01:00 hours of the fall-back night are two buckets.
    night = bucket_starts(
        TimeRange(datetime(2026, 11, 1, 4, tzinfo=UTC), datetime(2026, 11, 2, 5, tzinfo=UTC), ny), "hour"
    )
    assert len(night) == 25 and len(set(night)) == 25
    assert hour_start(datetime(2026, 11, 1, 6, 40, tzinfo=UTC), ny) == datetime(2026, 11, 1, 6, tzinfo=UTC)
    # Asia/Kolkata is UTC+5:30: local hours start at :30 UTC, local days at 18:30 UTC.
    assert hour_start(datetime(2026, 11, 22, 9, 10, tzinfo=UTC), "Asia/Kolkata") == datetime(
        2026, 11, 22, 8, 30, tzinfo=UTC
    )
    assert day_start(datetime(2026, 11, 22, 20, 0, tzinfo=UTC), "Asia/Kolkata") == datetime(
        2026, 11, 22, 18, 30, tzinfo=UTC
    )
    weeks = bucket_starts(TimeRange(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 20, tzinfo=UTC), ny), "week")
    assert [w.astimezone(ZoneInfo(ny)).strftime("%a %d") for w in weeks] == ["Mon 23", "Mon 02", "Mon 09", "Mon 16"]
    months = bucket_starts(TimeRange(datetime(2026, 10, 15, tzinfo=UTC), datetime(2027, 1, 2, tzinfo=UTC), ny), "month")
    assert [m.astimezone(ZoneInfo(ny)).strftime("%Y-%m-%d %H:%M") for m in months] == [
        "2026-10-01 00:00",
        "2026-11-01 00:00",
        "2026-12-01 00:00",
        "2027-01-01 00:00",
    ]


def test_presets_resolve_in_the_organization_zone():
    ny = "America/New_York"
    now = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)  # 01:30 EST, the second 01:30 of the night
    day = resolve_range(RangeSpec(preset="last_24_hours"), ny, now=now)
    assert (day.start, day.end) == (datetime(2026, 10, 31, 7, tzinfo=UTC), datetime(2026, 11, 1, 7, tzinfo=UTC))
    week = resolve_range(RangeSpec(preset="last_7_days"), ny, now=now)
    assert (week.start, week.end) == (datetime(2026, 10, 26, 4, tzinfo=UTC), datetime(2026, 11, 2, 5, tzinfo=UTC))
    month = resolve_range(RangeSpec(preset="last_30_days"), "Asia/Kolkata", now=now)
    assert month.end == datetime(2026, 11, 1, 18, 30, tzinfo=UTC) and month.end - month.start == timedelta(days=30)
    quarter = resolve_range(RangeSpec(preset="last_90_days"), ny, now=now)
    assert (quarter.start, quarter.end) == (datetime(2026, 8, 4, 4, tzinfo=UTC), datetime(2026, 11, 2, 5, tzinfo=UTC))
    year = resolve_range(RangeSpec(preset="last_12_months"), ny, now=now)
    assert (year.start, year.end) == (datetime(2025, 12, 1, 5, tzinfo=UTC), datetime(2026, 12, 1, 5, tzinfo=UTC))


@pytest.mark.parametrize("timezone", ["America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "UTC"])
def test_segment_plan_tiles_the_range(timezone):
    """Every instant of a range is read from exactly one source, rollups only for closed
    whole hours/days, raw events for the open hour and partial-hour edges."""
    rnd = random.Random(timezone)
    base = datetime(2026, 11, 22, 8, 54, tzinfo=UTC)
    for _ in range(400):
        now = base - timedelta(seconds=rnd.uniform(0, 300 * 86_400))
        start = now - timedelta(seconds=rnd.uniform(0, 60 * 86_400))
        end = start + timedelta(seconds=rnd.choice([rnd.uniform(1, 7200), rnd.uniform(1, 50 * 86_400)]))
        time_range = TimeRange(start, end, timezone)
        for whole_days, whole_months in ((True, True), (True, False), (False, False)):
            segments = plan_segments(time_range, now=now, whole_days=whole_days, whole_months=whole_months)
            assert segments[0].start == start and segments[-1].end == end
            assert all(a.end == b.start for a, b in itertools.pairwise(segments))
            assert all(s.start < s.end for s in segments)
            cutoff = hour_start(now, timezone)
            for s in segments:
                if s.source == "raw":
                    # The open part, or a partial-hour edge (two edges merge when no whole hour lies between).
                    assert s.start >= cutoff or s.end - s.start < 2 * H
                else:
                    assert s.end <= cutoff
                    assert hour_start(s.start, timezone) == s.start and hour_start(s.end, timezone) == s.end
                if s.source == "day":
                    assert (
                        whole_days and day_start(s.start, timezone) == s.start and day_start(s.end, timezone) == s.end
                    )
                if s.source == "month":
                    assert whole_months and s.end <= month_start(cutoff, timezone)  # never the current month
                    assert month_start(s.start, timezone) == s.start and month_start(s.end, timezone) == s.end
            if whole_months:  # every whole closed month of the range is one month segment
                assert not any(
                    s.source == "day" and month_ceil(s.start, timezone) < month_start(s.end, timezone)
                    for s in segments
                )


# -- the reports equal raw SQL ----------------------------------------------------------


@pytest.mark.parametrize("timezone", ["America/New_York", "Asia/Kolkata"])
async def test_reports_equal_raw_sql_over_seventy_five_days(app, client, settings, worker, timezone):
    tenant = await make_tenant(settings, timezone=timezone)
    now = datetime.now(UTC)
    await send(app, settings, tenant, generate(tenant, now=now, count=3000, days=75, visitors=700, seed=len(timezone)))
    await worker.drain()
    assert await pending(tenant) == 0

    tz = ZoneInfo(timezone)
    local_now = now.astimezone(tz)
    odd_start = (local_now - timedelta(days=9, hours=7)).replace(minute=13, second=17, microsecond=250_000)
    odd_end = (local_now - timedelta(days=2)).replace(minute=47, second=5, microsecond=0)
    open_start = (local_now - timedelta(days=3, hours=2)).replace(minute=41, second=0, microsecond=0)
    custom_past = {"from": iso(odd_start), "to": iso(odd_end)}  # non-hour-aligned edges
    custom_open = {"from": iso(open_start), "to": iso(now + timedelta(hours=2))}  # reaches past now
    forty_days = {"from": iso(now - timedelta(days=40, minutes=3)), "to": iso(now + timedelta(minutes=5))}
    # Whole local months in the middle: read from month rollups, days and hours around them.
    seventy_days = {"from": iso(now - timedelta(days=70, hours=5)), "to": iso(now + timedelta(minutes=5))}
    whole_month = month_start(now - timedelta(days=40), tz)
    one_month = {"from": iso(whole_month), "to": iso(month_ceil(whole_month + timedelta(days=1), tz))}
    # 60 hours around a local midnight: in New York this spans the Nov 1 2026 fall-back night.
    dst_night = (
        datetime(2026, 11, 1, tzinfo=tz)
        if now - datetime(2026, 11, 1, tzinfo=tz) < timedelta(days=38)
        else (datetime.combine((local_now - timedelta(days=20)).date(), datetime.min.time(), tzinfo=tz))
    )
    around_midnight = {
        "from": iso(dst_night - timedelta(hours=20, minutes=30)),
        "to": iso(dst_night + timedelta(hours=40)),
    }

    last_24 = await assert_overview_matches_raw(client, tenant, {"preset": "LAST_24_HOURS"})
    resolved_before = resolve_range(RangeSpec(preset="last_7_days"), timezone)
    last_7 = await assert_overview_matches_raw(client, tenant, {"preset": "LAST_7_DAYS"})
    resolved_after = resolve_range(RangeSpec(preset="last_7_days"), timezone)
    last_30 = await assert_overview_matches_raw(client, tenant, {"preset": "LAST_30_DAYS"})
    for custom in (custom_past, custom_open, forty_days, around_midnight, seventy_days, one_month):
        await assert_overview_matches_raw(client, tenant, custom)
    assert 0 < last_24["views"] < last_7["views"] < last_30["views"]
    assert len(last_30["topReferrers"]) == 10 and last_30["topReferrers"][0]["referrer"] == "direct"

    # The presets resolve against the organization's zone (at the server's moment: between the two resolutions).
    got_7 = (utc(last_7["range"]["from"]), utc(last_7["range"]["to"]))
    assert got_7 in {(r.start, r.end) for r in (resolved_before, resolved_after)}
    assert utc(last_7["range"]["from"]).astimezone(tz).time() == datetime.min.time()
    hours_24 = utc(last_24["range"]["to"]) - utc(last_24["range"]["from"])
    assert hours_24 == timedelta(hours=24) and utc(last_24["range"]["to"]) > now

    await assert_series_matches_raw(client, tenant, {"preset": "LAST_24_HOURS"}, "HOUR")
    await assert_series_matches_raw(client, tenant, around_midnight, "HOUR")
    await assert_series_matches_raw(client, tenant, custom_past, "HOUR")
    for granularity in ("DAY", "WEEK", "MONTH"):
        await assert_series_matches_raw(client, tenant, {"preset": "LAST_30_DAYS"}, granularity)
        await assert_series_matches_raw(client, tenant, forty_days, granularity)
        await assert_series_matches_raw(client, tenant, seventy_days, granularity)
    await assert_series_matches_raw(client, tenant, {"preset": "LAST_7_DAYS"}, "DAY")
    await assert_series_matches_raw(client, tenant, custom_past, "DAY")
    await assert_series_matches_raw(client, tenant, custom_open, "DAY")

    if timezone == "America/New_York":  # the fall-back day has 25 hourly buckets and is one daily bucket
        day_series = await series(
            client, tenant, {"from": "2026-10-31T00:00:00-04:00", "to": "2026-11-03T00:00:00-05:00"}, "DAY"
        )
        starts = [utc(b) for b in day_series["buckets"]]
        assert [b - a for a, b in itertools.pairwise(starts)] == [timedelta(hours=24), timedelta(hours=25)]
        hours = await series(
            client, tenant, {"from": "2026-11-01T00:00:00-04:00", "to": "2026-11-02T00:00:00-05:00"}, "HOUR"
        )
        assert len(hours["buckets"]) == 25
    if timezone == "Asia/Kolkata":  # local hours start at :30 UTC
        hourly = await series(client, tenant, {"preset": "LAST_24_HOURS"}, "HOUR")
        assert {utc(b).minute for b in hourly["buckets"]} == {30}


async def test_unprocessed_events_in_the_open_hour_are_counted_once(app, client, settings, worker):
    tenant = await make_tenant(settings, timezone="Asia/Kolkata")
    await away_from_hour_boundary("Asia/Kolkata")
    now = datetime.now(UTC)
    older = [event(PROFILE_VIEWED, tenant.profile_id, now - timedelta(hours=h), f"v{h}") for h in range(1, 20)]
    await send(app, settings, tenant, older)
    await worker.drain()
    await away_from_hour_boundary("Asia/Kolkata", margin=60)

    now = datetime.now(UTC)
    fresh = [
        event(
            PROFILE_VIEWED,
            tenant.profile_id,
            now - timedelta(seconds=1),
            "new-visitor-1",
            referrer="https://news.example/a",
        ),
        event(PROFILE_VIEWED, tenant.profile_id, now - timedelta(seconds=1), "new-visitor-2"),
        event(PROFILE_INQUIRY, tenant.profile_id, now - timedelta(seconds=1), "new-visitor-1"),
    ]
    await send(app, settings, tenant, fresh)
    assert await pending(tenant) == 3  # not processed yet...

    before = await assert_overview_matches_raw(client, tenant, {"preset": "LAST_24_HOURS"})
    assert before["views"] == 21 and before["inquiries"] == 1  # ...and counted from raw events
    assert before["uniqueVisitors"] == 21
    assert {"referrer": "news.example", "views": 1} in before["topReferrers"]
    series_before = await assert_series_matches_raw(client, tenant, {"preset": "LAST_24_HOURS"}, "HOUR")
    assert series_before["views"][-1] == 2

    await worker.drain()
    assert await pending(tenant) == 0
    after = await assert_overview_matches_raw(client, tenant, {"preset": "LAST_24_HOURS"})
    assert after == before  # counted once: the open hour never reads rollups
    assert (await series(client, tenant, {"preset": "LAST_24_HOURS"}, "HOUR")) == series_before


async def test_late_event_updates_its_closed_bucket_after_drain(app, client, settings, worker):
    tenant = await make_tenant(settings, timezone="America/New_York")
    now = datetime.now(UTC)
    await send(
        app,
        settings,
        tenant,
        [event(PROFILE_VIEWED, tenant.profile_id, now - timedelta(days=d), f"v{d}") for d in range(1, 12)],
    )
    await worker.drain()
    ten_days_ago = now - timedelta(days=10, hours=3)
    first = await assert_overview_matches_raw(client, tenant, {"preset": "LAST_30_DAYS"})
    assert first["views"] == 11

    late = [
        event(PROFILE_VIEWED, tenant.profile_id, ten_days_ago, "late-visitor"),
        event(BOOKING_COMPLETED, tenant.profile_id, ten_days_ago, "late-visitor"),
    ]
    await send(app, settings, tenant, late)
    # Closed buckets come from rollups, which the late event reaches once the worker ran.
    stale = await overview(client, tenant, {"preset": "LAST_30_DAYS"})
    assert stale["views"] == 11 and stale["conversions"] == 0

    await worker.drain()
    updated = await assert_overview_matches_raw(client, tenant, {"preset": "LAST_30_DAYS"})
    assert updated["views"] == 12 and updated["conversions"] == 1 and updated["uniqueVisitors"] == 12
    assert updated["revenue"] and updated["revenue"][0]["amountMinor"] > 0
    daily = await assert_series_matches_raw(client, tenant, {"preset": "LAST_30_DAYS"}, "DAY")
    late_day = [i for i, b in enumerate(daily["buckets"]) if utc(b) <= ten_days_ago][-1]
    assert daily["views"][late_day] >= 1 and daily["conversions"][late_day] == 1


async def test_unique_visitors_are_a_sketch_union_within_two_percent(app, client, settings, worker):
    """20,000 distinct visitors over 30 days, most seen on several days: summing daily
    uniques would overcount by far; the union of the daily sketches must not."""
    tenant = await make_tenant(settings, timezone="America/New_York")
    rnd = random.Random(20_000)
    now = datetime.now(UTC)
    tz = ZoneInfo("America/New_York")
    start_of_today = datetime.combine(now.astimezone(tz).date(), datetime.min.time(), tzinfo=tz)
    events = []
    for v in range(20_000):
        for _ in range(1 + (v % 3 == 0)):
            # Before today, so the 30 days are answered by day rollups.
            at = start_of_today - timedelta(seconds=rnd.uniform(1, 29 * 86_400 - 1))
            events.append(event(PROFILE_VIEWED, tenant.profile_id, at, f"visitor-{v}", rnd=rnd))
    await send(app, settings, tenant, events)
    await worker.drain()

    # LAST_30_DAYS as of `now`, spelled out: the preset would lose the oldest day if New York's midnight passed meanwhile.
    last_30_days = {"from": iso(start_of_today - timedelta(days=29)), "to": iso(start_of_today + timedelta(days=1))}
    got = await assert_overview_matches_raw(client, tenant, last_30_days)
    assert got["views"] == len(events)
    assert abs(got["uniqueVisitors"] - 20_000) <= 400, got["uniqueVisitors"]
    daily = await assert_series_matches_raw(client, tenant, last_30_days, "DAY")
    assert sum(daily["uniqueVisitors"]) > 24_000  # what a sum of daily uniques would claim
    weekly = await assert_series_matches_raw(client, tenant, last_30_days, "WEEK")
    assert sum(weekly["views"]) == len(events)


@pytest.mark.parametrize("visitors", [3, 300, 3_000, 30_000, 200_000])
def test_one_bucket_counts_the_same_however_its_visitors_were_batched(visitors):
    """The worker adds a profile's visitors batch by batch, a rebuild all at once. A bucket's
    unique visitors must not depend on which of them wrote its sketch, and must be what a
    union of the sketch says (the estimator over its registers), from sparse to dense."""
    ids = [f"visitor-{i}" for i in range(visitors)]
    all_at_once = new_sketch()
    for visitor in ids:
        all_at_once.update(visitor)
    shuffled = random.Random(visitors).sample(ids, len(ids))
    batched = None
    for start in range(0, len(shuffled), 977):
        batched = merged_sketch(batched, set(shuffled[start : start + 977]))
    union = hll_union(HLL_LG_K)  # what a report over both sketches' buckets would say
    union.update(all_at_once)
    union.update(hll_sketch.deserialize(batched))

    counts = {register_estimate(all_at_once.serialize_compact()), register_estimate(batched)}

    assert counts == {round(union.get_estimate())}
    assert within(counts.pop(), visitors)


def library_estimate(data: bytes) -> int:
    """What the library itself says of a stored sketch, marked out-of-order (no HIP)."""
    flagged = bytearray(data)
    flagged[5] |= 16
    return round(hll_sketch.deserialize(bytes(flagged)).get_estimate())


COUPON_LIMIT = 1536  # lg_k 14: a sketch holds 1-7 coupons as a LIST, up to 1,536 as a SET


def test_coupon_sketches_are_estimated_as_the_library_does():
    """A list or set sketch is answered by the estimate remembered for its coupon count, so
    every image of every size, whichever image first taught that count, must get exactly
    the library's number: ids added one by one, other ids into an HLL_8 sketch, union
    results, and the worker's batched merges; dense sketches too, past the set mode."""
    coupon_estimates.clear()
    sketches = {"ids": new_sketch(), "other": hll_sketch(HLL_LG_K, tgt_hll_type.HLL_8)}
    union = hll_union(HLL_LG_K)
    worker: bytes | None = None
    for size in range(5_001):
        images = {name: sketch.serialize_compact() for name, sketch in sketches.items()}
        images["union"] = union.get_result(HLL_TYPE).serialize_compact()
        if worker is not None and size % 7 == 0:
            images["worker"] = worker
        if size <= COUPON_LIMIT:
            assert coupon_key(images["ids"]) == (HLL_LG_K, 0 if size < 8 else 1, size), size
        else:
            assert coupon_key(images["ids"]) is None, size
        for name, image in images.items():
            assert register_estimate(image) == library_estimate(image), (name, size)
        sketches["ids"].update(f"visitor-{size}")
        sketches["other"].update(f"other-{size}")
        union.update(f"union-{size}")
        if size % 7 == 0:
            worker = merged_sketch(worker, {f"worker-{size + i}" for i in range(7)})
    assert len(coupon_estimates) == COUPON_LIMIT + 1  # one per count, 0 to 1,536


def test_truncated_or_updatable_sketches_take_the_library_path():
    sketch = new_sketch()
    for visitor in range(500):
        sketch.update(visitor)
    image = sketch.serialize_compact()
    register_estimate(image)  # its count is known from now on
    for broken in (image[:-4], image[:11]):
        with pytest.raises(IndexError):
            register_estimate(broken)
    updatable = sketch.serialize_updatable()
    assert coupon_key(updatable) is None
    assert register_estimate(updatable) == library_estimate(image)


async def test_buckets_without_events_are_zero(app, client, settings, worker):
    tenant = await make_tenant(settings, timezone="Asia/Kolkata")
    tz = ZoneInfo("Asia/Kolkata")
    now = datetime.now(UTC)
    today = datetime.combine(now.astimezone(tz).date(), datetime.min.time(), tzinfo=tz)
    three_days_ago = today - timedelta(days=3) + timedelta(hours=10)
    await send(
        app, settings, tenant, [event(PROFILE_VIEWED, tenant.profile_id, three_days_ago, f"v{i}") for i in range(4)]
    )
    await worker.drain()

    # LAST_7_DAYS as of `now`, spelled out: the preset would shift a day if Kolkata's midnight passed meanwhile.
    daily = await series(client, tenant, {"from": iso(today - timedelta(days=6)), "to": iso(today + timedelta(days=1))}, "DAY")
    assert len(daily["buckets"]) == 7
    assert daily["views"] == [0, 0, 0, 4, 0, 0, 0]
    assert daily["uniqueVisitors"] == [0, 0, 0, 4, 0, 0, 0]
    assert daily["inquiries"] == daily["conversions"] == [0] * 7
    assert daily["engagementSeconds"] == [0.0] * 7
    assert [utc(b).astimezone(tz).hour for b in daily["buckets"]] == [0] * 7
    hourly = await series(client, tenant, {"preset": "LAST_24_HOURS"}, "HOUR")
    assert len(hourly["buckets"]) == 24 and hourly["views"] == [0] * 24

    empty = await overview(client, tenant, {"preset": "LAST_24_HOURS"})
    assert empty["views"] == empty["uniqueVisitors"] == 0
    assert empty["conversionRate"] == 0.0 and empty["avgTimeOnProfileSeconds"] == 0.0
    assert empty["topReferrers"] == [] and empty["revenue"] == []


async def test_recent_views_newest_first(app, client, settings, worker):
    tenant = await make_tenant(settings)
    now = datetime.now(UTC)
    views = [
        event(PROFILE_VIEWED, tenant.profile_id, now - timedelta(minutes=m), f"v{m}", referrer="https://ref.example/x")
        for m in range(1, 8)
    ]
    await send(app, settings, tenant, views + [event(PROFILE_INQUIRY, tenant.profile_id, now, "v1")])
    await worker.drain()
    body = await gql(client, RECENT, {"id": tenant.profile_id, "limit": 5}, token=tenant.provider_token)
    assert "errors" not in body, body
    recent = body["data"]["recentProfileViews"]
    assert [r["eventId"] for r in recent] == [v["event_id"] for v in views[:5]]
    assert all(
        r["referrer"] == "ref.example" and r["isGov"] is False and r["profileId"] == tenant.profile_id for r in recent
    )

    for bad in (0, 201):
        refused = await gql(client, RECENT, {"id": tenant.profile_id, "limit": bad}, token=tenant.provider_token)
        assert error_codes(refused) == ["BAD_USER_INPUT"]
        assert refused["errors"][0]["extensions"]["field"] == "limit"


# -- who may see what -------------------------------------------------------------------


async def test_reports_are_scoped_to_the_viewer(app, client, settings, worker):
    tenant = await make_tenant(settings)
    other = await make_tenant(settings)
    now = datetime.now(UTC)
    await send(app, settings, tenant, [event(PROFILE_VIEWED, tenant.profile_id, now - timedelta(hours=2), "v")])
    await worker.drain()
    same_org_other_provider = issue_token(
        role=Role.PROVIDER,
        organization_id=tenant.organization.id,
        profile_id=tenant.other_profile.id,
        settings=settings,
    )
    week = {"preset": "LAST_7_DAYS"}
    for token in (other.provider_token, other.org_admin_token, same_org_other_provider):
        for query, variables in (
            (OVERVIEW, {"id": tenant.profile_id, "range": week}),
            (SERIES, {"id": tenant.profile_id, "range": week, "granularity": "DAY"}),
            (RECENT, {"id": tenant.profile_id, "limit": 10}),
        ):
            body = await gql(client, query, variables, token=token)
            assert error_codes(body) == ["NOT_FOUND"], body
            assert body["data"] is None
    for token in (tenant.admin_token, tenant.org_admin_token, tenant.provider_token):
        assert (await overview(client, tenant, week, token=token))["views"] == 1
    unknown = await gql(client, OVERVIEW, {"id": str(uuid.uuid4()), "range": week}, token=tenant.admin_token)
    assert error_codes(unknown) == ["NOT_FOUND"]
    anonymous = await gql(client, OVERVIEW, {"id": tenant.profile_id, "range": week})
    assert error_codes(anonymous) == ["UNAUTHENTICATED"]


@pytest.mark.parametrize(
    ("range_", "field"),
    [
        ({"from": "2026-11-01T00:00:00"}, "range.from"),
        ({"from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00"}, "range.to"),
        ({"from": "2026-11-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"}, "range.to"),
        ({"from": "2025-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "range.to"),
        ({"preset": "LAST_7_DAYS", "from": "2026-11-01T00:00:00Z"}, "range"),
        ({}, "range.from"),
    ],
)
async def test_bad_ranges_name_the_field(app, client, tenant, range_, field):
    body = await gql(client, OVERVIEW, {"id": tenant.profile_id, "range": range_}, token=tenant.provider_token)
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == field


async def test_hourly_series_are_capped(app, client, tenant):
    variables = {
        "id": tenant.profile_id,
        "range": {"from": "2026-01-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"},
        "granularity": "HOUR",
    }
    body = await gql(client, SERIES, variables, token=tenant.provider_token)
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == "granularity"


# -- engagement beyond views ------------------------------------------------------------------

TRACK_ENGAGEMENT = """mutation($events: [TrackEventInput!]!) {
  trackEvents(events: $events) { accepted rejected { index field reason } } }"""


async def test_favorites_shares_and_clicks_reach_the_day_totals_pushed_live(app, client, tenant, worker):
    from app.services.profile_analytics import engagement_snapshots

    pid = tenant.profile_id
    sent = [
        {"type": "profile.favorited", "profileId": pid, "anonymousId": "fan-1"},
        {"type": "profile.favorited", "profileId": pid, "anonymousId": "fan-2"},
        {"type": "profile.unfavorited", "profileId": pid, "anonymousId": "fan-1"},
        {"type": "profile.shared", "profileId": pid, "anonymousId": "fan-2"},
        {"type": "profile.clicked", "profileId": pid, "anonymousId": "fan-3", "properties": {"target": "website"}},
        {"type": "profile.clicked", "profileId": pid, "anonymousId": "fan-3"},  # no target: refused
        {"type": "profile.clicked", "profileId": pid, "anonymousId": "fan-3", "properties": {"target": "x" * 65}},
    ]
    body = await gql(client, TRACK_ENGAGEMENT, {"events": sent}, token=tenant.org_admin_token)
    result = body["data"]["trackEvents"]
    assert result["accepted"] == 5
    assert [(r["index"], r["field"]) for r in result["rejected"]] == [(5, "properties.target"), (6, "properties.target")]
    await worker.drain()
    [snapshot] = await engagement_snapshots(
        [(tenant.organization.id, tenant.profile.id)], {tenant.organization.id: tenant.organization.timezone}
    )
    assert (snapshot.favorites, snapshot.shares, snapshot.clicks) == (1, 1, 1)
    today = {"preset": "LAST_7_DAYS"}
    got = await overview(client, tenant, today)
    assert (got["favorites"], got["shares"], got["clicks"]) == (1, 1, 1)
