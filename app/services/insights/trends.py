"""Trends: how many, how many people, how much, per period, for one or more event series.

Definitions (the README's insights section states them too):
- A point is one local period of the organization (hour, day, ISO week, month); periods with
  no events are 0, for every math.
- Maths: TOTAL events; UNIQUE_PERSONS; UNIQUE_SESSIONS; SUM / AVERAGE / MIN / MAX / MEDIAN /
  P90 / P95 / P99 of a numeric event property (percentiles interpolate linearly, as
  PostgreSQL's percentile_cont and numpy do; events whose value is not a number are
  skipped); PER_PERSON_AVERAGE events per person; WEEKLY_ACTIVE / MONTHLY_ACTIVE: persons
  active in the 7 / 30 local days ending with the period's last day (or today for the
  current period), a rolling window that may reach before the range.
- A series' total is the math over the whole range (unique persons are counted once, not
  summed); for the rolling maths it is the last point.
- A breakdown shows the top `limit` values by number of events over the range, and gathers
  the rest as other ($other). A missing value is its own value (null). Breaking down by
  cohorts shows each cohort's members (a person in two cohorts counts in both).
- Compare adds the same series over the as many periods just before the range.
- A formula combines series by letter (A is the first) with + - * / and parentheses,
  point by point and breakdown value by value; a division by zero gives 0.
"""

from __future__ import annotations

import ast
import operator
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

import asyncpg

from app.errors import BadInput
from app.services.insights.grammar import (
    OTHER,
    Breakdown,
    EventMatcher,
    PropertySource,
    Sql,
    matcher_condition,
    numeric,
    value_text,
)
from app.services.insights.query import (
    InsightRunner,
    InsightScope,
    Periods,
    check_regexes,
    insight_connection,
    periods,
    previous_range,
)
from app.services.insights.rollups import (
    actors_sql,
    counted,
    counted_folded,
    counts_breakdown,
    counts_where,
    on_the_hour,
    unfiltered,
)
from app.timebuckets import Grain, RangeSpec, TimeRange, bucket_starts, day_start, utcnow

MAX_SERIES = 20
MAX_FORMULA_CHARS = 200


class Math(str, Enum):
    TOTAL = "total"
    UNIQUE_PERSONS = "unique_persons"
    UNIQUE_SESSIONS = "unique_sessions"
    SUM = "sum"
    AVERAGE = "average"
    MIN = "min"
    MAX = "max"
    MEDIAN = "median"
    P90 = "p90"
    P95 = "p95"
    P99 = "p99"
    PER_PERSON_AVERAGE = "per_person_average"
    WEEKLY_ACTIVE = "weekly_active"
    MONTHLY_ACTIVE = "monthly_active"


PERCENTILES = {Math.MEDIAN: 0.5, Math.P90: 0.9, Math.P95: 0.95, Math.P99: 0.99}
PROPERTY_MATHS = {Math.SUM, Math.AVERAGE, Math.MIN, Math.MAX, *PERCENTILES}
ROLLING_DAYS = {Math.WEEKLY_ACTIVE: 7, Math.MONTHLY_ACTIVE: 30}
# Maths that ask only who was active when: the per-hour actors pre-aggregate answers them.
ACTOR_MATHS = {Math.UNIQUE_PERSONS, Math.WEEKLY_ACTIVE, Math.MONTHLY_ACTIVE}


@dataclass(frozen=True, slots=True)
class TrendSeries:
    matcher: EventMatcher
    math: Math = Math.TOTAL
    property: str | None = None  # the event property SUM..P99 read
    label: str | None = None


@dataclass(frozen=True, slots=True)
class TrendsQuery:
    organization_id: uuid.UUID | str
    range: RangeSpec
    series: tuple[TrendSeries, ...]
    grain: Grain = Grain.DAY
    breakdown: Breakdown | None = None
    compare: bool = False
    formula: str | None = None


@dataclass(slots=True)
class TrendLine:
    label: str
    series_index: int | None  # None for a formula's line
    math: Math | None
    breakdown_value: str | None
    is_other: bool
    compare: str  # "current" | "previous"
    total: float
    starts: list[datetime]
    values: list[float]


@dataclass(slots=True)
class TrendsResult:
    range: TimeRange
    grain: Grain
    lines: list[TrendLine] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TrendsPlan:
    current: Periods
    previous: Periods | None
    formula: Callable[[dict[str, float]], float] | None
    now: datetime


# -- validation -------------------------------------------------------------------------


def check_series(series: tuple[TrendSeries, ...]) -> None:
    if not 1 <= len(series) <= MAX_SERIES:
        raise BadInput(f"a trend has 1 to {MAX_SERIES} series", field="query.series")
    for i, s in enumerate(series):
        if s.math in PROPERTY_MATHS and not (s.property or "").strip():
            raise BadInput(f"{s.math.name} needs the numeric event property to read", field=f"query.series[{i}].property")


def letter(index: int) -> str:
    return chr(ord("A") + index)


_OPERATORS: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: lambda a, b: a / b if b else 0.0,
}


def compile_formula(text: str, series_count: int) -> Callable[[dict[str, float]], float]:
    """A formula over series letters as a function of their values; anything but numbers,
    letters of existing series, + - * / and parentheses is refused naming `query.formula`."""
    if len(text) > MAX_FORMULA_CHARS:
        raise BadInput(f"a formula has at most {MAX_FORMULA_CHARS} characters", field="query.formula")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise BadInput("the formula does not parse; e.g. B / A * 100", field="query.formula") from None
    letters = {letter(i) for i in range(series_count)}

    def build(node: ast.AST) -> Callable[[dict[str, float]], float]:
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right, op = build(node.left), build(node.right), _OPERATORS[type(node.op)]
            return lambda values: op(left(values), right(values))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            inner, sign = build(node.operand), -1.0 if isinstance(node.op, ast.USub) else 1.0
            return lambda values: sign * inner(values)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
            constant = float(node.value)
            return lambda values: constant
        if isinstance(node, ast.Name) and node.id.upper() in letters:
            name = node.id.upper()
            return lambda values: values[name]
        if isinstance(node, ast.Name):
            raise BadInput(f"the formula names series {node.id}; there are {series_count}", field="query.formula")
        raise BadInput("a formula uses series letters, numbers, + - * / and parentheses", field="query.formula")

    return build(tree)


# -- statements -------------------------------------------------------------------------


@dataclass(slots=True)
class Statement:
    """One series' scan: where it reads and how it aggregates."""

    sql: Sql
    where: str
    breakdown: str  # text expression of the raw breakdown value, or NULL::text
    joins: str = ""


def scan(
    org: uuid.UUID, series: TrendSeries, breakdown: Breakdown | None, start: datetime, end: datetime, *, sql: Sql | None = None
) -> Statement:
    """The series' events over [start, end); `sql` says where they are read (`rollups.actors_sql`)."""
    sql = Sql() if sql is None else sql
    where = (
        f"e.organization_id = {sql.param(org, 'uuid')} AND e.occurred_at >= {sql.param(start, 'timestamptz')}"
        f" AND e.occurred_at < {sql.param(end, 'timestamptz')} AND {matcher_condition(sql, series.matcher)}"
    )
    if breakdown is None:
        return Statement(sql, where, "NULL::text")
    if breakdown.source is PropertySource.COHORT:
        cohorts = sql.param(cohort_ids(breakdown), "uuid[]")
        joins = (
            f" JOIN cohort_members cm ON cm.organization_id = e.organization_id AND cm.person_id = {sql.person()}"
            f" AND cm.cohort_id = ANY({cohorts})"
        )
        return Statement(sql, where, "cm.cohort_id::text", joins)
    return Statement(sql, where, value_text(sql, breakdown.source, breakdown.key))


def cohort_ids(breakdown: Breakdown) -> list[str]:
    return [part.strip() for part in breakdown.key.split(",") if part.strip()]


def aggregate(sql: Sql, series: TrendSeries) -> str:
    math = series.math
    if math is Math.TOTAL:
        return "count(*)::float8"
    if math is Math.UNIQUE_PERSONS:
        return f"count(DISTINCT {sql.person()})::float8"
    if math is Math.UNIQUE_SESSIONS:
        return "count(DISTINCT e.session_id)::float8"
    if math is Math.PER_PERSON_AVERAGE:
        person = sql.person()
        return f"(count(*) FILTER (WHERE {person} IS NOT NULL))::float8 / NULLIF(count(DISTINCT {person}), 0)"
    number = numeric(f"(e.properties ->> {sql.param(series.property, 'text')})")
    if math in PERCENTILES:
        return f"percentile_cont({PERCENTILES[math]}) WITHIN GROUP (ORDER BY {number})"
    function = {Math.SUM: "sum", Math.AVERAGE: "avg", Math.MIN: "min", Math.MAX: "max"}[math]
    return f"{function}({number})::float8"


def bucketed(statement: Statement, breakdown_expr: str, agg: str, starts: list[datetime]) -> str:
    """Per (period, value) and per value over the whole range, in one scan (grouping sets)."""
    period = f"width_bucket(e.occurred_at, {statement.sql.param(starts, 'timestamptz[]')})"
    return (
        f"SELECT {period} AS i, {breakdown_expr} AS b, {agg} AS v, GROUPING({period}) AS whole"
        f" FROM {statement.sql.events_from()}{statement.joins} WHERE {statement.where}"
        f" GROUP BY GROUPING SETS (({period}, {breakdown_expr}), ({breakdown_expr}))"
    )


def top_values(statement: Statement, limit: int) -> str:
    return (
        f"SELECT {statement.breakdown} AS b, count(*) AS n FROM {statement.sql.events_from()}{statement.joins}"
        f" WHERE {statement.where} GROUP BY 1 ORDER BY n DESC, b NULLS LAST LIMIT {int(limit) + 1}"
    )


def folded(statement: Statement, top: list[str | None]) -> str:
    """The breakdown value with everything past the top values as OTHER."""
    raw = statement.breakdown
    keep_null = None in top
    named = statement.sql.param([v for v in top if v is not None], "text[]")
    other = statement.sql.param(OTHER, "text")
    return (
        f"(CASE WHEN {raw} IS NULL THEN {'NULL' if keep_null else other}"
        f" WHEN {raw} = ANY({named}) THEN {raw} ELSE {other} END)"
    )


# Maths whose per-(period, value) partials combine into any coarser group: a breakdown's top
# values and its other line come from one scan, folded in SQL (the others scan twice).
PARTIALS: dict[Math, tuple[list[str], str]] = {
    Math.TOTAL: ([], "sum(n)::float8"),
    Math.SUM: (["sum({x})"], "sum(p0)::float8"),
    Math.MIN: (["min({x})"], "min(p0)::float8"),
    Math.MAX: (["max({x})"], "max(p0)::float8"),
    Math.AVERAGE: (["sum({x})", "count({x})"], "(sum(p0) / NULLIF(sum(p1), 0))::float8"),
}


def folded_in_one_scan(statement: Statement, series: TrendSeries, limit: int, starts: list[datetime]) -> str:
    """Per (period, raw value) partials, the values ranked by events over the range, and the
    partials combined per (period, shown value) and per shown value, past the top `limit` as
    OTHER: one scan of the events. Rows carry the value's rank `r` (limit + 1: other)."""
    sql = statement.sql
    partials, combine = PARTIALS[series.math]
    number = numeric(f"(e.properties ->> {sql.param(series.property, 'text')})") if partials else ""
    columns = "".join(f", {p.format(x=number)} AS p{k}" for k, p in enumerate(partials))
    period = f"width_bucket(e.occurred_at, {sql.param(starts, 'timestamptz[]')})"
    grouped = (
        f"SELECT {period} AS i, {statement.breakdown} AS b, count(*) AS n{columns}"
        f" FROM {sql.events_from()}{statement.joins} WHERE {statement.where} GROUP BY 1, 2"
    )
    return ranked_and_folded(sql, grouped, combine, limit)


def ranked_and_folded(sql: Sql, grouped: str, combine: str, limit: int) -> str:
    """Rows of (i, b, n, partials...) per (period, raw value), ranked by n over the range and
    combined per shown value, past the top `limit` as OTHER."""
    other = sql.param(OTHER, "text")
    # Every row of one value has the same total, so dense_rank gives each value one rank
    # (ties by value, null last): one reference to the grouped rows, which stay parallel.
    ranked = (
        f"SELECT g.*, dense_rank() OVER (ORDER BY g.total DESC, g.b NULLS LAST) AS r"
        f" FROM (SELECT g.*, sum(g.n) OVER (PARTITION BY g.b) AS total FROM ({grouped}) g) g"
    )
    return (
        f"SELECT i, fb AS b, fr AS r, {combine} AS v, GROUPING(i) AS whole FROM ("
        f"SELECT g.*, CASE WHEN g.r <= {int(limit)} THEN g.b ELSE {other} END AS fb,"
        f" LEAST(g.r, {int(limit) + 1}) AS fr FROM ({ranked}) g) f"
        f" GROUP BY GROUPING SETS ((i, fb, fr), (fb, fr))"
    )


def rolling(statement: Statement, series: TrendSeries, breakdown_expr: str, days: list[datetime], windows: list[tuple[int, int]]) -> str:
    """Distinct persons per point over each point's window of local days [lo, hi]."""
    sql = statement.sql
    person = sql.person()
    day = f"width_bucket(e.occurred_at, {sql.param(days, 'timestamptz[]')})"
    lows = sql.param([lo for lo, _ in windows], "int[]")
    highs = sql.param([hi for _, hi in windows], "int[]")
    return (
        f"WITH active AS (SELECT DISTINCT {day} AS d, {breakdown_expr} AS b, {person} AS p"
        f" FROM {sql.events_from()}{statement.joins} WHERE {statement.where} AND {person} IS NOT NULL)"
        f" SELECT w.i::int AS i, a.b, count(DISTINCT a.p)::float8 AS v, 0 AS whole"
        f" FROM unnest({lows}, {highs}) WITH ORDINALITY AS w(lo, hi, i)"
        f" JOIN active a ON a.d BETWEEN w.lo AND w.hi GROUP BY w.i, a.b"
    )


# -- the runner ---------------------------------------------------------------------------


@dataclass(slots=True)
class SeriesRows:
    """What one series' scan returned over one range."""

    index: int
    compare: str
    periods: Periods
    rows: list[asyncpg.Record]
    top: list[str | None] | None  # the breakdown's shown values (None: no breakdown)
    has_other: bool


class TrendsRunner(InsightRunner[TrendsPlan, TrendsResult]):
    kind = "insight_trends"

    @property
    def query(self) -> TrendsQuery:
        return self.inputs["query"]

    def validate(self, scope: InsightScope) -> None:
        check_series(self.query.series)

    def plan(self, scope: InsightScope) -> TrendsPlan:
        q = self.query
        formula = compile_formula(q.formula, len(q.series)) if q.formula else None
        current = periods(q.range, q.grain, scope.timezone)
        return TrendsPlan(current, previous_range(current) if q.compare else None, formula, utcnow())

    async def fetch(self, scope: InsightScope, plan: TrendsPlan) -> list[SeriesRows]:
        q = self.query
        found: list[SeriesRows] = []
        async with insight_connection() as conn:
            for index, series in enumerate(q.series):
                current = await self.series_rows(conn, scope, series, index, "current", plan.current, None, plan.now)
                found.append(current)
                if plan.previous is not None:
                    found.append(
                        await self.series_rows(conn, scope, series, index, "previous", plan.previous, current.top, plan.now)
                    )
        return found

    async def series_rows(
        self,
        conn: asyncpg.Connection,
        scope: InsightScope,
        series: TrendSeries,
        index: int,
        compare: str,
        span: Periods,
        top: list[str | None] | None,
        now: datetime,
    ) -> SeriesRows:
        breakdown = self.query.breakdown
        rolling_days = ROLLING_DAYS.get(series.math)
        start = span.range.start
        if rolling_days:
            start = day_start(span.range.start, scope.timezone) - timedelta(days=rolling_days + 1)
        days = bucket_starts(TimeRange(start, span.range.end, scope.timezone), Grain.DAY) if rolling_days else []
        exact_hours = unfiltered(series.matcher) and on_the_hour([start, span.range.end, *span.starts, *days])
        if exact_hours and series.math is Math.TOTAL and counts_breakdown(breakdown):
            return await counted_rows(conn, scope, series, breakdown, index, compare, span, top)
        actors = actors_sql(
            series.matcher, since=start, cuts=[span.range.end, *span.starts, *days], timezone=scope.timezone,
            exact=breakdown is None and series.math in ACTOR_MATHS,
        )  # fmt: skip
        statement = scan(scope.organization_id, series, breakdown, start, span.range.end, sql=actors)
        await check_regexes(conn, statement.sql.regexes)
        has_other = False
        expr = statement.breakdown
        if top is None and breakdown is not None and breakdown.source is not PropertySource.COHORT and series.math in PARTIALS:
            text = folded_in_one_scan(statement, series, breakdown.limit, span.starts)
            return ranked_rows(index, compare, span, await conn.fetch(text, *statement.sql.params), breakdown.limit)
        if breakdown is not None and breakdown.source is not PropertySource.COHORT:
            if top is None:
                counting = top_values(statement, breakdown.limit)
                counted = [r["b"] for r in await conn.fetch(counting, *statement.sql.params)]
                top, has_other = counted[: breakdown.limit], len(counted) > breakdown.limit
            expr = folded(statement, top)
        if rolling_days:
            text = rolling(statement, series, expr, days, rolling_windows(span, days, rolling_days, now))
        else:
            text = bucketed(statement, expr, aggregate(statement.sql, series), span.starts)
        rows = await conn.fetch(text, *statement.sql.params)
        return SeriesRows(index, compare, span, rows, top, has_other or any(r["b"] == OTHER for r in rows))

    def calculate(self, scope: InsightScope, plan: TrendsPlan, fetched: list[SeriesRows]) -> TrendsResult:
        q = self.query
        result = TrendsResult(plan.current.range, q.grain)
        lines = [line for rows in fetched for line in lines_of(q.series[rows.index], rows, q.breakdown)]
        if plan.formula is None:
            result.lines = lines
        else:
            result.lines = formula_lines(q.formula or "", plan.formula, lines, len(q.series))
        return result


def ranked_rows(index: int, compare: str, span: Periods, rows: list[asyncpg.Record], limit: int) -> SeriesRows:
    """A ranked-and-folded scan's rows with the breakdown values it showed, in rank order."""
    ranked = sorted({(r["r"], r["b"]) for r in rows if r["r"] <= limit}, key=lambda rb: rb[0])
    return SeriesRows(index, compare, span, rows, [b for _, b in ranked], any(r["r"] > limit for r in rows))


async def counted_rows(
    conn: asyncpg.Connection, scope: InsightScope, series: TrendSeries, breakdown: Breakdown | None, index: int,
    compare: str, span: Periods, top: list[str | None] | None,
) -> SeriesRows:  # fmt: skip
    """A TOTAL series from the hourly counts: the same rows the events scan would return."""
    sql = Sql()
    where = counts_where(sql, scope.organization_id, series.matcher, breakdown, span.range.start, span.range.end)
    if breakdown is not None and top is None:
        text = ranked_and_folded(sql, counted(sql, where, span.starts), PARTIALS[Math.TOTAL][1], breakdown.limit)
        return ranked_rows(index, compare, span, await conn.fetch(text, *sql.params), breakdown.limit)
    rows = await conn.fetch(counted_folded(sql, where, span.starts, top), *sql.params)
    return SeriesRows(index, compare, span, rows, top, any(r["b"] == OTHER for r in rows))


def rolling_windows(span: Periods, days: list[datetime], width: int, now: datetime) -> list[tuple[int, int]]:
    """For each point, the 1-based indexes of the local days its window covers: the `width`
    days ending with the point's last day, or with today for the current point."""
    windows = []
    for end in span.ends:
        last = min(end, now) - timedelta(microseconds=1)
        hi = max(i for i, d in enumerate(days, start=1) if d <= last) if days and days[0] <= last else 0
        windows.append((max(hi - width + 1, 1), hi))
    return windows


def lines_of(series: TrendSeries, rows: SeriesRows, breakdown: Breakdown | None) -> list[TrendLine]:
    count = len(rows.periods)
    values: dict[str | None, list[float]] = {}
    totals: dict[str | None, float] = {}
    for row in rows.rows:
        b = row["b"]
        line = values.setdefault(b, [0.0] * count)
        if row["whole"]:
            totals[b] = float(row["v"] or 0.0)
        elif row["i"] is not None and 1 <= row["i"] <= count:
            line[row["i"] - 1] = float(row["v"] or 0.0)
    if breakdown is None:
        keys: list[str | None] = [None]
    elif rows.top is not None:
        keys = list(rows.top) + ([OTHER] if OTHER in values or rows.has_other else [])
    else:
        keys = sorted((k for k in values), key=lambda k: (k is None, k or ""))
    label = series.label or series.matcher.event
    rolling_math = series.math in ROLLING_DAYS
    return [
        TrendLine(
            label=label,
            series_index=rows.index,
            math=series.math,
            breakdown_value=key,
            is_other=key == OTHER,
            compare=rows.compare,
            total=(values.get(key, [0.0] * count) or [0.0])[-1] if rolling_math else totals.get(key, 0.0),
            starts=list(rows.periods.starts),
            values=values.get(key, [0.0] * count),
        )
        for key in keys
    ]


def formula_lines(
    text: str, formula: Callable[[dict[str, float]], float], lines: list[TrendLine], series_count: int
) -> list[TrendLine]:
    """One line per (compare, breakdown value): the formula over the series' lines."""
    grouped: dict[tuple[str, str | None], dict[int, TrendLine]] = {}
    for line in lines:
        assert line.series_index is not None
        grouped.setdefault((line.compare, line.breakdown_value), {})[line.series_index] = line
    combined = []
    for (compare, value), by_index in grouped.items():
        sample = next(iter(by_index.values()))
        count = len(sample.values)

        def at(point: int | None) -> dict[str, float]:
            return {
                letter(i): (by_index[i].total if point is None else by_index[i].values[point]) if i in by_index else 0.0
                for i in range(series_count)
            }

        combined.append(
            TrendLine(
                label=text, series_index=None, math=None, breakdown_value=value, is_other=value == OTHER, compare=compare,
                total=formula(at(None)), starts=sample.starts, values=[formula(at(p)) for p in range(count)],
            )
        )  # fmt: skip
    return combined


async def trends(*, viewer: Any, query: TrendsQuery) -> TrendsResult:
    return await TrendsRunner(viewer=viewer, organization_id=query.organization_id, query=query).run()
