"""Power and duration planning: against statsmodels' power calculator for the fixed test, by
simulation through the real engine for both methods, and the plan from a comparison."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from statsmodels.stats.power import NormalIndPower

from metrics import power, stats
from metrics.stats import ArmStats, compare, compare_many


@pytest.mark.parametrize(("alpha", "target", "ratio"), [(0.05, 0.8, 1.0), (0.01, 0.9, 1.0), (0.1, 0.5, 2.0)])
def test_fixed_sample_size_matches_statsmodels(alpha, target, ratio):
    """Per-arm sd 3, effect 0.2, variant arm `ratio` times the control arm."""
    sd, effect = 3.0, 0.2
    share_c = 1.0 / (1.0 + ratio)
    variance = sd**2 / share_c + sd**2 / (1.0 - share_c)  # K = σ²/w_c + σ²/w_v
    units = power.units_to_detect(variance, effect, alpha, target, "fixed")
    one_tail = NormalIndPower().solve_power(
        effect_size=effect / sd, alpha=alpha / 2, power=target, ratio=ratio, alternative="larger"
    )  # the formula, exactly
    assert units == pytest.approx(one_tail * (1.0 + ratio), rel=1e-9)
    both_tails = NormalIndPower().solve_power(effect_size=effect / sd, alpha=alpha, power=target, ratio=ratio)
    assert units == pytest.approx(both_tails * (1.0 + ratio), rel=2e-3)  # the opposite tail is negligible
    assert power.detectable_effect(variance, units, alpha, target, "fixed") == pytest.approx(effect, rel=1e-12)


def test_the_sequential_multiplier_is_never_below_the_fixed_one():
    """What the bisection's bracket relies on: a confidence sequence is valid at every single t,
    so it is never narrower than the fixed-horizon interval there."""
    for alpha in (0.001, 0.01, 0.05, 0.1, 0.3):
        fixed = stats.critical_value(1.0, alpha, "fixed")
        for tuning in (100, 5_000, 1e6):
            for t in np.geomspace(1.0, 1e10, 60):
                assert stats.critical_value(t, alpha, "sequential", tuning) > fixed


def test_sequential_units_solve_the_mde_equation_and_mde_falls_with_units():
    variance = 40.0
    units = power.units_to_detect(variance, 0.15)
    assert power.detectable_effect(variance, units) == pytest.approx(0.15, rel=1e-9)
    mdes = [power.detectable_effect(variance, t) for t in np.geomspace(10, 1e9, 80)]
    assert all(later < earlier for earlier, later in itertools.pairwise(mdes))
    assert units > power.units_to_detect(variance, 0.15, method="fixed")


def normal_experiments(
    rng: np.random.Generator, reps: int, looks: int, per_look: int, effect: float, sd: float
) -> tuple[list[ArmStats], list[ArmStats]]:
    """Cumulative sufficient statistics of normal outcomes after each look, drawn exactly."""
    arms = []
    for name, mu in (("control", 0.0), ("b", effect)):
        sums = rng.normal(per_look * mu, sd * math.sqrt(per_look), (reps, looks))
        within = sd**2 * rng.chisquare(per_look - 1, (reps, looks))
        squares = (within + sums**2 / per_look).cumsum(axis=1)
        sums = sums.cumsum(axis=1)
        arms.append(
            [
                ArmStats(name, per_look * (k + 1), float(s), float(q))
                for row_s, row_q in zip(sums, squares)
                for k, (s, q) in enumerate(zip(row_s, row_q))
            ]
        )
    return arms[0], arms[1]


@pytest.mark.parametrize("method", ["fixed", "sequential"])
def test_at_the_planned_sample_size_the_empirical_power_is_the_requested_one(method):
    """At the units `units_to_detect` gives, the engine's own interval excludes zero in 80% ± 5
    points of simulated experiments; read at 10 daily looks up to then, the sequential test has
    detected the effect in at least as many (its plan is conservative for daily reading)."""
    rng = np.random.default_rng(70)
    reps, looks, sd, effect, target = 4_000, 10, 2.0, 0.1, 0.8
    units = power.units_to_detect(2 * sd**2 / 0.5, effect, power=target, method=method)  # equal split: K = 4σ²
    per_look = math.ceil(units / 2 / looks)
    control, variant = normal_experiments(rng, reps, looks, per_look, effect, sd)
    results = compare_many(list(zip(control, variant)), "mean", method=method)
    lower = np.array([r.absolute.ci_lower for r in results]).reshape(reps, looks)
    detected = lower > 0
    assert detected[:, -1].mean() == pytest.approx(target, abs=0.05)
    if method == "sequential":
        assert detected.any(axis=1).mean() >= detected[:, -1].mean()


def test_the_planned_sample_size_holds_for_proportions():
    rng = np.random.default_rng(71)
    reps, p, lift = 4_000, 0.05, 0.15
    variance = 2 * p * (1 - p) + 2 * p * (1 + lift) * (1 - p * (1 + lift))  # K with an equal split
    per_arm = math.ceil(power.units_to_detect(variance, p * lift) / 2)
    pairs = [
        (ArmStats("control", per_arm, float(c), float(c)), ArmStats("b", per_arm, float(v), float(v)))
        for c, v in zip(rng.binomial(per_arm, p, reps), rng.binomial(per_arm, p * (1 + lift), reps))
    ]
    lower = np.array([r.absolute.ci_lower for r in compare_many(pairs, "proportion")])
    assert np.mean(lower > 0) == pytest.approx(0.8, abs=0.05)


def observed(n: int, mean: float = 10.0, sd: float = 4.0, lift: float = 0.02) -> stats.Comparison:
    v = mean * (1 + lift)
    return compare(
        ArmStats("control", n, n * mean, n * (sd**2 + mean**2)), ArmStats("b", n, n * v, n * (sd**2 + v**2)), "mean"
    )


def test_a_plan_from_a_comparison_uses_its_variance_boundary_and_traffic():
    comparison = observed(2_000)
    result = power.plan(comparison, days_elapsed=4.0, target_effect=0.02)
    variance = comparison.absolute.se**2 * 4_000
    assert result.status == "ok" and result.units_per_day == pytest.approx(1_000.0)
    assert result.target_absolute == pytest.approx(0.02 * 10.0)
    for horizon in (result.sequential, result.fixed):
        assert horizon.mde == pytest.approx(power.detectable_effect(variance, 4_000, method=horizon.method))
        assert horizon.mde_relative == pytest.approx(horizon.mde / 10.0)
        assert horizon.units_needed == pytest.approx(power.units_to_detect(variance, 0.2, method=horizon.method))
        assert horizon.days_to_detect == pytest.approx((horizon.units_needed - 4_000) / 1_000.0)
    assert result.sequential.days_to_detect > result.fixed.days_to_detect > 0
    json.dumps(result.to_dict(), allow_nan=False)
    done = power.plan(observed(200_000), days_elapsed=10.0, target_effect=0.05)
    assert done.sequential.days_to_detect == 0.0 and done.sequential.mde_relative < 0.05


def test_a_plan_says_why_it_has_no_numbers():
    short = power.plan(compare(ArmStats("control", 1, 1.0, 1.0), ArmStats("b", 5, 2.0, 2.0), "mean"), 3.0, 0.8, 0.1)
    assert short.status == "not_enough_data" and "unit" in short.reason and short.sequential is None
    near_zero = compare(ArmStats("control", 1_000, 1e-9, 1_000.0), ArmStats("b", 1_000, 10.0, 1_000.0), "mean")
    relative = power.plan(near_zero, 3.0, target_effect=0.1)
    assert relative.status == "ok" and "effect_scale 'absolute'" in relative.reason
    assert relative.sequential.mde_relative is None and relative.sequential.days_to_detect is None
    absolute = power.plan(near_zero, 3.0, target_effect=0.1, effect_scale="absolute")
    assert absolute.target_absolute == 0.1 and absolute.sequential.days_to_detect > 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"days_elapsed": 0.0}, "days_elapsed"),
        ({"days_elapsed": float("nan")}, "days_elapsed"),
        ({"power": 1.0}, "power"),
        ({"target_effect": -0.1}, "target_effect"),
    ],
)
def test_invalid_plans_name_the_field(changes, field):
    arguments = {"days_elapsed": 3.0, "power": 0.8, "target_effect": 0.05} | changes
    with pytest.raises(stats.InvalidStats) as err:
        power.plan(observed(500), **arguments)
    assert err.value.field == field
