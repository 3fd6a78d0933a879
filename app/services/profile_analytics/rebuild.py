"""Rebuilding the rollups from the worker's ledger (`rebuild_rollups`, `pulsegraph rollups rebuild`).

`profile_events` holds exactly the events whose effects the worker applied (it is the
worker's exactly-once ledger), so the rollups are a function of it. Everything is grouped
by local hour in SQL (the same formula as `reports.RAW_HOURS`); the local day and month of
an hour are the worker's own (`day_start`, `month_start`, `local_midnight`), so the rebuild
cannot disagree with it about DST. Four connections work at once:
  * reader: the hour rows of profile_rollups (counters and visitor ids) from a server-side
    cursor in (profile, hour) order (a profile's rows are all it needs together; a uuid
    first sorts faster than one of a few organization ids). Python builds each hour's sketch from its ids
    (repeats are harmless: an HLL update is idempotent, so SQL need not sort them for
    DISTINCT); a day is the union of its hours' sketch objects and a month the union of its
    days', emitted when the local day or month changes, so memory stays bounded;
  * two sources: referrer and revenue rows (hours, and their sums per day and month found
    through a (zone, local date) table computed in Python, since SQL's midnight of an
    ambiguous local date is not zoneinfo's) never become Python objects: a binary COPY TO
    is handed over to a binary COPY FROM on the writer. Their queries aggregate and sort
    while the writer loads profile_rollups;
  * writer: the one transaction that empties the tables and loads them. Referrer and revenue
    rows come in primary-key order, so their index grows at its right edge; a full rebuild
    builds profile_rollups' index after loading instead (one sort, not a descent per row).

Concurrency: the rebuild locks the three rollup tables (SHARE ROW EXCLUSIVE) before it
reads. A worker batch that committed earlier is in what we read; one that has not yet
written its rollups blocks on the lock and applies its delta on top of the rebuilt rows
once we commit. Readers see the old rollups until the commit (a full rebuild TRUNCATEs,
which makes reports wait for the commit instead).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import asyncpg
from datasketches import hll_sketch, hll_union

from app.database import connection, transaction
from app.services.profile_analytics.effects import COUNTERS, DIRECT
from app.services.profile_analytics.sketches import HLL_LG_K, HLL_TYPE, new_sketch
from app.timebuckets import day_start, local_date, local_midnight, month_start
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
    REVENUE_SOURCE,
)

log = logging.getLogger("pulsegraph.profile_analytics")

_KIND = PROFILE_EVENT_KIND
_REVENUE_OF_KIND = {_KIND[t]: REVENUE_SOURCE[t] for t in MONEY_EVENT_TYPES}
_LOCAL_HOUR = (
    "pe.occurred_at - ((pe.occurred_at AT TIME ZONE o.timezone)"
    " - date_trunc('hour', pe.occurred_at AT TIME ZONE o.timezone))"
)
_REBUILD_FROM = """
FROM profile_events pe JOIN organizations o ON o.id = pe.organization_id
WHERE ($1::uuid IS NULL OR pe.organization_id = $1::uuid)
"""
# Grouping by o.id (a primary key) rather than by the zone name keeps text comparisons out
# of the sort: the zone follows from the organization.
REBUILD_HOURS = f"""
SELECT o.id AS organization_id, pe.profile_id, o.timezone, {_LOCAL_HOUR} AS bucket,
       count(*) FILTER (WHERE pe.kind = $2) AS views,
       count(*) FILTER (WHERE pe.kind = $3) AS inquiries,
       count(*) FILTER (WHERE pe.kind = $4) AS conversions,
       COALESCE(sum(pe.engagement_ms), 0)::bigint AS engagement_ms,
       count(*) FILTER (WHERE pe.kind = $5) - count(*) FILTER (WHERE pe.kind = $6) AS favorites,
       count(*) FILTER (WHERE pe.kind = $7) AS shares,
       count(*) FILTER (WHERE pe.kind = $8) AS clicks,
       array_agg(pe.visitor_id) FILTER (WHERE pe.kind = $2 AND pe.visitor_id <> '') AS visitors,
       array_agg(pe.visitor_id) FILTER (WHERE pe.kind = $3 AND pe.visitor_id <> '') AS inquirers
{_REBUILD_FROM}
GROUP BY pe.profile_id, o.id, bucket
HAVING count(*) FILTER (WHERE pe.kind IN ($2, $3, $4, $5, $6, $7, $8) OR pe.engagement_ms > 0) > 0
ORDER BY 2, 1, 4
"""
# The rows of one table: its hour rows (`hours`: a query with $1 the organization or NULL and
# $2-$5 the local days), then their sums per local day and per local month; in the table's
# column order, for a binary COPY into it. The sort compares the grain (and the referrer)
# bytewise, COLLATE "C": the database's collation (C.UTF-8 is not "C" to PostgreSQL 15) would
# call strcoll millions of times. Both put ASCII in the same order, and the order only decides
# where in the primary key a row lands, not what is stored.
_LOCAL_DAYS = "unnest($2::text[], $3::date[], $4::timestamptz[], $5::timestamptz[]) AS d(timezone, local_date, day, month)"
_HOURS_AND_SUMS = """
WITH hours AS MATERIALIZED (
    SELECT h.*, d.day, d.month
    FROM ({hours}) h
    JOIN {days} ON d.timezone = h.timezone AND d.local_date = (h.bucket AT TIME ZONE h.timezone)::date
)
SELECT organization_id, profile_id, 'hour' COLLATE "C", bucket, {keys}, {values} FROM hours
UNION ALL
SELECT organization_id, profile_id, 'day', day, {keys}, {sums} FROM hours GROUP BY organization_id, profile_id, day, {keys}
UNION ALL
SELECT organization_id, profile_id, 'month', month, {keys}, {sums} FROM hours GROUP BY organization_id, profile_id, month, {keys}
ORDER BY 1, 2, 3, 4, {order}
"""
_REFERRER_HOURS = f"""
SELECT o.id AS organization_id, pe.profile_id, o.timezone, {_LOCAL_HOUR} AS bucket,
       COALESCE(NULLIF(pe.referrer_domain, ''), $7) COLLATE "C" AS referrer, count(*) AS views
{_REBUILD_FROM} AND pe.kind = $6
GROUP BY o.id, pe.profile_id, bucket, referrer
"""
_REVENUE_HOURS = f"""
SELECT o.id AS organization_id, pe.profile_id, o.timezone, {_LOCAL_HOUR} AS bucket, s.source, pe.currency,
       sum(pe.amount_minor)::bigint AS amount_minor, count(*) AS transactions
FROM profile_events pe JOIN organizations o ON o.id = pe.organization_id
JOIN unnest($6::text[], $7::text[]) AS s(kind, source) ON s.kind = pe.kind
WHERE ($1::uuid IS NULL OR pe.organization_id = $1::uuid) AND pe.amount_minor IS NOT NULL AND pe.currency <> ''
GROUP BY o.id, pe.profile_id, bucket, s.source, pe.currency
"""
REBUILD_REFERRERS = _HOURS_AND_SUMS.format(
    hours=_REFERRER_HOURS, days=_LOCAL_DAYS, keys="referrer", values="views", sums="sum(views)::bigint", order="5"
)
REBUILD_REVENUE = _HOURS_AND_SUMS.format(
    hours=_REVENUE_HOURS, days=_LOCAL_DAYS, keys="source, currency", values="amount_minor, transactions",
    sums="sum(amount_minor)::bigint, sum(transactions)::bigint", order="5, 6",
)  # fmt: skip
REFERRER_COLUMNS = ("organization_id", "profile_id", "grain", "bucket_start", "referrer", "views")
REVENUE_COLUMNS = (
    "organization_id", "profile_id", "grain", "bucket_start", "source", "currency", "amount_minor", "transactions",
)  # fmt: skip
REBUILD_SPAN = """
SELECT o.timezone, min(pe.occurred_at) AS first, max(pe.occurred_at) AS last
FROM profile_events pe JOIN organizations o ON o.id = pe.organization_id
WHERE ($1::uuid IS NULL OR pe.organization_id = $1::uuid)
GROUP BY 1
"""
ROLLUP_TABLES = ("profile_rollups", "profile_referrer_rollups", "profile_revenue_rollups")
# updated_at is left to its default, now(): the rebuild's transaction time.
ROLLUP_COLUMNS = (
    "organization_id", "profile_id", "grain", "bucket_start", "views", "inquiries", "conversions",
    "engagement_ms", "favorites", "shares", "clicks", "visitors_hll", "inquirers_hll",
)  # fmt: skip
REBUILD_FETCH = 20_000
# Hash aggregates of a year of events fit in memory instead of spilling sorts to disk; JIT
# compilation costs more than it saves on these one-pass statements; a merge join would sort
# every hour row to find its local day in a table of a few thousand rows.
REBUILD_SETTINGS = (
    "SET LOCAL work_mem = '256MB'; SET LOCAL maintenance_work_mem = '256MB';"
    " SET LOCAL jit = off; SET LOCAL enable_mergejoin = off"
)
# A full rebuild drops the indexes of these (truncated) tables and builds them again after
# loading: profile_rollups rows arrive in (org, profile, hour) order, not in key order. Indexes
# a foreign key depends on stay.
INDEXED_AFTER_LOAD = ("profile_rollups",)
ROLLUP_INDEXES = """
SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition,
       c.conname AS constraint_name, pg_get_constraintdef(c.oid) AS constraint_definition
FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
WHERE i.indrelid = $1::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = i.indexrelid)
ORDER BY 1
"""


@dataclass
class RebuildStats:
    organization_id: uuid.UUID | None = None
    hour_rows: int = 0
    day_rows: int = 0
    month_rows: int = 0
    referrer_rows: int = 0
    revenue_rows: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "organization_id": str(self.organization_id) if self.organization_id else None}


async def _local_days(conn: asyncpg.Connection, org: uuid.UUID | None) -> tuple[list[Any], ...]:
    """(zone, local date, day start, month start) of every local date from the first event to
    the last, as four columns for `_LOCAL_DAYS`: `day_start` and `month_start` as the worker
    computes them (zoneinfo's midnight, also when it is ambiguous or skipped)."""
    columns: tuple[list[Any], ...] = ([], [], [], [])
    for span in await conn.fetch(REBUILD_SPAN, org):
        timezone = span["timezone"]
        day, last = local_date(span["first"], timezone), local_date(span["last"], timezone)
        while day <= last:
            row = (timezone, day, local_midnight(day, timezone), local_midnight(day.replace(day=1), timezone))
            for column, value in zip(columns, row, strict=True):
                column.append(value)
            day += timedelta(days=1)
    return columns


# The hour rows' timestamps arrive, and the rollup rows leave, as PostgreSQL's own integer
# (microseconds since 2000-01-01 UTC, in a 1-tuple: asyncpg's "tuple" format). Decoding and
# encoding a datetime per row, and hashing it to look up its local day, took a third of the
# Python time of a rebuild; integers cost next to nothing.
Instant = tuple[int]
_POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@asynccontextmanager
async def _instants_as_integers(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """timestamptz values cross `conn` as `Instant`s inside. Setting and resetting a codec of
    a built-in type sends nothing to the server, so the reset also works on a broken
    connection, and the pooled connection goes back with its usual codecs."""
    await conn.set_type_codec("timestamptz", schema="pg_catalog", encoder=tuple, decoder=tuple, format="tuple")
    try:
        yield
    finally:
        await conn.reset_type_codec("timestamptz", schema="pg_catalog")


def _instant(moment: datetime) -> Instant:
    return ((moment - _POSTGRES_EPOCH) // _MICROSECOND,)


@lru_cache(maxsize=65_536)
def _day_and_month(timezone: str, hour: Instant) -> tuple[Instant, Instant]:
    """The local day and month starts of a local hour, as the worker computes them."""
    moment = _POSTGRES_EPOCH + hour[0] * _MICROSECOND
    return _instant(day_start(moment, timezone)), _instant(month_start(moment, timezone))


class _Grain:
    """A day or month being summed: its key, counters and the union of its parts' sketches."""

    __slots__ = ("key", "counters", "visitors", "inquirers")

    def __init__(self, key: tuple) -> None:
        self.key = key
        self.counters = [0] * len(COUNTERS)  # as the rollup row's, in ROLLUP_COLUMNS order
        self.visitors: hll_union | None = None
        self.inquirers: hll_union | None = None

    def add(self, counters: Sequence[int], visitors: hll_sketch | None, inquirers: hll_sketch | None) -> None:
        for i, value in enumerate(counters):
            self.counters[i] += value
        if visitors is not None:
            if self.visitors is None:
                self.visitors = hll_union(HLL_LG_K)
            self.visitors.update(visitors)
        if inquirers is not None:
            if self.inquirers is None:
                self.inquirers = hll_union(HLL_LG_K)
            self.inquirers.update(inquirers)

    def close(self, into: _Grain | None) -> tuple:
        """The row of this grain; its counters and sketches are added to `into` (its month)."""
        visitors = self.visitors.get_result(HLL_TYPE) if self.visitors is not None else None
        inquirers = self.inquirers.get_result(HLL_TYPE) if self.inquirers is not None else None
        if into is not None:
            into.add(self.counters, visitors, inquirers)
        return (*self.key, *self.counters, _serialized(visitors), _serialized(inquirers))


def _serialized(sketch: hll_sketch | None) -> bytes | None:
    """None when no id was seen, as the worker leaves it."""
    return sketch.serialize_compact() if sketch is not None else None


def _sketch_of(ids: Sequence[str] | None) -> hll_sketch | None:
    if not ids:
        return None
    sketch = new_sketch()
    for visitor in ids:
        sketch.update(visitor)
    return sketch


class _RollupRecords:
    """profile_rollups records of hour rows in (profile, hour) order: each hour, then a day
    row whenever the (org, profile, local day) changes and a month row (the sum and union of
    its days) whenever the local month does."""

    def __init__(self, stats: RebuildStats) -> None:
        self.stats = stats
        self.day: _Grain | None = None
        self.month: _Grain | None = None

    def of(self, rows: Sequence[asyncpg.Record]) -> list[tuple]:
        out: list[tuple] = []
        day, month, stats = self.day, self.month, self.stats
        for o, p, timezone, hour, *counters, visitor_ids, inquirer_ids in rows:
            visitors, inquirers = _sketch_of(visitor_ids), _sketch_of(inquirer_ids)
            out.append((o, p, "hour", hour, *counters, _serialized(visitors), _serialized(inquirers)))
            day_start_, month_start_ = _day_and_month(timezone, hour)
            if day is None or day.key != (o, p, "day", day_start_):
                if day is not None:
                    out.append(day.close(month))
                    stats.day_rows += 1
                if month is None or month.key != (o, p, "month", month_start_):
                    if month is not None:
                        out.append(month.close(None))
                        stats.month_rows += 1
                    month = _Grain((o, p, "month", month_start_))
                day = _Grain((o, p, "day", day_start_))
            day.add(counters, visitors, inquirers)
        self.day, self.month = day, month
        stats.hour_rows += len(rows)
        return out

    def last(self) -> list[tuple]:
        if self.day is None or self.month is None:
            return []
        self.stats.day_rows += 1
        self.stats.month_rows += 1
        return [self.day.close(self.month), self.month.close(None)]


async def _hour_batches(conn: asyncpg.Connection, org: uuid.UUID | None) -> AsyncIterator[list[asyncpg.Record]]:
    """REBUILD_HOURS in batches from a server-side cursor, its hours as `Instant`s. The first
    batch is requested at once, so the server sorts while the caller's other statements run."""
    async with _instants_as_integers(conn), conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute(REBUILD_SETTINGS)
        cursor = await conn.cursor(REBUILD_HOURS, org, _KIND[PROFILE_VIEWED], _KIND[PROFILE_INQUIRY],
                                   _KIND[BOOKING_COMPLETED], _KIND[PROFILE_FAVORITED], _KIND[PROFILE_UNFAVORITED],
                                   _KIND[PROFILE_SHARED], _KIND[PROFILE_CLICKED])  # fmt: skip
        batch = asyncio.ensure_future(cursor.fetch(REBUILD_FETCH))
        try:
            while rows := await batch:
                batch = asyncio.ensure_future(cursor.fetch(REBUILD_FETCH))
                yield rows
        finally:
            batch.cancel()


async def _rollup_records(batches: AsyncIterator[list[asyncpg.Record]], stats: RebuildStats) -> AsyncIterator[tuple]:
    records = _RollupRecords(stats)
    async for rows in batches:
        with _collector_paused():
            built = records.of(rows)
        for record in built:
            yield record
    for record in records.last():
        yield record


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection inside (a synchronous stretch: no other task runs). A
    batch allocates some 100,000 tuples and sketches, none of them in a cycle, and each
    allocation count past the threshold made the collector walk every live object again:
    a sixth of the Python time of a rebuild."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def _dropped_indexes(conn: asyncpg.Connection) -> list[str]:
    """Drop the indexes of INDEXED_AFTER_LOAD; the statements that build them again."""
    builds = []
    for table in INDEXED_AFTER_LOAD:
        for index in await conn.fetch(ROLLUP_INDEXES, table):
            if index["constraint_name"]:
                name = index["constraint_name"]
                await conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
                builds.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {index["constraint_definition"]}')
            else:
                await conn.execute(f"DROP INDEX {index['name']}")
                builds.append(index["definition"])
    return builds


class _Pipe:
    """The rows of a query on its own connection, binary, on their way into a COPY on the
    writer. Started early, the query aggregates (one backend) while the writer is busy with
    other tables; once it is consumed, Python only hands buffers over."""

    def __init__(self, source: asyncpg.Connection, sql: str, *args: Any) -> None:
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=16)
        self._producer = asyncio.ensure_future(self._produce(source, sql, args))

    async def _produce(self, source: asyncpg.Connection, sql: str, args: tuple) -> None:
        try:
            async with source.transaction(isolation="repeatable_read", readonly=True):
                await source.execute(REBUILD_SETTINGS)
                await source.copy_from_query(sql, *args, output=self._chunks.put, format="binary")
        finally:
            await self._chunks.put(None)

    async def _rows(self) -> AsyncIterator[bytes]:
        while (chunk := await self._chunks.get()) is not None:
            yield chunk

    async def into(self, target: asyncpg.Connection, table: str, columns: Sequence[str]) -> int:
        """COPY everything into `table`; the number of rows."""
        try:
            status = await target.copy_to_table(table, source=self._rows(), columns=columns, format="binary")
        except asyncpg.PostgresError:
            if self._producer.done() and not self._producer.cancelled() and self._producer.exception():
                await self._producer  # the query's error, not the half-fed COPY's
            raise
        await self._producer  # a failed query must not leave a partial table behind
        return int(status.rsplit(" ", 1)[1])

    async def stop(self) -> None:
        """After a failure (the transaction rolls back): stop the query, drop what it sent so
        that its end mark finds room, and wait until it has let go of its connection."""
        if not self._producer.done():
            self._producer.cancel()
            while not self._chunks.empty():
                self._chunks.get_nowait()
        await asyncio.gather(self._producer, return_exceptions=True)


async def _cleared(conn: asyncpg.Connection, org: uuid.UUID | None) -> list[str]:
    """Lock the rollup tables and empty them (of `org`); the index builds to run after loading."""
    await conn.execute(REBUILD_SETTINGS)
    await conn.execute(f"LOCK TABLE {', '.join(ROLLUP_TABLES)} IN SHARE ROW EXCLUSIVE MODE")
    if org is None:
        await conn.execute(f"TRUNCATE {', '.join(ROLLUP_TABLES)}")
        return await _dropped_indexes(conn)
    for table in ROLLUP_TABLES:
        await conn.execute(f"DELETE FROM {table} WHERE organization_id = $1", org)
    return []


async def rebuild_rollups(organization_id: uuid.UUID | str | None = None) -> RebuildStats:
    """Recompute the hour, day and month rollups (counters, sketches, referrers, revenue) of one
    organization, or of all, from `profile_events`; identical to what the worker built."""
    started = time.perf_counter()
    org = uuid.UUID(str(organization_id)) if organization_id is not None else None
    stats = RebuildStats(organization_id=org)
    async with (
        transaction() as conn,
        connection() as reader,
        connection() as referrer_source,
        connection() as revenue_source,
    ):
        builds = await _cleared(conn, org)
        hours = _hour_batches(reader, org)
        first = asyncio.ensure_future(anext(hours, None))
        days = await _local_days(conn, org)
        sources = list(_REVENUE_OF_KIND.items())
        referrers = _Pipe(referrer_source, REBUILD_REFERRERS, org, *days, _KIND[PROFILE_VIEWED], DIRECT)
        revenue = _Pipe(revenue_source, REBUILD_REVENUE, org, *days, [k for k, _ in sources], [s for _, s in sources])
        try:
            async with _instants_as_integers(conn):
                await conn.copy_records_to_table(
                    "profile_rollups", records=_rollup_records(_chained(first, hours), stats), columns=ROLLUP_COLUMNS
                )
            stats.referrer_rows = await referrers.into(conn, "profile_referrer_rollups", REFERRER_COLUMNS)
            stats.revenue_rows = await revenue.into(conn, "profile_revenue_rollups", REVENUE_COLUMNS)
        finally:
            # Nothing may touch a connection once it is back in the pool; after a failure the
            # errors of these are echoes of the first one.
            first.cancel()
            await asyncio.gather(first, hours.aclose(), referrers.stop(), revenue.stop(), return_exceptions=True)
        for build in builds:
            await conn.execute(build)
    stats.seconds = time.perf_counter() - started
    log.info("rebuilt rollups: %s", stats.as_dict())
    return stats


async def _chained(first: Awaitable[Any], rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """`first` (the already started first item of `rest`), then the rest."""
    item = await first
    if item is None:
        return
    yield item
    async for item in rest:
        yield item

