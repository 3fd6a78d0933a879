"""Experiments: the statistics calculators, experiments as data, assignment and results
(thin: convert, call, map)."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from app.auth import Access
from app.errors import BadInput
from app.services.experiments import stats
from resolvers.common import guarded
from schema.experiments import (
    ChiSquareTest,
    CupedAdjustment,
    Effect,
    ExperimentAnalysis,
    ExperimentAnalysisInput,
    ExperimentEngine,
    ExperimentMetricType,
    MultipleTestingCorrection,
    SampleSize,
    SampleSizeInput,
    VariantAnalysis,
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
    found = stats.sample_size(
        minimum_detectable_effect=input.minimum_detectable_effect, relative=input.relative, variants=input.variants,
        alpha=input.alpha, power=input.power, baseline_rate=input.baseline_rate, mean=input.mean,
        standard_deviation=input.standard_deviation,
    )  # fmt: skip
    return SampleSize(per_variant=found.per_variant, total=found.total, per_variant_exact=found.per_variant_exact,
                      absolute_effect=found.absolute_effect, effect_size=found.effect_size)  # fmt: skip


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
