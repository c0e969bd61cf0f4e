"""The statistics engine against scipy/statsmodels on fixed inputs, and in seeded simulations."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import scipy.stats as sps
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from metrics.stats import (
    ArmStats,
    Comparison,
    Estimate,
    GuardrailResult,
    InvalidStats,
    NormalPrior,
    SrmResult,
    adjust_pvalues,
    compare,
    compare_many,
    cumulative,
    incremental_value,
    non_inferiority,
    recommend,
    srm_check,
)


def arm(name: str, y: np.ndarray, x: np.ndarray | None = None, den: np.ndarray | None = None) -> ArmStats:
    """Sufficient statistics of raw per-unit values, as the warehouse would aggregate them."""
    extra = {}
    if x is not None:
        extra = dict(pre_sum=float(x.sum()), pre_sum_squares=float(x @ x), sum_product=float(x @ y))
    if den is not None:
        extra = dict(denominator_sum=float(den.sum()), denominator_sum_squares=float(den @ den),
                     sum_product=float(y @ den))
    return ArmStats(name, len(y), float(y.sum()), float(y @ y), **extra)


def arms_from_rows(name: str, y: np.ndarray, x: np.ndarray | None = None) -> list[ArmStats]:
    """One ArmStats per simulated experiment (row of a reps × n matrix)."""
    sums, squares = y.sum(axis=1), (y * y).sum(axis=1)
    if x is None:
        return [ArmStats(name, y.shape[1], s, q) for s, q in zip(sums, squares)]
    pre, pre_sq, prod = x.sum(axis=1), (x * x).sum(axis=1), (x * y).sum(axis=1)
    return [ArmStats(name, y.shape[1], *vals) for vals in zip(sums, squares, pre, pre_sq, prod)]


def binomial_arms(name: str, n: int, conversions: np.ndarray) -> list[ArmStats]:
    return [ArmStats(name, n, float(k), float(k)) for k in conversions]


def column(comparisons: list[Comparison], part: str, key: str) -> np.ndarray:
    return np.array([getattr(getattr(c, part), key) for c in comparisons], dtype=float)


def covers(comparisons: list[Comparison], part: str, truth: float) -> float:
    lo, hi = column(comparisons, part, "ci_lower"), column(comparisons, part, "ci_upper")
    return float(np.mean((lo <= truth) & (truth <= hi)))


def json_roundtrip(result) -> dict:
    return json.loads(json.dumps(result.to_dict(), allow_nan=False))


# --- against reference implementations -------------------------------------------------------


def test_welch_matches_scipy():
    rng = np.random.default_rng(1)
    c, v = rng.lognormal(1.0, 0.8, 300), rng.lognormal(1.1, 1.0, 250)
    result = compare(arm("control", c), arm("b", v), "mean", method="fixed")
    ref = sps.ttest_ind(v, c, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert result.absolute.estimate == pytest.approx(v.mean() - c.mean(), rel=1e-12)
    assert result.absolute.p_value == pytest.approx(ref.pvalue, rel=1e-8)
    assert (result.absolute.ci_lower, result.absolute.ci_upper) == pytest.approx((ci.low, ci.high), rel=1e-8)
    from_stats = sps.ttest_ind_from_stats(v.mean(), v.std(ddof=1), len(v), c.mean(), c.std(ddof=1), len(c), False)
    assert result.absolute.p_value == pytest.approx(from_stats.pvalue, rel=1e-8)


def test_proportions_match_statsmodels():
    rng = np.random.default_rng(2)
    c, v = (rng.random(4000) < 0.10).astype(float), (rng.random(3800) < 0.115).astype(float)
    result = compare(arm("control", c), arm("b", v), "proportion", alpha=0.1, method="fixed")
    means = CompareMeans(DescrStatsW(v), DescrStatsW(c))
    _, p, _ = means.ttest_ind(usevar="unequal")
    assert result.absolute.p_value == pytest.approx(p, rel=1e-8)
    assert (result.absolute.ci_lower, result.absolute.ci_upper) == pytest.approx(
        means.tconfint_diff(alpha=0.1, usevar="unequal"), rel=1e-8)
    wald = confint_proportions_2indep(v.sum(), len(v), c.sum(), len(c), method="wald", alpha=0.1)
    assert (result.absolute.ci_lower, result.absolute.ci_upper) == pytest.approx(wald, rel=2e-3)


def ratio_users(rng: np.random.Generator, shape, aov: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-user revenue and orders with true AOV `aov`: many users never order, baskets are skewed."""
    orders = rng.poisson(0.8, shape).astype(float)
    revenue = rng.gamma(2.0, aov / 2.0, shape) * orders
    return revenue, orders


def test_ratio_delta_method_se_matches_linearisation_and_bootstrap():
    rng = np.random.default_rng(3)
    (rc, oc), (rv, ov) = ratio_users(rng, 800, 40.0), ratio_users(rng, 700, 44.0)
    result = compare(arm("control", rc, den=oc), arm("b", rv, den=ov), "ratio", method="fixed")

    def linearised_var(revenue, orders):  # Var(R̂) = Var(x − R·y) / (n·ȳ²), from the raw rows
        ratio = revenue.sum() / orders.sum()
        return np.var(revenue - ratio * orders, ddof=1) / (len(orders) * orders.mean() ** 2)

    assert result.absolute.estimate == pytest.approx(rv.sum() / ov.sum() - rc.sum() / oc.sum(), rel=1e-12)
    assert result.absolute.se == pytest.approx(math.sqrt(linearised_var(rc, oc) + linearised_var(rv, ov)), rel=1e-9)

    def bootstrap_ratios(revenue, orders, reps=2000):
        idx = rng.integers(0, len(orders), size=(reps, len(orders)))
        return revenue[idx].sum(axis=1) / orders[idx].sum(axis=1)

    boot_sd = np.std(bootstrap_ratios(rv, ov) - bootstrap_ratios(rc, oc), ddof=1)
    assert result.absolute.se == pytest.approx(boot_sd, rel=0.08)


def test_cuped_theta_and_estimate_match_ols_with_arm_dummy():
    rng = np.random.default_rng(4)
    n_c, n_v = 600, 550
    x = rng.gamma(2.0, 5.0, n_c + n_v)
    treat = np.r_[np.zeros(n_c), np.ones(n_v)]
    y = 3.0 + 0.8 * x + 1.5 * treat + rng.normal(0, 4.0, n_c + n_v)
    result = compare(arm("control", y[:n_c], x[:n_c]), arm("b", y[n_c:], x[n_c:]), "mean", method="fixed")
    ols = sm.OLS(y, sm.add_constant(np.column_stack([treat, x]))).fit()
    assert result.cuped.theta == pytest.approx(ols.params[2], rel=1e-9)
    assert result.absolute.estimate == pytest.approx(ols.params[1], rel=1e-9)
    assert result.absolute.se == pytest.approx(ols.bse[1], rel=0.05)
    assert 0.0 < result.cuped.variance_reduction < 1.0


def test_srm_matches_scipy_chisquare():
    counts, shares = [5_030, 2_900, 2_070], [0.5, 0.3, 0.2]
    arms = [ArmStats(f"a{i}", n, 0.0, 0.0, expected_share=s) for i, (n, s) in enumerate(zip(counts, shares))]
    ref = sps.chisquare(counts, np.sum(counts) * np.array(shares))
    result = srm_check(arms)
    assert (result.chi2, result.p_value, result.df) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue), 2)
    assert result.ok == (ref.pvalue >= 0.001)
    assert srm_check(arms, expected_shares=[1, 1, 1]).ok is False  # equal split is clearly not what happened
    assert json_roundtrip(result)["threshold"] == 0.001


def test_srm_edge_cases():
    one = [ArmStats("control", 10, 0.0, 0.0)]
    assert srm_check(one) == SrmResult(0.0, None, 0, True, 0.001)
    assert srm_check([ArmStats("a", 0, 0.0, 0.0), ArmStats("b", 0, 0.0, 0.0)]).p_value is None
    mixed = [ArmStats("a", 10, 0.0, 0.0, expected_share=0.5), ArmStats("b", 10, 0.0, 0.0)]
    with pytest.raises(InvalidStats) as err:
        srm_check(mixed)
    assert (err.value.field, err.value.arm) == ("expected_share", "b")
    with pytest.raises(InvalidStats, match="expected_shares"):
        srm_check(one * 2, expected_shares=[0.5])


@pytest.mark.parametrize("method, reference", [("bh", "fdr_bh"), ("holm", "holm")])
def test_adjust_pvalues_matches_multipletests_and_passes_gaps_through(method, reference):
    raw = [0.001, 0.04, None, 0.03, float("nan"), 0.2, 0.011]
    present = [p for p in raw if p is not None and not math.isnan(p)]
    expected = iter(multipletests(present, method=reference)[1])
    adjusted = adjust_pvalues(raw, method)
    for original, got in zip(raw, adjusted):
        if original is None:
            assert got is None
        elif math.isnan(original):
            assert math.isnan(got)
        else:
            assert got == pytest.approx(next(expected))
    assert adjust_pvalues([], method) == []


def test_bayesian_summaries_match_the_normal_posterior():
    c, v = ArmStats("control", 2_000, 240.0, 240.0), ArmStats("b", 2_000, 262.0, 262.0)
    flat = compare(c, v, "proportion")
    posterior = sps.norm(flat.absolute.estimate, flat.absolute.se)
    assert flat.chance_to_win == pytest.approx(posterior.sf(0.0), rel=1e-9)
    assert flat.expected_loss == pytest.approx(posterior.expect(lambda x: max(0.0, -x)), rel=1e-4)
    sceptical = compare(c, v, "proportion", prior=NormalPrior(0.0, flat.absolute.se / 10))
    assert 0.5 < sceptical.chance_to_win < 0.6 < flat.chance_to_win


# --- sequential boundary properties -----------------------------------------------------------


arm_strategy = st.builds(
    lambda n, mean, var: (n, n * mean, n * (var + mean * mean)),
    st.integers(0, 200_000), st.floats(-1e3, 1e3), st.floats(0, 1e4) | st.just(0.0),
)


@settings(max_examples=150, deadline=None)
@given(arm_strategy, arm_strategy, st.sampled_from(["fixed", "sequential"]), st.floats(0.001, 0.3))
def test_interval_and_p_value_agree_and_json_is_clean(c, v, method, alpha):
    result = compare(ArmStats("control", *c), ArmStats("b", *v), "mean", alpha=alpha, method=method)
    json_roundtrip(result)
    if result.status != "ok":
        assert result.reason and result.absolute == Estimate()
        return
    for est in (result.absolute, result.relative):
        if est.estimate is None or est.se == 0:
            continue
        excludes_zero = est.ci_lower > 0 or est.ci_upper < 0
        if not math.isclose(est.p_value, alpha, rel_tol=1e-6):
            assert (est.p_value <= alpha) == excludes_zero


def test_sequential_interval_contains_fixed_and_is_tightest_near_tuning_n():
    c, v = ArmStats("control", 5_000, 500, 500), ArmStats("b", 5_000, 560, 560)
    width = {}
    for tuning in (500, 5_000, 50_000):
        seq = compare(c, v, "proportion", sequential_tuning_n=tuning).absolute
        width[tuning] = seq.ci_upper - seq.ci_lower
    fixed = compare(c, v, "proportion", method="fixed").absolute
    assert seq.ci_lower < fixed.ci_lower and fixed.ci_upper < seq.ci_upper
    assert width[5_000] < min(width[500], width[50_000])


# --- simulations ------------------------------------------------------------------------------


def test_fixed_intervals_cover_true_mean_and_relative_effect():
    rng = np.random.default_rng(10)
    reps, n, mu_c, mu_v = 2_000, 400, 10.0, 10.8
    c = rng.gamma(4.0, mu_c / 4.0, (reps, n))  # skewed, like revenue per user
    v = rng.gamma(4.0, mu_v / 4.0, (reps, n))
    results = compare_many(list(zip(arms_from_rows("control", c), arms_from_rows("b", v))), "mean", method="fixed")
    assert 0.93 <= covers(results, "absolute", mu_v - mu_c) <= 0.97
    assert 0.93 <= covers(results, "relative", mu_v / mu_c - 1) <= 0.97


def test_fixed_intervals_cover_true_proportion_effects():
    rng = np.random.default_rng(11)
    reps, n, p_c, p_v = 2_000, 3_000, 0.10, 0.12
    pairs = list(zip(binomial_arms("control", n, rng.binomial(n, p_c, reps)),
                     binomial_arms("b", n, rng.binomial(n, p_v, reps))))
    results = compare_many(pairs, "proportion", method="fixed")
    assert 0.93 <= covers(results, "absolute", p_v - p_c) <= 0.97
    assert 0.93 <= covers(results, "relative", p_v / p_c - 1) <= 0.97


def test_fixed_intervals_cover_true_ratio_effect():
    rng = np.random.default_rng(12)
    reps, n, aov_c, aov_v = 1_500, 400, 40.0, 42.0

    def arms(name: str, aov: float) -> list[ArmStats]:
        revenue, orders = ratio_users(rng, (reps, n), aov)
        return [arm(name, r, den=o) for r, o in zip(revenue, orders)]

    results = compare_many(list(zip(arms("control", aov_c), arms("b", aov_v))), "ratio", method="fixed")
    assert 0.93 <= covers(results, "absolute", aov_v - aov_c) <= 0.97
    assert 0.93 <= covers(results, "relative", aov_v / aov_c - 1) <= 0.97


def normal_chunks(rng, reps: int, looks: int, m: int, mu: float, sd: float) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative Σx and Σx² after each look of m normal units, drawn exactly without raw rows."""
    sums = rng.normal(m * mu, sd * math.sqrt(m), (reps, looks))
    within = sd**2 * rng.chisquare(m - 1, (reps, looks))
    return sums.cumsum(axis=1), (within + sums**2 / m).cumsum(axis=1)


def ever_significant(metric_type: str, control: list[ArmStats], variant: list[ArmStats], reps: int,
                     method: str) -> float:
    """Share of simulated experiments whose absolute p-value crossed 0.05 at any look."""
    results = compare_many(list(zip(control, variant)), metric_type, method=method)
    p = column(results, "absolute", "p_value").reshape(reps, -1)
    return float(np.mean((p <= 0.05).any(axis=1)))


@pytest.mark.parametrize("metric_type", ["proportion", "mean"])
def test_sequential_controls_peeking_where_fixed_does_not(metric_type):
    rng = np.random.default_rng(20)
    reps, looks, m = 1_500, 20, 500
    ns = m * np.arange(1, looks + 1)
    arms = {}
    for name in ("control", "b"):
        if metric_type == "proportion":
            conversions = rng.binomial(m, 0.1, (reps, looks)).cumsum(axis=1)
            sums, squares = conversions, conversions
        else:
            sums, squares = normal_chunks(rng, reps, looks, m, 5.0, 3.0)
        arms[name] = [ArmStats(name, int(n), float(s), float(q))
                      for row_s, row_q in zip(sums, squares) for n, s, q in zip(ns, row_s, row_q)]
    sequential = ever_significant(metric_type, arms["control"], arms["b"], reps, "sequential")
    fixed = ever_significant(metric_type, arms["control"], arms["b"], reps, "fixed")
    assert sequential <= 0.065
    assert fixed > 0.10


def test_cuped_narrows_intervals_without_bias():
    rng = np.random.default_rng(30)
    reps, n, rho, effect = 1_500, 500, 0.7, 0.1
    pairs_raw, pairs_cuped = [], []
    for name in ("control", "b"):
        x = rng.normal(0, 1, (reps, n))
        y = rho * x + math.sqrt(1 - rho**2) * rng.normal(0, 1, (reps, n)) + (effect if name == "b" else 0.0)
        pairs_raw.append(arms_from_rows(name, y))
        pairs_cuped.append(arms_from_rows(name, y, x))
    raw = compare_many(list(zip(*pairs_raw)), "mean", method="fixed")
    adjusted = compare_many(list(zip(*pairs_cuped)), "mean", method="fixed")
    width = {k: np.mean(column(r, "absolute", "ci_upper") - column(r, "absolute", "ci_lower"))
             for k, r in (("raw", raw), ("cuped", adjusted))}
    assert width["cuped"] / width["raw"] == pytest.approx(math.sqrt(1 - rho**2), rel=0.03)
    estimates = column(adjusted, "absolute", "estimate")
    assert abs(estimates.mean() - effect) < 4 * estimates.std() / math.sqrt(reps)
    assert 0.93 <= covers(adjusted, "absolute", effect) <= 0.97
    reductions = np.array([r.cuped.variance_reduction for r in adjusted])
    assert reductions.mean() == pytest.approx(rho**2, abs=0.02)


# --- degenerate and invalid input -------------------------------------------------------------


DEGENERATE = {
    "control empty": (ArmStats("control", 0, 0.0, 0.0), ArmStats("b", 100, 10.0, 10.0), "proportion"),
    "one unit": (ArmStats("control", 100, 10.0, 10.0), ArmStats("b", 1, 1.0, 1.0), "proportion"),
    "zero variance": (ArmStats("control", 50, 100.0, 200.0), ArmStats("b", 60, 120.0, 240.0), "mean"),
    "no conversions": (ArmStats("control", 500, 0.0, 0.0), ArmStats("b", 500, 0.0, 0.0), "proportion"),
    "sum_squares too small": (ArmStats("control", 10, 100.0, 50.0), ArmStats("b", 10, 5.0, 30.0), "mean"),
    "conversions exceed n": (ArmStats("control", 10, 12.0, 12.0), ArmStats("b", 10, 5.0, 5.0), "proportion"),
    "zero denominator": (ArmStats("control", 10, 0.0, 0.0, denominator_sum=0.0, denominator_sum_squares=0.0,
                                  sum_product=0.0),
                         ArmStats("b", 10, 5.0, 9.0, denominator_sum=3.0, denominator_sum_squares=3.0,
                                  sum_product=5.0), "ratio"),
    "cross sum impossible": (ArmStats("control", 10, 5.0, 5.0, pre_sum=5.0, pre_sum_squares=5.0, sum_product=50.0),
                             ArmStats("b", 10, 5.0, 5.0, pre_sum=5.0, pre_sum_squares=5.0, sum_product=3.0),
                             "proportion"),
}


@pytest.mark.parametrize("case", DEGENERATE)
@pytest.mark.parametrize("method", ["fixed", "sequential"])
def test_degenerate_input_is_not_enough_data_with_clean_json(case, method):
    control, variant, metric_type = DEGENERATE[case]
    result = compare(control, variant, metric_type, method=method)
    assert result.status == "not_enough_data"
    assert result.reason
    out = json_roundtrip(result)
    assert out["absolute"]["estimate"] is None and out["chance_to_win"] is None


def test_zero_control_mean_keeps_absolute_and_drops_relative():
    result = compare(ArmStats("control", 100, 0.0, 0.0), ArmStats("b", 100, 7.0, 7.0), "proportion")
    assert result.status == "ok" and "relative" in result.reason
    assert result.absolute.estimate == pytest.approx(0.07)
    assert result.relative == Estimate()
    assert json_roundtrip(result)["relative"]["ci_lower"] is None


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: ArmStats("b", -3, 0.0, 0.0), "n"),
        (lambda: ArmStats("b", 2.5, 0.0, 0.0), "n"),
        (lambda: ArmStats("b", True, 0.0, 0.0), "n"),
        (lambda: ArmStats("b", 10, float("nan"), 0.0), "sum"),
        (lambda: ArmStats("b", 10, 1.0, None), "sum_squares"),
        (lambda: ArmStats("b", 10, 1.0, 1.0, expected_share=-0.5), "expected_share"),
        (lambda: compare(ArmStats("a", 10, 1, 1), ArmStats("b", 10, 1, 1), "median"), "metric_type"),
        (lambda: compare(ArmStats("a", 10, 1, 1), ArmStats("b", 10, 1, 1), "mean", alpha=1.5), "alpha"),
        (lambda: compare(ArmStats("a", 10, 1, 1), ArmStats("b", 10, 1, 1), "ratio"), "denominator_sum"),
        (lambda: compare(ArmStats("a", 10, 1, 1, pre_sum=1, pre_sum_squares=1, sum_product=1),
                         ArmStats("b", 10, 1, 1), "mean"), "pre_sum"),
        (lambda: compare(ArmStats("a", 10, 1, 1, pre_sum=1, pre_sum_squares=1),
                         ArmStats("b", 10, 1, 1, pre_sum=1, pre_sum_squares=1), "mean"), "sum_product"),
        (lambda: compare(ArmStats("a", 10, 1, 1, denominator_sum=1), ArmStats("b", 10, 1, 1), "mean"),
         "denominator_sum"),
    ],
)
def test_invalid_numbers_raise_naming_the_field(make, field):
    with pytest.raises(InvalidStats) as err:
        make()
    assert err.value.field == field and field in str(err.value)


# --- guardrails, incremental value, cumulative lift, recommendation ---------------------------


def base_comparison(variant: str = "b", **changes) -> Comparison:
    base = compare(ArmStats("control", 1_000, 100.0, 100.0), ArmStats(variant, 1_000, 100.0, 100.0), "proportion")
    return dataclasses.replace(base, **changes)


def with_relative(lo: float, hi: float) -> Comparison:
    return base_comparison(relative=Estimate((lo + hi) / 2, lo, hi, 0.5, (hi - lo) / 4))


@pytest.mark.parametrize(
    "lo, hi, higher_is_better, verdict",
    [
        (-0.01, 0.03, True, "passed"),
        (-0.05, 0.03, True, "inconclusive"),
        (-0.09, -0.03, True, "failed"),
        (-0.03, 0.01, False, "passed"),
        (-0.03, 0.05, False, "inconclusive"),
        (0.03, 0.09, False, "failed"),
    ],
)
def test_non_inferiority_reads_the_bad_side_bound(lo, hi, higher_is_better, verdict):
    result = non_inferiority(with_relative(lo, hi), 0.02, higher_is_better, name="latency")
    assert result.verdict == verdict and result.passed == (verdict == "passed")
    assert result.bound == (lo if higher_is_better else hi)
    json_roundtrip(result)


def test_non_inferiority_without_data_is_inconclusive():
    empty = compare(ArmStats("control", 0, 0.0, 0.0), ArmStats("b", 0, 0.0, 0.0), "mean")
    result = non_inferiority(empty, 0.02)
    assert result.verdict == "inconclusive" and not result.passed and result.bound is None


def test_incremental_value_scales_per_user_difference():
    rng = np.random.default_rng(40)
    exposed, holdout = arm("exposed", rng.gamma(2.0, 6.0, 9_000)), arm("holdout", rng.gamma(2.0, 5.0, 1_000))
    value = incremental_value(exposed, holdout, users_exposed=250_000, method="fixed")
    per_user = compare(holdout, exposed, "mean", method="fixed").absolute
    assert value.per_user == per_user
    assert (value.total.estimate, value.total.ci_lower, value.total.ci_upper) == pytest.approx(
        (per_user.estimate * 250_000, per_user.ci_lower * 250_000, per_user.ci_upper * 250_000))
    assert value.total.p_value == per_user.p_value
    json_roundtrip(value)
    with pytest.raises(InvalidStats, match="users_exposed"):
        incremental_value(exposed, holdout, users_exposed=-1)


def test_cumulative_lift_matches_pointwise_comparisons_and_narrows():
    rng = np.random.default_rng(50)
    daily_c, daily_v = rng.binomial(1_000, 0.10, 14).cumsum(), rng.binomial(1_000, 0.11, 14).cumsum()
    series = [(f"day {d + 1}", ArmStats("control", 1_000 * (d + 1), float(c), float(c)),
               ArmStats("b", 1_000 * (d + 1), float(v), float(v))) for d, (c, v) in enumerate(zip(daily_c, daily_v))]
    points = cumulative(series, "proportion")
    assert [p.label for p in points] == [label for label, _, _ in series]
    assert points[4].relative == compare(series[4][1], series[4][2], "proportion").relative
    widths = [p.relative.ci_upper - p.relative.ci_lower for p in points]
    assert all(later < earlier for earlier, later in zip(widths, widths[1:]))
    json_roundtrip(points[0])


def significant(variant: str, estimate: float, p: float) -> Comparison:
    return base_comparison(variant, absolute=Estimate(estimate, estimate - 1, estimate + 1, p, 0.5))


def guardrail(verdict: str, variant: str = "b") -> GuardrailResult:
    return GuardrailResult("latency", variant, verdict, verdict == "passed", -0.01, 0.02, "")


@pytest.mark.parametrize(
    "comparisons, guardrails, srm_ok, action",
    [
        ([significant("b", 0.02, 0.001)], [], False, "investigate"),
        ([significant("b", 0.02, 0.001)], [guardrail("failed")], True, "stop"),
        ([significant("b", 0.02, 0.001)], [guardrail("passed")], True, "ship"),
        ([significant("b", 0.02, 0.001)], [guardrail("inconclusive")], True, "keep_running"),
        ([significant("b", -0.02, 0.001)], [], True, "stop"),
        ([significant("b", 0.02, 0.3)], [], True, "keep_running"),
        ([significant("b", 0.02, 0.03), significant("c", 0.02, 0.03)], [], True, "keep_running"),  # Holm: 0.06
        ([significant("b", 0.02, 0.03), significant("c", 0.02, 0.001)], [], True, "ship"),
    ],
)
def test_recommend(comparisons, guardrails, srm_ok, action):
    srm = SrmResult(40.0 if not srm_ok else 0.1, 1e-9 if not srm_ok else 0.75, 1, srm_ok, 0.001)
    result = recommend(comparisons, guardrails, srm)
    assert result.action == action and result.reason
    json_roundtrip(result)


def test_recommend_ships_the_best_winner_and_reads_lower_is_better():
    comparisons = [significant("b", 0.02, 0.001), significant("c", 0.05, 0.001)]
    assert "'c'" in recommend(comparisons).reason
    assert recommend(comparisons, higher_is_better=False).action == "stop"
