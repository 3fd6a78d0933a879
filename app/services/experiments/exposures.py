"""Exposures and the sufficient statistics the worker keeps from them.

Every statistic of an experiment's results is a sum over its exposed persons of each
metric's value per person (and CUPED's pre-exposure value): n, sum, sum of squares, pre sum,
pre sum of squares and cross-product, per metric and variant (`experiment_statistics`).
They are kept incrementally, so results never scan raw events:

- a person's first exposure (from `experimentAssignment` or an `experiment.exposed` event)
  adds them to their variant's n, with the value of each metric over their events already
  processed (events at or after the exposure inside the metric's window; CUPED: in the
  pre-exposure window);
- the worker's experiment consumer adds each later event of a tracked type to the values of
  the exposed persons it belongs to (`apply_events`), and moves the sums by the change of
  each value (x -> x': sum += x' - x, squares += x'^2 - x^2, cross += x'p' - xp);
- a person exposed to a second variant is excluded: taken out of every statistic of their
  first variant, marked conflicted, counted and listed by the results, never counted again.

Both paths take the experiment's advisory lock first, so an exposure and an event of the same
person are never applied by two transactions that cannot see each other: the backfill of a
new exposure reads only events already processed by the worker (their outbox row marked),
and every event not yet processed is applied by the consumer, which sees the exposure.
A person is read like every insight reads them: COALESCE(alias's person, visitor key).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from app.consumers import Batch, Consumer
from app.live_messages import ExperimentStatisticsMessage, LiveMessage
from app.services.claimed_events import CLAIMED_EVENTS
from app.services.experiments.contract import is_tracked
from app.services.experiments.definitions import (
    COLUMNS,
    REVENUE_SIGNS,
    Experiment,
    Metric,
    MetricKind,
    from_row,
    tracked_types,
)
from app.services.insights import grammar
from app.services.insights.grammar import ALL_EVENTS
from app.vocabulary import EXPERIMENT_EXPOSED, experiment_channel

CONFLICT_LIST_MAX = 100


@dataclass(frozen=True, slots=True)
class Exposure:
    person_id: str
    variant: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Recorded:
    new: int  # persons exposed for the first time
    conflicts: int  # persons newly found in a second variant


async def lock_experiment(conn: asyncpg.Connection, experiment_id: uuid.UUID) -> None:
    """Exposures and metric events of one experiment apply one transaction at a time."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('experiment-statistics:' || $1::text))", str(experiment_id))


# -- what a metric adds up -------------------------------------------------------------------


def contribution(sql: grammar.Sql, metric: Metric) -> str:
    """One event's contribution to its person's value (NULL: nothing)."""
    if metric.kind is MetricKind.SUM:
        assert metric.property_name is not None
        return grammar.numeric(f"(e.properties ->> {sql.param(metric.property_name, 'text')})") + "::double precision"
    if metric.kind is MetricKind.REVENUE:
        refunds = [t for t, sign in REVENUE_SIGNS.items() if sign < 0]
        return (f"(CASE WHEN e.currency = {sql.param(metric.currency, 'text')} AND e.amount_minor IS NOT NULL THEN"
                f" (CASE WHEN e.type = ANY({sql.param(refunds, 'text[]')}) THEN -1 ELSE 1 END) * e.amount_minor END)::double precision")  # fmt: skip
    return "1::double precision"


def matches(sql: grammar.Sql, metric: Metric) -> str:
    if metric.kind is MetricKind.REVENUE:
        return f"e.type = ANY({sql.param(sorted(REVENUE_SIGNS), 'text[]')})"
    return grammar.matcher_condition(sql, metric.events)


def windows(sql: grammar.Sql, metric: Metric, exposed_at: str, cuped_days: int | None) -> tuple[str, str]:
    """Conditions on e.occurred_at: inside the metric's window after `exposed_at`, and inside
    CUPED's pre-exposure window (false without CUPED)."""
    start, end = metric.window_seconds
    inside = f"e.occurred_at >= {exposed_at} + make_interval(secs => {sql.param(start, 'float8')})"
    if end is not None:
        inside += f" AND e.occurred_at < {exposed_at} + make_interval(secs => {sql.param(end, 'float8')})"
    if cuped_days is None:
        return inside, "false"
    pre = f"e.occurred_at >= {exposed_at} - make_interval(days => {sql.param(cuped_days, 'int4')}) AND e.occurred_at < {exposed_at}"
    return inside, pre


def combined(metric: Metric, old: float, delta: float) -> float:
    """A person's value after adding `delta` (BINOMIAL kinds: converted once is converted)."""
    if metric.metric_type.value == "binomial":
        return 1.0 if old > 0 or delta > 0 else 0.0
    return old + delta


# -- moving the sums -------------------------------------------------------------------------


@dataclass(slots=True)
class Sums:
    n: int = 0
    sum: float = 0.0
    sum_squares: float = 0.0
    pre_sum: float = 0.0
    pre_sum_squares: float = 0.0
    cross_product: float = 0.0

    def move(self, old: tuple[float, float], new: tuple[float, float]) -> None:
        (x, p), (y, q) = old, new
        self.sum += y - x
        self.sum_squares += y * y - x * x
        self.pre_sum += q - p
        self.pre_sum_squares += q * q - p * p
        self.cross_product += y * q - x * p

    @property
    def changed(self) -> bool:
        return bool(self.n) or any((self.sum, self.sum_squares, self.pre_sum, self.pre_sum_squares, self.cross_product))


_ADD_SUMS = """
UPDATE experiment_statistics s SET n = s.n + d.n, sum = s.sum + d.sum, sum_squares = s.sum_squares + d.sq,
    pre_sum = s.pre_sum + d.ps, pre_sum_squares = s.pre_sum_squares + d.psq, cross_product = s.cross_product + d.cp,
    updated_at = now()
FROM unnest($3::text[], $4::text[], $5::bigint[], $6::float8[], $7::float8[], $8::float8[], $9::float8[], $10::float8[])
    AS d(metric, variant, n, sum, sq, ps, psq, cp)
WHERE s.organization_id = $1 AND s.experiment_id = $2 AND s.metric = d.metric AND s.variant = d.variant
"""


async def add_sums(conn: asyncpg.Connection, experiment: Experiment, sums: dict[tuple[str, str], Sums]) -> None:
    rows = [(m, v, s) for (m, v), s in sorted(sums.items()) if s.changed]
    if not rows:
        return
    await conn.execute(
        _ADD_SUMS, experiment.organization_id, experiment.id, [m for m, _, _ in rows], [v for _, v, _ in rows],
        [s.n for *_, s in rows], [s.sum for *_, s in rows], [s.sum_squares for *_, s in rows],
        [s.pre_sum for *_, s in rows], [s.pre_sum_squares for *_, s in rows], [s.cross_product for *_, s in rows],
    )  # fmt: skip


# Lookups by a list of persons join the list (one index probe each): `= ANY(list)` let the
# planner scan the whole table once per listed person when its statistics were stale.
_VALUES_OF = """
SELECT v.metric, v.person_id, v.value, v.pre_value FROM unnest($4::text[]) AS p(person_id)
JOIN experiment_person_values v ON v.organization_id = $1 AND v.experiment_id = $2 AND v.metric = $3 AND v.person_id = p.person_id
"""
_WRITE_VALUES = """
INSERT INTO experiment_person_values (organization_id, experiment_id, metric, person_id, value, pre_value)
SELECT $1, $2, $3, w.person_id, w.value, w.pre_value FROM unnest($4::text[], $5::float8[], $6::float8[]) AS w(person_id, value, pre_value)
ON CONFLICT (organization_id, experiment_id, metric, person_id)
DO UPDATE SET value = EXCLUDED.value, pre_value = EXCLUDED.pre_value
"""


async def apply_deltas(
    conn: asyncpg.Connection,
    experiment: Experiment,
    metric: Metric,
    deltas: Sequence[tuple[str, str, float, float]],
    sums: dict[tuple[str, str], Sums],
) -> None:
    """Add (person, variant, value delta, pre delta) to the persons' values, and the change of
    each value to its variant's sums."""
    deltas = [d for d in deltas if d[2] or d[3]]
    if not deltas:
        return
    persons = [d[0] for d in deltas]
    rows = await conn.fetch(_VALUES_OF, experiment.organization_id, experiment.id, metric.key, persons)
    old = {r["person_id"]: (r["value"], r["pre_value"]) for r in rows}
    written = []
    for person, variant, dv, dp in deltas:
        before = old.get(person, (0.0, 0.0))
        after = (combined(metric, before[0], dv), combined(metric, before[1], dp))
        if after != before:
            sums[(metric.key, variant)].move(before, after)
            written.append((person, *after))
    if written:
        await conn.execute(_WRITE_VALUES, experiment.organization_id, experiment.id, metric.key,
                           [w[0] for w in written], [w[1] for w in written], [w[2] for w in written])  # fmt: skip


# -- exposures -------------------------------------------------------------------------------

_EXISTING = """
SELECT x.person_id, x.variant, x.conflicted, x.variants FROM unnest($3::text[]) AS p(person_id)
JOIN experiment_exposures x ON x.organization_id = $1 AND x.experiment_id = $2 AND x.person_id = p.person_id
"""
_INSERT_EXPOSURES = """
INSERT INTO experiment_exposures (organization_id, experiment_id, person_id, variant, first_exposed_at, variants)
SELECT $1, $2, x.person_id, x.variant, x.at, ARRAY[x.variant] FROM unnest($3::text[], $4::text[], $5::timestamptz[]) AS x(person_id, variant, at)
"""
_MARK_CONFLICTS = """
UPDATE experiment_exposures x SET conflicted = true, variants = string_to_array(c.variants_text, chr(31))
FROM unnest($3::text[], $4::text[]) AS c(person_id, variants_text)
WHERE x.organization_id = $1 AND x.experiment_id = $2 AND x.person_id = c.person_id
"""


def first_per_person(exposures: Iterable[Exposure]) -> dict[str, list[Exposure]]:
    """A batch's exposures per person, earliest first."""
    per: dict[str, list[Exposure]] = defaultdict(list)
    for e in sorted(exposures, key=lambda e: e.at):
        per[e.person_id].append(e)
    return per


async def record_exposures(conn: asyncpg.Connection, experiment: Experiment, exposures: Sequence[Exposure]) -> Recorded:
    """Record exposures (the caller holds the experiment's lock, in its transaction): new
    persons join their variant's sums with their values so far; a person seen in a second
    variant leaves every sum."""
    valid = {v.key for v in experiment.definition.variants}
    per = first_per_person(e for e in exposures if e.variant in valid)
    if not per:
        return Recorded(0, 0)
    rows = await conn.fetch(_EXISTING, experiment.organization_id, experiment.id, list(per))
    known = {r["person_id"]: r for r in rows}
    new = [seen[0] for person, seen in per.items() if person not in known]
    variants_of: dict[str, list[str]] = {}
    for person, seen in per.items():
        current = list(known[person]["variants"]) if person in known else [seen[0].variant]
        for e in seen:
            if e.variant not in current:
                current.append(e.variant)
        if len(current) > 1:
            variants_of[person] = current
    if new:
        await conn.execute(_INSERT_EXPOSURES, experiment.organization_id, experiment.id, [e.person_id for e in new],
                           [e.variant for e in new], [e.at for e in new])  # fmt: skip
    sums: dict[tuple[str, str], Sums] = defaultdict(Sums)
    await backfill(conn, experiment, new, sums)
    newly_conflicted = [p for p in variants_of if p not in known or not known[p]["conflicted"]]
    first_variant = {p: known[p]["variant"] if p in known else per[p][0].variant for p in newly_conflicted}
    await exclude(conn, experiment, newly_conflicted, first_variant, sums)
    if variants_of:
        await conn.execute(_MARK_CONFLICTS, experiment.organization_id, experiment.id, list(variants_of),
                           [chr(31).join(v) for v in variants_of.values()])  # fmt: skip
    await add_sums(conn, experiment, sums)
    return Recorded(len(new), len(newly_conflicted))


async def backfill(conn: asyncpg.Connection, experiment: Experiment, new: Sequence[Exposure], sums: dict[tuple[str, str], Sums]) -> None:
    """New persons join their variant's n with each metric's value over their events the
    worker has already processed (later ones reach `apply_events`)."""
    if not new:
        return
    for e in new:
        for metric in experiment.definition.metrics:
            sums[(metric.key, e.variant)].n += 1
    org = experiment.organization_id
    aliases = await conn.fetch(
        "SELECT pa.alias FROM unnest($2::text[]) AS p(person_id)"
        " JOIN person_aliases pa ON pa.organization_id = $1 AND pa.person_id = p.person_id", org, [e.person_id for e in new],
    )  # fmt: skip
    keys = [e.person_id for e in new] + [r["alias"] for r in aliases]
    for metric in experiment.definition.metrics:
        sql = grammar.Sql([org, [e.person_id for e in new], [e.variant for e in new], [e.at for e in new], keys])
        person = sql.person()
        value, pre = contribution(sql, metric), contribution(sql, metric)
        inside, before = windows(sql, metric, "p.at", experiment.definition.analysis.cuped_days)
        condition = matches(sql, metric)
        statement = (
            f"SELECT p.person_id, p.variant, COALESCE(sum({value}) FILTER (WHERE {inside}), 0) AS dv,"
            f" COALESCE(sum({pre}) FILTER (WHERE {before}), 0) AS dp"
            f" FROM {sql.events_from()}"
            f" JOIN unnest($2::text[], $3::text[], $4::timestamptz[]) AS p(person_id, variant, at) ON p.person_id = {person}"
            f" JOIN outbox o ON o.organization_id = e.organization_id AND o.event_id = e.event_id AND o.processed_at IS NOT NULL"
            f" WHERE e.organization_id = $1 AND e.visitor_id IN (SELECT unnest($5::text[])) AND {condition}"
            f" GROUP BY p.person_id, p.variant"
        )
        rows = await conn.fetch(statement, *sql.params)
        await apply_deltas(conn, experiment, metric, [(r["person_id"], r["variant"], r["dv"], r["dp"]) for r in rows], sums)


async def exclude(conn: asyncpg.Connection, experiment: Experiment, persons: Sequence[str], variant_of: dict[str, str],
                  sums: dict[tuple[str, str], Sums]) -> None:  # fmt: skip
    """Take persons seen in two variants out of every sum of their first variant."""
    if not persons:
        return
    org = experiment.organization_id
    rows = await conn.fetch(
        "DELETE FROM experiment_person_values v USING unnest($3::text[]) AS p(person_id)"
        " WHERE v.organization_id = $1 AND v.experiment_id = $2 AND v.person_id = p.person_id"
        " RETURNING v.metric, v.person_id, v.value, v.pre_value", org, experiment.id, list(persons),
    )  # fmt: skip
    for person in persons:
        for metric in experiment.definition.metrics:
            sums[(metric.key, variant_of[person])].n -= 1
    for r in rows:
        sums[(r["metric"], variant_of[r["person_id"]])].move((r["value"], r["pre_value"]), (0.0, 0.0))


# -- the worker's side: events of tracked types ----------------------------------------------


# A batch's events of one organization ($1), keys $3 (occurred_at) and $4 (event ids), each
# read by one primary-key probe (see app.services.claimed_events), as `e`.
BATCH_EVENTS = """unnest($3::timestamptz[], $4::text[]) AS k(occurred_at, event_id) CROSS JOIN LATERAL (
    SELECT * FROM events e WHERE e.organization_id = $1 AND e.occurred_at = k.occurred_at AND e.event_id = k.event_id LIMIT 1
) e"""


async def apply_events(conn: asyncpg.Connection, experiment: Experiment, events: Sequence[tuple[datetime, str, str]]) -> int:
    """Add a batch's events (occurred_at, event_id, type; of the experiment's organization) to
    the values of the exposed persons they belong to; returns how many values changed."""
    org = experiment.organization_id
    sums: dict[tuple[str, str], Sums] = defaultdict(Sums)
    changed = 0
    for metric in experiment.definition.metrics:
        types = metric.event_types
        keys = [(at, event_id) for at, event_id, kind in events if kind in types or ALL_EVENTS in types]
        if not keys:
            continue
        sql = grammar.Sql([org, experiment.id, [k[0] for k in keys], [k[1] for k in keys]])
        person = sql.person()
        value, pre = contribution(sql, metric), contribution(sql, metric)
        inside, before = windows(sql, metric, "x.first_exposed_at", experiment.definition.analysis.cuped_days)
        condition = matches(sql, metric)
        statement = (
            f"SELECT x.person_id, x.variant, COALESCE(sum({value}) FILTER (WHERE {inside}), 0) AS dv,"
            f" COALESCE(sum({pre}) FILTER (WHERE {before}), 0) AS dp"
            f" FROM {sql.events_from().replace('events e', BATCH_EVENTS, 1)}"
            f" JOIN experiment_exposures x ON x.organization_id = e.organization_id AND x.experiment_id = $2"
            f"  AND x.person_id = {person} AND NOT x.conflicted"
            f" WHERE {condition}"
            f" GROUP BY x.person_id, x.variant"
        )
        rows = await conn.fetch(statement, *sql.params)
        changed += len(rows)
        await apply_deltas(conn, experiment, metric, [(r["person_id"], r["variant"], r["dv"], r["dp"]) for r in rows], sums)
    await add_sums(conn, experiment, sums)
    return changed


# -- the worker's consumer -------------------------------------------------------------------

_RUNNING = f"SELECT {COLUMNS} FROM experiments WHERE organization_id = ANY($1::uuid[]) AND status = 'running' ORDER BY id"
_EXPOSED = f"""
SELECT e.organization_id, e.occurred_at, {grammar.PERSON} AS person_id,
       e.properties ->> 'experimentKey' AS experiment_key, e.properties ->> 'variant' AS variant
FROM {CLAIMED_EVENTS}
LEFT JOIN person_aliases pa ON pa.organization_id = e.organization_id AND pa.alias = e.visitor_id
WHERE e.visitor_id IS NOT NULL
"""


@dataclass(frozen=True, slots=True)
class Moved:
    """An experiment whose statistics a batch moved."""

    organization_id: uuid.UUID
    experiment_id: uuid.UUID
    exposures: int
    values: int


class ExperimentConsumer(Consumer):
    """Exposures from `experiment.exposed` events, then every event of a running experiment's
    tracked types added to its exposed persons' values, in the batch's transaction."""

    name = "experiments"

    async def apply(self, conn: asyncpg.Connection, rows: list[Mapping[str, Any]], batch: Batch) -> list[Moved]:
        organizations = sorted({r["organization_id"] for r in rows})
        running = [from_row(r) for r in await conn.fetch(_RUNNING, organizations)] if organizations else []
        if not running:
            return []
        exposed = [r for r in rows if r["type"] == EXPERIMENT_EXPOSED]
        exposures = await self._exposures(conn, exposed)
        moved = []
        for experiment in running:
            tracked = frozenset(tracked_types(experiment.definition.metrics))
            events = [(r["occurred_at"], r["event_id"], r["type"]) for r in rows
                      if r["organization_id"] == experiment.organization_id and is_tracked(r["type"], tracked)]  # fmt: skip
            mine = exposures.get((experiment.organization_id, experiment.key), [])
            if not mine and not events:
                continue
            await lock_experiment(conn, experiment.id)
            recorded = await record_exposures(conn, experiment, mine)
            values = await apply_events(conn, experiment, events)
            if recorded.new or recorded.conflicts or values:
                moved.append(Moved(experiment.organization_id, experiment.id, recorded.new, values))
        return moved

    async def _exposures(self, conn: asyncpg.Connection, rows: list[Mapping[str, Any]]) -> dict[tuple[uuid.UUID, str], list[Exposure]]:
        """The batch's exposures by (organization, experiment key)."""
        if not rows:
            return {}
        found = await conn.fetch(_EXPOSED, [r["organization_id"] for r in rows], [r["occurred_at"] for r in rows],
                                 [r["event_id"] for r in rows])  # fmt: skip
        out: dict[tuple[uuid.UUID, str], list[Exposure]] = defaultdict(list)
        for r in found:
            out[(r["organization_id"], r["experiment_key"])].append(Exposure(r["person_id"], r["variant"], r["occurred_at"]))
        return out

    def channels(self, batch: Batch) -> set[str]:
        return {experiment_channel(str(m.experiment_id)) for m in batch.effects.get(self.name) or ()}

    def feed(self, batch: Batch, followed: Collection[str]) -> list[LiveMessage]:
        messages = [ExperimentStatisticsMessage(m.organization_id, m.experiment_id, m.exposures, m.values)
                    for m in batch.effects.get(self.name) or ()]  # fmt: skip
        return [m for m in messages if m.channel in followed]
