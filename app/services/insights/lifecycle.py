"""Lifecycle and stickiness: how persons doing one event move between periods.

Lifecycle, per local period of the range, counts the persons who did the event (one
matcher) as
- new: their first event of that matcher ever (over all history) is in this period;
- returning: active in this period and in the previous one;
- resurrecting: active in this period, not in the previous one, but in some earlier one;
- dormant: active in the previous period and not in this one, as a negative number (as
  PostHog shows it). The current, still open period is counted like the others (someone
  active yesterday and not yet today is dormant today); a period that has not begun has no
  counts (null).

Stickiness counts persons by the number of the range's periods in which they did the
event: 1..N, zero-filled (N = the range's periods).

The core statements (`LIFECYCLE`, `STICKINESS`) read the matcher's events once, grouped by
person and period (width_bucket over the periods' starts). For lifecycle, position 0 holds
everything before the period preceding the range (so "new" and "resurrecting" know the
whole history), position 1 that preceding period, 2.. the range's periods. Each person's
positions become one bigint, a bit per position (`LIFECYCLE`); persons with the same bits
are counted together, and each period's four counts are bit tests on those patterns. A
range of more periods than a bigint has bits (`MASK_POSITIONS`) is classified row by row
instead, by a window over each person's positions (`LIFECYCLE_ROWS`: lag/lead).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.services.insights import grammar
from app.services.insights.activity import PERSON_KNOWN, query_periods, started
from app.services.insights.grammar import EventMatcher
from app.services.insights.query import InsightRunner, InsightScope, Periods, fetch, shift_periods
from app.services.insights.rollups import actors_sql
from app.timebuckets import Grain, RangeSpec, TimeRange, utcnow


@dataclass(frozen=True, slots=True)
class LifecyclePeriod:
    start: datetime
    new: int | None
    returning: int | None
    resurrecting: int | None
    dormant: int | None  # <= 0


@dataclass(frozen=True, slots=True)
class Lifecycle:
    range: TimeRange
    granularity: Grain
    as_of: datetime
    periods: list[LifecyclePeriod]


@dataclass(frozen=True, slots=True)
class Stickiness:
    range: TimeRange
    granularity: Grain
    periods: int  # N: the range's periods
    persons: int  # everyone active in at least one of them
    counts: list[tuple[int, int]]  # (active periods 1..N, persons)


@dataclass(frozen=True, slots=True)
class Plan:
    periods: Periods
    observed: int  # how many of the range's periods have begun
    now: datetime


MASK_POSITIONS = 63  # positions 0..62 fit a bigint's bits below its sign

LIFECYCLE = """
WITH masks AS (
    SELECT bit_or(1::bigint << width_bucket(e.occurred_at, {starts})) AS m
    FROM {events}
    WHERE e.organization_id = {org} AND {known} AND e.occurred_at < {hi} AND {matcher}
    GROUP BY ({person})
),
patterns AS (SELECT m, count(*) AS n FROM masks GROUP BY m)
SELECT p,
       coalesce(sum(n) FILTER (WHERE (m >> p) & 1 = 1 AND m & ((1::bigint << p) - 1) = 0), 0)::bigint AS new,
       coalesce(sum(n) FILTER (WHERE (m >> (p - 1)) & 3 = 3), 0)::bigint AS returning,
       coalesce(sum(n) FILTER (WHERE (m >> (p - 1)) & 3 = 2 AND m & ((1::bigint << (p - 1)) - 1) <> 0), 0)::bigint AS resurrecting,
       coalesce(sum(n) FILTER (WHERE (m >> (p - 1)) & 3 = 1), 0)::bigint AS dormant
FROM patterns, generate_series(2, {last_previous} + 1) AS p
WHERE (m >> (p - 1)) & 3 <> 0
GROUP BY p
"""
"""Per period p (position 2..): new (bit p is the person's lowest), returning (bits p and
p - 1), resurrecting (bit p, not p - 1, some lower one) and dormant (bit p - 1, not p).
Each needs bit p or bit p - 1, so only those (pattern, period) pairs are summed: a person
is active in a few of the range's periods, and the sum then reads about a third of the
pairs. A period without any is zero-filled by the runner."""

LIFECYCLE_ROWS = """
WITH active AS (
    SELECT ({person}) COLLATE "C" AS person, width_bucket(e.occurred_at, {starts}) AS p
    FROM {events}
    WHERE e.organization_id = {org} AND {known} AND e.occurred_at < {hi} AND {matcher}
    GROUP BY 1, 2
),
marked AS (
    SELECT p, lag(p) OVER w AS prev, lead(p) OVER w AS next
    FROM active WINDOW w AS (PARTITION BY person ORDER BY p)
)
SELECT p, count(*) FILTER (WHERE prev IS NULL) AS new,
       count(*) FILTER (WHERE prev = p - 1) AS returning,
       count(*) FILTER (WHERE prev < p - 1) AS resurrecting,
       0 AS dormant
FROM marked WHERE p >= 2 GROUP BY p
UNION ALL
SELECT p + 1, 0, 0, 0, count(*)
FROM marked WHERE p BETWEEN 1 AND {last_previous} AND (next IS NULL OR next > p + 1)
GROUP BY p + 1
"""

STICKINESS = """
SELECT n, count(*) AS persons FROM (
    SELECT person, count(*) AS n FROM (
        SELECT ({person}) COLLATE "C" AS person, width_bucket(e.occurred_at, {starts}) AS p
        FROM {events}
        WHERE e.organization_id = {org} AND {known} AND e.occurred_at >= {lo} AND e.occurred_at < {hi} AND {matcher}
        GROUP BY 1, 2
    ) active GROUP BY person
) s GROUP BY n
"""


class ActivityRunner(InsightRunner[Plan, object]):
    """Inputs: organization_id, time_range (RangeSpec), event (EventMatcher), granularity
    (Grain), now (tests)."""

    def plan(self, scope: InsightScope) -> Plan:
        now = self.inputs.get("now") or utcnow()
        cut = query_periods(
            self.inputs["time_range"], self.inputs["granularity"], scope.timezone, now=now, grain_field="query.granularity"
        )
        return Plan(periods=cut, observed=started(cut.starts, now), now=now)


class LifecycleQuery(ActivityRunner):
    kind = "insight_lifecycle"

    async def fetch(self, scope: InsightScope, plan: Plan) -> dict[int, list[int]]:
        if plan.observed == 0:
            return {}
        cut = plan.periods
        previous = shift_periods(cut.starts[0], cut.grain, -1, timezone=cut.range.timezone)
        sql = actors_sql(self.inputs["event"], since=previous, cuts=[*cut.starts[: plan.observed], cut.ends[plan.observed - 1]],
                         timezone=scope.timezone)  # fmt: skip
        matcher = grammar.matcher_condition(sql, self.inputs["event"])  # first: it may add the persons join
        statement = LIFECYCLE if plan.observed + 2 <= MASK_POSITIONS else LIFECYCLE_ROWS
        text = statement.format(
            person=sql.person(), events=sql.events_from(), known=PERSON_KNOWN, matcher=matcher,
            org=sql.param(scope.organization_id, "uuid"),
            starts=sql.param([previous, *cut.starts[: plan.observed]], "timestamptz[]"),
            hi=sql.param(cut.ends[plan.observed - 1], "timestamptz"),
            last_previous=plan.observed,
        )  # fmt: skip
        found: dict[int, list[int]] = {}  # period -> new, returning, resurrecting, dormant (two rows each)
        for row in await fetch(sql, text):
            cell = found.setdefault(row["p"] - 2, [0, 0, 0, 0])
            for i, name in enumerate(("new", "returning", "resurrecting", "dormant")):
                cell[i] += row[name]
        return found

    def calculate(self, scope: InsightScope, plan: Plan, fetched: dict[int, list[int]]) -> Lifecycle:
        rows = []
        for i, start in enumerate(plan.periods.starts):
            if i >= plan.observed:
                rows.append(LifecyclePeriod(start, None, None, None, None))
                continue
            new, returning, resurrecting, dormant = fetched.get(i, [0, 0, 0, 0])
            rows.append(LifecyclePeriod(start, new, returning, resurrecting, -dormant))
        return Lifecycle(range=plan.periods.range, granularity=plan.periods.grain, as_of=plan.now, periods=rows)


class StickinessQuery(ActivityRunner):
    kind = "insight_stickiness"

    async def fetch(self, scope: InsightScope, plan: Plan) -> dict[int, int]:
        if plan.observed == 0:
            return {}
        cut = plan.periods
        sql = actors_sql(self.inputs["event"], since=cut.starts[0], cuts=[*cut.starts[: plan.observed], cut.ends[plan.observed - 1]],
                         timezone=scope.timezone)  # fmt: skip
        matcher = grammar.matcher_condition(sql, self.inputs["event"])  # first: it may add the persons join
        text = STICKINESS.format(
            person=sql.person(), events=sql.events_from(), known=PERSON_KNOWN, matcher=matcher,
            org=sql.param(scope.organization_id, "uuid"),
            starts=sql.param(cut.starts[: plan.observed], "timestamptz[]"),
            lo=sql.param(cut.starts[0], "timestamptz"),
            hi=sql.param(cut.ends[plan.observed - 1], "timestamptz"),
        )  # fmt: skip
        return {row["n"]: row["persons"] for row in await fetch(sql, text)}

    def calculate(self, scope: InsightScope, plan: Plan, fetched: dict[int, int]) -> Stickiness:
        total = len(plan.periods)
        counts = [(n, fetched.get(n, 0)) for n in range(1, total + 1)]
        return Stickiness(
            range=plan.periods.range, granularity=plan.periods.grain, periods=total, persons=sum(fetched.values()),
            counts=counts,
        )  # fmt: skip


async def lifecycle(
    *, viewer: object, organization_id: object, time_range: RangeSpec, event: EventMatcher,
    granularity: Grain = Grain.DAY, now: datetime | None = None,
) -> Lifecycle:  # fmt: skip
    return await LifecycleQuery(
        viewer=viewer, organization_id=organization_id, time_range=time_range, event=event, granularity=granularity,
        now=now,
    ).run()  # fmt: skip


async def stickiness(
    *, viewer: object, organization_id: object, time_range: RangeSpec, event: EventMatcher,
    granularity: Grain = Grain.DAY, now: datetime | None = None,
) -> Stickiness:  # fmt: skip
    return await StickinessQuery(
        viewer=viewer, organization_id=organization_id, time_range=time_range, event=event, granularity=granularity,
        now=now,
    ).run()  # fmt: skip
