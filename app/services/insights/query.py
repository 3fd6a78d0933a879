"""What every insight runner shares: its scope (one organization and its time zone), its
periods, and running its statement (a regex PostgreSQL refuses names its field)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, ClassVar, Generic, TypeVar

import asyncpg

from app.auth import Viewer, administered_organization
from app.database import connection, spare_connection
from app.errors import BadInput
from app.runners import QueryRunner
from app.services.insights.grammar import Sql
from app.timebuckets import (
    Grain,
    RangeSpec,
    TimeRange,
    bucket_start,
    bucket_starts,
    local_midnight,
    resolve_range,
    zone,
)

REFUSAL = "insights read every event of an organization: they need an organization admin token"
MAX_PERIODS = 1000  # points of one series: 41 days of hours, 400 days, weeks or months

P = TypeVar("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class InsightScope:
    organization_id: uuid.UUID
    timezone: str


async def insight_scope(viewer: Viewer, organization_id: Any) -> InsightScope:
    """Organization admins their own organization, platform admins the one they name;
    providers and ingestion keys are refused (insights read every profile's events)."""
    org = await administered_organization(viewer, organization_id, refusal=REFUSAL)
    async with connection() as conn:
        timezone = await conn.fetchval("SELECT timezone FROM organizations WHERE id = $1", org)
    return InsightScope(org, timezone)


class InsightRunner(QueryRunner[InsightScope, P, R], Generic[P, R]):
    """A runner over one organization's events; its inputs carry `organization_id`."""

    max_age: ClassVar[float] = 30.0

    async def scope(self) -> InsightScope:
        return await insight_scope(self.viewer, self.inputs.get("organization_id"))


@dataclass(frozen=True, slots=True)
class Periods:
    """A resolved range cut into local periods: starts[i] <= period i < ends[i]."""

    range: TimeRange
    grain: Grain
    starts: list[datetime]
    ends: list[datetime]

    def __len__(self) -> int:
        return len(self.starts)


def periods(spec: RangeSpec, grain: Grain, timezone: str, *, now: datetime | None = None, field: str = "range") -> Periods:
    """The range's periods of `grain` in the organization's zone; a range with more than
    MAX_PERIODS of them is refused (name a coarser granularity)."""
    time_range = resolve_range(spec, timezone, now=now)
    return periods_of(time_range, grain, field=field)


def periods_of(time_range: TimeRange, grain: Grain, *, field: str = "range") -> Periods:
    starts = bucket_starts(time_range, grain)
    if len(starts) > MAX_PERIODS:
        raise BadInput(
            f"{len(starts)} {grain.value} periods in this range; at most {MAX_PERIODS}: choose a coarser granularity"
            " or a shorter range",
            field="granularity" if field == "range" else field,
        )
    ends = starts[1:] + [next_period_start(starts[-1], grain, timezone=time_range.timezone)] if starts else []
    return Periods(time_range, grain, starts, ends)


def next_period_start(start: datetime, grain: Grain, *, timezone: str) -> datetime:
    """The local start of the period after the one starting at `start`."""
    return shift_periods(start, grain, 1, timezone=timezone)


def shift_periods(instant: datetime, grain: Grain, count: int, *, timezone: str) -> datetime:
    """`instant` moved by `count` periods on the local calendar (negative: back), keeping
    its local time of day, so a period start stays a period start across DST changes."""
    tz = zone(timezone)
    if grain is Grain.HOUR:
        return bucket_start(instant + timedelta(hours=count), Grain.HOUR, tz) if instant == bucket_start(
            instant, Grain.HOUR, tz
        ) else instant + timedelta(hours=count)
    local = instant.astimezone(tz)
    day = local.date()
    if grain is Grain.DAY:
        moved = day + timedelta(days=count)
    elif grain is Grain.WEEK:
        moved = day + timedelta(days=7 * count)
    else:
        months = day.year * 12 + day.month - 1 + count
        moved = date(months // 12, months % 12 + 1, 1) if day.day == 1 else _same_day(months, day.day)
    if local.time() == datetime.min.time():
        return local_midnight(moved, tz)
    return datetime.combine(moved, local.time(), tzinfo=tz).astimezone(instant.tzinfo)


def _same_day(months: int, day: int) -> date:
    year, month = months // 12, months % 12 + 1
    for candidate in (day, 30, 29, 28):
        try:
            return date(year, month, min(day, candidate))
        except ValueError:
            continue
    raise AssertionError("every month has 28 days")


def previous_range(current: Periods) -> Periods:
    """The range just before `current`, for compare-to-previous: as many local periods when
    the range starts on a period (the 30 days before the last 30 days, across DST changes),
    else exactly as long."""
    count = len(current)
    tz = current.range.timezone
    if current.starts and current.starts[0] == current.range.start:
        start = shift_periods(current.range.start, current.grain, -count, timezone=tz)
    else:
        start = current.range.start - (current.range.end - current.range.start)
    return periods_of(TimeRange(start=start, end=current.range.start, timezone=tz), current.grain)


@asynccontextmanager
async def insight_connection() -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection in a read-only snapshot, so every statement of one answer sees the
    same events; without PostgreSQL's JIT, whose compilation of these large aggregates cost
    more than it saved, with room to group per person and period in memory (at the
    default 4 MB, retention's grouping spilled to disk), and with parallel workers priced
    for statements that return a few rows out of millions (the default price of a row
    passed between processes kept a funnel's sort in one process)."""
    async with connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute(INSIGHT_SETTINGS)
        yield conn


INSIGHT_SETTINGS = "SET LOCAL jit = off; SET LOCAL work_mem = '64MB'; SET LOCAL parallel_tuple_cost = 0.01"
SPARE_WAIT_SECONDS = 0.05  # how long a split statement waits for a second connection before running alone


@asynccontextmanager
async def insight_connections(count: int) -> AsyncIterator[list[asyncpg.Connection]]:
    """Up to `count` insight connections reading one snapshot (the first exports it, the
    others import it, as parallel pg_dump does), so the parts of one answer see exactly the
    events one statement would. Fewer, down to the first alone, when the pool has no spare."""
    async with insight_connection() as leader, AsyncExitStack() as stack:
        conns = [leader]
        if count > 1:
            snapshot = await leader.fetchval("SELECT pg_export_snapshot()")
            for _ in range(count - 1):
                conn = await stack.enter_async_context(spare_connection(SPARE_WAIT_SECONDS))
                if conn is None:
                    break
                await stack.enter_async_context(conn.transaction(isolation="repeatable_read", readonly=True))
                await conn.execute("SET TRANSACTION SNAPSHOT " + _quoted(snapshot))
                await conn.execute(INSIGHT_SETTINGS)
                conns.append(conn)
        yield conns


def statement_settings(sql: Sql, *, side_by_side: bool = False) -> str:
    """What one statement needs besides INSIGHT_SETTINGS: hash joins only (see
    `Sql.hash_joins`); and no parallel workers for parts read side by side, which already
    keep the cores busy (workers would fight them for the same cores)."""
    settings = []
    if sql.hash_joins:
        settings += ["SET LOCAL enable_nestloop = off", "SET LOCAL enable_mergejoin = off"]
    if side_by_side:
        settings.append("SET LOCAL max_parallel_workers_per_gather = 0")
    return "; ".join(settings)


def _quoted(literal: str) -> str:
    return "'" + literal.replace("'", "''") + "'"


async def fetch_parts(sql: Sql, statements: Sequence[str]) -> list[list[asyncpg.Record]]:
    """Run statements that share `sql`'s parameters side by side, one per connection of
    one snapshot (in turn on fewer connections when the pool is short), answers in order.
    If one fails, the others are cancelled (asyncpg cancels them on the server too)."""
    async with insight_connections(len(statements)) as conns:
        await check_regexes(conns[0], sql.regexes)
        settings = statement_settings(sql, side_by_side=len(conns) > 1)
        if settings:
            for conn in conns:
                await conn.execute(settings)
        shares = [list(range(i, len(statements), len(conns))) for i in range(len(conns))]
        answers: list[list[asyncpg.Record]] = [[] for _ in statements]

        async def run(conn: asyncpg.Connection, indexes: list[int]) -> None:
            for i in indexes:
                answers[i] = await conn.fetch(statements[i], *sql.params)

        tasks = [asyncio.create_task(run(conn, share)) for conn, share in zip(conns, shares, strict=True)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return answers


async def fetch(sql: Sql, statement: str) -> list[asyncpg.Record]:
    """Run one insight statement with its parameters."""
    async with insight_connection() as conn:
        await check_regexes(conn, sql.regexes)
        if settings := statement_settings(sql):
            await conn.execute(settings)
        return await conn.fetch(statement, *sql.params)


async def check_regexes(conn: asyncpg.Connection, regexes: Sequence[tuple[str, str]]) -> None:
    """PostgreSQL's regular expressions are not Python's: a pattern Python compiled may still
    be refused, and that must be the client's error, naming the field, not an internal one."""
    for pattern, field in regexes:
        try:
            await conn.fetchval("SELECT '' ~ $1::text", pattern)
        except (asyncpg.InvalidRegularExpressionError, asyncpg.DataError) as exc:
            raise BadInput(f"the regular expression does not compile: {exc}", field=field) from None
