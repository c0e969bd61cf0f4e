"""The statistics engine against scipy/statsmodels on fixed inputs, and in seeded simulations."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import warnings

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
    MIN_EVENTS,
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
    critical_value,
    cumulative,
    incremental_value,
    non_inferiority,
    recommend,
    segment_effects,
    srm_check,
)


def arm(name: str, y: np.ndarray, x: np.ndarray | None = None, den: np.ndarray | None = None) -> ArmStats:
    """Sufficient statistics of raw per-unit values, as the warehouse would aggregate them."""
    extra = {}
    if x is not None:
        extra = dict(pre_sum=float(x.sum()), pre_sum_squares=float(x @ x), sum_product=float(x @ y))
    if den is not None:
        extra = dict(
            denominator_sum=float(den.sum()), denominator_sum_squares=float(den @ den), sum_product=float(y @ den)
        )
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
        means.tconfint_diff(alpha=0.1, usevar="unequal"), rel=1e-8
    )
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


@pytest.mark.parametrize(("method", "reference"), [("bh", "fdr_bh"), ("holm", "holm")])
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
    if method == "bh":
        assert [p for p in adjusted if p is not None and not math.isnan(p)] == pytest.approx(
            sps.false_discovery_control(present, method="bh")
        )


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=40), st.sampled_from(["bh", "holm"]))
def test_adjust_pvalues_matches_multipletests_on_any_family(p_values, method):
    reference = multipletests(p_values, method={"bh": "fdr_bh", "holm": "holm"}[method])[1]
    assert adjust_pvalues(p_values, method) == pytest.approx(reference.tolist(), abs=1e-12)


@pytest.mark.parametrize("arms", [2, 3, 4, 5, 6, 9, 14, 31])
def test_srm_p_value_matches_scipy_for_any_number_of_arms(arms):
    """The closed-form chi-square tail (no scipy at run time) against scipy, from a perfect split
    to an extreme mismatch, for odd and even degrees of freedom."""
    rng = np.random.default_rng(arms)
    for tilt in (0.0, 0.001, 0.01, 0.05, 0.3):
        counts = np.round(10_000 * (1 + tilt * rng.standard_normal(arms))).astype(int)
        ref = sps.chisquare(counts)
        result = srm_check([ArmStats(f"a{i}", int(n), 0.0, 0.0) for i, n in enumerate(counts)])
        assert result.chi2 == pytest.approx(ref.statistic, rel=1e-12, abs=1e-12)
        assert result.p_value == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)


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
    st.integers(0, 200_000),
    st.floats(-1e3, 1e3),
    st.floats(0, 1e4) | st.just(0.0),
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
    pairs = list(
        zip(binomial_arms("control", n, rng.binomial(n, p_c, reps)), binomial_arms("b", n, rng.binomial(n, p_v, reps)))
    )
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


def ever_significant(
    metric_type: str, control: list[ArmStats], variant: list[ArmStats], reps: int, method: str
) -> float:
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
        arms[name] = [
            ArmStats(name, int(n), float(s), float(q))
            for row_s, row_q in zip(sums, squares)
            for n, s, q in zip(ns, row_s, row_q)
        ]
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
    width = {
        k: np.mean(column(r, "absolute", "ci_upper") - column(r, "absolute", "ci_lower"))
        for k, r in (("raw", raw), ("cuped", adjusted))
    }
    assert width["cuped"] / width["raw"] == pytest.approx(math.sqrt(1 - rho**2), rel=0.03)
    estimates = column(adjusted, "absolute", "estimate")
    assert abs(estimates.mean() - effect) < 4 * estimates.std() / math.sqrt(reps)
    assert 0.93 <= covers(adjusted, "absolute", effect) <= 0.97
    reductions = np.array([r.cuped.variance_reduction for r in adjusted])
    assert reductions.mean() == pytest.approx(rho**2, abs=0.02)


# --- degenerate and invalid input -------------------------------------------------------------


DEGENERATE = {
    "control empty": (ArmStats("control", 0, 0.0, 0.0), ArmStats("b", 100, 10.0, 10.0), "proportion", "0 unit"),
    "one unit": (ArmStats("control", 100, 50.0, 50.0), ArmStats("b", 1, 1.0, 1.0), "proportion", "1 unit"),
    "zero variance": (ArmStats("control", 50, 100.0, 200.0), ArmStats("b", 60, 120.0, 240.0), "mean", "no variation"),
    "one flat arm": (ArmStats("control", 50, 0.0, 0.0), ArmStats("b", 60, 12.0, 30.0), "mean", "no variation"),
    "no conversions": (ArmStats("control", 500, 0.0, 0.0), ArmStats("b", 500, 0.0, 0.0), "proportion", "0 event(s)"),
    "few conversions": (
        ArmStats("control", 5_000, 40.0, 40.0),
        ArmStats("b", 5_000, 3.0, 3.0),
        "proportion",
        "3 event(s)",
    ),
    "few non-conversions": (
        ArmStats("control", 100, 95.0, 95.0),
        ArmStats("b", 100, 50.0, 50.0),
        "proportion",
        "5 non-event(s)",
    ),
    "zero denominator": (
        ArmStats("control", 10, 0.0, 0.0, denominator_sum=0.0, denominator_sum_squares=0.0, sum_product=0.0),
        ArmStats("b", 10, 5.0, 9.0, denominator_sum=3.0, denominator_sum_squares=3.0, sum_product=5.0),
        "ratio",
        "denominator_sum 0",
    ),
}


@pytest.mark.parametrize("case", DEGENERATE)
@pytest.mark.parametrize("method", ["fixed", "sequential"])
def test_degenerate_input_is_not_enough_data_with_a_true_reason(case, method):
    """Possible but too little data (regression, issue 14 defect 3: each case says what is short)."""
    control, variant, metric_type, words = DEGENERATE[case]
    result = compare(control, variant, metric_type, method=method)
    assert result.status == "not_enough_data"
    assert words in result.reason and "impossible" not in result.reason
    out = json_roundtrip(result)
    assert out["absolute"]["estimate"] is None and out["chance_to_win"] is None


@pytest.mark.parametrize("events", [MIN_EVENTS - 1, MIN_EVENTS])
def test_rare_events_are_not_enough_data_below_the_stated_minimum(events):
    """Regression (issue 14 defect 5): a handful of events gave "-100% [-100%, -100%]" and a
    passed guardrail; below MIN_EVENTS conversions in an arm there is no interval at all."""
    control, variant = ArmStats("control", 20_000, 60.0, 60.0), ArmStats("b", 20_000, float(events), float(events))
    result = compare(control, variant, "proportion")
    assert (result.status == "ok") == (events >= MIN_EVENTS)
    if result.status == "ok":
        assert result.relative.ci_lower < result.relative.ci_upper
    else:
        assert f"at least {MIN_EVENTS}" in result.reason and result.relative == Estimate()


def test_a_guardrail_never_passes_on_rare_events():
    """The demo's opt-out guardrail: no opt-out in the variant, a few in control."""
    none_yet = compare(ArmStats("control", 4_000, 4.0, 4.0), ArmStats("b", 4_000, 0.0, 0.0), "proportion")
    verdict = non_inferiority(none_yet, 0.25, higher_is_better=False, name="opt_out_rate")
    assert verdict.verdict == "inconclusive" and not verdict.passed
    assert "not enough data" in verdict.reason and verdict.bound is None


def test_zero_control_mean_keeps_absolute_and_drops_relative():
    result = compare(ArmStats("control", 100, 0.0, 100.0), ArmStats("b", 100, 70.0, 180.0), "mean")
    assert result.status == "ok" and "not clearly away from zero" in result.reason
    assert result.absolute.estimate == pytest.approx(0.7)
    assert result.relative == Estimate()
    assert json_roundtrip(result)["relative"]["ci_lower"] is None


@pytest.mark.parametrize(
    ("make", "field"),
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
        (
            lambda: compare(
                ArmStats("a", 10, 1, 1, pre_sum=1, pre_sum_squares=1, sum_product=1), ArmStats("b", 10, 1, 1), "mean"
            ),
            "pre_sum",
        ),
        (
            lambda: compare(
                ArmStats("a", 10, 1, 1, pre_sum=1, pre_sum_squares=1),
                ArmStats("b", 10, 1, 1, pre_sum=1, pre_sum_squares=1),
                "mean",
            ),
            "sum_product",
        ),
        (
            lambda: compare(ArmStats("a", 10, 1, 1, denominator_sum=1), ArmStats("b", 10, 1, 1), "mean"),
            "denominator_sum",
        ),
    ],
)
def test_invalid_numbers_raise_naming_the_field(make, field):
    with pytest.raises(InvalidStats) as err:
        make()
    assert err.value.field == field and field in str(err.value)


def ratio_arm(name: str, n: int = 10, **changes) -> ArmStats:
    """A possible ratio arm (10 units; 3 ordered 1, 1 and 2 times for 10, 20 and 50), changed by `changes`."""
    fields = {
        "sum": 80.0,
        "sum_squares": 3_000.0,
        "denominator_sum": 4.0,
        "denominator_sum_squares": 6.0,
        "sum_product": 130.0,
    }
    return ArmStats(name, n, **(fields | changes))


IMPOSSIBLE = {  # regression (issue 14 defect 3): each used to be "not enough data", blaming the wrong field
    "sum_squares below sum²/n": (
        ArmStats("control", 10, 100.0, 50.0),
        ArmStats("b", 10, 5.0, 30.0),
        "mean",
        "sum_squares",
        "control",
    ),
    "conversions above n": (ArmStats("control", 10, 8.0, 8.0), ArmStats("b", 10, 12.0, 12.0), "proportion", "sum", "b"),
    "negative conversions": (
        ArmStats("control", 10, -1.0, -1.0),
        ArmStats("b", 10, 2.0, 2.0),
        "proportion",
        "sum",
        "control",
    ),
    "fractional conversions": (
        ArmStats("control", 10, 2.5, 2.5),
        ArmStats("b", 10, 2.0, 2.0),
        "proportion",
        "sum",
        "control",
    ),
    "proportion sum_squares != sum": (
        ArmStats("control", 10, 2.0, 3.0),
        ArmStats("b", 10, 2.0, 2.0),
        "proportion",
        "sum_squares",
        "control",
    ),
    "ratio denominator_sum_squares below its sum²/n": (
        ratio_arm("control"),
        ratio_arm("b", denominator_sum_squares=0.5),
        "ratio",
        "denominator_sum_squares",
        "b",
    ),
    "ratio cross sum impossible": (
        ratio_arm("control", sum_product=500.0),
        ratio_arm("b"),
        "ratio",
        "sum_product",
        "control",
    ),
    "covariate pre_sum_squares below its sum²/n": (
        ArmStats("control", 10, 5.0, 5.0, pre_sum=5.0, pre_sum_squares=1.0, sum_product=3.0),
        ArmStats("b", 10, 5.0, 5.0, pre_sum=5.0, pre_sum_squares=5.0, sum_product=3.0),
        "mean",
        "pre_sum_squares",
        "control",
    ),
    "covariate cross sum impossible": (
        ArmStats("control", 10, 5.0, 5.0, pre_sum=5.0, pre_sum_squares=5.0, sum_product=50.0),
        ArmStats("b", 10, 5.0, 5.0, pre_sum=5.0, pre_sum_squares=5.0, sum_product=3.0),
        "mean",
        "sum_product",
        "control",
    ),
    "ratio beyond floating-point range": (
        ratio_arm("control", denominator_sum=1e-300, denominator_sum_squares=1e-300, sum_product=1e-299),
        ratio_arm("b"),
        "ratio",
        "denominator_sum",
        "control",
    ),
}


@pytest.mark.parametrize("case", IMPOSSIBLE)
def test_impossible_numbers_are_input_errors_naming_the_exact_field(case):
    control, variant, metric_type, field, arm_name = IMPOSSIBLE[case]
    with pytest.raises(InvalidStats) as err:
        compare(control, variant, metric_type)
    assert (err.value.field, err.value.arm) == (field, arm_name)
    assert f"arm {arm_name!r}" in str(err.value) and "control mean" not in str(err.value)


# --- sign-safe relative lift --------------------------------------------------------------------


def test_relative_lift_divides_by_the_absolute_control_mean():
    """Regression (issue 14 defect 1): control −5 and variant −6 is a drop of 20%, not a rise."""
    worse = compare(
        ArmStats("control", 1_000, -5_000.0, 1_000 * (25.0 + 4.0)),
        ArmStats("b", 1_000, -6_000.0, 1_000 * (36.0 + 4.0)),
        "mean",
        method="fixed",
    )
    assert worse.absolute.estimate == pytest.approx(-1.0)
    assert worse.relative.estimate == pytest.approx(-0.2)
    assert worse.relative.ci_upper < 0 and worse.absolute.ci_upper < 0
    better = compare(
        ArmStats("control", 1_000, -5_000.0, 1_000 * (25.0 + 4.0)),
        ArmStats("b", 1_000, -4_000.0, 1_000 * (16.0 + 4.0)),
        "mean",
    )
    assert better.relative.estimate == pytest.approx(0.2) and better.relative.ci_lower > 0


@given(
    st.floats(0.5, 50.0),
    st.floats(-0.5, 0.5),
    st.floats(0.1, 20.0),
    st.integers(30, 5_000),
    st.sampled_from(["fixed", "sequential"]),
)
@settings(max_examples=60, deadline=None)
def test_mirroring_the_metric_mirrors_the_relative_lift(mean, lift, sd, n, method):
    """Negating every value negates the control mean: the relative lift and its interval flip sign
    exactly, with the same standard error (the delta method with |control mean|)."""

    def arms(sign: float) -> tuple[ArmStats, ArmStats]:
        v = mean * (1 + lift)
        return (
            ArmStats("control", n, sign * n * mean, n * (sd**2 + mean**2)),
            ArmStats("b", n, sign * n * v, n * (sd**2 + v**2)),
        )

    up, down = compare(*arms(1.0), "mean", method=method), compare(*arms(-1.0), "mean", method=method)
    assert up.status == down.status
    if up.relative.estimate is None:
        assert down.relative.estimate is None
        return
    assert down.relative.estimate == pytest.approx(-up.relative.estimate, rel=1e-9, abs=1e-12)
    assert down.relative.se == pytest.approx(up.relative.se, rel=1e-9)
    assert (down.relative.ci_lower, down.relative.ci_upper) == pytest.approx(
        (-up.relative.ci_upper, -up.relative.ci_lower), rel=1e-9, abs=1e-12
    )


def test_relative_intervals_cover_the_truth_for_a_negative_metric():
    rng = np.random.default_rng(13)
    reps, n, mu_c, mu_v = 2_000, 400, -10.0, -9.2  # a loss that shrinks: +8% on |control|
    c = -rng.gamma(4.0, -mu_c / 4.0, (reps, n))
    v = -rng.gamma(4.0, -mu_v / 4.0, (reps, n))
    results = compare_many(list(zip(arms_from_rows("control", c), arms_from_rows("b", v))), "mean", method="fixed")
    assert np.mean(column(results, "relative", "estimate")) == pytest.approx(0.08, abs=0.005)
    assert 0.93 <= covers(results, "relative", (mu_v - mu_c) / abs(mu_c)) <= 0.97


def test_cuped_relative_lift_divides_by_the_observed_control_mean_and_covers():
    """With CUPED the relative lift is the adjusted difference over the *observed* control mean;
    its delta-method standard error (θ held fixed) matches the spread over repeated experiments."""
    rng = np.random.default_rng(31)
    reps, n, rho, mu, effect = 2_000, 500, 0.7, 10.0, 0.5
    pairs = []
    for name, shift in (("control", 0.0), ("b", effect)):
        x = rng.normal(0, 1, (reps, n))
        y = mu + shift + 3.0 * (rho * x + math.sqrt(1 - rho**2) * rng.normal(0, 1, (reps, n)))
        pairs.append(arms_from_rows(name, y, x))
    results = compare_many(list(zip(*pairs)), "mean", method="fixed")
    one = results[0]
    assert one.control_mean == pytest.approx(pairs[0][0].sum / n)
    assert one.relative.estimate == pytest.approx(one.absolute.estimate / abs(one.control_mean))
    estimates = column(results, "relative", "estimate")
    assert np.mean(column(results, "relative", "se")) == pytest.approx(estimates.std(), rel=0.05)
    assert 0.93 <= covers(results, "relative", effect / mu) <= 0.97


def test_a_near_zero_control_mean_never_makes_a_headline():
    """Regression (issue 14 defect 1): a control mean of 1e-12 once produced "+499999999999900%"."""
    control = ArmStats("control", 1_000, 1e-9, 1_000.0)  # mean 1e-12, sd 1
    variant = ArmStats("b", 1_000, 500.0, 1_250.0)
    result = compare(control, variant, "mean")
    assert result.status == "ok" and result.control_mean == pytest.approx(1e-12)
    assert result.relative == Estimate() and "not clearly away from zero" in result.reason
    rec = recommend([result], [result.absolute.p_value])
    assert rec.action == "ship" and "absolute difference +0.5" in rec.reason and "%" not in rec.reason


def test_relative_lift_needs_the_control_mean_clear_of_zero_at_the_comparisons_own_level():
    """Fieller's condition: the relative lift exists exactly when the control mean's own interval,
    with the comparison's multiplier, excludes 0."""
    for mean in np.linspace(0.05, 0.4, 15):
        control = ArmStats("control", 400, 400 * mean, 400 * (1.0 + mean**2))  # sd 1, se 0.05
        result = compare(control, ArmStats("b", 400, 80.0, 420.0), "mean", method="fixed")
        half = critical_value(800, 0.05, "fixed", df=result_df(control, ArmStats("b", 400, 80.0, 420.0))) * 0.05
        assert (result.relative.estimate is not None) == (mean > half * math.sqrt(400 / 399))


def result_df(control: ArmStats, variant: ArmStats) -> float:
    """Welch–Satterthwaite degrees of freedom of two arms' summaries (the textbook form)."""
    a, b = ((x.sum_squares - x.sum**2 / x.n) / (x.n - 1) / x.n for x in (control, variant))
    return (a + b) ** 2 / (a**2 / (control.n - 1) + b**2 / (variant.n - 1))


# --- guardrails, incremental value, cumulative lift, recommendation ---------------------------


def base_comparison(variant: str = "b", **changes) -> Comparison:
    base = compare(ArmStats("control", 1_000, 100.0, 100.0), ArmStats(variant, 1_000, 100.0, 100.0), "proportion")
    return dataclasses.replace(base, **changes)


def with_absolute(lo: float, hi: float, control_mean: float = 10.0) -> Comparison:
    return base_comparison(control_mean=control_mean, absolute=Estimate((lo + hi) / 2, lo, hi, 0.5, (hi - lo) / 4))


@pytest.mark.parametrize(
    ("lo", "hi", "higher_is_better", "verdict"),
    [
        (-0.1, 0.3, True, "passed"),
        (-0.5, 0.3, True, "inconclusive"),
        (-0.9, -0.3, True, "failed"),
        (-0.3, 0.1, False, "passed"),
        (-0.3, 0.5, False, "inconclusive"),
        (0.3, 0.9, False, "failed"),
    ],
)
@pytest.mark.parametrize("control_mean", [10.0, -10.0])
def test_non_inferiority_reads_the_bad_side_bound_on_the_absolute_scale(
    lo, hi, higher_is_better, verdict, control_mean
):
    """Margin 2% of |control mean| 10 tolerates 0.2 units of harm, whatever the metric's sign."""
    result = non_inferiority(with_absolute(lo, hi, control_mean), 0.02, higher_is_better, name="latency")
    assert result.verdict == verdict and result.passed == (verdict == "passed")
    bad = lo if higher_is_better else hi
    assert result.bound_absolute == bad and result.margin_absolute == pytest.approx(0.2)
    assert result.bound == pytest.approx(bad / 10.0)
    json_roundtrip(result)


def test_a_guardrail_with_a_negative_control_mean_fails_on_real_harm():
    """Regression (issue 14 defect 1): margin per user −5 → −6, absolute −1.0 [−1.28, −0.72], used to
    read as +20% and pass the 5% non-inferiority guardrail."""
    rng = np.random.default_rng(14)
    control, variant = rng.normal(-5.0, 3.0, 800), rng.normal(-6.0, 3.0, 800)
    comparison = compare(arm("control", control), arm("b", variant), "mean", method="fixed")
    assert comparison.absolute.ci_upper < 0 and comparison.relative.ci_upper < 0
    result = non_inferiority(comparison, 0.05, higher_is_better=True, name="margin_per_user")
    assert result.verdict == "failed" and not result.passed
    assert result.margin_absolute == pytest.approx(0.05 * abs(control.mean()))


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
        (per_user.estimate * 250_000, per_user.ci_lower * 250_000, per_user.ci_upper * 250_000)
    )
    assert value.total.p_value == per_user.p_value
    json_roundtrip(value)
    with pytest.raises(InvalidStats, match="users_exposed"):
        incremental_value(exposed, holdout, users_exposed=-1)


def test_cumulative_lift_matches_pointwise_comparisons_and_narrows():
    rng = np.random.default_rng(50)
    daily_c, daily_v = rng.binomial(1_000, 0.10, 14).cumsum(), rng.binomial(1_000, 0.11, 14).cumsum()
    series = [
        (
            f"day {d + 1}",
            ArmStats("control", 1_000 * (d + 1), float(c), float(c)),
            ArmStats("b", 1_000 * (d + 1), float(v), float(v)),
        )
        for d, (c, v) in enumerate(zip(daily_c, daily_v))
    ]
    points = cumulative(series, "proportion")
    assert [p.label for p in points] == [label for label, _, _ in series]
    assert points[4].relative == compare(series[4][1], series[4][2], "proportion").relative
    widths = [p.relative.ci_upper - p.relative.ci_lower for p in points]
    assert all(later < earlier for earlier, later in itertools.pairwise(widths))
    json_roundtrip(points[0])


def significant(variant: str, estimate: float, p: float) -> Comparison:
    return base_comparison(variant, absolute=Estimate(estimate, estimate - 1, estimate + 1, p, 0.5))


def guardrail(verdict: str, variant: str = "b") -> GuardrailResult:
    return GuardrailResult("latency", variant, verdict, verdict == "passed", -0.01, 0.02, "")


@pytest.mark.parametrize(
    ("comparisons", "guardrails", "srm_ok", "action"),
    [
        ([significant("b", 0.02, 0.001)], [], False, "investigate"),
        ([significant("b", 0.02, 0.001)], [guardrail("failed")], True, "stop"),
        ([significant("b", 0.02, 0.001)], [guardrail("passed")], True, "ship"),
        ([significant("b", 0.02, 0.001)], [guardrail("inconclusive")], True, "keep_running"),
        ([significant("b", -0.02, 0.001)], [], True, "stop"),
        ([significant("b", 0.02, 0.3)], [], True, "keep_running"),
        ([significant("b", 0.02, 0.03), significant("c", 0.02, 0.001)], [], True, "ship"),
    ],
)
def test_recommend(comparisons, guardrails, srm_ok, action):
    srm = SrmResult(40.0 if not srm_ok else 0.1, 1e-9 if not srm_ok else 0.75, 1, srm_ok, 0.001)
    result = recommend(comparisons, [c.absolute.p_value for c in comparisons], guardrails, srm)
    assert result.action == action and result.reason
    json_roundtrip(result)


def test_recommend_reads_the_familys_adjusted_p_values_and_adjusts_nothing_again():
    """Regression (issue 14 defect 2): the recommendation re-adjusted the primary metric across
    variants (Holm) while the table adjusted across metrics × variants (BH)."""
    comparisons = [significant("b", 0.02, 0.03), significant("c", 0.02, 0.04)]
    assert recommend(comparisons, [0.03, 0.04]).action == "ship"  # taken as already adjusted
    assert recommend(comparisons, [0.06, 0.08]).action == "keep_running"
    rec = recommend(comparisons, [0.049, 0.06])
    assert rec.action == "ship" and "adjusted p = 0.049" in rec.reason
    with pytest.raises(InvalidStats, match="adjusted_p_values"):
        recommend(comparisons, [0.01])


def test_recommend_ships_the_best_winner_and_reads_lower_is_better():
    comparisons = [significant("b", 0.02, 0.001), significant("c", 0.05, 0.001)]
    adjusted = [0.002, 0.002]
    assert "'c'" in recommend(comparisons, adjusted).reason
    assert recommend(comparisons, adjusted, higher_is_better=False).action == "stop"


# --- sequential p-values ----------------------------------------------------------------------


def test_p_values_say_which_kind_they_are():
    """Regression (issue 14 defect 6): an always-valid p-value of 1 beside a 96% chance to win read
    as nonsense; the result now says which kind of p-value it carries, and missing ones are None."""
    c, v = ArmStats("control", 3_000, 300.0, 300.0), ArmStats("b", 3_000, 333.0, 333.0)
    sequential, fixed = compare(c, v, "proportion"), compare(c, v, "proportion", method="fixed")
    assert (sequential.p_value_kind, fixed.p_value_kind) == ("always_valid", "fixed_horizon")
    assert (sequential.sequential_tuning_n, fixed.sequential_tuning_n) == (5_000.0, None)
    assert sequential.absolute.p_value == 1.0 and sequential.chance_to_win > 0.9  # both true at once
    assert fixed.absolute.p_value < 0.2  # the fixed-horizon p-value of the same data is far lower
    short = json_roundtrip(compare(c, ArmStats("b", 1, 0.0, 0.0), "proportion"))
    assert short["absolute"]["p_value"] is None and short["p_value_kind"] == "always_valid"


def test_critical_value_is_the_boundary_the_comparisons_use():
    c, v = ArmStats("control", 3_000, 300.0, 300.0), ArmStats("b", 2_500, 300.0, 300.0)
    for method in ("sequential", "fixed"):
        result = compare(c, v, "proportion", method=method, sequential_tuning_n=2_000)
        half = (result.absolute.ci_upper - result.absolute.ci_lower) / 2 / result.absolute.se
        df = result_df(c, v) if method == "fixed" else math.inf
        assert critical_value(5_500, 0.05, method, 2_000, df) == pytest.approx(half, rel=1e-9)


# --- segments ---------------------------------------------------------------------------------


def segment_cells(
    rng: np.random.Generator, effects: list[float], n: int = 4_000
) -> list[tuple[str, ArmStats, ArmStats]]:
    cells = []
    for i, effect in enumerate(effects):
        c, v = rng.binomial(n, 0.10), rng.binomial(n, 0.10 * (1 + effect))
        cells.append((f"segment {i}", ArmStats("control", n, float(c), float(c)), ArmStats("b", n, float(v), float(v))))
    return cells


@pytest.mark.parametrize("method", ["fixed", "sequential"])
def test_segment_effects_adjust_across_segments_and_flag_only_what_bh_selects(method):
    rng = np.random.default_rng(60)
    cells = segment_cells(rng, [0.0] * 8 + [0.35, 0.5])
    cells.append(("tiny", ArmStats("control", 30, 2.0, 2.0), ArmStats("b", 30, 3.0, 3.0)))  # not enough data
    result = segment_effects(cells, "proportion", method=method)
    raw = [e.comparison.absolute.p_value for e in result.effects]
    present = [p for p in raw if p is not None]
    expected = multipletests(present, method="fdr_bh")[1]
    assert result.looked_at == len(present) == 10
    assert [e.adjusted_p_value for e in result.effects if e.adjusted_p_value is not None] == pytest.approx(expected)
    selected = int(np.sum(expected <= 0.05))
    assert result.flagged == selected == sum(e.flagged for e in result.effects) >= 1
    assert result.adjusted_alpha == pytest.approx(0.05 * max(selected, 1) / 10)
    for e in result.effects:
        if e.adjusted_p_value is None:
            assert not e.flagged and e.adjusted == Estimate()
            continue
        assert e.flagged == (e.adjusted_p_value <= 0.05) == (e.adjusted.ci_lower > 0 or e.adjusted.ci_upper < 0)
        unadjusted = e.comparison.absolute
        assert e.adjusted.ci_lower <= unadjusted.ci_lower and unadjusted.ci_upper <= e.adjusted.ci_upper
    json.dumps(result.to_dict(), allow_nan=False)


def test_segment_intervals_at_the_fcr_level_are_the_fixed_intervals_at_that_level():
    rng = np.random.default_rng(61)
    cells = segment_cells(rng, [0.0, 0.0, 0.0, 0.6])
    result = segment_effects(cells, "proportion", method="fixed")
    for (_, c, v), effect in zip(cells, result.effects):
        at_level = compare(c, v, "proportion", alpha=result.adjusted_alpha, method="fixed")
        assert (effect.adjusted.ci_lower, effect.adjusted.ci_upper) == pytest.approx(
            (at_level.absolute.ci_lower, at_level.absolute.ci_upper), rel=1e-12
        )
        assert (effect.adjusted_relative.ci_lower, effect.adjusted_relative.ci_upper) == pytest.approx(
            (at_level.relative.ci_lower, at_level.relative.ci_upper), rel=1e-12
        )


def test_segment_fishing_in_a_a_tests_rarely_flags_anything():
    """20 segments of an A/A test: unadjusted 95% intervals flag a "segment effect" in most
    experiments; BH with FCR-adjusted intervals in about alpha of them."""
    rng = np.random.default_rng(62)
    reps, adjusted_any, naive_any = 300, 0, 0
    for _ in range(reps):
        result = segment_effects(segment_cells(rng, [0.0] * 20, n=2_000), "proportion", method="fixed")
        adjusted_any += result.flagged > 0
        naive_any += any(e.comparison.absolute.p_value <= 0.05 for e in result.effects)
    assert naive_any / reps > 0.5
    assert adjusted_any / reps <= 0.09


def test_the_sequential_boundary_with_no_units_is_infinitely_wide_without_a_warning():
    from metrics.stats import _Boundary

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a divide-by-zero warning would fail here
        width = _Boundary("sequential", 0.05, 1_000.0).multiplier(np.array([0.0, 500.0]), np.array([0.0, 498.0]))
    assert math.isinf(width[0]) and 2.0 < width[1] < 10.0
