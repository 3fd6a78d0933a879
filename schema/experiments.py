"""Experiments: the statistics calculators' inputs and answers (the contract third parties
verify against), and experiments as data, their assignment and results."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry
from strawberry.scalars import JSON

from schema.insights import EventMatcherInput, PropertyFilterInput


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


@strawberry.input(
    description="What a sample size is for: the metric's baseline, the test, and the effect to detect (or the sample"
    " per variant, to get the minimum detectable effect)."
)
class SampleSizeInput:
    minimum_detectable_effect: float | None = strawberry.field(
        default=None, description="The effect to detect (0.1 with relative = +10%); omit when giving perVariant."
    )
    per_variant: int | None = strawberry.field(
        default=None, description="Persons per variant you have: answers the minimum detectable effect instead."
    )
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
    minimum_detectable_effect: float = strawberry.field(
        description="The MDE (relative or absolute, as asked): the one given, or the one perVariant persons detect."
    )


# -- experiments as data ---------------------------------------------------------------------


@strawberry.enum(description="An experiment's life: DRAFT -> RUNNING -> STOPPED or COMPLETED (STOPPED -> COMPLETED).")
class ExperimentStatus(Enum):
    DRAFT = strawberry.enum_value("draft", description="Being defined: everything may change; nobody is assigned.")
    RUNNING = strawberry.enum_value("running", description="Assigning and counting; variants, metrics and targeting are fixed.")
    STOPPED = strawberry.enum_value("stopped", description="Ended early: no more assignments or counting.")
    COMPLETED = strawberry.enum_value("completed", description="Ended with a decision: no more assignments or counting.")


@strawberry.enum(description="What a metric counts per exposed person, from their first exposure.")
class ExperimentMetricKind(Enum):
    CONVERSION = strawberry.enum_value("conversion", description="Did a matching event happen (within windowHours).")
    COUNT = strawberry.enum_value("count", description="How many matching events (within windowHours).")
    SUM = strawberry.enum_value("sum", description="Sum of a numeric event property over matching events.")
    REVENUE = strawberry.enum_value(
        "revenue", description="Ledger money in one currency (minor units): paid orders, bookings, gifts, subscriptions, less refunds."
    )
    RETENTION = strawberry.enum_value("retention", description="Did a matching event (default any) happen from day fromDay to toDay.")


@strawberry.enum(description="What a metric is for in the decision.")
class ExperimentMetricRole(Enum):
    PRIMARY = strawberry.enum_value("primary", description="The one metric the experiment is decided on (needed to start).")
    SECONDARY = strawberry.enum_value("secondary", description="Also reported.")
    GUARDRAIL = strawberry.enum_value("guardrail", description="Must not get worse.")


@strawberry.enum(description="Why an assignment gave a variant or none.")
class AssignmentOutcome(Enum):
    ASSIGNED = strawberry.enum_value("assigned", description="In the experiment: the variant, exposure recorded.")
    NOT_ALLOCATED = strawberry.enum_value("not_allocated", description="Outside the traffic allocation.")
    NOT_TARGETED = strawberry.enum_value("not_targeted", description="Not in the targeted cohort or properties.")


@strawberry.input(description="A variant: its key (what SDKs report), name and traffic weight.")
class ExperimentVariantInput:
    key: str = strawberry.field(description="Its key (letters, digits, _ . : -).")
    name: str = strawberry.field(description="Its name.")
    weight: float = strawberry.field(default=1.0, description="Relative traffic weight (0 or more; all sum to > 0).")


@strawberry.input(description="A metric: an insight definition per exposed person (the kind says which fields it takes).")
class ExperimentMetricInput:
    key: str = strawberry.field(description="Its key in the experiment.")
    name: str = strawberry.field(description="Its name.")
    kind: ExperimentMetricKind = strawberry.field(description="What it counts.")
    role: ExperimentMetricRole = strawberry.field(default=ExperimentMetricRole.SECONDARY, description="Its role.")
    event: EventMatcherInput | None = strawberry.field(default=None, description="CONVERSION, COUNT, SUM, RETENTION: the events.")
    property: str | None = strawberry.field(default=None, description="SUM: the numeric event property.")
    currency: str | None = strawberry.field(default=None, description="REVENUE: the ISO 4217 currency.")
    window_hours: float | None = strawberry.field(
        default=None, description="CONVERSION, COUNT, SUM, REVENUE: hours after first exposure (none: no end)."
    )
    from_day: int | None = strawberry.field(default=None, description="RETENTION: from this day after exposure.")
    to_day: int | None = strawberry.field(default=None, description="RETENTION: until this day (exclusive).")


@strawberry.input(description="Who may be assigned: a cohort's members, or persons whose properties meet every filter.")
class ExperimentTargetingInput:
    cohort_id: strawberry.ID | None = strawberry.field(default=None, description="Members of this cohort.")
    filters: list[PropertyFilterInput] | None = strawberry.field(default=None, description="Person property filters (source PERSON).")


@strawberry.input(description="An experiment's definition.")
class ExperimentInput:
    key: str = strawberry.field(description="Unique in the organization; the assignment hash's seed.")
    name: str = strawberry.field(description="Its name.")
    variants: list[ExperimentVariantInput] = strawberry.field(description="2 to 20 variants, control first.")
    hypothesis: str = strawberry.field(default="", description="What it should show.")
    allocation: float = strawberry.field(default=1.0, description="Share of targeted persons in it (0 exclusive..1).")
    targeting: ExperimentTargetingInput | None = strawberry.field(default=None, description="Who may be assigned (everyone when omitted).")
    metrics: list[ExperimentMetricInput] | None = strawberry.field(default=None, description="One PRIMARY, any others.")
    engine: ExperimentEngine = strawberry.field(default=ExperimentEngine.FREQUENTIST, description="How results are read.")
    correction: MultipleTestingCorrection = strawberry.field(
        default=MultipleTestingCorrection.HOLM, description="Correction over every variant x metric."
    )
    alpha: float = strawberry.field(default=0.05, description="Significance level.")
    sequential_tuning: float = strawberry.field(default=5000.0, description="SEQUENTIAL: N*.")
    cuped_days: int | None = strawberry.field(default=None, description="CUPED's pre-exposure window in days (none: no CUPED).")
    minimum_detectable_effect: float | None = strawberry.field(default=None, description="Relative MDE of the primary metric.")
    minimum_sample_size: int | None = strawberry.field(default=None, description="Persons in all before deciding.")


@strawberry.input(description="Changes to an experiment: omitted fields keep their value.")
class ExperimentUpdateInput:
    key: str | None = strawberry.field(default=None, description="A new key (DRAFT only).")
    name: str | None = strawberry.field(default=None, description="A new name.")
    hypothesis: str | None = strawberry.field(default=None, description="A new hypothesis.")
    variants: list[ExperimentVariantInput] | None = strawberry.field(default=None, description="New variants (DRAFT only).")
    allocation: float | None = strawberry.field(default=None, description="A new allocation (raising it moves nobody).")
    targeting: ExperimentTargetingInput | None = strawberry.field(default=None, description="New targeting (DRAFT only).")
    metrics: list[ExperimentMetricInput] | None = strawberry.field(default=None, description="New metrics (DRAFT only).")
    engine: ExperimentEngine | None = strawberry.field(default=None, description="A new engine.")
    correction: MultipleTestingCorrection | None = strawberry.field(default=None, description="A new correction.")
    alpha: float | None = strawberry.field(default=None, description="A new alpha.")
    sequential_tuning: float | None = strawberry.field(default=None, description="A new N*.")
    cuped_days: int | None = strawberry.field(default=None, description="A new CUPED window (DRAFT only).")
    minimum_detectable_effect: float | None = strawberry.field(default=None, description="A new MDE.")
    minimum_sample_size: int | None = strawberry.field(default=None, description="A new minimum sample size.")


@strawberry.type(description="A variant of an experiment.")
class ExperimentVariant:
    key: str = strawberry.field(description="Its key.")
    name: str = strawberry.field(description="Its name.")
    weight: float = strawberry.field(description="Its traffic weight.")


@strawberry.type(description="A metric of an experiment.")
class ExperimentMetric:
    key: str = strawberry.field(description="Its key.")
    name: str = strawberry.field(description="Its name.")
    kind: ExperimentMetricKind = strawberry.field(description="What it counts.")
    role: ExperimentMetricRole = strawberry.field(description="Its role.")
    definition: JSON = strawberry.field(description="Its whole definition, with the input's field names.")


@strawberry.type(description="A status change: who and when.")
class ExperimentStatusChange:
    from_status: ExperimentStatus | None = strawberry.field(description="The status before (null: created).")
    to_status: ExperimentStatus = strawberry.field(description="The status after.")
    actor: str = strawberry.field(description="Who changed it.")
    actor_role: str = strawberry.field(description="As what.")
    at: datetime = strawberry.field(description="When.")


@strawberry.type(description="An A/B experiment.")
class Experiment:
    id: strawberry.ID = strawberry.field(description="Its id.")
    key: str = strawberry.field(description="Its key.")
    name: str = strawberry.field(description="Its name.")
    hypothesis: str = strawberry.field(description="Its hypothesis.")
    status: ExperimentStatus = strawberry.field(description="Its status.")
    variants: list[ExperimentVariant] = strawberry.field(description="Control first.")
    allocation: float = strawberry.field(description="Share of targeted persons in it.")
    targeting: JSON = strawberry.field(description="{cohortId} or {filters}; {} for everyone.")
    metrics: list[ExperimentMetric] = strawberry.field(description="Its metrics.")
    engine: ExperimentEngine = strawberry.field(description="How results are read.")
    correction: MultipleTestingCorrection = strawberry.field(description="Correction over every variant x metric.")
    alpha: float = strawberry.field(description="Significance level.")
    sequential_tuning: float = strawberry.field(description="SEQUENTIAL: N*.")
    cuped_days: int | None = strawberry.field(description="CUPED's pre-exposure window in days.")
    minimum_detectable_effect: float | None = strawberry.field(description="Relative MDE of the primary metric.")
    minimum_sample_size: int | None = strawberry.field(description="Persons in all before deciding.")
    started_at: datetime | None = strawberry.field(description="When it started running.")
    ended_at: datetime | None = strawberry.field(description="When it stopped or completed.")
    created_by: str = strawberry.field(description="Who created it.")
    created_at: datetime = strawberry.field(description="When it was created.")
    updated_at: datetime = strawberry.field(description="When it last changed.")
    status_history: list[ExperimentStatusChange] = strawberry.field(description="Every status change, oldest first.")


@strawberry.type(description="A person's variant, and whether this call recorded their first exposure.")
class ExperimentAssignment:
    experiment_key: str = strawberry.field(description="The experiment.")
    person_id: str = strawberry.field(description="The person assigned (a linked anonymous id resolves to its user).")
    variant: str | None = strawberry.field(description="The variant; null outside the allocation or targeting.")
    outcome: AssignmentOutcome = strawberry.field(description="Why.")
    first_exposure: bool = strawberry.field(description="True when this call recorded the person's first exposure.")


@strawberry.type(description="Exposed persons of one variant.")
class VariantExposures:
    key: str = strawberry.field(description="The variant.")
    n: int = strawberry.field(description="Persons counted (persons seen in two variants excluded).")


@strawberry.type(description="One metric's analysis.")
class ExperimentMetricResult:
    key: str = strawberry.field(description="The metric's key.")
    name: str = strawberry.field(description="Its name.")
    kind: ExperimentMetricKind = strawberry.field(description="What it counts.")
    role: ExperimentMetricRole = strawberry.field(description="Its role.")
    analysis: ExperimentAnalysis = strawberry.field(description="Every variant against control.")


@strawberry.type(description="An experiment's results: sample ratio check first, then every metric.")
class ExperimentResults:
    srm_p_value: float = strawberry.field(description="Chi-square goodness of fit of the exposures against the weights.")
    srm_flagged: bool = strawberry.field(description="True below p = 0.001: assignment is broken; do not trust the effects below.")
    exposures: list[VariantExposures] = strawberry.field(description="Persons counted per variant.")
    conflicts: int = strawberry.field(description="Persons exposed to two variants: excluded from every statistic.")
    conflicted_person_ids: list[str] = strawberry.field(description="The first 100 of them, by id.")
    metrics: list[ExperimentMetricResult] = strawberry.field(description="Each metric, p-values adjusted over variants x metrics.")
    minimum_sample_size: int | None = strawberry.field(description="Persons in all to reach (given, or from the MDE).")
    days_running: float | None = strawberry.field(description="Days since it started (to its end once ended).")
    days_to_minimum_sample: float | None = strawberry.field(
        description="Days more at the exposure rate so far to reach the minimum sample size (0: reached)."
    )
    computed_at: datetime = strawberry.field(description="When these numbers were read.")
    experiment: Experiment = strawberry.field(description="The experiment.")


@strawberry.type(description="One variant in the experiments list: views, conversions and rate of the primary metric.")
class ExperimentVariantSummary:
    key: str = strawberry.field(description="The variant.")
    name: str = strawberry.field(description="Its name.")
    weight: float = strawberry.field(description="Its weight.")
    views: int = strawberry.field(description="Exposed persons.")
    conversions: float | None = strawberry.field(description="The primary metric's sum (BINOMIAL: conversions).")
    conversion_rate: float | None = strawberry.field(description="Its mean per exposed person (BINOMIAL: the rate).")


@strawberry.type(description="An experiment in the list, with its primary metric's winner and confidence.")
class ExperimentSummary:
    id: strawberry.ID = strawberry.field(description="Its id.")
    key: str = strawberry.field(description="Its key.")
    name: str = strawberry.field(description="Its name.")
    status: ExperimentStatus = strawberry.field(description="Its status.")
    started_at: datetime | None = strawberry.field(description="When it started.")
    variants: list[ExperimentVariantSummary] = strawberry.field(description="Control first.")
    winner: str | None = strawberry.field(description="The significantly best variant of the primary metric, else null.")
    confidence: float | None = strawberry.field(description="1 - its adjusted p-value (BAYESIAN: its chance to win).")
