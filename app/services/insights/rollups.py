"""When an insight may read the pre-aggregates instead of the events, and how.

Why they exist: a month of page views at 10M stored events is more than a million rows
spread over most of the events heap; the same answer per UTC hour is a few thousand rows of
counts, or one row per person and active hour. Migrations 0021 and 0026 keep four
aggregates of `events`:

- `event_hour_counts`: events per (type, UTC hour), in total and per value of each stored
  dimension in ROLLED_DIMENSIONS;
- `event_actor_hours`: which visitor did which type in which UTC hour;
- `event_actor_days`: which visitor did which type on which day of the organization's zone
  (a change of zone refolds them);
- `event_actor_first`: each visitor's first hour of each type.

Ingestion only queues each stored event's rolled-up columns (a trigger on `events`); the
worker folds the queue into the aggregates in large batches (`fold`), where grouping many
batches at once costs a fraction of doing it per batch, and no ingesting session waits on a
hot counter row. Readers read the aggregates and the queue together (the `*_live` views of
the migration), so an answer is exact before the fold as after it; deleted events leave the
queue or the aggregates in the deleting transaction.

A query reads them only when they hold its exact answer, so an answer never depends on the
path taken:
- its matchers name events without property filters (a filter may read anything);
- every instant it cuts time at (period starts and ends, range bounds) is a whole UTC hour,
  true of every period of a time zone whose offsets are whole hours, and never of ranges
  that end "now" or zones such as Asia/Kolkata (those read the events);
- counts: the TOTAL math, without a breakdown or by one of ROLLED_DIMENSIONS;
- actors: statements that ask only who did what in which period (unique persons, rolling
  active persons, retention, lifecycle, stickiness) without a breakdown; per local day when
  every cut also starts a day in the organization's zone (`actors_sql`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import datetime, time
from zoneinfo import ZoneInfo

import asyncpg

from app.services.insights.grammar import ALL_EVENTS, OTHER, Breakdown, EventMatcher, PropertySource, Sql

ROLLED_DIMENSIONS = frozenset(
    {"country", "device_type", "browser", "os", "referrer_domain", "utm_source", "utm_medium", "utm_campaign"}
)


def on_the_hour(instants: Iterable[datetime]) -> bool:
    """Every instant is a whole UTC hour (aware datetimes)."""
    return all(i.minute == 0 and i.second == 0 and i.microsecond == 0 and i.utcoffset() is not None
               and (i.utcoffset().total_seconds() % 3600 == 0) for i in instants)  # fmt: skip


def day_starts(instants: Iterable[datetime], timezone: str) -> bool:
    """Every instant starts a day in `timezone` as the days pre-aggregate cut them
    (PostgreSQL's date_trunc('day', t, zone)): a local midnight that happens once a day."""
    zone = ZoneInfo(timezone)
    for instant in instants:
        local = instant.astimezone(zone)
        if local.time() != time(0) or local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset():
            return False
    return True


def unfiltered(*matchers: EventMatcher) -> bool:
    return all(not m.filters for m in matchers)


def actors_sql(*matchers: EventMatcher, since: datetime, cuts: Iterable[datetime], timezone: str, exact: bool = True) -> Sql:
    """A statement's parameters, reading who did what (`Sql.actors`) from the pre-aggregates
    when they hold its exact answer: per local day when every cut starts a day of the
    organization's zone, else per UTC hour when every cut is on the hour; otherwise (filters,
    odd cuts, or `exact` false: something only the events hold) from the events. `since` is
    the first cut: the history before it is read from each visitor's first hour."""
    cuts = [since, *cuts]
    if not (exact and unfiltered(*matchers) and on_the_hour([since])):
        return Sql()
    if day_starts(cuts, timezone):
        return Sql(actors_since=since, actors_by_day=True)
    return Sql(actors_since=since) if on_the_hour(cuts) else Sql()


def counts_breakdown(breakdown: Breakdown | None) -> bool:
    """A breakdown the hourly counts hold: none, or a rolled stored dimension."""
    return breakdown is None or (breakdown.source is PropertySource.DIMENSION and breakdown.key in ROLLED_DIMENSIONS)


def counts_where(sql: Sql, organization_id: object, matcher: EventMatcher, breakdown: Breakdown | None,
                 start: datetime, end: datetime) -> str:  # fmt: skip
    """The hourly counts of one matcher over [start, end), per the breakdown's dimension."""
    conditions = [
        f"c.organization_id = {sql.param(organization_id, 'uuid')}",
        f"c.dimension = {sql.param('' if breakdown is None else breakdown.key, 'text')}",
        f"c.hour >= {sql.param(start, 'timestamptz')}",
        f"c.hour < {sql.param(end, 'timestamptz')}",
    ]
    if matcher.event != ALL_EVENTS:
        conditions.append(f"c.type = {sql.param(matcher.event, 'text')}")
    return " AND ".join(conditions)


def counted(sql: Sql, where: str, starts: list[datetime]) -> str:
    """Events per (period, raw value): the rows a breakdown ranks and folds."""
    period = f"width_bucket(c.hour, {sql.param(starts, 'timestamptz[]')})"
    return (
        f"SELECT {period} AS i, c.value AS b, sum(c.events) AS n FROM event_hour_counts_live c WHERE {where} GROUP BY 1, 2"
    )


def counted_folded(sql: Sql, where: str, starts: list[datetime], top: list[str | None] | None) -> str:
    """Events per (period, shown value) and per shown value over the range: the values
    past `top` gathered as OTHER (no breakdown: `top` None, one NULL value)."""
    period = f"width_bucket(c.hour, {sql.param(starts, 'timestamptz[]')})"
    value = "NULL::text"
    if top is not None:
        named = sql.param([v for v in top if v is not None], "text[]")
        other = sql.param(OTHER, "text")
        value = (
            f"(CASE WHEN c.value IS NULL THEN {'NULL' if None in top else other}"
            f" WHEN c.value = ANY({named}) THEN c.value ELSE {other} END)"
        )
    return (
        f"SELECT i, b, sum(n)::float8 AS v, GROUPING(i) AS whole FROM ("
        f"SELECT {period} AS i, {value} AS b, c.events AS n FROM event_hour_counts_live c WHERE {where}) f"
        f" GROUP BY GROUPING SETS ((i, b), (b))"
    )


FORGET_HOURS = """
WITH counts AS (DELETE FROM event_hour_counts WHERE hour >= $1 AND hour < $2),
     queued AS (DELETE FROM event_rollup_queue WHERE occurred_at >= $1 AND occurred_at < $2)
DELETE FROM event_actor_hours WHERE hour >= $1 AND hour < $2
"""
# A local day may straddle the dropped month's first or last UTC instant: the days that
# touch it are dropped, and those that still hold an event are folded again from the events.
FORGET_DAYS = "DELETE FROM event_actor_days WHERE day >= $1::timestamptz - interval '2 days' AND day < $2"
REFOLD_DAYS = """
INSERT INTO event_actor_days
SELECT * FROM event_days_of(NULL, $1::timestamptz - interval '2 days', $2::timestamptz + interval '2 days')
WHERE day >= $1::timestamptz - interval '2 days' AND day < $2
ON CONFLICT DO NOTHING
"""
MOVE_FIRST_HOURS = """
WITH remaining AS (
    SELECT f.organization_id, f.type, f.visitor_id,
           (SELECT min(a.hour) FROM event_actor_hours_live a
            WHERE a.organization_id = f.organization_id AND a.type = f.type AND a.visitor_id = f.visitor_id) AS first_hour
    FROM event_actor_first f WHERE f.first_hour >= $1 AND f.first_hour < $2
), moved AS (
    UPDATE event_actor_first f SET first_hour = r.first_hour FROM remaining r
    WHERE f.organization_id = r.organization_id AND f.type = r.type AND f.visitor_id = r.visitor_id
      AND r.first_hour IS NOT NULL
)
DELETE FROM event_actor_first f USING remaining r
WHERE f.organization_id = r.organization_id AND f.type = r.type AND f.visitor_id = r.visitor_id AND r.first_hour IS NULL
"""


async def forget_hours(conn: asyncpg.Connection, start: datetime, end: datetime) -> None:
    """The pre-aggregates of [start, end) go with a dropped month of events: dropping a
    partition fires no delete trigger. In the caller's transaction."""
    await conn.execute(FORGET_HOURS, start, end)
    await conn.execute(FORGET_DAYS, start, end)
    await conn.execute(REFOLD_DAYS, start, end)
    await conn.execute(MOVE_FIRST_HOURS, start, end)


FOLD_LOCK_KEY = 7_214_021  # advisory lock id: one folder at a time across worker processes
FOLD_BATCH = 50_000
WAKE_UP_FOLD = 10_000  # what a worker folds per wake-up: a long queue never delays its events


# Queue rows folded (deleted) between two vacuums of the queue, and between two fresh
# statistics of the aggregates (see `tidy`).
VACUUM_QUEUE_AFTER = 100_000
ANALYZE_AGGREGATES_AFTER = 1_000_000


async def tidy(conn: asyncpg.Connection, *, folded_since_vacuum: int, folded_since_analyze: int) -> tuple[bool, bool]:
    """Vacuum the queue and refresh the aggregates' statistics once enough was folded; returns
    (vacuumed, analyzed). Folded queue rows are deleted, but until a vacuum they stay in its
    heap and index, and every live read of the aggregates walks them: ten million of them made
    a 14 ms trend take 1.4 s. Autovacuum does this where it runs and keeps up; the worker does
    not count on either. SKIP_LOCKED: another worker's vacuum is as good."""
    vacuumed = folded_since_vacuum >= VACUUM_QUEUE_AFTER
    analyzed = folded_since_analyze >= ANALYZE_AGGREGATES_AFTER
    if vacuumed:
        await conn.execute("VACUUM (SKIP_LOCKED, ANALYZE) event_rollup_queue")
    if analyzed:
        await conn.execute("ANALYZE (SKIP_LOCKED) event_hour_counts, event_actor_hours, event_actor_days, event_actor_first")
    return vacuumed, analyzed


async def fold(conn: asyncpg.Connection, *, batch: int = FOLD_BATCH, batches: int | None = None) -> int:
    """Fold queued events into the aggregates until the queue is empty, `batches` batches
    are done, or another process is folding; returns how many. Each batch commits on its own."""
    folded = 0
    for _ in itertools.count() if batches is None else range(batches):
        async with conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", FOLD_LOCK_KEY):
                return folded
            taken = await conn.fetchval("SELECT fold_event_rollups($1)", batch)
        folded += taken
        if taken < batch:
            return folded
    return folded
