"""An experiment's results: the statistics engine run on the sums the worker keeps.

`ExperimentResultsRunner` (scope -> validate -> plan -> fetch -> calculate) reads one row per
metric and variant (`experiment_statistics`), never raw events, and answers with, in this
order: the sample ratio check (chi-square against the weights; flagged below p = 0.001, when
no effect should be trusted), the persons exposed to two variants (counted, listed, excluded),
then every metric against control with the experiment's engine, its p-values adjusted over
every variant x metric (Holm or Benjamini-Hochberg), and the days left to the minimum sample
size at the exposure rate so far. Not cached: its reads are a few rows, and the live
subscription must see each change at once.

`list_summaries` is the seed's `/metrics/experiments` shape: per variant views (exposed
persons), conversions and rate of the primary metric, with the winner and its confidence.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from app.auth import Viewer
from app.database import connection
from app.errors import BadInput
from app.runners import QueryRunner
from app.services.experiments import stats
from app.services.experiments.definitions import (
    Experiment,
    Metric,
    Status,
    experiment_scope,
    get_experiment,
    list_experiments,
)
from app.services.experiments.exposures import CONFLICT_LIST_MAX

LIVE_INTERVAL_SECONDS = 1.0  # at most one push a second per subscription

_STATISTICS = """
SELECT experiment_id, metric, variant, n, sum, sum_squares, pre_sum, pre_sum_squares, cross_product
FROM experiment_statistics WHERE organization_id = $1 AND experiment_id = ANY($2::uuid[])
"""
_CONFLICTS = """
SELECT count(*) OVER () AS total, person_id FROM experiment_exposures
WHERE organization_id = $1 AND experiment_id = $2 AND conflicted ORDER BY person_id LIMIT $3
"""

Rows = dict[tuple[str, str], asyncpg.Record]  # (metric, variant) -> sums


@dataclass(frozen=True, slots=True)
class MetricResult:
    metric: Metric
    analysis: stats.Analysis


@dataclass(frozen=True, slots=True)
class Results:
    experiment: Experiment
    exposures: tuple[tuple[str, int], ...]  # per variant, in order
    srm_p_value: float
    srm_flagged: bool
    conflicts: int
    conflicted_persons: tuple[str, ...]  # the first CONFLICT_LIST_MAX, by id
    metrics: tuple[MetricResult, ...]
    minimum_sample_size: int | None  # in all; given, or from the MDE on control's baseline
    days_running: float | None
    days_to_minimum_sample: float | None
    computed_at: datetime


@dataclass(frozen=True, slots=True)
class ResultsScope:
    organization_id: uuid.UUID
    experiment: Experiment


def variant_stats(experiment: Experiment, metric: Metric, rows: Rows) -> list[stats.VariantStats]:
    """The metric's sums per variant, in the experiment's order (zeros before anyone came)."""
    cuped = experiment.definition.analysis.cuped_days is not None
    out = []
    for v in experiment.definition.variants:
        r = rows.get((metric.key, v.key))
        n, total, squares = (r["n"], r["sum"], r["sum_squares"]) if r else (0, 0.0, 0.0)
        if metric.metric_type is stats.MetricType.BINOMIAL:
            squares = total  # 0/1 values: the same sum, exactly
        elif n:
            squares = max(squares, total * total / n)  # sums moved one value at a time may round below it
        out.append(stats.VariantStats(v.key, n, total, squares, *pre_sums(r, cuped=cuped)))
    return out


def pre_sums(row: asyncpg.Record | None, *, cuped: bool) -> tuple[float | None, float | None, float | None]:
    """CUPED's pre-period sum, sum of squares and cross-product (None without CUPED)."""
    if not cuped:
        return None, None, None
    return (row["pre_sum"], row["pre_sum_squares"], row["cross_product"]) if row else (0.0, 0.0, 0.0)


def options_for(experiment: Experiment, metric: Metric) -> stats.Options:
    a = experiment.definition.analysis
    return stats.Options(engine=a.engine, metric_type=metric.metric_type, alpha=a.alpha, sequential_tuning=a.sequential_tuning,
                         cuped=a.cuped_days is not None, correction=stats.Correction.NONE)  # fmt: skip


def analyses(experiment: Experiment, rows: Rows, metrics: tuple[Metric, ...], correction: stats.Correction) -> list[stats.Analysis]:
    """Each metric's analysis; p-values adjusted over every variant x metric."""
    weights = [v.weight for v in experiment.definition.variants]
    each = [stats.analyze(variants=variant_stats(experiment, m, rows), options=options_for(experiment, m), weights=weights)
            for m in metrics]  # fmt: skip
    return stats.corrected(each, correction)


def minimum_sample(experiment: Experiment, rows: Rows) -> int | None:
    """The minimum sample size in all: as given, else from the MDE (relative) on the primary
    metric's control baseline, once control has one."""
    d = experiment.definition
    if d.minimum_sample_size is not None:
        return d.minimum_sample_size
    primary = experiment.primary
    if d.minimum_detectable_effect is None or primary is None:
        return None
    control = variant_stats(experiment, primary, rows)[0]
    if control.n < 2:
        return None
    arm = stats.arm_of(control, primary.metric_type)
    try:
        if primary.metric_type is stats.MetricType.BINOMIAL:
            found = stats.sample_size(baseline_rate=arm.mean, minimum_detectable_effect=d.minimum_detectable_effect,
                                      relative=True, variants=len(d.variants), alpha=d.analysis.alpha)  # fmt: skip
        else:
            found = stats.sample_size(mean=arm.mean, standard_deviation=arm.variance**0.5, relative=True,
                                      minimum_detectable_effect=d.minimum_detectable_effect, variants=len(d.variants),
                                      alpha=d.analysis.alpha)  # fmt: skip
    except BadInput:
        return None  # a baseline of 0 or 1 (or no variance) says nothing yet
    return found.total


def days_running(experiment: Experiment, now: datetime) -> float | None:
    if experiment.started_at is None:
        return None
    end = experiment.ended_at or now
    return max((end - experiment.started_at).total_seconds() / 86400.0, 0.0)


class ExperimentResultsRunner(QueryRunner[ResultsScope, None, Results]):
    kind = "experiment_results"
    cacheable = False

    async def scope(self) -> ResultsScope:
        org = await experiment_scope(self.viewer, self.inputs.get("organization_id"))
        return ResultsScope(org, await get_experiment(org=org, experiment_id=self.inputs["experiment_id"], field="experimentId"))

    async def fetch(self, scope: ResultsScope, plan: None) -> tuple[Rows, list[asyncpg.Record]]:
        async with connection() as conn:
            rows = await conn.fetch(_STATISTICS, scope.organization_id, [scope.experiment.id])
            conflicts = await conn.fetch(_CONFLICTS, scope.organization_id, scope.experiment.id, CONFLICT_LIST_MAX)
        return {(r["metric"], r["variant"]): r for r in rows}, conflicts

    def calculate(self, scope: ResultsScope, plan: None, fetched: tuple[Rows, list[asyncpg.Record]]) -> Results:
        rows, conflicts = fetched
        experiment = scope.experiment
        d = experiment.definition
        now = datetime.now(UTC)
        first = d.metrics[0].key if d.metrics else None
        exposures = tuple((v.key, rows[(first, v.key)]["n"] if (first, v.key) in rows else 0) for v in d.variants)
        srm = stats.srm_p_value([n for _, n in exposures], [v.weight for v in d.variants])
        found = analyses(experiment, rows, d.metrics, d.analysis.correction)
        minimum = minimum_sample(experiment, rows)
        running = days_running(experiment, now)
        exposed = sum(n for _, n in exposures)
        remaining = (stats.days_to_reach(minimum=minimum, exposed=exposed, days_running=running)
                     if minimum is not None and running is not None else None)  # fmt: skip
        return Results(
            experiment, exposures, srm, srm < stats.SRM_THRESHOLD, conflicts[0]["total"] if conflicts else 0,
            tuple(r["person_id"] for r in conflicts), tuple(MetricResult(m, a) for m, a in zip(d.metrics, found, strict=True)),
            minimum, running, remaining, now,
        )  # fmt: skip


async def experiment_results(*, viewer: Viewer, experiment_id: Any, organization_id: Any = None) -> Results:
    return await ExperimentResultsRunner(viewer=viewer, experiment_id=experiment_id, organization_id=organization_id).run()


# -- the seed's list --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VariantSummary:
    key: str
    name: str
    weight: float
    views: int
    conversions: float | None  # the primary metric's sum (conversions for a BINOMIAL metric)
    conversion_rate: float | None  # its mean per exposed person


@dataclass(frozen=True, slots=True)
class Summary:
    experiment: Experiment
    variants: tuple[VariantSummary, ...]
    winner: str | None
    confidence: float | None


def summary(experiment: Experiment, rows: Rows) -> Summary:
    primary = experiment.primary
    d = experiment.definition
    if primary is None:
        return Summary(experiment, tuple(VariantSummary(v.key, v.name, v.weight, 0, None, None) for v in d.variants), None, None)
    per = variant_stats(experiment, primary, rows)
    analysis = analyses(experiment, rows, (primary,), d.analysis.correction)[0]
    variants = tuple(VariantSummary(v.key, v.name, v.weight, s.n, s.sum, s.sum / s.n if s.n else None)
                     for v, s in zip(d.variants, per, strict=True))  # fmt: skip
    return Summary(experiment, variants, analysis.winner, analysis.confidence)


async def list_summaries(*, viewer: Viewer, organization_id: Any = None, status: Status | None = None) -> list[Summary]:
    org = await experiment_scope(viewer, organization_id)
    experiments = await list_experiments(org=org, status=status)
    async with connection() as conn:
        found = await conn.fetch(_STATISTICS, org, [e.id for e in experiments])
    rows: dict[uuid.UUID, Rows] = defaultdict(dict)
    for r in found:
        rows[r["experiment_id"]][(r["metric"], r["variant"])] = r
    return [summary(e, rows[e.id]) for e in experiments]


# -- live ------------------------------------------------------------------------------------


async def throttled(subscription: AsyncIterable[Any], interval: float) -> AsyncIterator[None]:
    """A tick after messages arrive, at most one per `interval`: messages during the pause are
    folded into the next tick (never lost: a change always has a tick after it). A dropped
    subscription's error is raised."""
    changed = asyncio.Event()

    async def read() -> None:
        async for _ in subscription:
            changed.set()

    reader = asyncio.create_task(read())
    try:
        while True:
            waiting = asyncio.create_task(changed.wait())
            await asyncio.wait({waiting, reader}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                waiting.cancel()
                reader.result()  # raises what ended the subscription
                return
            changed.clear()
            yield
            await asyncio.sleep(interval)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
