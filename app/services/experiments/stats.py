"""The one statistics engine of experiments: pure functions of sufficient statistics.

`analyze` is what `analyzeExperiment` answers and what `experimentResults` runs on the worker's
sums; `sample_size` is `sampleSize`. Nothing here reads data, so a third party can check every
number from the sums it sent. The README's "Experiments" section states the same for clients.

Per variant the caller gives n, sum and sum of squares of the metric per person (BINOMIAL:
sum = sum of squares = conversions), and for CUPED the pre-period sum, sum of squares and the
cross-product sum(metric x pre-metric). Control comes first. Each treatment is compared with
control:

- means: BINOMIAL p = conversions / n with variance p(1 - p); MEAN the sample mean and the
  sample variance (n - 1 in the denominator).
- absolute effect d = mean_t - mean_c, standard error sqrt(v_t/n_t + v_c/n_c).
- relative effect r = d / mean_c, its standard error by the delta method
  (v_t / (n_t mean_c^2) + mean_t^2 v_c / (n_c mean_c^4); with CUPED the same expansion of the
  adjusted difference over the unadjusted control mean).
- FREQUENTIST, MEAN: Welch's t-test (Welch-Satterthwaite degrees of freedom) for both
  effects, p-values and t intervals. BINOMIAL: the two-proportion z-test (pooled proportion)
  for the absolute effect's p-value, Wald (unpooled) normal intervals, a normal test of the
  relative effect, and the chi-square test of the 2 x 2 table (no continuity correction;
  its statistic is the pooled z squared).
- SEQUENTIAL: always-valid confidence sequences (Waudby-Smith et al. 2023, "Time-uniform
  central limit theory and asymptotic confidence sequences", eq. 9 with rho from eq. 161):
  half-width = sqrt(s2) sqrt(2 (N rho^2 + 1) ln(sqrt(N rho^2 + 1) / alpha) / (N rho)^2), with
  N = n_t + n_c, s2 = SE^2 N and rho^2 = (-2 ln alpha + ln(1 - 2 ln alpha)) / N*; the tuning
  parameter N* (default 5000) is the total sample size where the sequence is tightest. The
  always-valid p-value is min(1, 1 / e-value), e-value = exp(rho^2 t^2 N / (2 (N rho^2 + 1)))
  / sqrt(N rho^2 + 1) with t = estimate / SE (eq. 155).
- BAYESIAN: a normal posterior of each effect (flat prior unless a prior on the relative
  effect is given, scaled by the control mean for the absolute one): credible interval,
  chance to beat control P(r > 0), and risk (expected loss) [E max(r, 0) of keeping control,
  E max(-r, 0) of shipping the variant], in relative units. No p-values.
- CUPED: theta = cov(metric, pre) / var(pre) over both compared arms pooled; adjusted mean
  = mean - theta x pre mean, adjusted variance v + theta^2 v_pre - 2 theta cov; the variance
  reduction is 1 - SE_adjusted^2 / SE^2 of the absolute effect.
- SRM: chi-square goodness of fit of the exposures against the weights, flagged below 0.001.
- Multiple testing: Holm or Benjamini-Hochberg over every p-value of one family (the
  treatments of `analyze`; every variant x metric of an experiment's results), absolute and
  relative effects adjusted as separate families; raw and adjusted p-values both kept.
- Power: per-variant sample size of a two-sided two-sample z-test (both tails counted),
  solved for the power asked, effect size d / sigma with sigma^2 the mean of the two arms'
  variances (BINOMIAL p(1 - p) at the baseline and at the baseline moved by the MDE).

GrowthBook's gbstats documents the same formulas; tests/test_experiment_stats.py checks each
number against its published test cases, scipy and statsmodels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum

import numpy as np
from scipy import optimize
from scipy import stats as distributions

from app.errors import BadInput

SRM_THRESHOLD = 0.001
DEFAULT_ALPHA = 0.05
DEFAULT_POWER = 0.8
DEFAULT_SEQUENTIAL_TUNING = 5000.0
MIN_VARIANTS = 2
MAX_VARIANTS = 20
MAX_SAMPLE_SIZE = 10**12  # per variant: beyond it no experiment is practical


class Engine(str, Enum):
    FREQUENTIST = "frequentist"
    BAYESIAN = "bayesian"
    SEQUENTIAL = "sequential"


class MetricType(str, Enum):
    BINOMIAL = "binomial"
    MEAN = "mean"


class Correction(str, Enum):
    NONE = "none"
    HOLM = "holm"
    BENJAMINI_HOCHBERG = "benjamini_hochberg"


@dataclass(frozen=True, slots=True)
class Prior:
    """A normal prior on the relative effect (Bayesian engine only)."""

    mean: float
    variance: float


@dataclass(frozen=True, slots=True)
class VariantStats:
    """One variant's sufficient statistics of one metric, per exposed person."""

    key: str
    n: int
    sum: float
    sum_squares: float
    pre_sum: float | None = None
    pre_sum_squares: float | None = None
    cross_product: float | None = None


@dataclass(frozen=True, slots=True)
class Options:
    engine: Engine = Engine.FREQUENTIST
    metric_type: MetricType = MetricType.MEAN
    alpha: float = DEFAULT_ALPHA
    sequential_tuning: float = DEFAULT_SEQUENTIAL_TUNING
    cuped: bool = False
    correction: Correction = Correction.NONE
    prior: Prior | None = None


@dataclass(frozen=True, slots=True)
class Effect:
    estimate: float
    ci_low: float
    ci_high: float
    standard_error: float
    p_value: float | None
    adjusted_p_value: float | None


@dataclass(frozen=True, slots=True)
class ChiSquare:
    statistic: float
    p_value: float


@dataclass(frozen=True, slots=True)
class Cuped:
    theta: float
    variance_reduction: float
    adjusted_mean: float  # this variant's
    control_adjusted_mean: float  # control's, with the same theta


@dataclass(frozen=True, slots=True)
class VariantResult:
    key: str
    n: int
    mean: float
    variance: float
    absolute: Effect | None = None
    relative: Effect | None = None
    chance_to_win: float | None = None
    risk: tuple[float, float] | None = None
    chi_square: ChiSquare | None = None
    cuped: Cuped | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Analysis:
    options: Options
    weights: tuple[float, ...]
    srm_p_value: float
    srm_flagged: bool
    variants: tuple[VariantResult, ...]
    winner: str | None
    confidence: float | None


@dataclass(frozen=True, slots=True)
class SampleSize:
    per_variant: int
    total: int
    per_variant_exact: float
    absolute_effect: float
    effect_size: float
    minimum_detectable_effect: float  # as asked: relative or absolute


# -- moments ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arm:
    """One arm's mean and per-person variance of the quantity compared."""

    n: int
    mean: float
    variance: float


def sample_variance(n: int, total: float, squares: float) -> float:
    """Unbiased sample variance from sums (0 below two observations)."""
    if n < 2:
        return 0.0
    return max((squares - total * total / n) / (n - 1), 0.0)


def sample_covariance(n: int, total_x: float, total_y: float, products: float) -> float:
    if n < 2:
        return 0.0
    return (products - total_x * total_y / n) / (n - 1)


def arm_of(variant: VariantStats, metric_type: MetricType) -> Arm:
    mean = variant.sum / variant.n if variant.n else 0.0
    if metric_type is MetricType.BINOMIAL:
        return Arm(variant.n, mean, mean * (1.0 - mean))
    return Arm(variant.n, mean, sample_variance(variant.n, variant.sum, variant.sum_squares))


def welch_dof(a: Arm, b: Arm) -> float:
    """Welch-Satterthwaite degrees of freedom."""
    va, vb = a.variance / a.n, b.variance / b.n
    return (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))


# -- CUPED -----------------------------------------------------------------------------------


def cuped_theta(control: VariantStats, treatment: VariantStats) -> float:
    """theta = cov(metric, pre) / var(pre) of both arms pooled: one slope for the pair, so the
    adjustment moves both arms alike and the effect stays unbiased."""
    n = control.n + treatment.n
    pre_sum = _pre(control).pre_sum + _pre(treatment).pre_sum  # type: ignore[operator]
    pre_var = sample_variance(n, pre_sum, control.pre_sum_squares + treatment.pre_sum_squares)  # type: ignore[operator]
    post_var = sample_variance(n, control.sum + treatment.sum, control.sum_squares + treatment.sum_squares)
    if pre_var <= 0 or post_var <= 0:
        return 0.0
    cov = sample_covariance(n, control.sum + treatment.sum, pre_sum, control.cross_product + treatment.cross_product)  # type: ignore[operator]
    return cov / pre_var


def _pre(v: VariantStats) -> VariantStats:
    assert v.pre_sum is not None and v.pre_sum_squares is not None and v.cross_product is not None
    return v


@dataclass(frozen=True, slots=True)
class CupedArm:
    adjusted: Arm  # mean - theta pre mean; v + theta^2 v_pre - 2 theta cov
    unadjusted: Arm
    pre_variance: float
    covariance: float


def cuped_arm(v: VariantStats, theta: float) -> CupedArm:
    """An arm adjusted by theta. Moments are sample moments (n - 1) for both metric types."""
    _pre(v)
    post_var = sample_variance(v.n, v.sum, v.sum_squares)
    pre_var = sample_variance(v.n, v.pre_sum, v.pre_sum_squares)  # type: ignore[arg-type]
    cov = sample_covariance(v.n, v.sum, v.pre_sum, v.cross_product)  # type: ignore[arg-type]
    mean, pre_mean = v.sum / v.n, v.pre_sum / v.n  # type: ignore[operator]
    adjusted = Arm(v.n, mean - theta * pre_mean, max(post_var + theta**2 * pre_var - 2 * theta * cov, 0.0))
    return CupedArm(adjusted, Arm(v.n, mean, post_var), pre_var, cov)


def cuped_relative_variance(c: CupedArm, t: CupedArm, theta: float) -> float:
    """Delta-method variance of (adjusted_t - adjusted_c) / unadjusted control mean, expanded
    at its expectation (where both arms' pre means agree)."""
    base = c.unadjusted.mean
    ratio = t.unadjusted.mean / base
    treatment_part = t.adjusted.variance / (t.adjusted.n * base**2)
    control_part = (
        c.unadjusted.variance * ratio**2 - 2 * theta * c.covariance * ratio + theta**2 * c.pre_variance
    ) / (c.adjusted.n * base**2)
    return treatment_part + control_part


# -- one comparison --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Moments:
    """The two effects of one treatment against control, before any engine reads them."""

    absolute: float
    absolute_se: float
    relative: float | None  # None when control's mean is 0
    relative_se: float | None
    dof: float
    n: int  # both arms


def moments(control: Arm, treatment: Arm, *, base: float, relative_variance: float | None = None) -> Moments:
    diff = treatment.mean - control.mean
    abs_var = treatment.variance / treatment.n + control.variance / control.n
    rel = rel_se = None
    if base != 0:
        if relative_variance is None:
            relative_variance = treatment.variance / (treatment.n * base**2) + (
                treatment.mean**2 * control.variance / (control.n * base**4)
            )
        rel, rel_se = diff / base, math.sqrt(max(relative_variance, 0.0))
    return Moments(diff, math.sqrt(abs_var), rel, rel_se, welch_dof(control, treatment), control.n + treatment.n)


def t_effect(estimate: float, se: float, dof: float, alpha: float) -> Effect:
    """Welch's t-test: two-sided p-value and t interval."""
    p = float(2 * distributions.t.sf(abs(estimate / se), dof))
    width = float(distributions.t.ppf(1 - alpha / 2, dof)) * se
    return Effect(estimate, estimate - width, estimate + width, se, p, None)


def z_effect(estimate: float, se: float, alpha: float, *, test_se: float | None = None) -> Effect:
    """A normal (Wald) interval; the p-value's z uses `test_se` when the null has its own
    standard error (the pooled proportion of the two-proportion z-test)."""
    z = estimate / (test_se if test_se is not None else se)
    width = float(distributions.norm.ppf(1 - alpha / 2)) * se
    return Effect(estimate, estimate - width, estimate + width, se, float(2 * distributions.norm.sf(abs(z))), None)


def sequential_rho_squared(alpha: float, tuning: float) -> float:
    log_alpha = math.log(alpha)
    return (-2 * log_alpha + math.log(1 - 2 * log_alpha)) / tuning


def sequential_effect(estimate: float, se: float, n: int, alpha: float, tuning: float) -> Effect:
    """Always-valid confidence sequence and p-value (Waudby-Smith et al. 2023, eqs. 9, 155)."""
    rho2 = sequential_rho_squared(alpha, tuning)
    grown = n * rho2 + 1
    s2 = se**2 * n
    width = math.sqrt(s2) * math.sqrt(2 * grown * math.log(math.sqrt(grown) / alpha) / (n**2 * rho2))
    t2 = (estimate / se) ** 2
    log_e = rho2 * t2 * n / (2 * grown) - 0.5 * math.log(grown)
    p = 1.0 if log_e <= 0 else min(math.exp(-log_e), 1.0)
    return Effect(estimate, estimate - width, estimate + width, se, p, None)


def posterior(estimate: float, se: float, prior: Prior | None) -> tuple[float, float]:
    """Normal posterior (mean, sd) of an effect: the data's normal likelihood times the prior
    (flat when None)."""
    if prior is None:
        return estimate, se
    precision = 1 / se**2 + 1 / prior.variance
    return (estimate / se**2 + prior.mean / prior.variance) / precision, math.sqrt(1 / precision)


def bayesian_effect(estimate: float, se: float, alpha: float, prior: Prior | None) -> Effect:
    mean, sd = posterior(estimate, se, prior)
    low, high = distributions.norm.ppf([alpha / 2, 1 - alpha / 2], mean, sd)
    return Effect(mean, float(low), float(high), sd, None, None)


def chance_and_risk(mean: float, sd: float) -> tuple[float, tuple[float, float]]:
    """P(effect > 0) and the expected losses [of keeping control E max(effect, 0), of shipping
    the variant E max(-effect, 0)] under a normal posterior (closed form)."""
    z = mean / sd
    density, above = float(distributions.norm.pdf(z)), float(distributions.norm.cdf(z))
    keep_control = mean * above + sd * density
    ship_variant = keep_control - mean
    return above, (keep_control, ship_variant)


def chi_square_2x2(control: VariantStats, treatment: VariantStats) -> ChiSquare:
    """Pearson's chi-square of the 2 x 2 table converted / not, without continuity correction."""
    table = np.array([[control.sum, control.n - control.sum], [treatment.sum, treatment.n - treatment.sum]], float)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    if (expected == 0).any():
        return ChiSquare(0.0, 1.0)
    statistic = float(((table - expected) ** 2 / expected).sum())
    return ChiSquare(statistic, float(distributions.chi2.sf(statistic, 1)))


def pooled_proportion_se(control: VariantStats, treatment: VariantStats) -> float:
    p = (control.sum + treatment.sum) / (control.n + treatment.n)
    return math.sqrt(p * (1 - p) * (1 / control.n + 1 / treatment.n))


# -- analysis --------------------------------------------------------------------------------


def check_inputs(variants: Sequence[VariantStats], options: Options, weights: Sequence[float] | None, field: str) -> tuple[float, ...]:
    """Refuse what no statistic can be computed from, naming the field; the weights as given
    (equal when omitted)."""
    if not MIN_VARIANTS <= len(variants) <= MAX_VARIANTS:
        raise BadInput(f"give {MIN_VARIANTS} to {MAX_VARIANTS} variants, control first", field=f"{field}.variants")
    if not 0 < options.alpha < 1:
        raise BadInput("alpha is between 0 and 1 (exclusive)", field=f"{field}.alpha")
    if not options.sequential_tuning > 0:
        raise BadInput("sequentialTuning (the target sample size N*) is positive", field=f"{field}.sequentialTuning")
    if options.prior is not None and not options.prior.variance > 0:
        raise BadInput("a prior's variance is positive", field=f"{field}.prior.variance")
    for i, v in enumerate(variants):
        check_variant(v, options, [earlier.key for earlier in variants[:i]], f"{field}.variants[{i}]")
    return check_weights(weights, len(variants), f"{field}.weights")


def check_variant(v: VariantStats, options: Options, earlier_keys: list[str], field: str) -> None:
    if not v.key or v.key in earlier_keys:
        raise BadInput("each variant has its own non-empty key", field=f"{field}.key")
    if v.n < 0:
        raise BadInput("n is 0 or more", field=f"{field}.n")
    numbers = [v.sum, v.sum_squares, *(x for x in (v.pre_sum, v.pre_sum_squares, v.cross_product) if x is not None)]
    if not all(math.isfinite(x) for x in numbers):
        raise BadInput("sums are finite numbers", field=field)
    if options.metric_type is MetricType.BINOMIAL and not (0 <= v.sum <= v.n and v.sum_squares == v.sum):
        raise BadInput("a BINOMIAL variant's sum is its conversions (0..n), and sumSquares the same", field=f"{field}.sum")
    if v.n and v.sum_squares * v.n < v.sum * v.sum * (1 - 1e-9):
        raise BadInput("sumSquares is at least sum^2 / n", field=f"{field}.sumSquares")
    if options.cuped:
        for name, value in (("preSum", v.pre_sum), ("preSumSquares", v.pre_sum_squares), ("crossProduct", v.cross_product)):
            if value is None:
                raise BadInput(f"CUPED needs every variant's {name}", field=f"{field}.{name}")


def check_weights(weights: Sequence[float] | None, count: int, field: str) -> tuple[float, ...]:
    if weights is None:
        return tuple(1.0 for _ in range(count))
    if len(weights) != count:
        raise BadInput(f"give one weight per variant ({count})", field=field)
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise BadInput("weights are 0 or more and sum to a positive number", field=field)
    return tuple(float(w) for w in weights)


def srm_p_value(counts: Sequence[int], weights: Sequence[float]) -> float:
    """Chi-square goodness of fit of the counts against the weights (1 when nothing was seen;
    variants of weight 0 must have no one)."""
    total = sum(counts)
    if total == 0:
        return 1.0
    weight_sum = sum(weights)
    observed = [c for c, w in zip(counts, weights, strict=True) if w > 0]
    expected = [total * w / weight_sum for w in weights if w > 0]
    if len(observed) < len(counts) and any(c for c, w in zip(counts, weights, strict=True) if w == 0):
        return 0.0
    if len(observed) < 2:
        return 1.0
    return float(distributions.chisquare(observed, expected).pvalue)


def compare(control: VariantStats, treatment: VariantStats, options: Options) -> VariantResult:
    """One treatment against control under the options' engine."""
    arm_c, arm_t = arm_of(control, options.metric_type), arm_of(treatment, options.metric_type)
    plain = VariantResult(treatment.key, treatment.n, arm_t.mean, arm_t.variance)
    if control.n < 2 or treatment.n < 2:
        return replace(plain, note="each arm needs at least 2 exposed persons")
    cuped = None
    if options.cuped:
        theta = cuped_theta(control, treatment)
        c, t = cuped_arm(control, theta), cuped_arm(treatment, theta)
        if c.adjusted.variance <= 0 or t.adjusted.variance <= 0:
            return replace(plain, note="the adjusted metric has no variance")
        m = moments(c.adjusted, t.adjusted, base=c.unadjusted.mean,
                    relative_variance=cuped_relative_variance(c, t, theta) if c.unadjusted.mean else None)  # fmt: skip
        unadjusted_var = t.unadjusted.variance / t.unadjusted.n + c.unadjusted.variance / c.unadjusted.n
        reduction = 1 - m.absolute_se**2 / unadjusted_var if unadjusted_var > 0 else 0.0
        cuped = Cuped(theta, reduction, t.adjusted.mean, c.adjusted.mean)
    else:
        if arm_c.variance <= 0 and arm_t.variance <= 0:
            return replace(plain, note="the metric has no variance in either arm")
        m = moments(arm_c, arm_t, base=arm_c.mean)
    absolute, relative = effects(m, control, treatment, options)
    result = replace(plain, absolute=absolute, relative=relative, cuped=cuped,
                     note=None if relative is not None else "control's mean is 0: no relative effect")  # fmt: skip
    if options.engine is Engine.BAYESIAN and relative is not None:
        chance, risk = chance_and_risk(relative.estimate, relative.standard_error)
        result = replace(result, chance_to_win=chance, risk=risk)
    if options.metric_type is MetricType.BINOMIAL and options.engine is Engine.FREQUENTIST:
        result = replace(result, chi_square=chi_square_2x2(control, treatment))
    return result


def effects(m: Moments, control: VariantStats, treatment: VariantStats, options: Options) -> tuple[Effect, Effect | None]:
    """The absolute and relative effects under the engine."""
    alpha = options.alpha
    if options.engine is Engine.SEQUENTIAL:
        make = lambda est, se: sequential_effect(est, se, m.n, alpha, options.sequential_tuning)  # noqa: E731
    elif options.engine is Engine.BAYESIAN:
        absolute_prior = None
        if options.prior is not None:
            scale = control.sum / control.n
            absolute_prior = Prior(options.prior.mean * abs(scale), options.prior.variance * scale**2) if scale else None
        absolute = bayesian_effect(m.absolute, m.absolute_se, alpha, absolute_prior)
        relative = None
        if m.relative is not None and m.relative_se:
            relative = bayesian_effect(m.relative, m.relative_se, alpha, options.prior)
        return absolute, relative
    elif options.metric_type is MetricType.BINOMIAL:
        test_se = None if options.cuped else pooled_proportion_se(control, treatment)
        absolute = z_effect(m.absolute, m.absolute_se, alpha, test_se=test_se)
        relative = z_effect(m.relative, m.relative_se, alpha) if m.relative is not None and m.relative_se else None
        return absolute, relative
    else:
        make = lambda est, se: t_effect(est, se, m.dof, alpha)  # noqa: E731
    relative = make(m.relative, m.relative_se) if m.relative is not None and m.relative_se else None
    return make(m.absolute, m.absolute_se), relative


def analyze(
    *, variants: Sequence[VariantStats], options: Options, weights: Sequence[float] | None = None, field: str = "input"
) -> Analysis:
    """Every treatment against control (the first variant), SRM against the weights, the
    correction over the treatments, and the winner."""
    given_weights = check_inputs(variants, options, weights, field)
    control = variants[0]
    arm_c = arm_of(control, options.metric_type)
    rows = [VariantResult(control.key, control.n, arm_c.mean, arm_c.variance)]
    rows += [compare(control, t, options) for t in variants[1:]]
    srm = srm_p_value([v.n for v in variants], given_weights)
    analysis = Analysis(options, given_weights, srm, srm < SRM_THRESHOLD, tuple(rows), None, None)
    return corrected([analysis], options.correction)[0]


# -- multiple testing and the decision -------------------------------------------------------


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: the k-th smallest times (m - k + 1), kept monotone."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def adjust(p_values: Sequence[float], correction: Correction) -> list[float]:
    if not p_values or correction is Correction.NONE:
        return list(p_values)
    if correction is Correction.HOLM:
        return holm(p_values)
    return [float(p) for p in distributions.false_discovery_control(np.asarray(p_values, float), method="bh")]


def corrected(analyses: Sequence[Analysis], correction: Correction) -> list[Analysis]:
    """Adjusted p-values over one family (every treatment of every analysis given), absolute
    and relative effects as separate families; then each analysis' winner."""
    adjusted = {
        side: iter(adjust([e.p_value for a in analyses for v in a.variants
                           if (e := getattr(v, side)) is not None and e.p_value is not None], correction))
        for side in ("absolute", "relative")
    }  # fmt: skip

    def with_adjusted(v: VariantResult) -> VariantResult:
        for side in ("absolute", "relative"):
            e = getattr(v, side)
            if e is not None and e.p_value is not None:
                v = replace(v, **{side: replace(e, adjusted_p_value=next(adjusted[side]))})
        return v

    out = []
    for a in analyses:
        variants = tuple(with_adjusted(v) for v in a.variants)
        winner, confidence = decide(variants, a.options)
        out.append(replace(a, variants=variants, winner=winner, confidence=confidence))
    return out


def decide(variants: Sequence[VariantResult], options: Options) -> tuple[str | None, float | None]:
    """The winner: the treatment with the largest effect among those significantly better than
    control (Bayesian: chance to win at least 1 - alpha); control when every treatment is
    significantly worse; else none. Confidence is 1 - the winning comparison's (adjusted)
    p-value, or its chance to win (for control: the least sure of its comparisons)."""
    treatments = [v for v in variants[1:] if v.absolute is not None]
    if not treatments or len(treatments) < len(variants) - 1:
        return None, None
    if options.engine is Engine.BAYESIAN:
        sure = {v.key: v.chance_to_win for v in treatments if v.chance_to_win is not None}
        if len(sure) < len(treatments):
            return None, None
        better = [v for v in treatments if sure[v.key] >= 1 - options.alpha]
        if better:
            best = max(better, key=lambda v: v.absolute.estimate)  # type: ignore[union-attr]
            return best.key, sure[best.key]
        if all(c <= options.alpha for c in sure.values()):
            return variants[0].key, 1 - max(sure.values())
        return None, None
    p = {v.key: significance(v.absolute) for v in treatments}  # type: ignore[arg-type]
    better = [v for v in treatments if p[v.key] < options.alpha and v.absolute.estimate > 0]  # type: ignore[union-attr]
    if better:
        best = max(better, key=lambda v: v.absolute.estimate)  # type: ignore[union-attr]
        return best.key, 1 - p[best.key]
    if all(p[v.key] < options.alpha and v.absolute.estimate < 0 for v in treatments):  # type: ignore[union-attr]
        return variants[0].key, 1 - max(p.values())
    return None, None


def significance(effect: Effect) -> float:
    value = effect.adjusted_p_value if effect.adjusted_p_value is not None else effect.p_value
    assert value is not None
    return value


# -- power -----------------------------------------------------------------------------------


def two_sided_power(effect_size: float, per_variant: float, alpha: float) -> float:
    """Power of the two-sided two-sample z-test with equal arms (both rejection tails)."""
    critical = float(distributions.norm.isf(alpha / 2))
    shift = effect_size * math.sqrt(per_variant / 2)
    return float(distributions.norm.sf(critical - shift) + distributions.norm.cdf(-critical - shift))


def sample_size(
    *,
    minimum_detectable_effect: float,
    relative: bool,
    variants: int,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    baseline_rate: float | None = None,
    mean: float | None = None,
    standard_deviation: float | None = None,
    field: str = "input",
) -> SampleSize:
    """Persons per variant (and in all) for each treatment's comparison with control to reach
    `power` at `alpha` when the true effect is the MDE."""
    if not 0 < alpha < 1:
        raise BadInput("alpha is between 0 and 1 (exclusive)", field=f"{field}.alpha")
    if not alpha < power < 1:
        raise BadInput("power is between alpha and 1 (exclusive)", field=f"{field}.power")
    if not MIN_VARIANTS <= variants <= MAX_VARIANTS:
        raise BadInput(f"variants (control included) is from {MIN_VARIANTS} to {MAX_VARIANTS}", field=f"{field}.variants")
    if not math.isfinite(minimum_detectable_effect) or minimum_detectable_effect == 0:
        raise BadInput("the minimum detectable effect is a non-zero number", field=f"{field}.minimumDetectableEffect")
    absolute, sigma = effect_and_sigma(minimum_detectable_effect, relative, baseline_rate, mean, standard_deviation, field)
    effect_size = abs(absolute) / sigma
    exact = solve_per_variant(effect_size, alpha, power, field)
    per_variant = math.ceil(exact - 1e-9)
    return SampleSize(per_variant, per_variant * variants, exact, absolute, effect_size, minimum_detectable_effect)


def detectable_effect(
    *,
    per_variant: int,
    relative: bool,
    variants: int,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    baseline_rate: float | None = None,
    mean: float | None = None,
    standard_deviation: float | None = None,
    field: str = "input",
) -> SampleSize:
    """The smallest (upward) effect `per_variant` persons per variant detect with `power` at
    `alpha`: the inverse of `sample_size`."""
    if not 0 < alpha < 1:
        raise BadInput("alpha is between 0 and 1 (exclusive)", field=f"{field}.alpha")
    if not alpha < power < 1:
        raise BadInput("power is between alpha and 1 (exclusive)", field=f"{field}.power")
    if not MIN_VARIANTS <= variants <= MAX_VARIANTS:
        raise BadInput(f"variants (control included) is from {MIN_VARIANTS} to {MAX_VARIANTS}", field=f"{field}.variants")
    if not 2 <= per_variant <= MAX_SAMPLE_SIZE:
        raise BadInput("perVariant is 2 or more", field=f"{field}.perVariant")

    def shortfall(mde: float) -> float:
        absolute, sigma = effect_and_sigma(mde, relative, baseline_rate, mean, standard_deviation, field)
        return two_sided_power(abs(absolute) / sigma, per_variant, alpha) - power

    largest = largest_mde(relative, baseline_rate, mean, standard_deviation, field)
    if shortfall(largest) < 0:
        raise BadInput("no effect within the metric's range is detectable with this sample", field=f"{field}.perVariant")
    mde = float(optimize.brentq(shortfall, largest * 1e-12, largest, xtol=1e-15, rtol=1e-13, maxiter=500))
    absolute, sigma = effect_and_sigma(mde, relative, baseline_rate, mean, standard_deviation, field)
    return SampleSize(per_variant, per_variant * variants, float(per_variant), absolute, abs(absolute) / sigma, mde)


def largest_mde(relative: bool, baseline_rate: float | None, mean: float | None, standard_deviation: float | None,
                field: str) -> float:  # fmt: skip
    """The upper end of the search: a conversion rate stays below 1; a mean's effect is searched
    up to 100 standard deviations."""
    if baseline_rate is not None:
        if not 0 < baseline_rate < 1:
            raise BadInput("baselineRate is between 0 and 1 (exclusive)", field=f"{field}.baselineRate")
        room = (1 - baseline_rate) * (1 - 1e-9)
        return room / baseline_rate if relative else room
    if mean is None or standard_deviation is None or not standard_deviation > 0:
        raise BadInput("give baselineRate (a conversion) or mean and standardDeviation", field=f"{field}.baselineRate")
    if relative and mean == 0:
        raise BadInput("a relative MDE needs a non-zero mean", field=f"{field}.mean")
    return 100 * standard_deviation / (abs(mean) if relative else 1.0)


def effect_and_sigma(mde: float, relative: bool, baseline_rate: float | None, mean: float | None,
                     standard_deviation: float | None, field: str) -> tuple[float, float]:  # fmt: skip
    """The MDE in the metric's units and the standard deviation the test sees."""
    if (baseline_rate is None) == (mean is None):
        raise BadInput("give baselineRate (a conversion) or mean and standardDeviation", field=f"{field}.baselineRate")
    if baseline_rate is not None:
        if not 0 < baseline_rate < 1:
            raise BadInput("baselineRate is between 0 and 1 (exclusive)", field=f"{field}.baselineRate")
        absolute = baseline_rate * mde if relative else mde
        moved = baseline_rate + absolute
        if not 0 < moved < 1:
            raise BadInput("the baseline moved by the MDE leaves 0..1", field=f"{field}.minimumDetectableEffect")
        return absolute, math.sqrt((baseline_rate * (1 - baseline_rate) + moved * (1 - moved)) / 2)
    assert mean is not None
    if standard_deviation is None or not standard_deviation > 0:
        raise BadInput("a mean metric needs a positive standardDeviation", field=f"{field}.standardDeviation")
    if relative and mean == 0:
        raise BadInput("a relative MDE needs a non-zero mean", field=f"{field}.mean")
    return (mean * mde if relative else mde), standard_deviation


def solve_per_variant(effect_size: float, alpha: float, power: float, field: str) -> float:
    if two_sided_power(effect_size, MAX_SAMPLE_SIZE, alpha) < power:
        raise BadInput("the effect is too small to detect with any practical sample", field=f"{field}.minimumDetectableEffect")
    low = 1e-9
    if two_sided_power(effect_size, low, alpha) >= power:
        return low
    return float(optimize.brentq(lambda n: two_sided_power(effect_size, n, alpha) - power, low, MAX_SAMPLE_SIZE,
                                 xtol=1e-12, rtol=1e-14, maxiter=500))  # fmt: skip


def days_to_reach(*, minimum: int, exposed: int, days_running: float) -> float | None:
    """Days more at the rate so far until `minimum` persons are exposed (0 when reached; None
    before anyone was exposed)."""
    if exposed >= minimum:
        return 0.0
    if exposed == 0 or days_running <= 0:
        return None
    return (minimum - exposed) / (exposed / days_running)
