"""Experiments: the statistics calculators, experiments as data, assignment and results
(thin: convert, call, map)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncGenerator
from typing import Annotated, Any

import strawberry
from strawberry.types import Info

from app.auth import Access
from app.errors import BadInput, SlowConsumer
from app.eventbus import SubscriberDropped
from app.live_messages import ExperimentStatisticsMessage
from app.services.accounts import audit
from app.services.experiments import assignment, definitions, results, stats
from resolvers.common import app_state, guarded, viewer_of
from resolvers.insight_inputs import to_filters, to_matcher
from resolvers.persons import OrganizationArg
from schema.experiments import (
    AssignmentOutcome,
    ChiSquareTest,
    CupedAdjustment,
    Effect,
    Experiment,
    ExperimentAnalysis,
    ExperimentAnalysisInput,
    ExperimentAssignment,
    ExperimentEngine,
    ExperimentInput,
    ExperimentMetric,
    ExperimentMetricInput,
    ExperimentMetricKind,
    ExperimentMetricResult,
    ExperimentMetricRole,
    ExperimentMetricType,
    ExperimentResults,
    ExperimentStatus,
    ExperimentStatusChange,
    ExperimentSummary,
    ExperimentTargetingInput,
    ExperimentUpdateInput,
    ExperimentVariant,
    ExperimentVariantInput,
    ExperimentVariantSummary,
    MultipleTestingCorrection,
    SampleSize,
    SampleSizeInput,
    VariantAnalysis,
    VariantExposures,
)

# -- mapping ---------------------------------------------------------------------------------


def to_effect(e: stats.Effect | None) -> Effect | None:
    if e is None:
        return None
    return Effect(estimate=e.estimate, ci_low=e.ci_low, ci_high=e.ci_high, standard_error=e.standard_error,
                  p_value=e.p_value, adjusted_p_value=e.adjusted_p_value)  # fmt: skip


def to_variant_analysis(v: stats.VariantResult) -> VariantAnalysis:
    return VariantAnalysis(
        key=v.key, n=v.n, mean=v.mean, variance=v.variance, absolute=to_effect(v.absolute), relative=to_effect(v.relative),
        chance_to_win=v.chance_to_win, risk=list(v.risk) if v.risk is not None else None,
        chi_square=ChiSquareTest(statistic=v.chi_square.statistic, p_value=v.chi_square.p_value) if v.chi_square else None,
        cuped=CupedAdjustment(theta=v.cuped.theta, variance_reduction=v.cuped.variance_reduction,
                              adjusted_mean=v.cuped.adjusted_mean, control_adjusted_mean=v.cuped.control_adjusted_mean)
        if v.cuped else None,
        note=v.note,
    )  # fmt: skip


def to_analysis(a: stats.Analysis) -> ExperimentAnalysis:
    return ExperimentAnalysis(
        engine=ExperimentEngine(a.options.engine.value), metric_type=ExperimentMetricType(a.options.metric_type.value),
        alpha=a.options.alpha, correction=MultipleTestingCorrection(a.options.correction.value),
        srm_p_value=a.srm_p_value, srm_flagged=a.srm_flagged, variants=[to_variant_analysis(v) for v in a.variants],
        winner=a.winner, confidence=a.confidence,
    )  # fmt: skip


def to_options(value: ExperimentAnalysisInput) -> stats.Options:
    return stats.Options(
        engine=stats.Engine(value.engine.value), metric_type=stats.MetricType(value.metric_type.value),
        alpha=value.alpha, sequential_tuning=value.sequential_tuning, cuped=value.cuped,
        correction=stats.Correction(value.correction.value),
        prior=stats.Prior(value.prior.mean, value.prior.variance) if value.prior is not None else None,
    )  # fmt: skip


# -- the calculators -------------------------------------------------------------------------


async def analyze_experiment(
    info: Info, input: Annotated[ExperimentAnalysisInput, strawberry.argument(description="Sums per variant and options.")]
) -> ExperimentAnalysis:
    if len(input.variants) > stats.MAX_VARIANTS:
        raise BadInput(f"at most {stats.MAX_VARIANTS} variants", field="input.variants")
    variants = [
        stats.VariantStats(v.key, v.n, v.sum, v.sum_squares, v.pre_sum, v.pre_sum_squares, v.cross_product)
        for v in input.variants
    ]
    return to_analysis(stats.analyze(variants=variants, options=to_options(input), weights=input.weights))


async def sample_size(
    info: Info, input: Annotated[SampleSizeInput, strawberry.argument(description="Baseline, MDE, alpha, power, variants.")]
) -> SampleSize:
    if (input.minimum_detectable_effect is None) == (input.per_variant is None):
        raise BadInput("give minimumDetectableEffect (for the sample size) or perVariant (for the MDE)",
                       field="input.minimumDetectableEffect")  # fmt: skip
    common = dict(relative=input.relative, variants=input.variants, alpha=input.alpha, power=input.power,
                  baseline_rate=input.baseline_rate, mean=input.mean, standard_deviation=input.standard_deviation)  # fmt: skip
    if input.per_variant is not None:
        found = stats.detectable_effect(per_variant=input.per_variant, **common)
    else:
        assert input.minimum_detectable_effect is not None
        found = stats.sample_size(minimum_detectable_effect=input.minimum_detectable_effect, **common)
    return SampleSize(per_variant=found.per_variant, total=found.total, per_variant_exact=found.per_variant_exact,
                      absolute_effect=found.absolute_effect, effect_size=found.effect_size,
                      minimum_detectable_effect=found.minimum_detectable_effect)  # fmt: skip


# -- experiments as data ---------------------------------------------------------------------


def to_metric(value: ExperimentMetricInput, field: str) -> definitions.Metric:
    return definitions.Metric(
        key=value.key, name=value.name, role=definitions.MetricRole(value.role.value), kind=definitions.MetricKind(value.kind.value),
        matcher=to_matcher(value.event, f"{field}.event") if value.event is not None else None,
        property_name=value.property, currency=value.currency, window_hours=value.window_hours, from_day=value.from_day,
        to_day=value.to_day,
    )  # fmt: skip


def to_targeting(value: ExperimentTargetingInput | None) -> definitions.Targeting:
    if value is None:
        return definitions.Targeting()
    if value.cohort_id is not None and value.filters:
        raise BadInput("target a cohort or person properties, not both", field="targeting.filters")
    if value.cohort_id is not None:
        try:
            return definitions.Targeting(cohort_id=uuid.UUID(str(value.cohort_id)))
        except ValueError:
            raise BadInput("no such cohort in this organization", field="targeting.cohortId") from None
    return definitions.Targeting(filters=tuple(to_filters(value.filters, "targeting.filters")))


def to_variants(values: list[ExperimentVariantInput]) -> tuple[definitions.Variant, ...]:
    if len(values) > stats.MAX_VARIANTS:
        raise BadInput(f"at most {stats.MAX_VARIANTS} variants", field="variants")
    return tuple(definitions.Variant(v.key, v.name, v.weight) for v in values)


def to_metrics(values: list[ExperimentMetricInput] | None) -> tuple[definitions.Metric, ...]:
    if values is not None and len(values) > definitions.MAX_METRICS:
        raise BadInput(f"at most {definitions.MAX_METRICS} metrics", field="metrics")
    return tuple(to_metric(m, f"metrics[{i}]") for i, m in enumerate(values or []))


def to_definition(value: ExperimentInput) -> definitions.Definition:
    return definitions.Definition(
        key=value.key, name=value.name, hypothesis=value.hypothesis, variants=to_variants(value.variants),
        allocation=value.allocation, targeting=to_targeting(value.targeting), metrics=to_metrics(value.metrics),
        analysis=definitions.Analysis(stats.Engine(value.engine.value), stats.Correction(value.correction.value), value.alpha,
                                      value.sequential_tuning, value.cuped_days),
        minimum_detectable_effect=value.minimum_detectable_effect, minimum_sample_size=value.minimum_sample_size,
    )  # fmt: skip


CAMEL = {"minimum_detectable_effect": "minimumDetectableEffect", "minimum_sample_size": "minimumSampleSize",
         "sequential_tuning": "sequentialTuning", "cuped_days": "cupedDays"}  # fmt: skip


def changes_of(value: ExperimentUpdateInput) -> tuple[dict[str, Any], set[str]]:
    """The definition fields the update gives (read and checked), and their input names."""
    given: dict[str, Any] = {}
    for name in ("key", "name", "hypothesis", "allocation", "minimum_detectable_effect", "minimum_sample_size"):
        if getattr(value, name) is not None:
            given[name] = getattr(value, name)
    if value.variants is not None:
        given["variants"] = to_variants(value.variants)
    if value.targeting is not None:
        given["targeting"] = to_targeting(value.targeting)
    if value.metrics is not None:
        given["metrics"] = to_metrics(value.metrics)
    analysis = {"engine": value.engine and stats.Engine(value.engine.value),
                "correction": value.correction and stats.Correction(value.correction.value),
                "alpha": value.alpha, "sequential_tuning": value.sequential_tuning, "cuped_days": value.cuped_days}  # fmt: skip
    analysis = {k: v for k, v in analysis.items() if v is not None}
    if analysis:
        given["analysis"] = analysis
    names = {n for n in given if n != "analysis"} | set(analysis)
    return given, {CAMEL.get(n, n) for n in names}


def updated(current: definitions.Definition, given: dict[str, Any]) -> definitions.Definition:
    fields = {k: v for k, v in given.items() if k != "analysis"}
    if "analysis" in given:
        fields["analysis"] = dataclasses.replace(current.analysis, **given["analysis"])
    return dataclasses.replace(current, **fields)


def to_experiment(e: definitions.Experiment) -> Experiment:
    d = e.definition
    return Experiment(
        id=strawberry.ID(str(e.id)), key=d.key, name=d.name, hypothesis=d.hypothesis, status=ExperimentStatus(e.status.value),
        variants=[ExperimentVariant(key=v.key, name=v.name, weight=v.weight) for v in d.variants], allocation=d.allocation,
        targeting=definitions.stored_targeting(d.targeting),
        metrics=[ExperimentMetric(key=m.key, name=m.name, kind=ExperimentMetricKind(m.kind.value),
                                  role=ExperimentMetricRole(m.role.value), definition=definitions.stored_metric(m))
                 for m in d.metrics],
        engine=ExperimentEngine(d.analysis.engine.value), correction=MultipleTestingCorrection(d.analysis.correction.value),
        alpha=d.analysis.alpha, sequential_tuning=d.analysis.sequential_tuning, cuped_days=d.analysis.cuped_days,
        minimum_detectable_effect=d.minimum_detectable_effect, minimum_sample_size=d.minimum_sample_size,
        started_at=e.started_at, ended_at=e.ended_at, created_by=e.created_by, created_at=e.created_at, updated_at=e.updated_at,
        status_history=[ExperimentStatusChange(from_status=ExperimentStatus(h.from_status.value) if h.from_status else None,
                                               to_status=ExperimentStatus(h.to_status.value), actor=h.actor,
                                               actor_role=h.actor_role, at=h.at) for h in e.history],
    )  # fmt: skip


def to_results(r: results.Results) -> ExperimentResults:
    return ExperimentResults(
        srm_p_value=r.srm_p_value, srm_flagged=r.srm_flagged,
        exposures=[VariantExposures(key=k, n=n) for k, n in r.exposures], conflicts=r.conflicts,
        conflicted_person_ids=list(r.conflicted_persons),
        metrics=[ExperimentMetricResult(key=m.metric.key, name=m.metric.name, kind=ExperimentMetricKind(m.metric.kind.value),
                                        role=ExperimentMetricRole(m.metric.role.value), analysis=to_analysis(m.analysis))
                 for m in r.metrics],
        minimum_sample_size=r.minimum_sample_size, days_running=r.days_running, days_to_minimum_sample=r.days_to_minimum_sample,
        computed_at=r.computed_at, experiment=to_experiment(r.experiment),
    )  # fmt: skip


def to_summary(s: results.Summary) -> ExperimentSummary:
    e = s.experiment
    return ExperimentSummary(
        id=strawberry.ID(str(e.id)), key=e.key, name=e.definition.name, status=ExperimentStatus(e.status.value),
        started_at=e.started_at, winner=s.winner, confidence=s.confidence,
        variants=[ExperimentVariantSummary(key=v.key, name=v.name, weight=v.weight, views=v.views, conversions=v.conversions,
                                           conversion_rate=v.conversion_rate) for v in s.variants],
    )  # fmt: skip


ExperimentIdArg = Annotated[strawberry.ID, strawberry.argument(description="The experiment.")]


async def experiments(
    info: Info, organization_id: OrganizationArg = None,
    status: Annotated[ExperimentStatus | None, strawberry.argument(description="Only experiments in this status.")] = None,
) -> list[ExperimentSummary]:  # fmt: skip
    found = await results.list_summaries(viewer=viewer_of(info), organization_id=organization_id,
                                         status=definitions.Status(status.value) if status else None)  # fmt: skip
    return [to_summary(s) for s in found]


async def experiment(info: Info, id: ExperimentIdArg, organization_id: OrganizationArg = None) -> Experiment:
    org = await definitions.experiment_scope(viewer_of(info), organization_id)
    return to_experiment(await definitions.get_experiment(org=org, experiment_id=id))


async def experiment_results(info: Info, experiment_id: ExperimentIdArg, organization_id: OrganizationArg = None) -> ExperimentResults:
    found = await results.experiment_results(viewer=viewer_of(info), experiment_id=experiment_id, organization_id=organization_id)
    return to_results(found)


async def create_experiment(
    info: Info, input: Annotated[ExperimentInput, strawberry.argument(description="Its definition.")],
    organization_id: OrganizationArg = None,
) -> Experiment:  # fmt: skip
    viewer = viewer_of(info)
    org = await definitions.experiment_scope(viewer, organization_id)  # who may, before what they sent
    created = await definitions.create_experiment(org=org, actor=viewer.subject, definition=to_definition(input))
    return to_experiment(created)


async def update_experiment(
    info: Info, id: ExperimentIdArg, input: Annotated[ExperimentUpdateInput, strawberry.argument(description="What changes.")],
    organization_id: OrganizationArg = None,
) -> Experiment:  # fmt: skip
    org = await definitions.experiment_scope(viewer_of(info), organization_id)
    given, changed = changes_of(input)
    found = await definitions.update_experiment(org=org, experiment_id=id, definition_of=lambda d: updated(d, given), changed=changed)
    return to_experiment(found)


async def set_experiment_status(
    info: Info, id: ExperimentIdArg, status: Annotated[ExperimentStatus, strawberry.argument(description="The new status.")],
    organization_id: OrganizationArg = None,
) -> Experiment:  # fmt: skip
    viewer = viewer_of(info)
    org = await definitions.experiment_scope(viewer, organization_id)
    found = await definitions.set_status(org=org, experiment_id=id, status=definitions.Status(status.value), viewer=viewer)
    return to_experiment(found)


async def delete_experiment(info: Info, id: ExperimentIdArg, organization_id: OrganizationArg = None) -> strawberry.ID:
    org = await definitions.experiment_scope(viewer_of(info), organization_id)
    return strawberry.ID(str(await definitions.delete_experiment(org=org, experiment_id=id)))


async def experiment_assignment(
    info: Info,
    experiment_key: Annotated[str, strawberry.argument(description="The experiment's key.")],
    person_id: Annotated[str, strawberry.argument(description="The person (u:<userId>, a:<anonymousId>).")],
    organization_id: OrganizationArg = None,
) -> ExperimentAssignment:
    org = await definitions.experiment_scope(viewer_of(info), organization_id)
    found = await assignment.assign(org=org, experiment_key=experiment_key, person_id=person_id)
    return ExperimentAssignment(experiment_key=found.experiment_key, person_id=found.person_id, variant=found.variant,
                                outcome=AssignmentOutcome(found.outcome.value), first_exposure=found.first_exposure)  # fmt: skip


async def experiment_results_live(
    info: Info, experiment_id: ExperimentIdArg, organization_id: OrganizationArg = None
) -> AsyncGenerator[ExperimentResults, None]:
    """The results now, then again after the worker moves them: at most once a second. It
    follows the channel before the first read, so no change falls between the two."""
    viewer = viewer_of(info)
    channel = ExperimentStatisticsMessage.channel_of(str(definitions.parse_id(experiment_id, "experimentId")))
    async with app_state(info).bus.subscribe(channel) as subscription:
        yield to_results(await results.experiment_results(viewer=viewer, experiment_id=experiment_id, organization_id=organization_id))
        try:
            async for _ in results.throttled(subscription, results.LIVE_INTERVAL_SECONDS):
                found = await results.experiment_results(viewer=viewer, experiment_id=experiment_id, organization_id=organization_id)
                yield to_results(found)
        except SubscriberDropped as exc:
            raise SlowConsumer(f"{exc}; subscribe again to continue") from exc


# -- the domain's fields ---------------------------------------------------------------------


@strawberry.type
class Query:
    """The experiments domain's reads, merged into the root by schema.root."""

    analyze_experiment: ExperimentAnalysis = guarded(
        Access.ANYONE, analyze_experiment,
        "Run the experiment statistics engine on sufficient statistics you give (no data is read): the same"
        " function experimentResults uses, so anyone can check its numbers.",
    )  # fmt: skip
    sample_size: SampleSize = guarded(
        Access.ANYONE, sample_size, "Persons needed per variant to detect a minimum effect (two-sided z-test power)."
    )
    experiments: list[ExperimentSummary] = guarded(
        Access.ORG_READERS, experiments,
        "An organization's experiments, newest first: per variant views, conversions and rate of the primary metric,"
        " with its winner and confidence.",
    )  # fmt: skip
    experiment: Experiment = guarded(Access.ORG_READERS, experiment, "One experiment with its status history.")
    experiment_results: ExperimentResults = guarded(
        Access.ORG_READERS, experiment_results,
        "An experiment's results from the worker's sufficient statistics: sample ratio check first, every metric"
        " against control with the experiment's engine, p-values adjusted over variants x metrics.",
    )  # fmt: skip


@strawberry.type
class Mutation:
    """The experiments domain's writes, merged into the root by schema.root."""

    create_experiment: Experiment = guarded(Access.ORG_ADMINS, create_experiment, "Create a DRAFT experiment.", audited=audit.EXPERIMENT_CREATED)
    update_experiment: Experiment = guarded(
        Access.ORG_ADMINS, update_experiment,
        "Change an experiment; variants, metrics and targeting only while DRAFT (after it ends: name and hypothesis).", audited=audit.EXPERIMENT_UPDATED,
    )  # fmt: skip
    set_experiment_status: Experiment = guarded(
        Access.ORG_ADMINS, set_experiment_status,
        "Start (needs a primary metric), stop or complete an experiment; each change is audited.", audited=audit.EXPERIMENT_STATUS_CHANGED,
    )  # fmt: skip
    delete_experiment: strawberry.ID = guarded(
        Access.ORG_ADMINS, delete_experiment, "Delete an experiment with its exposures and statistics; returns its id.", audited=audit.EXPERIMENT_DELETED
    )
    experiment_assignment: ExperimentAssignment = guarded(
        Access.ORG_ADMINS, experiment_assignment,
        "A person's variant in a RUNNING experiment (the same in every process), recording their exposure once;"
        " null outside its allocation or targeting.",
    )  # fmt: skip


@strawberry.type
class Subscription:
    """The experiments domain's live results, merged into the root by schema.root."""

    experiment_results: ExperimentResults = guarded(
        Access.ORG_READERS, experiment_results_live,
        "An experiment's results now, then after each change the worker makes (at most once a second).", subscription=True,
    )  # fmt: skip
