"""Retention: of the persons who did a start event in a period, how many came back (did the
return event) in each period after it.

- Cohorts: FIRST_TIME puts a person in the cohort of the period of their first start event
  ever (over all history; only periods of the range have cohorts); RECURRING puts them in
  the cohort of every period of the range in which they did the start event.
- Cells: counts[0] is the cohort's size; counts[k] (k = 1..periods) the cohort's persons
  who did the return event in exactly the k-th period after the cohort's (EXACT), or in that
  period or any later one (ON_OR_AFTER). Returns count whenever they happen up to now, also
  after the range's end.
- A cell whose period has not begun yet is null, never 0; the current, still open period
  is shown (it can still grow). A cohort whose own period has not begun has size 0 and no
  observable cell.
- A breakdown splits each cohort by the value the person's first start event of the
  cohort's period carried (first touch; for FIRST_TIME, the first start event ever); returns
  count whatever their own value. The top `limit` values by cohort entries are shown, the
  rest gathered under `$other`; a missing value is its own breakdown (null).

The core statement (`STATEMENT`) finds the cohort entries from the start events, then reads
the return events of the cohorts' persons only, by visitor id, grouped by person and period
(width_bucket over the periods' starts); the entries join their person's return periods. It
returns one row per (cohort, k[, breakdown]) with a count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from app.errors import BadInput
from app.services.insights import grammar
from app.services.insights.activity import PERSON_KNOWN, query_periods, started
from app.services.insights.grammar import Breakdown, EventMatcher, Sql
from app.services.insights.query import InsightRunner, InsightScope, Periods, fetch, shift_periods
from app.services.insights.rollups import actors_sql
from app.timebuckets import Grain, RangeSpec, TimeRange, bucket_starts, utcnow

DEFAULT_PERIODS = 8
MAX_RETURN_PERIODS = 100
MAX_CELLS = 20_000  # cohorts x (periods + 1): the size of one answer's grid


class CohortKind(str, Enum):
    FIRST_TIME = "first_time"
    RECURRING = "recurring"


class Mode(str, Enum):
    EXACT = "exact"
    ON_OR_AFTER = "on_or_after"


@dataclass(frozen=True, slots=True)
class Cohort:
    start: datetime
    size: int
    counts: list[int | None]  # counts[0] = size; None: the period has not begun
    fractions: list[float | None]  # counts[k] / size; None when unobservable or the cohort is empty


@dataclass(frozen=True, slots=True)
class BreakdownRow:
    value: str | None  # None: the start event did not carry the property
    other: bool  # the values past the top `limit`, gathered
    cohorts: list[Cohort]
    average: list[float | None]


@dataclass(frozen=True, slots=True)
class Retention:
    range: TimeRange
    period: Grain
    periods: int
    cohort_kind: CohortKind
    mode: Mode
    as_of: datetime
    cohorts: list[Cohort]
    average: list[float | None]  # per k: the cohorts' observed counts over their sizes (weighted by size)
    breakdowns: list[BreakdownRow] | None


@dataclass(frozen=True, slots=True)
class Plan:
    cohorts: Periods
    starts: list[datetime]  # every period from the first cohort's to the last cohort's + periods
    observed: int  # how many of `starts` have begun
    now: datetime


# -- the core statement --------------------------------------------------------------------
# Periods are width_bucket's positions among the observed periods' starts (0: before the
# first cohort, which only FIRST_TIME reads: to know that a first start event was earlier).
# starts: one row per (person, period) with a start event. cohort / labelled: the cohort
# entries, with the breakdown value they show. reached: each of their persons with the
# periods their returns can count in. Those persons' visitor ids (`grammar.visitors_of`) are
# handed to the parallel workers as arrays (`grammar.shipped`): each worker joins its share
# of the return events to them by visitor id, so no return event of anyone outside the
# cohorts is given a person or sent on. returns: EXACT, one row per (person, period) with a
# return event; ON_OR_AFTER, per person the last such period. The final SELECT counts
# entries per cohort (k = 0) and returns per (cohort, k): EXACT joins the person's return
# periods 1..periods after the cohort's; ON_OR_AFTER the person's last return period
# (k = min(last - cohort, periods)), whose counts Python sums from the right (returned in
# period k or later).

STATEMENT = """
WITH starts AS (
    SELECT ({person}) COLLATE "C" AS person, {period} AS p{value_column}
    FROM {start_events}
    WHERE e.organization_id = {org} AND {known} AND {start} AND e.occurred_at < {cohorts_end}{recurring_lo}
    GROUP BY {grouped}
),
cohort AS ({cohort}),
labelled AS ({labelled}),
reached AS (SELECT person, min(c) + 1 AS p_from, max(c) + {periods} AS p_to FROM labelled GROUP BY person),
visitors AS ({visitors}),
{shipped},
returns AS ({returns})
SELECT c.c, 0 AS k, c.kept, c.value, count(*) AS n
FROM labelled c GROUP BY 1, 2, 3, 4
UNION ALL
{counted}
"""
RETURN_EVENTS = """
    SELECT {picked}
    FROM {events}
    WHERE e.organization_id = {org} AND {known} AND {returned} AND e.occurred_at >= {lo} AND e.occurred_at < {hi}
      AND width_bucket(e.occurred_at, {starts}) {within}{grouped}"""
EXACT_RETURNS = """
SELECT c.c, r.p - c.c AS k, c.kept, c.value, count(*) AS n
FROM labelled c JOIN returns r ON r.person = c.person AND r.p > c.c AND r.p <= c.c + {periods}
GROUP BY 1, 2, 3, 4
"""
ON_OR_AFTER_RETURNS = """
SELECT c.c, LEAST(r.p - c.c, {periods}) AS k, c.kept, c.value, count(*) AS n
FROM labelled c JOIN returns r ON r.person = c.person AND r.p > c.c
GROUP BY 1, 2, 3, 4
"""
RECURRING_COHORT = "SELECT person, p AS c{value} FROM starts WHERE p BETWEEN 1 AND {n}"
# FIRST_TIME without a breakdown: `starts` holds each person's first period (min)
FIRST_PERIOD_COHORT = RECURRING_COHORT
FIRST_TIME_COHORT = (
    "SELECT person, c{value} FROM (SELECT DISTINCT ON (person) person, p AS c{value} FROM starts"
    " ORDER BY person, p) f WHERE c BETWEEN 1 AND {n}"
)
UNLABELLED = "SELECT person, c, true AS kept, NULL::text AS value FROM cohort"
LABELLED = """
SELECT c.person, c.c, t.kept IS NOT NULL AS kept, CASE WHEN t.kept THEN c.value END AS value
FROM cohort c LEFT JOIN (
    SELECT value, true AS kept FROM cohort GROUP BY value ORDER BY count(*) DESC, value NULLS LAST LIMIT {limit}
) t ON t.value IS NOT DISTINCT FROM c.value
"""


def statement(plan: Plan, org: object, start: EventMatcher, back: EventMatcher, kind: CohortKind, mode: Mode,
              periods: int, breakdown: Breakdown | None) -> tuple[Sql, str]:  # fmt: skip
    n = len(plan.cohorts)
    observed_starts = plan.starts[: plan.observed]
    hi = plan.starts[plan.observed] if plan.observed < len(plan.starts) else shift_periods(
        plan.starts[-1], plan.cohorts.grain, 1, timezone=plan.cohorts.range.timezone
    )
    sql = actors_sql(
        start, back, since=plan.starts[0], cuts=[*observed_starts, hi, plan.cohorts.ends[-1]],
        timezone=plan.cohorts.range.timezone, exact=breakdown is None,
    )  # fmt: skip
    params = {
        "org": sql.param(org, "uuid"),
        "starts": sql.param(observed_starts, "timestamptz[]"),
        "lo": sql.param(plan.starts[0], "timestamptz"),
        "hi": sql.param(hi, "timestamptz"),
        "cohorts_end": sql.param(plan.cohorts.ends[-1], "timestamptz"),
    }
    value_column = value_select = ""
    if breakdown is not None:
        order = "e.occurred_at, e.received_at, e.event_id"
        value_column = f",\n           (array_agg({start_value(sql, breakdown)} ORDER BY {order}))[1] AS value"
        value_select = ", value"
    # before the FROM texts: a person property in a filter adds the persons join
    started = grammar.matcher_condition(sql, start)
    returned = grammar.matcher_condition(sql, back).replace(grammar.PERSON, "sv.person")
    first_only = kind is CohortKind.FIRST_TIME and breakdown is None
    if kind is CohortKind.RECURRING:
        cohort = RECURRING_COHORT
    else:
        cohort = FIRST_PERIOD_COHORT if first_only else FIRST_TIME_COHORT
    cohort = cohort.format(value=value_select, n=n)
    shipped, visitors = grammar.shipped("visitors", ["visitor", "person", "p_from", "p_to"])
    sql.hash_joins = True  # the planner cannot estimate how many rows the shipped arrays hold
    period = f"width_bucket(e.occurred_at, {params['starts']})"
    exact = mode is Mode.EXACT
    returns = RETURN_EVENTS.format(
        picked=f"DISTINCT sv.person, {period} AS p" if exact else f"sv.person, max({period}) AS p",
        events=sql.starter_events(visitors), known=PERSON_KNOWN, returned=returned,
        within="BETWEEN sv.p_from AND sv.p_to" if exact else ">= sv.p_from", grouped="" if exact else " GROUP BY 1",
        **params,
    )  # fmt: skip
    text = STATEMENT.format(
        person=sql.person(), start_events=sql.events_from(), known=PERSON_KNOWN, start=started,
        recurring_lo=f" AND e.occurred_at >= {params['lo']}" if kind is CohortKind.RECURRING else "",
        value_column=value_column, cohort=cohort, periods=periods,
        period=f"min({period})" if first_only else period, grouped="1" if first_only else "1, 2",
        labelled=LABELLED.format(limit=breakdown.limit) if breakdown is not None else UNLABELLED,
        visitors=grammar.visitors_of(params["org"], "reached", ["p_from", "p_to"]), shipped=shipped, returns=returns,
        counted=(EXACT_RETURNS if exact else ON_OR_AFTER_RETURNS).format(periods=periods),
        **params,
    )  # fmt: skip
    return sql, text


def start_value(sql: Sql, breakdown: Breakdown) -> str:
    """The breakdown's value on a start event, as text (a cohort: 'true' for its members)."""
    if breakdown.source is grammar.PropertySource.COHORT:
        return f"(CASE WHEN {grammar.cohort_membership(sql, breakdown.key)} THEN 'true' ELSE 'false' END)"
    return grammar.breakdown_value(sql, breakdown)


# -- the runner ----------------------------------------------------------------------------


class RetentionQuery(InsightRunner[Plan, Retention]):
    """Inputs: organization_id, time_range (RangeSpec), start / back (EventMatcher), period
    (Grain), periods (int), cohort_kind, mode, breakdown (Breakdown | None), now (tests)."""

    kind = "insight_retention"

    def plan(self, scope: InsightScope) -> Plan:
        inputs = self.inputs
        now = inputs.get("now") or utcnow()
        grain: Grain = inputs["period"]
        periods: int = inputs["periods"]
        if not 1 <= periods <= MAX_RETURN_PERIODS:
            raise BadInput(f"periods counts return periods: 1 to {MAX_RETURN_PERIODS}", field="query.periods")
        cohorts = query_periods(inputs["time_range"], grain, scope.timezone, now=now, grain_field="query.period")
        if len(cohorts) * (periods + 1) > MAX_CELLS:
            raise BadInput(
                f"{len(cohorts)} cohorts x {periods + 1} cells is more than {MAX_CELLS}: ask for fewer periods,"
                " a shorter range or a coarser period",
                field="query.periods",
            )
        tz = scope.timezone
        end = shift_periods(cohorts.starts[-1], grain, periods + 1, timezone=tz)
        starts = bucket_starts(TimeRange(start=cohorts.starts[0], end=end, timezone=tz), grain)
        assert len(starts) == len(cohorts) + periods  # period i of `starts` is width_bucket's i + 1
        return Plan(cohorts=cohorts, starts=starts, observed=started(starts, now), now=now)

    async def fetch(self, scope: InsightScope, plan: Plan) -> list[tuple[int, int, bool, str | None, int]]:
        if plan.observed == 0:
            return []
        inputs = self.inputs
        sql, text = statement(
            plan, scope.organization_id, inputs["start"], inputs["back"], inputs["cohort_kind"], inputs["mode"],
            inputs["periods"], inputs.get("breakdown"),
        )  # fmt: skip
        rows = await fetch(sql, text)
        return [(r["c"], r["k"], r["kept"], r["value"], r["n"]) for r in rows]

    def calculate(self, scope: InsightScope, plan: Plan, fetched: list[tuple[int, int, bool, str | None, int]]) -> Retention:
        inputs = self.inputs
        periods: int = inputs["periods"]
        mode: Mode = inputs["mode"]
        breakdown: Breakdown | None = inputs.get("breakdown")
        n = len(plan.cohorts)
        grids: dict[tuple[bool, str | None], list[list[int]]] = {}
        for c, k, kept, value, count in fetched:
            grid = grids.setdefault((kept, value), [[0] * (periods + 1) for _ in range(n)])
            grid[c - 1][k] += count
        total = [[0] * (periods + 1) for _ in range(n)]
        for grid in grids.values():
            for c in range(n):
                for k in range(periods + 1):
                    total[c][k] += grid[c][k]
        cohorts = self.rows(plan, total, mode)
        breakdowns = None
        if breakdown is not None:
            ordered = sorted(grids.items(), key=lambda item: (not item[0][0], -sum(r[0] for r in item[1]), item[0][1] is None, item[0][1] or ""))
            breakdowns = []
            for (kept, value), grid in ordered:
                rows = self.rows(plan, grid, mode)
                breakdowns.append(BreakdownRow(value if kept else grammar.OTHER, not kept, rows, average(rows, periods)))
        return Retention(
            range=plan.cohorts.range, period=plan.cohorts.grain, periods=periods, cohort_kind=inputs["cohort_kind"],
            mode=mode, as_of=plan.now, cohorts=cohorts, average=average(cohorts, periods), breakdowns=breakdowns,
        )  # fmt: skip

    @staticmethod
    def rows(plan: Plan, grid: list[list[int]], mode: Mode) -> list[Cohort]:
        cohorts = []
        for c, start in enumerate(plan.cohorts.starts):
            cells = list(grid[c])
            if mode is Mode.ON_OR_AFTER:  # k holds "last return period, capped": returned in k or later
                for k in range(len(cells) - 2, 0, -1):
                    cells[k] += cells[k + 1]
            size = cells[0]
            counts: list[int | None] = [cells[k] if c + k < plan.observed else None for k in range(len(cells))]
            fractions = [None if count is None or size == 0 else count / size for count in counts]
            cohorts.append(Cohort(start=start, size=size, counts=counts, fractions=fractions))
        return cohorts


def average(cohorts: list[Cohort], periods: int) -> list[float | None]:
    """Per k: the observed counts summed over the sizes of the cohorts that observed it."""
    result: list[float | None] = []
    for k in range(periods + 1):
        seen = [(c.counts[k], c.size) for c in cohorts if c.counts[k] is not None]
        sizes = sum(size for _, size in seen)
        result.append(sum(count for count, _ in seen) / sizes if sizes else None)
    return result


async def retention(
    *, viewer: object, organization_id: object, time_range: RangeSpec, start: EventMatcher, back: EventMatcher,
    period: Grain = Grain.DAY, periods: int | None = None, cohort_kind: CohortKind = CohortKind.RECURRING,
    mode: Mode = Mode.EXACT, breakdown: Breakdown | None = None, now: datetime | None = None,
) -> Retention:  # fmt: skip
    if breakdown is not None and breakdown.attribution is not grammar.Attribution.FIRST_TOUCH:
        raise BadInput("retention breaks down by the start event's value (FIRST_TOUCH)", field="query.breakdown.attribution")
    return await RetentionQuery(
        viewer=viewer, organization_id=organization_id, time_range=time_range, start=start, back=back, period=period,
        periods=DEFAULT_PERIODS if periods is None else periods, cohort_kind=cohort_kind, mode=mode,
        breakdown=breakdown, now=now,
    ).run()  # fmt: skip
