"""Funnels: how many persons go through a sequence of steps, computed in PostgreSQL.

Definitions (the README's "Funnels" section states the same, for clients):

- A funnel has 2 to 20 steps (event matchers). An *attempt* starts at a step-0 event whose
  time lies in the range; its later steps count while they happen within the conversion
  window (seconds after the attempt's first event, the bound included), even past the range
  end.
- ORDERED: steps happen in order, other events may come between. STRICT: consecutive steps
  are consecutive events of the person (no event of any kind between). UNORDERED: the
  steps happen in any order inside the window, starting from any step's event.
- ORDERED and STRICT follow the latest-start model (ClickHouse's windowFunnel): walking a
  person's events in order (event time, arrival, event id), every step k keeps the latest
  attempt standing on it; an event matching step k (k >= 1) moves the attempt standing on
  step k-1 (as it stood before this event: an event fills one step of an attempt) to step
  k if it is inside that attempt's window (STRICT: only when the attempt reached step k-1
  on the person's previous event). Among attempts with the same start, the one whose step
  events came first is kept.
- A person is counted at the furthest step any of their attempts reached; the *counted
  attempt* is the one that reached that step first (ties: the later start). Times between
  steps, breakdown values and the conversion-over-time period are read from it.
- Exclusions (event, filters, fromStep f < toStep t): an excluded event drops the attempts
  standing on steps f..t-1 whose window is still open, unless an attempt started no
  earlier already stands on step t; a dropped attempt counts at no step, and the steps
  f..t-1 are empty after the excluded event (it is handled before the event's own steps).
  UNORDERED funnels take whole-funnel exclusions only (0 to the last step): an excluded
  event between an attempt's first event and its last step (to the window end when
  incomplete), bounds included, drops it.
- holdConstant: every event of an attempt carries the same value of each named property
  (a missing property is a value of its own); a person counts once per combination.
- Events without a person never count. Nothing is loaded into Python but per-step
  aggregates (and one page of person ids).

The SQL (`core`): the range's rows of the step and exclusion types, of persons with a
step-0 event in the range (numbered, and found by visitor id: `grammar.starters`), sorted
once per person by (occurred_at, received_at, event_id),
then one window layer per step whose running max of small bigint arrays carries the latest
attempt standing on each step (ORDERED without exclusions reads the rows after the first
layer only where a step event can move an attempt: `_moving`); a GROUP BY per person keeps
the furthest record.
`funnel` runs in parts side by side (`Part`): slices of time when the window is short
against the range (`time_bounds`), else a hash of the person; with a breakdown, the parts
hand over every value's counts and Python picks the top N (`merged_breakdown_parts`).
Conversion over time, the time to convert and the persons' pages run in the same parts
(`FunnelRunner.in_parts`).
`funnel_statement` gives the whole statement of `funnel` for benchmarks.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, ClassVar

from app.auth import Viewer
from app.database import connection
from app.errors import BadInput
from app.services.insights import grammar, rollups
from app.services.insights.grammar import PERSON, Sql
from app.services.insights.query import InsightRunner, InsightScope, Periods, fetch_parts, insight_scope, periods_of
from app.services.insights.query import fetch as fetch_rows
from app.settings import get_settings
from app.timebuckets import Grain, RangeSpec, TimeRange, resolve_range

MIN_STEPS = 2
MAX_STEPS = 20
DEFAULT_WINDOW_SECONDS = 14 * 86400
MAX_WINDOW_SECONDS = 365 * 86400
MAX_EXCLUSIONS = 10
MAX_HOLD_CONSTANT = 5
DEFAULT_BINS = 10
MAX_BINS = 100
DEFAULT_PAGE = 100
MAX_PAGE = 1000
# A part of a split funnel hands Python its persons' times between steps (for the median) only
# up to this many; beyond, the funnel is asked again in one statement. Bounds the memory.
PART_TIMES_LIMIT = 100_000
# Likewise a part of a split funnel with a breakdown hands over its values' rows only up to
# this many values (the top N are chosen from every part's); beyond, one statement.
PART_VALUES_LIMIT = 10_000
# How the statement is built (module switches so a benchmark can compare variants):
PREFILTER = True  # read only the persons with a step-0 event in the range (a semi-join)
BASE_FILTER = True  # drop rows of the types read that match no step's or exclusion's filters
PRUNE = True  # ORDERED without exclusions: set aside the repeats of a step that cannot move an attempt
TIME_SPLIT: bool | None = None  # parts by time (`time_bounds`): None as the costs say; True / False forces it
# The costs `time_bounds` weighs, in one unit: reading every step event of the span once, and
# ordering and walking every person's rows (measured on B7: the walk costs 2.7 times the read).
READ_COST = 1.0
WALK_COST = 2.7
# Parts by time are taken when their slowest is expected to cost at most this share of a part by hash.
TIME_SPLIT_GAIN = 0.9


class FunnelOrder(str, Enum):
    ORDERED = "ordered"
    STRICT = "strict"
    UNORDERED = "unordered"


@dataclass(frozen=True, slots=True)
class Exclusion:
    matcher: grammar.EventMatcher
    from_step: int
    to_step: int


@dataclass(frozen=True, slots=True)
class FunnelSpec:
    """A validated funnel definition (what every funnel runner takes)."""

    steps: tuple[grammar.EventMatcher, ...]
    order: FunnelOrder = FunnelOrder.ORDERED
    window_seconds: int = DEFAULT_WINDOW_SECONDS
    exclusions: tuple[Exclusion, ...] = ()
    breakdown: grammar.Breakdown | None = None
    hold_constant: tuple[grammar.PropertyKey, ...] = ()

    @property
    def types(self) -> list[str]:
        """The event types the funnel reads: its steps' and its exclusions'."""
        return sorted({m.event for m in self.steps} | {x.matcher.event for x in self.exclusions})


def funnel_spec(
    *,
    steps: Sequence[grammar.EventMatcher],
    order: FunnelOrder | None = None,
    window_seconds: int | None = None,
    exclusions: Sequence[Exclusion] = (),
    breakdown: grammar.Breakdown | None = None,
    hold_constant: Sequence[grammar.PropertyKey] = (),
    field: str = "query",
) -> FunnelSpec:
    """Check a funnel's shape, each refusal naming its field."""
    order = order or FunnelOrder.ORDERED
    if not MIN_STEPS <= len(steps) <= MAX_STEPS:
        raise BadInput(f"a funnel has {MIN_STEPS} to {MAX_STEPS} steps, not {len(steps)}", field=f"{field}.steps")
    window = DEFAULT_WINDOW_SECONDS if window_seconds is None else window_seconds
    if not 1 <= window <= MAX_WINDOW_SECONDS:
        raise BadInput(
            f"the conversion window is 1 to {MAX_WINDOW_SECONDS} seconds (365 days)",
            field=f"{field}.conversionWindowSeconds",
        )
    if order is FunnelOrder.UNORDERED:
        for i, step in enumerate(steps):
            if step in steps[:i]:
                raise BadInput("an UNORDERED funnel's steps must differ", field=f"{field}.steps[{i}]")
    if len(exclusions) > MAX_EXCLUSIONS:
        raise BadInput(f"at most {MAX_EXCLUSIONS} exclusions", field=f"{field}.exclusions")
    last = len(steps) - 1
    for i, ex in enumerate(exclusions):
        where = f"{field}.exclusions[{i}]"
        if not 0 <= ex.from_step < last:
            raise BadInput(f"fromStep is 0 to {last - 1}", field=f"{where}.fromStep")
        if not ex.from_step < ex.to_step <= last:
            raise BadInput(f"toStep is after fromStep and at most {last}", field=f"{where}.toStep")
        if order is FunnelOrder.UNORDERED and (ex.from_step, ex.to_step) != (0, last):
            raise BadInput(
                f"UNORDERED funnels exclude over the whole funnel: fromStep 0, toStep {last}", field=f"{where}.fromStep"
            )
    if breakdown is not None and breakdown.source is grammar.PropertySource.COHORT and "," in breakdown.key:
        raise BadInput("a funnel breaks down by one cohort (each person is in one group)", field=f"{field}.breakdown.key")
    if breakdown is not None and breakdown.step is not None and breakdown.step > last:
        raise BadInput(f"the funnel's steps are 0 to {last}", field=f"{field}.breakdown.step")
    if len(hold_constant) > MAX_HOLD_CONSTANT:
        raise BadInput(f"at most {MAX_HOLD_CONSTANT} properties held constant", field=f"{field}.holdConstant")
    return FunnelSpec(tuple(steps), order, window, tuple(exclusions), breakdown, tuple(hold_constant))


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepResult:
    index: int
    event: str
    count: int
    conversion_rate: float
    conversion_rate_from_previous: float
    drop_off: int
    average_seconds_to_convert: float | None
    median_seconds_to_convert: float | None


@dataclass(frozen=True, slots=True)
class BreakdownResult:
    value: str | None
    is_other: bool
    steps: list[StepResult]


@dataclass(frozen=True, slots=True)
class FunnelResult:
    range: TimeRange
    steps: list[StepResult]
    breakdowns: list[BreakdownResult]


@dataclass(frozen=True, slots=True)
class ConversionSeries:
    range: TimeRange
    grain: Grain
    starts: list[datetime]
    entered: list[int]
    converted: list[int]
    conversion_rates: list[float]


@dataclass(frozen=True, slots=True)
class Histogram:
    from_step: int
    to_step: int
    bin_starts: list[float]  # seconds; bin i is [bin_starts[i], bin_starts[i] + bin_width)
    bin_width: float
    counts: list[int]
    total: int
    average_seconds: float | None
    median_seconds: float | None


@dataclass(frozen=True, slots=True)
class PersonsPage:
    person_ids: list[str]
    total: int
    end_cursor: str | None
    has_next_page: bool


# -- parts -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Part:
    """Part `index` of `count` disjoint parts of a funnel's persons (see `core`).

    With no `bounds` a person is in the part their key hashes to. With `bounds` (the
    `count - 1` instants that cut the range into slices) a person whose starts all fall in
    slice `index` is in it, and so is a person whose starts fall in several slices (one who
    *straddles*) and whose key hashes to it. A part then reads the step events of its slice
    and of one window after it, and reads further only for its straddlers."""

    index: int
    count: int
    bounds: tuple[datetime, ...] = ()


@dataclass(frozen=True, slots=True)
class Profile:
    """How a funnel's events spread over its span, per UTC hour from `first` on: the step-0
    events (`starts`) and the events of every type it reads (`events`)."""

    first: datetime
    starts: list[int]
    events: list[int]


async def profile(scope: InsightScope, spec: FunnelSpec, span: TimeRange) -> Profile:
    """The span's `Profile` from the folded hourly counts: the counts only balance the parts,
    so neither the filters nor the events still queued for folding (a backlog would have to
    be read whole, as the queue is not kept by hour) are worth their cost."""
    first = span.start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    until = span.end + timedelta(seconds=spec.window_seconds)
    hours = int((until - first).total_seconds() // 3600) + 1
    sql = Sql()
    types = spec.types
    start = sql.param(first, "timestamptz")
    statement = (
        f"SELECT (date_part('epoch', hour - {start}) / 3600)::int AS i,"
        f" sum(events) FILTER (WHERE type = {sql.param(spec.steps[0].event, 'text')}) AS starts, sum(events) AS events"
        f" FROM event_hour_counts WHERE organization_id = {sql.param(scope.organization_id, 'uuid')}"
        f" AND dimension = '' AND type = ANY({sql.param(types, 'text[]')})"
        f" AND hour >= {start} AND hour < {sql.param(until, 'timestamptz')} GROUP BY 1"
    )
    starts, events = [0] * hours, [0] * hours
    for row in await fetch_rows(sql, statement):
        if 0 <= row["i"] < hours:
            starts[row["i"]], events[row["i"]] = int(row["starts"] or 0), int(row["events"] or 0)
    return Profile(first, starts, events)


def time_bounds(span: TimeRange, window_seconds: int, count: int, spread: Profile) -> tuple[datetime, ...]:
    """Where to cut the range so that `count` parts by time cost about the same, or () when
    parts by hash cost less (or `TIME_SPLIT` says so).

    A part by hash reads every step event of the span and walks a `count`th of the persons:
    every part reads the same events. A part by time reads from its slice's start to one
    window past its end and walks the persons who start in the slice (counted by their
    starts): with a window short against the range, each reads a fraction. The costs take
    straddlers as few; they decide only how long the parts take, never the answer."""
    if count < 2 or TIME_SPLIT is False:
        return ()
    forced = _even_bounds(span, count) if TIME_SPLIT else ()
    hour = 3600.0
    begin = (span.start - spread.first).total_seconds() / hour
    end = (span.end - spread.first).total_seconds() / hour
    window = window_seconds / hour
    starts, events = _cumulative(spread.starts), _cumulative(spread.events)
    every_start, every_event = starts(end) - starts(begin), events(end + window) - events(begin)
    if every_start <= 0 or every_event <= 0:
        return forced

    def cost(a: float, b: float) -> float:
        read = (events(min(b + window, end + window)) - events(a)) / every_event
        return READ_COST * read + WALK_COST * (starts(b) - starts(a)) / every_start

    def cuts(most: float) -> list[float] | None:
        """Cuts that keep every slice's cost within `most`, each slice as long as it may be."""
        found: list[float] = []
        at = begin
        while len(found) < count - 1:
            if cost(at, end) <= most:  # the rest fits in one slice: cut it evenly
                step = (end - at) / (count - len(found))
                return found + [at + step * k for k in range(1, count - len(found))]
            low, high = at, end
            for _ in range(40):
                middle = (low + high) / 2
                low, high = (middle, high) if cost(at, middle) <= most else (low, middle)
            if low <= at:
                return None
            found.append(low)
            at = low
        return found if cost(at, end) <= most else None

    low, high = 0.0, cost(begin, end)
    best = cuts(high)
    for _ in range(40):
        middle = (low + high) / 2
        found = cuts(middle)
        if found is None:
            low = middle
        else:
            best, high = found, middle
    if best is None or (not TIME_SPLIT and high > TIME_SPLIT_GAIN * (READ_COST + WALK_COST / count)):
        return forced
    bounds = tuple(spread.first + timedelta(seconds=round(x * hour)) for x in best)
    return bounds if len(set(bounds)) == count - 1 else forced


def _cumulative(per_hour: Sequence[int]) -> Callable[[float], float]:
    """How many of the counts lie before a position in hours (evenly inside an hour)."""
    sums = [0]
    for n in per_hour:
        sums.append(sums[-1] + n)

    def before(x: float) -> float:
        if x <= 0:
            return 0.0
        if x >= len(per_hour):
            return float(sums[-1])
        i = int(x)
        return sums[i] + (x - i) * per_hour[i]

    return before


def _even_bounds(span: TimeRange, count: int) -> tuple[datetime, ...]:
    step = (span.end - span.start) / count
    return tuple(span.start + step * k for k in range(1, count))


# -- the SQL -----------------------------------------------------------------------------------

ORDER_BY = "occurred_at, received_at, event_id"


@dataclass
class Core:
    """The statement text of `counted` (`ctes`: one row per counted person, or person and
    held values: `lvl, chain`) and of `entities` (`ctes` then `persons`: the same rows with
    the person, whom only the persons' pages read; a statement that names no person need
    not join the numbered starters back, and reads `counted` once, so PostgreSQL plans it
    inside the statement rather than storing it) and what reading them needs to know."""

    sql: Sql
    ctes: str
    stride: int  # chain layout: rn at 1 + stride*k, time (µs) at 2 + stride*k, value hash at 3 + stride*k
    steps: int
    persons: str = ""  # the CTE `entities`, after `ctes`, when `ctes` does not define it

    @property
    def with_persons(self) -> str:
        return self.ctes + self.persons

    def t(self, k: int | str, chain: str = "chain") -> str:
        return f"{chain}[2 + {self.stride} * ({k})]"


def _us(instant: datetime) -> int:
    delta = instant - datetime(1970, 1, 1, tzinfo=instant.tzinfo)
    return delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds


def prefiltered(spec: FunnelSpec) -> bool:
    """Whether the statement reads only the persons with a step-0 event in the range (then
    it can also read one part of them: see `core`)."""
    return PREFILTER and spec.order is not FunnelOrder.UNORDERED and spec.steps[0].event != grammar.ALL_EVENTS


_ROW_SOURCES = (grammar.PropertySource.EVENT, grammar.PropertySource.DIMENSION)  # values an event's row holds


def valued_types(spec: FunnelSpec) -> list[str] | None:
    """The event types whose breakdown value can be read: those of the step the attribution
    reads it from (ORDERED and STRICT: step 0 for FIRST_TOUCH, step n for STEP). None when
    it may be any event's (LAST_TOUCH, UNORDERED, an attributed step of every event) or
    there is no breakdown. Only these rows need the value, which the heap holds and the
    index read of the other rows does not."""
    b = spec.breakdown
    if b is None or spec.order is FunnelOrder.UNORDERED or b.attribution is grammar.Attribution.LAST_TOUCH:
        return None
    event = spec.steps[0 if b.attribution is grammar.Attribution.FIRST_TOUCH else b.step or 0].event
    return None if event == grammar.ALL_EVENTS else [event]


def core(
    scope: InsightScope, spec: FunnelSpec, span: TimeRange, *, aliases: bool = True, part: Part | None = None
) -> Core:
    """The funnel of every person as SQL: `counted(lvl, chain)` (and, after `Core.persons`,
    `entities(person, lvl, chain)`) where `lvl` is the furthest step and `chain` the counted
    attempt's events (with their breakdown values' hashes).
    `aliases=False` (the organization has no identify links) reads the person straight from
    the event, without the alias join. `part` (only when `prefiltered`) keeps that part's
    persons: the parts are disjoint and together are everyone, and every part's statement
    has the same parameters."""
    sql = Sql()
    org = sql.param(scope.organization_id, "uuid")
    n = len(spec.steps)
    w_us = spec.window_seconds * 1_000_000
    # times are µs after the range start: small enough for float8's exact µs, cheap to compute
    start_us, end_us = 0, _us(span.end) - _us(span.start)
    matches = [grammar.matcher_condition(sql, m) for m in spec.steps]
    excludes = [grammar.matcher_condition(sql, x.matcher) for x in spec.exclusions]
    holds = [_value(sql, h.source, h.key) for h in spec.hold_constant]
    bd = spec.breakdown
    bd_expr = f"hashtextextended({_value(sql, bd.source, bd.key)}, 0)" if bd is not None else None
    stride = 3 if bd is not None else 2
    types = spec.types
    p_start = sql.param(span.start, "timestamptz")
    p_until = sql.param(span.end + timedelta(seconds=spec.window_seconds), "timestamptz")
    strict = spec.order is FunnelOrder.STRICT
    every_type = strict or grammar.ALL_EVENTS in types  # STRICT reads every event, as does a "$all" step
    # "C" collation: person keys and event ids sort by their bytes (cheaper, and the order
    # Python's sorted() gives)
    columns = [f'({sql.person()}) COLLATE "C" AS person']
    columns += [f'({h}) COLLATE "C" AS h{i}' for i, h in enumerate(holds)]
    columns += ["e.occurred_at", "e.received_at", 'e.event_id COLLATE "C" AS event_id']
    columns.append(f"(date_part('epoch', e.occurred_at - {p_start}) * 1000000)::bigint AS t")
    columns += [f"COALESCE({m}, false) AS m{k}" for k, m in enumerate(matches)]
    columns += [f"COALESCE({x}, false) AS x{j}" for j, x in enumerate(excludes)]
    any_match = " OR ".join([f"m{k}" for k in range(n)] + [f"x{j}" for j in range(len(excludes))])
    held = [f"h{i}" for i in range(len(holds))]
    entity = ", ".join(["person", *held])
    # rows of the types read match a step or an exclusion unless a matcher has filters
    any_filters = any(m.filters for m in (*spec.steps, *(x.matcher for x in spec.exclusions)))
    filtered = BASE_FILTER and any_filters
    bounds = starters = ""
    if prefiltered(spec):
        # Only persons with a step-0 event in the range can count, and only their events
        # from their first such event to the end of their last one's window can take part
        # in an attempt: nothing else is sorted. Each such person has a number (`pid`) and
        # a row per visitor id of theirs, so the events find their person by visitor id in
        # one hash, and sort by a number rather than a text key.
        slices = _Slices(sql, part, spec.window_seconds) if part is not None and part.bounds else None
        bounds = _starters(sql, scope, spec, span, aliases=aliases, part=part, slices=slices)
        person, source = "sv.person", sql.starter_events()
        columns[0] = "sv.pid"  # the person's id is read once per person, at the end
        starters = " AND e.occurred_at >= sv.lo AND e.occurred_at <= sv.hi"
        entity = ", ".join(["pid", *held])
    else:
        person, source = _events(sql, aliases=aliases)
        slices = None
    columns = [c.replace(PERSON, person) for c in columns]

    def select(bh: str | None) -> str:
        """The rows' columns, with `bh` as the breakdown value's hash when there is a breakdown."""
        return f"SELECT {', '.join(columns if bh is None else [*columns, f'{bh} AS bh'.replace(PERSON, person)])} FROM "

    where = (
        f" WHERE e.organization_id = {org} AND e.visitor_id IS NOT NULL"
        f" AND e.occurred_at >= {p_start} AND e.occurred_at < {p_until}{starters}"
    )
    reads = [(source, slices.inside if slices is not None else "")]
    if slices is not None:  # the slice's events for everyone, the rest of the span's for its straddlers only
        reads += [(sql.starter_events("far_visitors sv"), o) for o in slices.outside]
    valued = valued_types(spec) if bd is not None and bd.source in _ROW_SOURCES and not holds and not any_filters else None
    if valued is None:
        kinds = [(select(bd_expr), "" if every_type else f" AND e.type = ANY({sql.param(types, 'text[]')})")]
    else:
        # Only the rows of the attributed step's type carry the value, read from the heap; the
        # others are read from the index alone.
        p_valued = sql.param(valued, "text[]")
        kinds = [(select(bd_expr), f" AND e.type = ANY({p_valued})")]
        others = [t for t in types if t not in valued]
        if every_type:
            kinds.append((select("NULL::bigint"), f" AND e.type <> ALL({p_valued})"))
        elif others:
            kinds.append((select("NULL::bigint"), f" AND e.type = ANY({sql.param(others, 'text[]')})"))
    rows = " UNION ALL ".join(f"{chosen}{read}{where}{kind}{extra}" for chosen, kind in kinds for read, extra in reads)
    base = (
        f"{bounds}base AS (SELECT * FROM ({rows}) s"
        + ("" if strict or not filtered else f" WHERE {any_match}")
        + ")"
    )
    window = f"PARTITION BY {entity} ORDER BY {ORDER_BY}"
    if spec.order is FunnelOrder.UNORDERED:
        body = _unordered(spec, n, w_us, start_us, end_us, entity, window, bd_expr is not None)
    else:
        body = _ordered(spec, n, w_us, start_us, end_us, entity, window, bd_expr is not None, strict)
    persons = "" if spec.order is FunnelOrder.UNORDERED else _entities(entity)
    return Core(sql=sql, ctes=f"WITH {base}, {body}", stride=stride, steps=n, persons=persons)


def _events(sql: Sql, *, aliases: bool) -> tuple[str, str]:
    """The person of an event `e` and the events with the joins the statement reads: through
    the identity links, or, when the organization has none, the visitor itself."""
    if aliases:
        return PERSON, sql.events_from()
    return "e.visitor_id", "events e" + (grammar.persons_join("e.visitor_id") if sql.joins_persons else "")


class _Slices:
    """A part by time as SQL: which of its persons' events it reads for everyone (`inside`:
    from its slice's start to one window past its end) and which for its straddlers only
    (`outside`: the rest of the span, in up to two pieces). The bounds are one parameter,
    the same in every part's statement."""

    def __init__(self, sql: Sql, part: Part, window_seconds: int) -> None:
        self.part = part
        self.bounds = sql.param(list(part.bounds), "timestamptz[]")
        self.window = sql.param(timedelta(seconds=window_seconds), "interval")
        i, last = part.index, part.count - 1
        begins = f"({self.bounds})[{i}]" if i > 0 else None  # PostgreSQL's arrays count from 1
        ends = f"({self.bounds})[{i + 1}] + {self.window}" if i < last else None
        self.inside, self.outside = "", []
        if begins is not None:
            self.inside += f" AND e.occurred_at >= {begins}"
            self.outside.append(f" AND e.occurred_at < {begins}")
        if ends is not None:
            self.inside += f" AND e.occurred_at < {ends}"
            self.outside.append(f" AND e.occurred_at >= {ends}")

    def chooses(self, first: str, last: str, hashed: str) -> tuple[str, str]:
        """(far, in part): whether a person whose starts run from `first` to `last` straddles
        a bound, and whether they are in this part."""
        first_slice = f"width_bucket({first}, {self.bounds})"  # 0 before the first bound
        far = f"({first_slice} <> width_bucket({last}, {self.bounds}))"
        return far, f"CASE WHEN {far} THEN {hashed} ELSE {first_slice} = {self.part.index} END"


def _starters(
    sql: Sql, scope: InsightScope, spec: FunnelSpec, span: TimeRange, *, aliases: bool, part: Part | None,
    slices: _Slices | None,
) -> str:  # fmt: skip
    """`grammar.starters` of the persons with a step-0 event in the range (in part `part`),
    with the span their attempts can use: from their first such event (`lo`) to the end of
    their last one's window (`hi`); and, in a part by time, whether they straddle (`far`)."""
    org = sql.param(scope.organization_id, "uuid")
    person, inner = _events(sql, aliases=aliases)
    first = grammar.matcher_condition(sql, spec.steps[0]).replace(PERSON, person)
    columns, extra, having = ("lo", "hi"), "", ""
    if part is not None:
        hashed = f"mod(hashtext({person})::bigint + 2147483648, {part.count}) = {part.index}"
        if slices is None:
            first += f" AND {hashed}"
        else:
            far, chosen = slices.chooses("min(e.occurred_at)", "max(e.occurred_at)", hashed)
            columns, extra, having = ("lo", "hi", "far"), f", {far}::int AS far", f" HAVING {chosen}"
    window = slices.window if slices is not None else sql.param(timedelta(seconds=spec.window_seconds), "interval")
    persons = (
        f"SELECT {person} AS person, min(e.occurred_at) AS lo, max(e.occurred_at) + {window} AS hi{extra}"
        f" FROM {inner} WHERE e.organization_id = {org} AND e.visitor_id IS NOT NULL"
        f" AND e.occurred_at >= {sql.param(span.start, 'timestamptz')}"
        f" AND e.occurred_at < {sql.param(span.end, 'timestamptz')} AND {first} GROUP BY 1{having}"
    )
    subsets = {"far_visitors": "far = 1"} if slices is not None else None
    return grammar.starters(sql, org, persons, columns, aliases=aliases, subsets=subsets) + ", "


def _value(sql: Sql, source: grammar.PropertySource, key: str) -> str:
    if source is grammar.PropertySource.COHORT:
        member = grammar.cohort_membership(sql, grammar.cohort_id(key, "key"))
        return f"(CASE WHEN {member} THEN 'member' ELSE 'not member' END)"
    return grammar.value_text(sql, source, key)


def _ordered(
    spec: FunnelSpec, n: int, w_us: int, start_us: int, end_us: int, entity: str, window: str, has_bd: bool, strict: bool
) -> str:
    """The latest-start model as one window layer per step (see the module's docstring).

    B_k, the attempt a row moves onto step k: ARRAY[seg_k, start_rn, start_t, (bh0),
    -rn_1, t_1, (bh_1), ...]; the max of arrays keeps the latest start, then the earliest
    step events. seg_k counts the excluded events that emptied step k so far: a value of
    an older segment stands no more. p_k: B_k of the rows before (ORDERED: their max;
    STRICT: the previous row's)."""
    excl = spec.exclusions
    bh = ", bh" if has_bd else ""

    def seg(k: int) -> str:
        covering = [j for j, x in enumerate(excl) if x.from_step <= k < x.to_step]
        return "(" + " + ".join(f"sg{j}" for j in covering) + ")" if covering else "0"

    def inc(k: int) -> str:
        covering = [j for j, x in enumerate(excl) if x.from_step <= k < x.to_step]
        return "(" + " + ".join(f"x{j}::int" for j in covering) + ")" if covering else "0"

    # STRICT with held properties: an event with other values (another entity) still breaks
    # the sequence, so rows carry their number among all the person's events
    held_strict = strict and bool(spec.hold_constant)
    # without exclusions the arrays carry no segment: o is the prefix's length
    o = 1 if excl else 0
    pre = lambda k: f"ARRAY[{seg(k)}::bigint] || " if excl else ""

    def parts(k: int) -> tuple[str, str]:
        """B_k as (condition, value)."""
        if k == 0:
            head = f"{seg(0)}::bigint, " if excl else ""
            return f"m0 AND t >= {start_us} AND t < {end_us}", f"ARRAY[{head}rn, t{bh}]"
        prev = f"p{k - 1}"
        valid = f" AND {prev}[1] = {seg(k - 1)}" if excl else ""
        if held_strict:  # the previous row of the entity must be the person's previous event
            valid += " AND pprn = prn - 1"
        chain = f"{prev}[2:]" if excl else prev
        return (
            f"m{k} AND {prev} IS NOT NULL{valid} AND t - {prev}[{o + 2}] <= {w_us}",
            f"{pre(k)}{chain} || ARRAY[-rn, t{bh}]",
        )

    def b(k: int) -> str:
        cond, value = parts(k)
        return f"(CASE WHEN {cond} THEN {value} END)"

    def running(expr: str) -> str:
        if strict:
            return f"lag({expr}) OVER w"
        return f"max({expr}) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)"

    layers = []
    before = "ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING"
    fast = not excl and not strict and not has_bd
    prune = PRUNE and not excl and not strict  # see `_moving`
    opens = f"m0 AND t >= {start_us} AND t < {end_us}"
    lasts = "".join(f", max(t) FILTER (WHERE m{k}) OVER w AS lt{k}" for k in range(1, n)) if prune else ""
    if fast or prune:
        # One window pass numbers the rows and finds the last start before each (and, to set
        # repeats aside, the last event of each step: `_moving`). ORDERED without exclusions
        # or breakdown (`fast`) also names a start by its position among the starts (1, 2,
        # ...: ordered like the rows), which is all of step 0's running max: the steps' layers
        # then begin at l1.
        n0 = f" count(*) FILTER (WHERE {opens}) OVER w AS n0," if fast else ""
        layers.append(
            f"lr AS (SELECT base.*, row_number() OVER w AS rn,{n0} max(t) FILTER (WHERE {opens}) OVER w AS t0{lasts}"
            f" FROM base WINDOW w AS ({window} {before}))"
        )
        layers.append(f"{'l1' if fast else 'l0'} AS (SELECT lr.* FROM lr{f' WHERE {_moving(n)}' if prune else ''})")
    if fast:
        p0 = "(CASE WHEN n0 > 0 THEN ARRAY[n0, t0] END)"
        parts_generic = parts

        def parts(k: int) -> tuple[str, str]:
            if k == 0:
                return opens, "ARRAY[n0 + 1, t]"
            cond, value = parts_generic(k)
            return (cond.replace("p0", p0), value.replace("p0", p0)) if k == 1 else (cond, value)

    elif not prune:
        seg_cols = "".join(
            f", count(*) FILTER (WHERE x{j}) OVER (w ROWS UNBOUNDED PRECEDING) AS sg{j}" for j in range(len(excl))
        )
        source = "base"
        if held_strict:
            seg_cols += ", lag(prn) OVER w AS pprn"
            own = entity.split(",")[0]  # pid or person
            source = f"(SELECT base.*, row_number() OVER (PARTITION BY {own} ORDER BY {ORDER_BY}) AS prn FROM base) base"
        layers.append(f"l0 AS (SELECT base.*, row_number() OVER w AS rn{seg_cols} FROM {source} WINDOW w AS ({window}))")
    # what exclusions need besides p_k: q_k, the latest attempt standing on step k (STRICT's
    # p_k is only the previous row's)
    need_q = bool(excl) and strict
    for k in range(1 if fast else 0, n - 1):
        extra = ""
        if need_q:
            extra = f", max({b(k)}) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS q{k}"
        layers.append(f"l{k + 1} AS (SELECT l{k}.*, {running(b(k))} AS p{k}{extra} FROM l{k} WINDOW w AS ({window}))")
    last = f"l{n - 1}"
    if excl:
        # the last step's standing attempt, for "an attempt started no earlier stands on step t"
        extra = f", max({b(n - 1)}) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS q{n - 1}"
        layers.append(f"lq AS (SELECT {last}.*{extra} FROM {last} WINDOW w AS ({window}))")
        last = "lq"
        standing = (lambda k: f"q{k}") if strict else (lambda k: f"p{k}" if k < n - 1 else f"q{k}")
        drops = []
        for j, x in enumerate(excl):
            target = standing(x.to_step)
            reached_ok = f"({target} IS NOT NULL AND {target}[1] = {seg(x.to_step)} - {inc(x.to_step)})"
            for k in range(x.from_step, x.to_step):
                s = standing(k)
                drops.append(
                    f"CASE WHEN x{j} AND {s} IS NOT NULL AND {s}[1] = {seg(k)} - {inc(k)} AND t - {s}[3] <= {w_us}"
                    f" AND NOT ({reached_ok} AND {target}[2] >= {s}[2]) THEN {s}[2] END"
                )
        any_x = " OR ".join(f"x{j}" for j in range(len(excl)))
        layers.append(
            f"ld AS (SELECT {last}.*, array_agg(ARRAY[{', '.join(drops)}]) FILTER (WHERE {any_x})"
            f" OVER (PARTITION BY {entity}) AS dropped FROM {last})"
        )
        last = "ld"
        alive = lambda k: f" AND NOT COALESCE({'rn' if k == 0 else f'p{k - 1}[2]'} = ANY(dropped), false)"
    else:
        alive = lambda k: ""

    def record(k: int) -> str:
        cond, value = parts(k)
        return f"CASE WHEN {cond}{alive(k)} THEN ARRAY[{k}::bigint, -rn] || ({value}){'[2:]' if excl else ''} END"

    # per entity the furthest alive record, reached first (each row's highest one)
    records = ", ".join(record(k) for k in reversed(range(n)))
    return (
        ", ".join(layers)
        + f", best AS (SELECT {entity}, max(COALESCE({records})) AS best FROM {last} GROUP BY {entity})"
        + f", counted AS (SELECT {entity}, best[1]::int AS lvl, best[3:] AS chain FROM best WHERE best IS NOT NULL)"
    )


def _entities(entity: str) -> str:
    """`entities` over the ORDERED / STRICT layers' `counted`."""
    return f', entities AS (SELECT person COLLATE "C" AS person, lvl, chain FROM {_persons_of("counted", entity)})'


def _moving(n: int) -> str:
    """Which rows of an ORDERED funnel without exclusions can move an attempt: every step-0
    event, and a step-k event (k >= 1) unless a step-k event came after the last event
    that could have changed the attempt standing on step k-1 (a start for k = 1, a step
    k-1 event after). Such a repeat would move the same attempt as the earlier one did,
    later, so the running maxima and the counted attempt stay as they are without it; and
    searches between a sign-up and a booking are mostly repeats. `lt{k}` is the time of
    the last step-k event before the row, `t0` of the last start; equal times keep the row,
    whose order among them the times do not tell."""
    previous = lambda k: "t0" if k == 1 else f"lt{k - 1}"
    repeat = lambda k: f"COALESCE(lt{k} > COALESCE({previous(k)}, -1), false)"
    return "m0 OR " + " OR ".join(f"(m{k} AND NOT {repeat(k)})" for k in range(1, n))


def _persons_of(relation: str, entity: str) -> str:
    """`relation` with its `person`: its own column, or the numbered starter's (see `core`)."""
    if entity.startswith("pid"):
        return f"{relation} JOIN starters st ON st.pid = {relation}.pid"
    return relation


def _unordered(
    spec: FunnelSpec, n: int, w_us: int, start_us: int, end_us: int, entity: str, window: str, has_bd: bool
) -> str:
    """Every step's first event in [start, start + window] of each starting row; the attempt's
    steps are those events in completion order. "First event at or after this instant" is a
    running minimum in descending time (RANGE: the instant's peers included), one pass for
    every step, instead of a moving frame whose minimum PostgreSQL would recompute per row."""
    bh = ", bh" if has_bd else ""
    frame = f"PARTITION BY {entity} ORDER BY occurred_at DESC RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
    firsts = ", ".join(f"min(CASE WHEN m{k} THEN ARRAY[t, rn{bh}] END) OVER u AS g{k}" for k in range(n))
    excl = ""
    if spec.exclusions:
        any_x = " OR ".join(f"x{j}" for j in range(len(spec.exclusions)))
        excl = f", min(CASE WHEN {any_x} THEN t END) OVER u AS fx"
    any_step = " OR ".join(f"m{k}" for k in range(n))
    values = ", ".join(f"(CASE WHEN g{k}[1] <= t + {w_us} THEN g{k} END)" for k in range(n))
    layers = [
        f"l0 AS (SELECT base.*, row_number() OVER w AS rn FROM base WINDOW w AS ({window}))",
        f"l1 AS (SELECT l0.*, {firsts}{excl} FROM l0 WINDOW u AS ({frame}))",
        # done: the attempt's step events sorted by (time, rn), each [rn, t, (bh)]
        (
            f"l2 AS (SELECT {entity}, rn, t, {'fx' if spec.exclusions else 'NULL::bigint AS fx'},"
            f" (SELECT array_agg(ARRAY[v[2], v[1]{', v[3]' if has_bd else ''}] ORDER BY v[1], v[2])"
            f" FROM (VALUES {values}) AS s(v) WHERE v IS NOT NULL) AS done"
            f" FROM l1 WHERE ({any_step}) AND t >= {start_us} AND t < {end_us})"
        ),
    ]
    kept = "true"
    if spec.exclusions:
        last_t = "done[array_length(done, 1)][2]"
        kept = (
            f"NOT COALESCE(fx <= CASE WHEN array_length(done, 1) = {n} THEN {last_t} ELSE t + {w_us} END, false)"
        )
    layers.append(
        f"best AS (SELECT {entity}, max(ARRAY[array_length(done, 1) - 1, -done[array_length(done, 1)][1], rn]::bigint[]"
        f" || ARRAY(SELECT unnest(done))) AS best FROM l2 WHERE {kept} GROUP BY {entity})"
    )
    # best[3] is the start row's rn (a key's tie-break); the chain proper follows it
    layers.append(
        "entities AS (SELECT person, best[1]::int AS lvl, best[4:] AS chain FROM best WHERE best IS NOT NULL)"
    )
    layers.append("counted AS (SELECT lvl, chain FROM entities)")
    return ", ".join(layers)


def chosen_hash(spec: FunnelSpec, c: Core) -> str:
    """The counted attempt's breakdown value hash, by attribution (NULL: no value)."""
    b = spec.breakdown
    if b is None:
        return "NULL::bigint"
    s = c.stride
    if b.attribution is grammar.Attribution.FIRST_TOUCH:
        return "chain[3]"
    if b.attribution is grammar.Attribution.LAST_TOUCH:
        return f"chain[3 + {s} * lvl]"
    return f"(CASE WHEN lvl >= {b.step} THEN chain[3 + {s} * {b.step}] END)"


async def has_aliases(scope: InsightScope) -> bool:
    """Whether any identify link exists in the organization (none: no alias join needed)."""
    async with connection() as conn:
        return bool(
            await conn.fetchval("SELECT EXISTS (SELECT 1 FROM person_aliases WHERE organization_id = $1)", scope.organization_id)
        )


def steps_statement(spec: FunnelSpec, c: Core) -> str:
    """Per breakdown group (the top N values by persons at step 0, then other) and step, and
    for the whole funnel (`whole`): persons, and the average and median seconds from the
    previous step."""
    limit = spec.breakdown.limit if spec.breakdown is not None else 1
    dt = f"(CASE WHEN k > 0 THEN ({c.t('k')} - {c.t('k - 1')}) / 1000000.0 END)"
    if spec.breakdown is None:  # one pass over the entities: a column per step
        columns = ["count(*) AS n0"]
        for k in range(1, c.steps):
            d = f"(({c.t(k)} - {c.t(k - 1)}) / 1000000.0)"
            columns.append(
                f"count(*) FILTER (WHERE lvl >= {k}) AS n{k}, avg({d}) FILTER (WHERE lvl >= {k}) AS a{k},"
                f" percentile_cont(0.5) WITHIN GROUP (ORDER BY {d}) FILTER (WHERE lvl >= {k}) AS m{k}"
            )
        return f"{c.ctes} SELECT {', '.join(columns)} FROM counted"
    return (
        f"{c.ctes}, ent AS MATERIALIZED (SELECT lvl, chain, {chosen_hash(spec, c)} AS bh FROM counted),"
        f" top AS MATERIALIZED (SELECT bh FROM ent GROUP BY bh ORDER BY count(*) DESC, bh NULLS FIRST LIMIT {int(limit)}),"
        f" grouped AS (SELECT ent.*, NOT EXISTS (SELECT 1 FROM top WHERE top.bh IS NOT DISTINCT FROM ent.bh) AS other"
        f" FROM ent),"
        f" g AS (SELECT lvl, chain, other, CASE WHEN other THEN NULL ELSE bh END AS gbh FROM grouped)"
        f" SELECT gbh AS bh, other, k, GROUPING(gbh) = 1 AS whole, count(*) AS n, avg({dt}) AS avg,"
        f" percentile_cont(0.5) WITHIN GROUP (ORDER BY {dt}) AS median"
        f" FROM g, generate_series(0, lvl) AS k GROUP BY GROUPING SETS ((gbh, other, k), (k))"
    )


def _part_columns(c: Core) -> list[str]:
    """What a part hands over of its persons, in a form parts add up: the persons (n0) and
    the times between steps they have (`times`); per step k >= 1 the persons (nK), the sum of
    seconds from step k-1 (sK) and the seconds themselves (dK: a median is not made of
    medians)."""
    columns = ["count(*) AS n0", "sum(lvl) AS times"]
    for k in range(1, c.steps):
        d = f"(({c.t(k)} - {c.t(k - 1)}) / 1e6::float8)"  # float8: no numeric arithmetic per person
        columns.append(
            f"count(*) FILTER (WHERE lvl >= {k}) AS n{k}, sum({d}) FILTER (WHERE lvl >= {k}) AS s{k},"
            f" array_agg({d}) FILTER (WHERE lvl >= {k}) AS d{k}"
        )
    return columns


def _kept(c: Core, every_time: str) -> str:
    """The part's columns, the seconds (dK) left out past PART_TIMES_LIMIT in all."""
    steps = [f"n{k}, s{k}, CASE WHEN {every_time} <= {PART_TIMES_LIMIT} THEN d{k} END AS d{k}" for k in range(1, c.steps)]
    return ", ".join(["n0", *steps])


def part_statement(spec: FunnelSpec, c: Core) -> str:
    """`steps_statement` without a breakdown for one part of the persons (`_part_columns`):
    one row."""
    return f"{c.ctes} SELECT {_kept(c, 'times')}, times FROM (SELECT {', '.join(_part_columns(c))} FROM counted) whole"


def breakdown_part_statement(spec: FunnelSpec, c: Core) -> str:
    """`steps_statement` with a breakdown for one part of the persons: a row per breakdown
    value hash (`bh`, `_part_columns`), each saying how many values (`vals`) and times in all
    (`times`) the part has; past PART_VALUES_LIMIT values only one row comes back."""
    per_value = f"SELECT {chosen_hash(spec, c)} AS bh, {', '.join(_part_columns(c))} FROM counted GROUP BY 1"
    sized = (
        "SELECT g.*, count(*) OVER () AS vals, sum(g.times) OVER () AS every_time, row_number() OVER () AS r"
        f" FROM ({per_value}) g"
    )
    return (
        f"{c.ctes} SELECT bh, {_kept(c, 'every_time')}, vals, every_time AS times FROM ({sized}) x"
        f" WHERE vals <= {PART_VALUES_LIMIT} OR r = 1"
    )


Steps = dict[int, tuple[int, float | None, float | None]]  # step -> (persons, average, median seconds)


def merged_parts(steps: int, rows: Sequence[Any]) -> Steps | None:
    """The whole funnel's steps from its parts' `part_statement` rows, the median
    interpolated as PostgreSQL's percentile_cont(0.5) does; None when a part kept its times
    to itself (too many)."""
    if any((row["times"] or 0) > PART_TIMES_LIMIT for row in rows):
        return None
    return _summed(steps, rows)


def merged_breakdown_parts(spec: FunnelSpec, rows: Sequence[Any]) -> tuple[Steps, dict[tuple[int | None, bool], Steps]] | None:
    """The whole funnel and its groups (`(value hash, other)`: the top N values by persons at
    step 0, ties to the lower hash and no value first, as `steps_statement` chooses them,
    then the other values together) from every part's `breakdown_part_statement` rows; None
    when a part kept its rows or times to itself."""
    if any(row["vals"] > PART_VALUES_LIMIT or (row["times"] or 0) > PART_TIMES_LIMIT for row in rows):
        return None
    assert spec.breakdown is not None
    n = len(spec.steps)
    by_value: dict[int | None, list[Any]] = {}
    for row in rows:
        by_value.setdefault(row["bh"], []).append(row)
    starts = {h: sum(row["n0"] for row in found) for h, found in by_value.items()}
    top = sorted(starts, key=lambda h: (-starts[h], h is not None, h or 0))[: spec.breakdown.limit]
    groups: dict[tuple[int | None, bool], list[Any]] = {}
    for h, found in by_value.items():
        groups.setdefault((h, False) if h in top else (None, True), []).extend(found)
    return _summed(n, rows), {key: _summed(n, found) for key, found in groups.items()}


def _summed(steps: int, rows: Sequence[Any]) -> Steps:
    """Per step: the rows' persons, and the average and median seconds from the step before."""
    out: Steps = {0: (sum(row["n0"] for row in rows), None, None)}
    for k in range(1, steps):
        count = sum(row[f"n{k}"] for row in rows)
        seconds = sorted(x for row in rows for x in (row[f"d{k}"] or ()))
        total = sum(row[f"s{k}"] or 0 for row in rows)
        out[k] = (count, total / count if count else None, percentile_cont(seconds, 0.5))
    return out


def percentile_cont(ordered: Sequence[float], fraction: float) -> float | None:
    """PostgreSQL's percentile_cont over sorted values: linear between the two nearest."""
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def funnel_statement(
    organization_id: Any, spec: FunnelSpec, span: TimeRange, *, aliases: bool = True
) -> tuple[str, list[Any]]:
    """The statement `funnel` runs and its parameters, for benchmarks to time against
    hand-written SQL. Without a breakdown it answers one row: n0 (persons at step 0), then per
    step k >= 1 nK (persons), aK and mK (mean and median seconds from step k-1)."""
    c = core(InsightScope(organization_id, span.timezone), spec, span, aliases=aliases)
    return steps_statement(spec, c), c.sql.params


async def labels(scope: InsightScope, spec: FunnelSpec, span: TimeRange, hashes: list[int]) -> dict[int, str]:
    """The breakdown values behind their hashes: from the hourly counts when they keep the
    breakdown's dimension (a few rows per hour), else (and for any hash they miss) from the
    first event that carries each value, among the rows that can hold it (`valued_types`)."""
    if not hashes or spec.breakdown is None:
        return {}
    types = valued_types(spec) or spec.types  # a value is read from a step's event, whatever the order
    every_type = grammar.ALL_EVENTS in types
    until = span.end + timedelta(seconds=spec.window_seconds)
    names: dict[int, str] = {}
    if rollups.counts_breakdown(spec.breakdown) and not every_type:
        names = await _labels_from_counts(scope, spec.breakdown.key, types, span.start, until, hashes)
    missing = [h for h in hashes if h not in names]
    if not missing:
        return names
    sql = Sql()
    value = _value(sql, spec.breakdown.source, spec.breakdown.key)
    statement = (
        f"SELECT DISTINCT ON (h) h, v FROM (SELECT hashtextextended({value}, 0) AS h, {value} AS v"
        f" FROM {sql.events_from()} WHERE e.organization_id = {sql.param(scope.organization_id, 'uuid')}"
        f" AND e.visitor_id IS NOT NULL"
        f" AND e.occurred_at >= {sql.param(span.start, 'timestamptz')}"
        f" AND e.occurred_at < {sql.param(until, 'timestamptz')}"
        + ("" if every_type else f" AND e.type = ANY({sql.param(types, 'text[]')})")
        + f") s WHERE h = ANY({sql.param(missing, 'bigint[]')})"
    )
    names.update({row["h"]: row["v"] for row in await fetch_rows(sql, statement)})
    return names


async def _labels_from_counts(
    scope: InsightScope, key: str, types: list[str], start: datetime, until: datetime, hashes: list[int]
) -> dict[int, str]:
    """`labels` from the hourly counts of a rolled dimension (the hours that overlap the span:
    a value seen just outside it names the same hash)."""
    sql = Sql()
    statement = (
        f"SELECT h, v FROM (SELECT DISTINCT c.value AS v FROM event_hour_counts_live c"
        f" WHERE c.organization_id = {sql.param(scope.organization_id, 'uuid')} AND c.dimension = {sql.param(key, 'text')}"
        f" AND c.type = ANY({sql.param(types, 'text[]')}) AND c.value IS NOT NULL"
        f" AND c.hour >= {sql.param(start.astimezone(UTC).replace(minute=0, second=0, microsecond=0), 'timestamptz')}"
        f" AND c.hour < {sql.param(until, 'timestamptz')}) s, hashtextextended(v, 0) AS h"
        f" WHERE h = ANY({sql.param(hashes, 'bigint[]')})"
    )
    return {row["h"]: row["v"] for row in await fetch_rows(sql, statement)}


def step_results(spec: FunnelSpec, rows: dict[int, Any]) -> list[StepResult]:
    """rows: step -> (count, avg, median); the rates and drop-offs around them."""
    out = []
    first = rows.get(0, (0, None, None))[0]
    previous = first
    for k, step in enumerate(spec.steps):
        count, avg, median = rows.get(k, (0, None, None))
        out.append(
            StepResult(
                index=k,
                event=step.event,
                count=count,
                conversion_rate=(count / first) if first else 0.0,
                conversion_rate_from_previous=(count / previous) if previous else 0.0,
                drop_off=0 if k == 0 else previous - count,
                average_seconds_to_convert=None if k == 0 or avg is None else float(avg),
                median_seconds_to_convert=None if k == 0 or median is None else float(median),
            )
        )
        previous = count
    return out


def histogram(a: int, b: int, bins: int, us: Sequence[int]) -> Histogram:
    """The time-to-convert histogram of µs between steps, binned as the one statement bins
    seconds (whole-second bins from the least, at least 1 s wide; the greatest in the last),
    in integers so that a bound falls in the same bin."""
    if not us:
        return Histogram(a, b, [], 0.0, [], 0, None, None)
    ordered = sorted(us)
    lo, hi = ordered[0], ordered[-1]
    width = max(-(-(hi - lo) // (bins * 1_000_000)), 1)  # whole seconds, rounded up
    counts = [0] * bins
    for x in ordered:
        counts[min((x - lo) // (width * 1_000_000), bins - 1)] += 1
    seconds = [x / 1e6 for x in ordered]
    return Histogram(
        a, b, [lo / 1e6 + width * i for i in range(bins)], float(width), counts, len(ordered),
        sum(ordered) / len(ordered) / 1e6, percentile_cont(seconds, 0.5),
    )  # fmt: skip


# -- runners -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    span: TimeRange
    spec: FunnelSpec
    extra: dict[str, Any] = field(default_factory=dict)


class FunnelRunner(InsightRunner[Plan, Any]):
    """Inputs: organization_id, time_range (RangeSpec), spec (FunnelSpec), and the kind's own."""

    kind: ClassVar[str] = "insight_funnel"

    def plan(self, scope: InsightScope) -> Plan:
        return Plan(resolve_range(self.inputs["time_range"], scope.timezone), self.inputs["spec"])

    async def fetch(self, scope: InsightScope, plan: Plan) -> FunnelResult:
        spec = plan.spec
        aliases = await has_aliases(scope)
        found = await self.fetch_in_parts(scope, plan, aliases=aliases)
        if found is not None:
            return found
        # not split, or more converters (or values) than Python is handed: one statement
        c = core(scope, spec, plan.span, aliases=aliases)
        rows = await fetch_rows(c.sql, steps_statement(spec, c))
        if spec.breakdown is None:
            row = rows[0]
            whole = {0: (row["n0"], None, None)}
            whole.update({k: (row[f"n{k}"], row[f"a{k}"], row[f"m{k}"]) for k in range(1, len(spec.steps))})
            return FunnelResult(plan.span, step_results(spec, whole), [])
        groups: dict[tuple[Any, bool], dict[int, Any]] = {}
        overall: dict[int, Any] = {}
        for row in rows:
            found_step = (row["n"], row["avg"], row["median"])
            if row["whole"]:
                overall[row["k"]] = found_step
            else:
                groups.setdefault((row["bh"], row["other"]), {})[row["k"]] = found_step
        return await self.with_breakdowns(scope, plan, overall, groups)

    async def in_parts(
        self, scope: InsightScope, plan: Plan, statement: Callable[[Core], str], *, aliases: bool
    ) -> list[list[Any]] | None:
        """Every part's rows of `statement` (of the part's `core`), the parts run side by side
        (see `Part`); None when the funnel is not split (one part configured, or a funnel
        that is not `prefiltered`)."""
        spec, parts = plan.spec, get_settings().insight_parts
        if parts < 2 or not prefiltered(spec):
            return None
        bounds = () if TIME_SPLIT is False else time_bounds(
            plan.span, spec.window_seconds, parts, await profile(scope, spec, plan.span)
        )  # the hourly counts are not read when parts by time are switched off
        cores = [core(scope, spec, plan.span, aliases=aliases, part=Part(i, parts, bounds)) for i in range(parts)]
        return await fetch_parts(cores[0].sql, [statement(c) for c in cores])

    async def every_part(
        self, scope: InsightScope, plan: Plan, statement: Callable[[Core], str], *, aliases: bool
    ) -> list[list[Any]]:
        """`in_parts`, or, when the funnel is not split, the rows of one statement over every
        person as its only part: for answers whose parts simply add up."""
        answers = await self.in_parts(scope, plan, statement, aliases=aliases)
        if answers is None:
            c = core(scope, plan.spec, plan.span, aliases=aliases)
            answers = [await fetch_rows(c.sql, statement(c))]
        return answers

    async def fetch_in_parts(self, scope: InsightScope, plan: Plan, *, aliases: bool) -> FunnelResult | None:
        """The funnel from its parts, or None when it is not split or a part had more to hand
        over than Python takes."""
        spec = plan.spec
        statement = part_statement if spec.breakdown is None else breakdown_part_statement
        answers = await self.in_parts(scope, plan, lambda c: statement(spec, c), aliases=aliases)
        if answers is None:
            return None
        if spec.breakdown is None:
            whole = merged_parts(len(spec.steps), [rows[0] for rows in answers])
            return None if whole is None else FunnelResult(plan.span, step_results(spec, whole), [])
        merged = merged_breakdown_parts(spec, [row for rows in answers for row in rows])
        return None if merged is None else await self.with_breakdowns(scope, plan, *merged)

    async def with_breakdowns(
        self, scope: InsightScope, plan: Plan, overall: dict[int, Any], groups: dict[tuple[Any, bool], dict[int, Any]]
    ) -> FunnelResult:
        """The result of a funnel with a breakdown: its groups (`(value hash, other)`: steps)
        named by their values, the most persons at step 0 first, the other values last."""
        spec = plan.spec
        names = await labels(scope, spec, plan.span, [h for h, other in groups if h is not None and not other])
        breakdowns = []
        for (h, other), by_step in groups.items():
            value = grammar.OTHER if other else (names.get(h) if h is not None else None)
            breakdowns.append(BreakdownResult(value, other, step_results(spec, by_step)))
        breakdowns.sort(key=lambda b: (b.is_other, -b.steps[0].count, b.value is not None, b.value or ""))
        return FunnelResult(plan.span, step_results(spec, overall), breakdowns)


class ConversionOverTimeRunner(FunnelRunner):
    """Persons per period of their counted attempt's start, and those of them who converted."""

    kind: ClassVar[str] = "insight_funnel_conversion_over_time"

    def plan(self, scope: InsightScope) -> Plan:
        span = resolve_range(self.inputs["time_range"], scope.timezone)
        return Plan(span, self.inputs["spec"], {"periods": periods_of(span, self.inputs["grain"])})

    async def fetch(self, scope: InsightScope, plan: Plan) -> ConversionSeries:  # type: ignore[override]
        periods: Periods = plan.extra["periods"]
        first = [_us(p) - _us(plan.span.start) for p in periods.starts]  # the chain's times count µs from the range start

        def statement(c: Core) -> str:
            return (
                f"{c.ctes} SELECT width_bucket({c.t(0)}, {c.sql.param(first, 'bigint[]')}) AS i, count(*) AS entered,"
                f" count(*) FILTER (WHERE lvl = {c.steps - 1}) AS converted FROM counted GROUP BY 1"
            )

        answers = await self.every_part(scope, plan, statement, aliases=await has_aliases(scope))
        rows = [row for part in answers for row in part]  # the parts' persons are disjoint: their counts add
        entered = [0] * len(periods)
        converted = [0] * len(periods)
        for row in rows:
            if row["i"] and 1 <= row["i"] <= len(periods):
                entered[row["i"] - 1] += row["entered"]
                converted[row["i"] - 1] += row["converted"]
        rates = [(cv / en) if en else 0.0 for en, cv in zip(entered, converted, strict=True)]
        return ConversionSeries(plan.span, periods.grain, list(periods.starts), entered, converted, rates)


class TimeToConvertRunner(FunnelRunner):
    """The seconds from step `from_step` to step `to_step` of the counted attempts that reached it."""

    kind: ClassVar[str] = "insight_funnel_time_to_convert"

    async def fetch(self, scope: InsightScope, plan: Plan) -> Histogram:  # type: ignore[override]
        spec = plan.spec
        last = len(spec.steps) - 1
        a = self.inputs.get("from_step")
        b = self.inputs.get("to_step")
        a = 0 if a is None else a
        b = last if b is None else b
        if not 0 <= a <= last:
            raise BadInput(f"the funnel's steps are 0 to {last}", field="fromStep")
        if not a < b <= last:
            raise BadInput(f"toStep is after fromStep and at most {last}", field="toStep")
        bins = self.inputs.get("bins")
        bins = DEFAULT_BINS if bins is None else bins
        if not 1 <= bins <= MAX_BINS:
            raise BadInput(f"1 to {MAX_BINS} bins", field="bins")
        aliases = await has_aliases(scope)

        def times(c: Core) -> str:
            """A part's µs from step a to step b, unless it has more than PART_TIMES_LIMIT."""
            return (
                f"{c.ctes} SELECT n, CASE WHEN n <= {PART_TIMES_LIMIT} THEN us END AS us FROM (SELECT count(*) AS n,"
                f" array_agg({c.t(b)} - {c.t(a)}) AS us FROM counted WHERE lvl >= {b}) x"
            )

        answers = await self.in_parts(scope, plan, times, aliases=aliases)
        if answers is not None and all(rows[0]["n"] <= PART_TIMES_LIMIT for rows in answers):
            return histogram(a, b, bins, [us for rows in answers for us in rows[0]["us"] or ()])
        c = core(scope, spec, plan.span, aliases=aliases)
        secs = f"(({c.t(b)} - {c.t(a)}) / 1000000.0)"
        statement = (
            f"{c.ctes}, d AS MATERIALIZED (SELECT {secs} AS s FROM counted WHERE lvl >= {b}),"
            f" st AS (SELECT min(s) AS lo, count(*) AS n, avg(s) AS avg,"
            f" percentile_cont(0.5) WITHIN GROUP (ORDER BY s) AS median,"
            f" GREATEST(ceil((max(s) - min(s)) / {bins}), 1) AS width FROM d)"
            f" SELECT st.*, (SELECT array_agg(cnt ORDER BY i) FROM (SELECT i, count(d.s) AS cnt"
            f" FROM generate_series(1, {bins}) AS i LEFT JOIN d"
            f" ON LEAST(width_bucket(d.s, st.lo, st.lo + st.width * {bins}, {bins}), {bins}) = i GROUP BY i) q)"
            f" AS counts FROM st"
        )
        row = (await fetch_rows(c.sql, statement))[0]
        if not row["n"]:
            return Histogram(a, b, [], 0.0, [], 0, None, None)
        lo, width = float(row["lo"]), float(row["width"])
        return Histogram(
            a, b, [lo + width * i for i in range(bins)], width, list(row["counts"]), row["n"],
            float(row["avg"]), float(row["median"]),
        )  # fmt: skip


class PersonsRunner(FunnelRunner):
    """A page of the persons who reached step `step` (or dropped off there), ordered by id."""

    kind: ClassVar[str] = "insight_funnel_persons"
    cacheable: ClassVar[bool] = False

    async def fetch(self, scope: InsightScope, plan: Plan) -> PersonsPage:  # type: ignore[override]
        spec = plan.spec
        last = len(spec.steps) - 1
        step = self.inputs["step"]
        dropped = bool(self.inputs.get("dropped"))
        if not 0 <= step <= last:
            raise BadInput(f"the funnel's steps are 0 to {last}", field="step")
        if dropped and step == 0:
            raise BadInput("nobody drops off before step 0: dropped needs step 1 or later", field="dropped")
        first = self.inputs.get("first")
        first = DEFAULT_PAGE if first is None else first
        if not 1 <= first <= MAX_PAGE:
            raise BadInput(f"first is 1 to {MAX_PAGE}", field="first")
        after = decode_cursor(self.inputs.get("after"))
        value = self.inputs.get("breakdown_value")

        def page(c: Core) -> str:
            """How many persons the step has, and the next `first` + 1 of them by id."""
            condition = f"lvl = {step - 1}" if dropped else f"lvl >= {step}"
            if value is not None and spec.breakdown is not None:
                condition += f" AND {chosen_hash(spec, c)} IS NOT DISTINCT FROM hashtextextended({c.sql.param(value, 'text')}, 0)"
            cursor = f" WHERE person > {c.sql.param(after, 'text')}" if after is not None else ""
            return (
                f"{c.with_persons}, ps AS MATERIALIZED (SELECT DISTINCT person FROM entities WHERE {condition})"
                f" SELECT (SELECT count(*) FROM ps) AS total,"
                f" ARRAY(SELECT person FROM ps{cursor} ORDER BY person LIMIT {first + 1}) AS ids"
            )

        answers = await self.every_part(scope, plan, page, aliases=await has_aliases(scope))
        # a person is in one part: the page is the first of every part's pages together (ids
        # in "C" order, which is Python's)
        found = sorted(person for rows in answers for person in rows[0]["ids"])
        ids = found[:first]
        total = sum(rows[0]["total"] for rows in answers)
        return PersonsPage(ids, total, encode_cursor(ids[-1]) if ids else None, len(found) > first)


CURSOR_PREFIX = "funnel-person:"


def encode_cursor(person: str) -> str:
    return base64.b64encode((CURSOR_PREFIX + person).encode(), altchars=b"-_").decode()


def decode_cursor(cursor: str | None) -> str | None:
    """The last person id of a page, from the cursor that page returned."""
    if cursor is None:
        return None
    try:
        text = base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        text = ""
    if not text.startswith(CURSOR_PREFIX):
        raise BadInput("not a cursor this query returned", field="after")
    return text[len(CURSOR_PREFIX) :]


# -- the service's entry points ----------------------------------------------------------------


async def check_access(viewer: Viewer, organization_id: Any) -> None:
    """Refuse a caller who may not read the organization's insights (before its input is read)."""
    await insight_scope(viewer, organization_id)



async def funnel(*, viewer: Viewer, organization_id: Any, time_range: RangeSpec, spec: FunnelSpec) -> FunnelResult:
    return await FunnelRunner(viewer=viewer, organization_id=organization_id, time_range=time_range, spec=spec).run()


async def conversion_over_time(
    *, viewer: Viewer, organization_id: Any, time_range: RangeSpec, spec: FunnelSpec, grain: Grain
) -> ConversionSeries:
    return await ConversionOverTimeRunner(
        viewer=viewer, organization_id=organization_id, time_range=time_range, spec=spec, grain=grain
    ).run()


async def time_to_convert(
    *, viewer: Viewer, organization_id: Any, time_range: RangeSpec, spec: FunnelSpec,
    from_step: int | None, to_step: int | None, bins: int | None,
) -> Histogram:  # fmt: skip
    return await TimeToConvertRunner(
        viewer=viewer, organization_id=organization_id, time_range=time_range, spec=spec,
        from_step=from_step, to_step=to_step, bins=bins,
    ).run()  # fmt: skip


async def persons(
    *, viewer: Viewer, organization_id: Any, time_range: RangeSpec, spec: FunnelSpec, step: int,
    dropped: bool = False, first: int | None = None, after: str | None = None, breakdown_value: str | None = None,
) -> PersonsPage:  # fmt: skip
    return await PersonsRunner(
        viewer=viewer, organization_id=organization_id, time_range=time_range, spec=spec, step=step,
        dropped=dropped, first=first, after=after, breakdown_value=breakdown_value,
    ).run()  # fmt: skip
