"""The experiment statistics engine against independent references.

References, each cited where it is used:
- GrowthBook's gbstats published test cases (MIT), rounded there to 5 decimals (9 for SRM):
  https://github.com/growthbook/growthbook/blob/main/packages/stats/tests/frequentist/test_tests.py
  https://github.com/growthbook/growthbook/blob/main/packages/stats/tests/bayesian/test_tests.py
  https://github.com/growthbook/growthbook/blob/main/packages/stats/tests/test_gbstats.py
- scipy.stats (ttest_ind_from_stats, ttest_ind, chi2_contingency, chisquare, norm.expect) and
  statsmodels (proportions_ztest, confint_proportions_2indep, multipletests, NormalIndPower),
  to 1e-6 or better.
- numpy on raw per-person data for CUPED.
And through the API: `analyzeExperiment` and `sampleSize` answer anyone with the same numbers,
and refuse bad input naming the field.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import stats as sp

from app.errors import BadInput
from app.services.experiments import stats
from app.services.experiments.stats import Correction, Engine, MetricType, Options, Prior, VariantStats
from tests.support.graphql import error_codes, gql, gql_data

GB = 5e-6  # gbstats publishes 5 decimals
TIGHT = 1e-9


def close(actual: float | None, expected: float, tol: float = GB) -> bool:
    return actual is not None and abs(actual - expected) <= tol


def of_data(key: str, y: np.ndarray, pre: np.ndarray | None = None) -> VariantStats:
    """A variant's sufficient statistics from raw per-person values."""
    if pre is None:
        return VariantStats(key, len(y), float(y.sum()), float((y * y).sum()))
    return VariantStats(key, len(y), float(y.sum()), float((y * y).sum()), float(pre.sum()), float((pre * pre).sum()),
                        float((y * pre).sum()))  # fmt: skip


def treatment(variants: list[VariantStats], **options: Any) -> stats.VariantResult:
    return stats.analyze(variants=variants, options=Options(**options)).variants[1]


# -- frequentist -------------------------------------------------------------------------------

# gbstats TestTwoSidedTTest.setUp: SampleMeanStatistic(sum, sum_squares, n) of control and treatment
GB_CONTROL = VariantStats("control", 3407, 1396.87, 52377.9767)
GB_TREATMENT = VariantStats("treatment", 3461, 2422.7, 134698.29)


def test_welch_absolute_and_relative_match_gbstats() -> None:
    v = treatment([GB_CONTROL, GB_TREATMENT])
    a, r = v.absolute, v.relative
    assert a is not None and r is not None
    # gbstats test_two_sided_ttest_absolute: expected 0.29, ci (0.04538, 0.53462), stddev 0.12478, p 0.02016
    assert close(a.estimate, 0.29) and close(a.ci_low, 0.04538) and close(a.ci_high, 0.53462)
    assert close(a.standard_error, 0.12478) and close(a.p_value, 0.02016)
    # gbstats test_two_sided_ttest (relative, delta method): 0.70732, ci (-0.03526, 1.44989), stddev 0.37879, p 0.06191
    assert close(r.estimate, 0.70732) and close(r.ci_low, -0.03526) and close(r.ci_high, 1.44989)
    assert close(r.standard_error, 0.37879) and close(r.p_value, 0.06191)


def test_welch_matches_scipy_on_raw_data() -> None:
    rng = np.random.default_rng(7)
    c, t = rng.gamma(2.0, 3.0, 1500), rng.gamma(2.0, 3.3, 1300)
    v = treatment([of_data("c", c), of_data("t", t)], alpha=0.1)
    reference = sp.ttest_ind(t, c, equal_var=False)  # scipy: Welch's t-test on the raw values
    interval = reference.confidence_interval(confidence_level=0.9)
    assert v.absolute is not None
    assert math.isclose(v.absolute.p_value, reference.pvalue, rel_tol=1e-9)  # type: ignore[arg-type]
    assert math.isclose(v.absolute.ci_low, interval.low, rel_tol=1e-9)
    assert math.isclose(v.absolute.ci_high, interval.high, rel_tol=1e-9)
    from_stats = sp.ttest_ind_from_stats(t.mean(), t.std(ddof=1), len(t), c.mean(), c.std(ddof=1), len(c), equal_var=False)
    assert math.isclose(v.absolute.estimate / v.absolute.standard_error, from_stats.statistic, rel_tol=1e-9)


def test_two_proportion_z_and_chi_square_match_statsmodels_and_scipy() -> None:
    from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

    control, variant = VariantStats("c", 4000, 400, 400), VariantStats("b", 4100, 470, 470)
    v = treatment([control, variant], metric_type=MetricType.BINOMIAL)
    assert v.absolute is not None and v.chi_square is not None
    # statsmodels: two-proportion z-test with the pooled proportion (its default)
    _, p = proportions_ztest([470, 400], [4100, 4000])
    assert math.isclose(v.absolute.p_value, p, rel_tol=1e-9)  # type: ignore[arg-type]
    # statsmodels: Wald interval of the difference (unpooled)
    low, high = confint_proportions_2indep(470, 4100, 400, 4000, method="wald", compare="diff", alpha=0.05)
    assert math.isclose(v.absolute.ci_low, low, rel_tol=1e-9) and math.isclose(v.absolute.ci_high, high, rel_tol=1e-9)
    # scipy: Pearson chi-square of the 2 x 2 table, no continuity correction
    chi2, p_chi, _, _ = sp.chi2_contingency([[400, 3600], [470, 3630]], correction=False)
    assert math.isclose(v.chi_square.statistic, chi2, rel_tol=1e-9) and math.isclose(v.chi_square.p_value, p_chi, rel_tol=1e-9)
    assert math.isclose(v.mean, 470 / 4100) and math.isclose(v.variance, (470 / 4100) * (1 - 470 / 4100))


def test_binomial_relative_effect_is_the_delta_method_of_gbstats() -> None:
    # gbstats bayesian TestBinom (flat prior: the posterior is the delta-method normal):
    # 49/100 vs 51/100 -> relative 0.04082, stddev 0.14725, interval [-0.24779, 0.32943]
    v = treatment([VariantStats("c", 100, 49, 49), VariantStats("t", 100, 51, 51)], metric_type=MetricType.BINOMIAL)
    assert v.relative is not None
    assert close(v.relative.estimate, 0.04082) and close(v.relative.standard_error, 0.14725)
    assert close(v.relative.ci_low, -0.24779) and close(v.relative.ci_high, 0.32943)


# -- sequential ---------------------------------------------------------------------------------


def test_sequential_confidence_sequences_match_gbstats() -> None:
    # gbstats TestSequentialTTest.test_sequential_test_runs (N* = 1000): relative 0.50336, ci (-0.55844, 1.56516), p 1
    v = treatment([VariantStats("c", 3000, 1396.87, 52377.9767), GB_TREATMENT], engine=Engine.SEQUENTIAL,
                  sequential_tuning=1000)  # fmt: skip
    assert v.relative is not None
    assert close(v.relative.estimate, 0.50336) and close(v.relative.ci_low, -0.55844) and close(v.relative.ci_high, 1.56516)
    assert v.relative.p_value == 1.0
    # test_sequential_test_runs_prop (default N* = 5000): 0.50386, ci (0.40098, 0.60675), stddev 0.03386, p 0 (5 decimals)
    v = treatment([VariantStats("c", 3000, 1396, 1396), VariantStats("t", 3461, 2422, 2422)], engine=Engine.SEQUENTIAL,
                  metric_type=MetricType.BINOMIAL)  # fmt: skip
    assert v.relative is not None
    assert close(v.relative.estimate, 0.50386) and close(v.relative.ci_low, 0.40098) and close(v.relative.ci_high, 0.60675)
    assert close(v.relative.standard_error, 0.03386) and close(v.relative.p_value, 0.0)


def test_sequential_tuning_is_tightest_near_the_sample_size() -> None:
    """gbstats test_sequential_test_tuning_as_expected: N* far below n is widest, N* near n narrowest."""
    control = VariantStats("c", 3000, 1396.87, 52377.9767)

    def width(tuning: float) -> float:
        r = treatment([control, GB_TREATMENT], engine=Engine.SEQUENTIAL, sequential_tuning=tuning).relative
        assert r is not None
        return r.ci_high - r.ci_low

    assert width(10) > width(10_000) > width(6461)


def test_a_result_watched_every_day_keeps_its_error_rate() -> None:
    """A/A tests peeked at 30 times: declaring a winner at the first peek with p < alpha
    happens far more often than alpha with fixed-horizon p-values, and at most alpha with the
    always-valid sequence."""
    rng = np.random.default_rng(11)
    runs, peeks, per_day = 600, 30, 40
    fixed_hits = sequential_hits = 0
    for _ in range(runs):
        c, t = rng.normal(10, 3, peeks * per_day), rng.normal(10, 3, peeks * per_day)
        fixed = sequential = False
        for day in range(1, peeks + 1):
            k = day * per_day
            arms = [of_data("c", c[:k]), of_data("t", t[:k])]
            fixed = fixed or treatment(arms).absolute.p_value < 0.05  # type: ignore[union-attr,operator]
            seq = treatment(arms, engine=Engine.SEQUENTIAL, sequential_tuning=2 * k).absolute
            sequential = sequential or seq.ci_low > 0 or seq.ci_high < 0  # type: ignore[union-attr]
        fixed_hits += fixed
        sequential_hits += sequential
    assert fixed_hits / runs > 0.15
    assert sequential_hits / runs <= 0.05


# -- Bayesian ---------------------------------------------------------------------------------


def test_bayesian_binomial_matches_gbstats() -> None:
    # gbstats EffectBayesianABTest TestBinom: 0.04082, ci [-0.24779, 0.32943], ctw 0.60918, risk [0.0814, 0.04058]
    v = treatment([VariantStats("c", 100, 49, 49), VariantStats("t", 100, 51, 51)], engine=Engine.BAYESIAN,
                  metric_type=MetricType.BINOMIAL)  # fmt: skip
    assert v.relative is not None and v.risk is not None
    assert close(v.relative.estimate, 0.04082) and close(v.relative.ci_low, -0.24779) and close(v.relative.ci_high, 0.32943)
    assert close(v.chance_to_win, 0.60918) and close(v.risk[0], 0.0814) and close(v.risk[1], 0.04058)
    assert v.relative.p_value is None


def test_bayesian_gaussian_matches_gbstats_with_and_without_a_prior() -> None:
    control, variant = VariantStats("c", 10, 100, 1002.25), VariantStats("t", 10, 105, 1111.5)
    # gbstats TestNorm.test_bayesian_gaussian_ab_test: 0.05, ci [-0.02, 0.12], sd 0.03572, ctw 0.91923, risk [0.05131, 0.00131]
    v = treatment([control, variant], engine=Engine.BAYESIAN)
    assert v.relative is not None and v.risk is not None
    assert close(v.relative.estimate, 0.05) and close(v.relative.ci_low, -0.02) and close(v.relative.ci_high, 0.12)
    assert close(v.relative.standard_error, 0.03572)
    assert close(v.chance_to_win, 0.91923) and close(v.risk[0], 0.05131) and close(v.risk[1], 0.00131)
    # test_bayesian_gaussian_ab_test_informative, prior N(0.1, 0.1): 0.05063, ci [-0.01893, 0.12019], ctw 0.92315,
    # risk [0.05186, 0.00123]
    v = treatment([control, variant], engine=Engine.BAYESIAN, prior=Prior(0.1, 0.1))
    assert v.relative is not None and v.risk is not None
    assert close(v.relative.estimate, 0.05063) and close(v.relative.ci_low, -0.01893) and close(v.relative.ci_high, 0.12019)
    assert close(v.chance_to_win, 0.92315) and close(v.risk[0], 0.05186) and close(v.risk[1], 0.00123)


def test_risk_is_the_expected_loss_by_numerical_integration() -> None:
    v = treatment([VariantStats("c", 900, 4500, 40000), VariantStats("t", 880, 4520, 41000)], engine=Engine.BAYESIAN)
    assert v.relative is not None and v.risk is not None
    posterior = sp.norm(v.relative.estimate, v.relative.standard_error)
    # scipy: E max(r, 0) and E max(-r, 0) by quadrature, P(r > 0)
    assert math.isclose(v.risk[0], posterior.expect(lambda x: max(x, 0.0)), rel_tol=1e-6)
    assert math.isclose(v.risk[1], posterior.expect(lambda x: max(-x, 0.0)), rel_tol=1e-6)
    assert math.isclose(v.chance_to_win, posterior.sf(0), rel_tol=1e-12)  # type: ignore[arg-type]


# -- CUPED --------------------------------------------------------------------------------------


def test_cuped_matches_gbstats_regression_adjusted_sequential_case() -> None:
    # gbstats test_sequential_test_runs_ra (RegressionAdjustedStatistic, default N*): 0.50338, ci (-0.50969, 1.51646),
    # stddev 0.33341
    control = VariantStats("c", 3000, 1396.87, 52377.9767, 16.87, 527.9767, 1)
    variant = VariantStats("t", 3461, 2422.7, 134698.29, 22.7, 1348.29, 1)
    v = treatment([control, variant], engine=Engine.SEQUENTIAL, cuped=True)
    assert v.relative is not None
    assert close(v.relative.estimate, 0.50338) and close(v.relative.ci_low, -0.50969) and close(v.relative.ci_high, 1.51646)
    assert close(v.relative.standard_error, 0.33341)


def test_cuped_theta_and_variance_reduction_match_numpy_on_raw_data() -> None:
    rng = np.random.default_rng(5)
    pre_c, pre_t = rng.normal(50, 10, 2000), rng.normal(50, 10, 2100)
    post_c = 0.8 * pre_c + rng.normal(5, 4, 2000)
    post_t = 0.8 * pre_t + rng.normal(5.6, 4, 2100)
    v = treatment([of_data("c", post_c, pre_c), of_data("t", post_t, pre_t)], cuped=True)
    assert v.cuped is not None and v.absolute is not None
    pooled_post, pooled_pre = np.concatenate([post_c, post_t]), np.concatenate([pre_c, pre_t])
    theta = np.cov(pooled_post, pooled_pre, ddof=1)[0, 1] / np.var(pooled_pre, ddof=1)  # numpy: the pooled slope
    assert math.isclose(v.cuped.theta, theta, rel_tol=1e-9)
    adjusted_c, adjusted_t = post_c - theta * pre_c, post_t - theta * pre_t
    assert math.isclose(v.cuped.adjusted_mean, adjusted_t.mean(), rel_tol=1e-9)
    assert math.isclose(v.cuped.control_adjusted_mean, adjusted_c.mean(), rel_tol=1e-9)
    adjusted_var = adjusted_t.var(ddof=1) / len(adjusted_t) + adjusted_c.var(ddof=1) / len(adjusted_c)
    plain_var = post_t.var(ddof=1) / len(post_t) + post_c.var(ddof=1) / len(post_c)
    assert math.isclose(v.cuped.variance_reduction, 1 - adjusted_var / plain_var, rel_tol=1e-9)
    assert v.cuped.variance_reduction > 0.7
    # scipy: Welch's test of the adjusted values
    welch = sp.ttest_ind(adjusted_t, adjusted_c, equal_var=False)
    assert math.isclose(v.absolute.p_value, welch.pvalue, rel_tol=1e-6)  # type: ignore[arg-type]


# -- SRM and multiple testing -------------------------------------------------------------------


def test_sample_ratio_mismatch_matches_gbstats_and_scipy() -> None:
    # gbstats test_srm: check_srm([1000, 1200], [0.5, 0.5]) == 0.000020079 (9 decimals)
    assert abs(stats.srm_p_value([1000, 1200], [0.5, 0.5]) - 0.000020079) < 5e-10
    # scipy: chi-square goodness of fit against unequal weights
    expected = [6000 * w for w in (0.5, 0.25, 0.25)]
    assert math.isclose(stats.srm_p_value([3100, 1400, 1500], [2, 1, 1]), sp.chisquare([3100, 1400, 1500], expected).pvalue)
    flagged = stats.analyze(variants=[VariantStats("a", 5000, 500, 500), VariantStats("b", 4600, 470, 470)],
                            options=Options(metric_type=MetricType.BINOMIAL))  # fmt: skip
    assert flagged.srm_flagged and flagged.srm_p_value < 0.001
    fine = stats.analyze(variants=[VariantStats("a", 5000, 500, 500), VariantStats("b", 4960, 470, 470)],
                         options=Options(metric_type=MetricType.BINOMIAL))  # fmt: skip
    assert not fine.srm_flagged


@pytest.mark.parametrize(("correction", "method"), [(Correction.HOLM, "holm"), (Correction.BENJAMINI_HOCHBERG, "fdr_bh")])
def test_corrections_match_statsmodels(correction: Correction, method: str) -> None:
    from statsmodels.stats.multitest import multipletests

    p = [0.001, 0.2, 0.03, 0.04, 0.012, 0.5, 0.049]
    assert np.allclose(stats.adjust(p, correction), multipletests(p, method=method)[1], rtol=1e-12, atol=0)


def test_analysis_adjusts_treatments_and_keeps_raw_p_values() -> None:
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(3)
    arms = [of_data(k, rng.normal(10 + lift, 3, 800)) for k, lift in (("c", 0), ("b", 0.3), ("d", 0.1), ("e", 0.5))]
    plain = stats.analyze(variants=arms, options=Options())
    holm = stats.analyze(variants=arms, options=Options(correction=Correction.HOLM))
    raw = [v.absolute.p_value for v in plain.variants[1:]]  # type: ignore[union-attr]
    assert [v.absolute.p_value for v in holm.variants[1:]] == raw  # type: ignore[union-attr]
    adjusted = [v.absolute.adjusted_p_value for v in holm.variants[1:]]  # type: ignore[union-attr]
    assert np.allclose(adjusted, multipletests(raw, method="holm")[1], rtol=1e-12)


def test_winner_and_confidence() -> None:
    control, better, same = VariantStats("a", 5000, 500, 500), VariantStats("b", 5000, 650, 650), VariantStats("c", 5000, 505, 505)
    a = stats.analyze(variants=[control, better, same], options=Options(metric_type=MetricType.BINOMIAL))
    assert a.winner == "b" and math.isclose(a.confidence, 1 - a.variants[1].absolute.p_value)  # type: ignore[arg-type,union-attr]
    undecided = stats.analyze(variants=[control, same], options=Options(metric_type=MetricType.BINOMIAL))
    assert undecided.winner is None and undecided.confidence is None
    worse = stats.analyze(variants=[better, control], options=Options(metric_type=MetricType.BINOMIAL))
    assert worse.winner == "b"
    bayes = stats.analyze(variants=[control, better], options=Options(metric_type=MetricType.BINOMIAL, engine=Engine.BAYESIAN))
    assert bayes.winner == "b" and bayes.confidence == bayes.variants[1].chance_to_win


# -- power ---------------------------------------------------------------------------------------


def test_sample_size_matches_statsmodels_power() -> None:
    from statsmodels.stats.power import NormalIndPower

    found = stats.sample_size(baseline_rate=0.1, minimum_detectable_effect=0.1, relative=True, variants=3)
    sigma = math.sqrt((0.1 * 0.9 + 0.11 * 0.89) / 2)
    # statsmodels: two-sided two-sample z-test power, solved for the first sample's size
    reference = NormalIndPower().solve_power(effect_size=0.01 / sigma, alpha=0.05, power=0.8, ratio=1.0)
    assert math.isclose(found.per_variant_exact, reference, rel_tol=1e-6)
    assert found.per_variant == math.ceil(reference) and found.total == 3 * found.per_variant
    mean = stats.sample_size(mean=20.0, standard_deviation=8.0, minimum_detectable_effect=1.5, relative=False,
                             variants=2, alpha=0.01, power=0.9)  # fmt: skip
    reference = NormalIndPower().solve_power(effect_size=1.5 / 8.0, alpha=0.01, power=0.9, ratio=1.0)
    assert math.isclose(mean.per_variant_exact, reference, rel_tol=1e-6)


def test_days_to_reach_the_minimum_sample() -> None:
    assert stats.days_to_reach(minimum=10_000, exposed=2_500, days_running=5) == 15
    assert stats.days_to_reach(minimum=10_000, exposed=12_000, days_running=5) == 0
    assert stats.days_to_reach(minimum=10_000, exposed=0, days_running=5) is None


def test_bad_inputs_name_their_field() -> None:
    ok = [VariantStats("a", 10, 5, 5), VariantStats("b", 10, 6, 6)]
    cases = [
        (dict(variants=ok[:1], options=Options()), "input.variants"),
        (dict(variants=[ok[0], VariantStats("a", 10, 6, 6)], options=Options()), "input.variants[1].key"),
        (dict(variants=[ok[0], VariantStats("b", 10, 11, 11)], options=Options(metric_type=MetricType.BINOMIAL)),
         "input.variants[1].sum"),
        (dict(variants=[ok[0], VariantStats("b", 10, 6, 1)], options=Options()), "input.variants[1].sumSquares"),
        (dict(variants=ok, options=Options(alpha=1.5)), "input.alpha"),
        (dict(variants=ok, options=Options(cuped=True)), "input.variants[0].preSum"),
        (dict(variants=ok, options=Options(), weights=[1, -1]), "input.weights"),
        (dict(variants=ok, options=Options(), weights=[0, 0]), "input.weights"),
        (dict(variants=ok, options=Options(), weights=[1]), "input.weights"),
    ]  # fmt: skip
    for kwargs, field in cases:
        with pytest.raises(BadInput) as refused:
            stats.analyze(**kwargs)  # type: ignore[arg-type]
        assert refused.value.field == field, kwargs


# -- through the API --------------------------------------------------------------------------

ANALYZE = """query($input: ExperimentAnalysisInput!) { analyzeExperiment(input: $input) {
  engine srmPValue srmFlagged winner confidence
  variants { key n mean variance chanceToWin risk note
    absolute { estimate ciLow ciHigh standardError pValue adjustedPValue }
    relative { estimate ciLow ciHigh standardError pValue adjustedPValue }
    chiSquare { statistic pValue } cuped { theta varianceReduction adjustedMean controlAdjustedMean } } } }"""
SAMPLE_SIZE = """query($input: SampleSizeInput!) { sampleSize(input: $input) { perVariant total perVariantExact effectSize } }"""
MDE = """query($input: SampleSizeInput!) { sampleSize(input: $input) { minimumDetectableEffect total } }"""


async def test_anyone_runs_the_calculator_with_the_engine_s_numbers(client: Any) -> None:
    variants = [{"key": "control", "n": 3407, "sum": 1396.87, "sumSquares": 52377.9767},
                {"key": "treatment", "n": 3461, "sum": 2422.7, "sumSquares": 134698.29}]  # fmt: skip
    data = await gql_data(client, ANALYZE, {"input": {"variants": variants, "weights": [1, 1]}}, token=None)  # type: ignore[arg-type]
    answer = data["analyzeExperiment"]
    assert answer["engine"] == "FREQUENTIST" and answer["variants"][0]["absolute"] is None
    relative = answer["variants"][1]["relative"]
    assert close(relative["estimate"], 0.70732) and close(relative["pValue"], 0.06191)  # gbstats, as above
    assert answer["srmPValue"] == stats.srm_p_value([3407, 3461], [1, 1]) and answer["srmFlagged"] is False
    bayes = {"variants": variants, "engine": "BAYESIAN", "prior": {"mean": 0.1, "variance": 0.1}}
    data = await gql_data(client, ANALYZE, {"input": bayes}, token=None)  # type: ignore[arg-type]
    treated = data["analyzeExperiment"]["variants"][1]
    assert treated["chanceToWin"] > 0.9 and len(treated["risk"]) == 2 and treated["relative"]["pValue"] is None


async def test_calculator_refusals_name_the_field(client: Any) -> None:
    duplicate = {"variants": [{"key": "a", "n": 10, "sum": 1, "sumSquares": 1}, {"key": "a", "n": 10, "sum": 2, "sumSquares": 2}]}
    body = await gql(client, ANALYZE, {"input": duplicate})
    assert error_codes(body) == ["BAD_USER_INPUT"] and body["errors"][0]["extensions"]["field"] == "input.variants[1].key"
    body = await gql(client, SAMPLE_SIZE, {"input": {"minimumDetectableEffect": 0.1}})
    assert error_codes(body) == ["BAD_USER_INPUT"] and body["errors"][0]["extensions"]["field"] == "input.baselineRate"


async def test_sample_size_through_the_api(client: Any) -> None:
    data = await gql_data(client, SAMPLE_SIZE, {"input": {"baselineRate": 0.1, "minimumDetectableEffect": 0.1, "variants": 3}}, token=None)  # type: ignore[arg-type]
    found = stats.sample_size(baseline_rate=0.1, minimum_detectable_effect=0.1, relative=True, variants=3)
    assert data["sampleSize"] == {"perVariant": found.per_variant, "total": found.total,
                                  "perVariantExact": found.per_variant_exact, "effectSize": found.effect_size}  # fmt: skip


def test_the_detectable_effect_inverts_the_sample_size() -> None:
    from statsmodels.stats.power import NormalIndPower

    # statsmodels: the effect size 2,000 persons per arm detect at alpha 0.05 with power 0.8
    found = stats.detectable_effect(per_variant=2000, mean=50.0, standard_deviation=20.0, relative=False, variants=2)
    reference = NormalIndPower().solve_power(nobs1=2000, alpha=0.05, power=0.8, ratio=1.0)
    assert math.isclose(found.effect_size, reference, rel_tol=1e-6)
    assert math.isclose(found.minimum_detectable_effect, reference * 20.0, rel_tol=1e-6)
    # a conversion's MDE gives back its sample size
    mde = stats.detectable_effect(per_variant=14_000, baseline_rate=0.08, relative=True, variants=3)
    again = stats.sample_size(baseline_rate=0.08, minimum_detectable_effect=mde.minimum_detectable_effect, relative=True, variants=3)
    assert math.isclose(again.per_variant_exact, 14_000, rel_tol=1e-6) and mde.total == 42_000
    with pytest.raises(BadInput) as refused:
        stats.detectable_effect(per_variant=3, baseline_rate=0.5, relative=True, variants=2)
    assert refused.value.field == "input.perVariant"


async def test_the_detectable_effect_through_the_api(client: Any) -> None:
    data = await gql_data(client, MDE, {"input": {"baselineRate": 0.08, "perVariant": 14000, "variants": 3}}, token=None)  # type: ignore[arg-type]
    found = stats.detectable_effect(per_variant=14_000, baseline_rate=0.08, relative=True, variants=3)
    assert data["sampleSize"] == {"minimumDetectableEffect": found.minimum_detectable_effect, "total": 42_000}
    body = await gql(client, MDE, {"input": {"baselineRate": 0.08, "perVariant": 100, "minimumDetectableEffect": 0.1}})
    assert error_codes(body) == ["BAD_USER_INPUT"] and body["errors"][0]["extensions"]["field"] == "input.minimumDetectableEffect"
