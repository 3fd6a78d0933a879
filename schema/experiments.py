"""Experiments: the statistics calculators' inputs and answers (the contract third parties
verify against), and experiments as data, their assignment and results."""

from __future__ import annotations

from enum import Enum

import strawberry


@strawberry.enum(description="Which statistics answer: fixed-horizon, Bayesian, or always-valid sequential.")
class ExperimentEngine(Enum):
    FREQUENTIST = strawberry.enum_value(
        "frequentist", description="Welch's t-test (MEAN) or the two-proportion z-test and chi-square (BINOMIAL)."
    )
    BAYESIAN = strawberry.enum_value(
        "bayesian", description="Normal posterior of the effect: credible interval, chance to beat control, risk."
    )
    SEQUENTIAL = strawberry.enum_value(
        "sequential", description="Always-valid confidence sequences (tuning: sequentialTuning, N*): safe to watch daily."
    )


@strawberry.enum(description="What kind of number a metric is per person.")
class ExperimentMetricType(Enum):
    BINOMIAL = strawberry.enum_value("binomial", description="Converted or not (0/1): sum = sumSquares = conversions.")
    MEAN = strawberry.enum_value("mean", description="Any number per person (count, sum, revenue): its mean.")


@strawberry.enum(description="Multiple-testing correction over a family of comparisons.")
class MultipleTestingCorrection(Enum):
    NONE = strawberry.enum_value("none", description="Raw p-values only (adjustedPValue equals pValue).")
    HOLM = strawberry.enum_value("holm", description="Holm's step-down (family-wise error rate).")
    BENJAMINI_HOCHBERG = strawberry.enum_value("benjamini_hochberg", description="Benjamini-Hochberg (false discovery rate).")


@strawberry.input(description="One variant's sufficient statistics of one metric, per exposed person.")
class VariantStatisticsInput:
    key: str = strawberry.field(description="The variant's key (the first variant given is control).")
    n: int = strawberry.field(description="Exposed persons.")
    sum: float = strawberry.field(description="Sum of the metric (BINOMIAL: conversions).")
    sum_squares: float = strawberry.field(description="Sum of the metric's squares (BINOMIAL: conversions again).")
    pre_sum: float | None = strawberry.field(default=None, description="CUPED: sum of the pre-exposure metric.")
    pre_sum_squares: float | None = strawberry.field(default=None, description="CUPED: sum of its squares.")
    cross_product: float | None = strawberry.field(
        default=None, description="CUPED: sum over persons of metric x pre-exposure metric."
    )


@strawberry.input(description="A normal prior on the relative effect (BAYESIAN only; flat when omitted).")
class EffectPriorInput:
    mean: float = strawberry.field(description="Prior mean of the relative effect (0.1 = +10%).")
    variance: float = strawberry.field(description="Prior variance (positive).")


@strawberry.input(description="Sufficient statistics and options: the engine experimentResults runs, on numbers you give.")
class ExperimentAnalysisInput:
    variants: list[VariantStatisticsInput] = strawberry.field(description="2 to 20 variants, control first.")
    engine: ExperimentEngine = strawberry.field(default=ExperimentEngine.FREQUENTIST, description="Which statistics.")
    metric_type: ExperimentMetricType = strawberry.field(default=ExperimentMetricType.MEAN, description="The metric's kind.")
    alpha: float = strawberry.field(default=0.05, description="Significance level (credible level 1 - alpha).")
    sequential_tuning: float = strawberry.field(
        default=5000.0, description="SEQUENTIAL: N*, the total sample size where the confidence sequence is tightest."
    )
    cuped: bool = strawberry.field(default=False, description="Adjust by each variant's pre-exposure sums (CUPED).")
    correction: MultipleTestingCorrection = strawberry.field(
        default=MultipleTestingCorrection.NONE, description="Correction over the treatments' p-values."
    )
    weights: list[float] | None = strawberry.field(
        default=None, description="Planned traffic weights per variant, for the sample ratio check (equal when omitted)."
    )
    prior: EffectPriorInput | None = strawberry.field(default=None, description="BAYESIAN: a prior on the relative effect.")


@strawberry.type(description="An effect against control: estimate, interval and test.")
class Effect:
    estimate: float = strawberry.field(description="Absolute: treatment - control; relative: that over control's mean.")
    ci_low: float = strawberry.field(description="Lower bound (confidence / credible / always-valid per the engine).")
    ci_high: float = strawberry.field(description="Upper bound.")
    standard_error: float = strawberry.field(description="Its standard error (BAYESIAN: posterior standard deviation).")
    p_value: float | None = strawberry.field(description="Two-sided p-value (SEQUENTIAL: always-valid; BAYESIAN: null).")
    adjusted_p_value: float | None = strawberry.field(description="The p-value after the multiple-testing correction.")


@strawberry.type(description="Pearson's chi-square test of the 2 x 2 table converted / not (no continuity correction).")
class ChiSquareTest:
    statistic: float = strawberry.field(description="The chi-square statistic (1 degree of freedom).")
    p_value: float = strawberry.field(description="Its p-value.")


@strawberry.type(description="CUPED's adjustment of one comparison.")
class CupedAdjustment:
    theta: float = strawberry.field(description="cov(metric, pre) / var(pre) over control and this variant pooled.")
    variance_reduction: float = strawberry.field(description="1 - adjusted / unadjusted variance of the absolute effect.")
    adjusted_mean: float = strawberry.field(description="This variant's mean - theta x its pre-exposure mean.")
    control_adjusted_mean: float = strawberry.field(description="Control's adjusted mean with the same theta.")


@strawberry.type(description="One variant's numbers and (for treatments) its comparison with control.")
class VariantAnalysis:
    key: str = strawberry.field(description="The variant's key.")
    n: int = strawberry.field(description="Exposed persons.")
    mean: float = strawberry.field(description="The metric's mean per person (BINOMIAL: the conversion rate).")
    variance: float = strawberry.field(description="Its variance per person (BINOMIAL: p(1 - p)).")
    absolute: Effect | None = strawberry.field(description="Absolute effect against control (control: null).")
    relative: Effect | None = strawberry.field(
        description="Relative effect, delta-method standard error (null for control, or when control's mean is 0)."
    )
    chance_to_win: float | None = strawberry.field(description="BAYESIAN: probability the relative effect is positive.")
    risk: list[float] | None = strawberry.field(
        description="BAYESIAN: expected loss (relative) of [choosing control, choosing this variant]."
    )
    chi_square: ChiSquareTest | None = strawberry.field(description="FREQUENTIST, BINOMIAL: the chi-square test.")
    cuped: CupedAdjustment | None = strawberry.field(description="With cuped: theta and the variance reduction.")
    note: str | None = strawberry.field(description="Why an effect is missing (too few persons, no variance).")


@strawberry.type(description="The engine's answer: sample ratio check first, then every variant against control.")
class ExperimentAnalysis:
    engine: ExperimentEngine = strawberry.field(description="The engine used.")
    metric_type: ExperimentMetricType = strawberry.field(description="The metric's kind.")
    alpha: float = strawberry.field(description="Significance level.")
    correction: MultipleTestingCorrection = strawberry.field(description="The correction applied.")
    srm_p_value: float = strawberry.field(description="Chi-square goodness of fit of the exposures against the weights.")
    srm_flagged: bool = strawberry.field(description="True below p = 0.001: assignment is broken, do not trust effects.")
    variants: list[VariantAnalysis] = strawberry.field(description="Control first, as given.")
    winner: str | None = strawberry.field(
        description="The significantly best variant (control when every treatment is significantly worse), else null."
    )
    confidence: float | None = strawberry.field(
        description="1 - the winner's (adjusted) p-value; BAYESIAN: its chance to win."
    )


@strawberry.input(description="What a sample size is for: the metric's baseline, the effect to detect, the test.")
class SampleSizeInput:
    minimum_detectable_effect: float = strawberry.field(description="The effect to detect (0.1 with relative = +10%).")
    baseline_rate: float | None = strawberry.field(default=None, description="A conversion's baseline rate (0..1).")
    mean: float | None = strawberry.field(default=None, description="A mean metric's baseline mean (instead of baselineRate).")
    standard_deviation: float | None = strawberry.field(default=None, description="A mean metric's standard deviation per person.")
    relative: bool = strawberry.field(default=True, description="The MDE is relative to the baseline (else absolute).")
    alpha: float = strawberry.field(default=0.05, description="Significance level (two-sided).")
    power: float = strawberry.field(default=0.8, description="Probability of detecting the MDE.")
    variants: int = strawberry.field(default=2, description="Variants, control included (2..20).")


@strawberry.type(description="Persons needed: per variant and in all.")
class SampleSize:
    per_variant: int = strawberry.field(description="Persons per variant (rounded up).")
    total: int = strawberry.field(description="perVariant x variants.")
    per_variant_exact: float = strawberry.field(description="The unrounded solution.")
    absolute_effect: float = strawberry.field(description="The MDE in the metric's units.")
    effect_size: float = strawberry.field(description="The MDE over the metric's standard deviation (Cohen's d).")
