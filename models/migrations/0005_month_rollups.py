"""pulsegraph 0005: month rollups.

Every rollup table gains the grain 'month' (bucket_start: the local month start in the
organization's time zone), so a report over a year reads 12 month rows instead of 365 day
rows and their visitor sketches. The worker writes month rows from now on; this migration
builds them for the days already rolled up: counters are sums of the day rows, visitor and
inquirer sketches the union of the day sketches (the same registers the worker's sketch
would hold). Self-contained on purpose: a migration must not change when the app does.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import asyncpg
from datasketches import hll_sketch, hll_union, tgt_hll_type

HLL_LG_K = 14
TABLES = ("profile_rollups", "profile_referrer_rollups", "profile_revenue_rollups")
# Month starts are computed in Python, as the worker computes them (app/timebuckets.py):
# PostgreSQL's AT TIME ZONE picks another instant than zoneinfo for an ambiguous local midnight
# (zones that change clocks at midnight), and a month row must start where reports look for it.
LOCAL_MONTH = "m.month"
MONTH_JOIN = "JOIN month_of_day m ON m.timezone = o.timezone AND m.day = r.bucket_start"
DAYS = """
SELECT DISTINCT o.timezone, r.bucket_start FROM (
    SELECT organization_id, bucket_start FROM profile_rollups WHERE grain = 'day'
    UNION SELECT organization_id, bucket_start FROM profile_referrer_rollups WHERE grain = 'day'
    UNION SELECT organization_id, bucket_start FROM profile_revenue_rollups WHERE grain = 'day'
) r JOIN organizations o ON o.id = r.organization_id
"""

MONTHS_OF_DAYS = f"""
SELECT r.organization_id, r.profile_id, {LOCAL_MONTH} AS bucket_start,
       sum(r.views)::bigint AS views, sum(r.inquiries)::bigint AS inquiries,
       sum(r.conversions)::bigint AS conversions, sum(r.engagement_ms)::bigint AS engagement_ms,
       array_agg(r.visitors_hll) FILTER (WHERE r.visitors_hll IS NOT NULL) AS visitors,
       array_agg(r.inquirers_hll) FILTER (WHERE r.inquirers_hll IS NOT NULL) AS inquirers
FROM profile_rollups r JOIN organizations o ON o.id = r.organization_id
{MONTH_JOIN}
JOIN unnest($1::uuid[], $2::uuid[]) AS k(o, p) ON r.organization_id = k.o AND r.profile_id = k.p
WHERE r.grain = 'day'
GROUP BY 1, 2, 3
"""
PROFILES_PER_ROUND = 200  # bounds the sketches held in memory at once
REFERRER_MONTHS = f"""
INSERT INTO profile_referrer_rollups (organization_id, profile_id, grain, bucket_start, referrer, views)
SELECT r.organization_id, r.profile_id, 'month', {LOCAL_MONTH}, r.referrer, sum(r.views)
FROM profile_referrer_rollups r JOIN organizations o ON o.id = r.organization_id
{MONTH_JOIN}
WHERE r.grain = 'day'
GROUP BY 1, 2, 3, 4, 5
"""
REVENUE_MONTHS = f"""
INSERT INTO profile_revenue_rollups
    (organization_id, profile_id, grain, bucket_start, source, currency, amount_minor, transactions)
SELECT r.organization_id, r.profile_id, 'month', {LOCAL_MONTH}, r.source, r.currency,
       sum(r.amount_minor), sum(r.transactions)
FROM profile_revenue_rollups r JOIN organizations o ON o.id = r.organization_id
{MONTH_JOIN}
WHERE r.grain = 'day'
GROUP BY 1, 2, 3, 4, 5, 6
"""
COLUMNS = (
    "organization_id", "profile_id", "grain", "bucket_start", "views", "inquiries", "conversions",
    "engagement_ms", "visitors_hll", "inquirers_hll", "updated_at",
)  # fmt: skip


async def upgrade(conn: asyncpg.Connection) -> None:
    for table in TABLES:
        await conn.execute(
            f"ALTER TABLE {table} DROP CONSTRAINT {table}_grain_check,"
            f" ADD CONSTRAINT {table}_grain_check CHECK (grain IN ('hour', 'day', 'month'))"
        )
    await _fill_month_of_day(conn)
    await conn.execute(REFERRER_MONTHS)
    await conn.execute(REVENUE_MONTHS)
    now = await conn.fetchval("SELECT now()")
    profiles = await conn.fetch(
        "SELECT DISTINCT organization_id, profile_id FROM profile_rollups WHERE grain = 'day' ORDER BY 1, 2"
    )
    for i in range(0, len(profiles), PROFILES_PER_ROUND):
        chunk = profiles[i : i + PROFILES_PER_ROUND]
        rows = await conn.fetch(MONTHS_OF_DAYS, [r["organization_id"] for r in chunk], [r["profile_id"] for r in chunk])
        records = [
            (r["organization_id"], r["profile_id"], "month", r["bucket_start"], r["views"], r["inquiries"],
             r["conversions"], r["engagement_ms"], _union(r["visitors"]), _union(r["inquirers"]), now)
            for r in rows
        ]  # fmt: skip
        await conn.copy_records_to_table("profile_rollups", records=records, columns=COLUMNS)


async def _fill_month_of_day(conn: asyncpg.Connection) -> None:
    """(zone, local day start) -> local month start, for every day rolled up so far."""
    await conn.execute(
        "CREATE TEMP TABLE month_of_day (timezone text, day timestamptz, month timestamptz,"
        " PRIMARY KEY (timezone, day)) ON COMMIT DROP"
    )
    rows = [(r["timezone"], r["bucket_start"], _month_start(r["bucket_start"], r["timezone"])) for r in await conn.fetch(DAYS)]
    await conn.copy_records_to_table("month_of_day", records=rows, columns=("timezone", "day", "month"))


def _month_start(day: datetime, timezone: str) -> datetime:
    zone = ZoneInfo(timezone)
    first = day.astimezone(zone).date().replace(day=1)
    return datetime.combine(first, time(0), tzinfo=zone).astimezone(UTC)


def _union(sketches: list[bytes] | None) -> bytes | None:
    if not sketches:
        return None
    union = hll_union(HLL_LG_K)
    for data in sketches:
        union.update(hll_sketch.deserialize(data))
    return union.get_result(tgt_hll_type.HLL_8).serialize_compact()
