"""The ground truth against what `metrics/` estimates from the lake.

A backfill large enough for the intervals to mean something (tens of thousands of users, the
full 28 days, every scheduled incident but the SRM bug, a fixed seed): each experiment's
primary-metric interval contains the true effect, and every arm's measured level agrees
with the truth's level for that arm within sampling error (a much sharper check of the truth
itself than the lifts); the same holds for the same backfill streamed in shards of customers,
whose truth is summed from the shards'. The SRM bug, on its own backfill, is caught by the SRM check.

The per-decision truth for off-policy evaluation, on a smaller simulation and its lake: what
the lake credits to decisions agrees with the expected reward under the distribution each was
drawn from, and inverse-propensity weighting of the logged rewards agrees with the true value
of other policies.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from decisioning.simulator import rows, truth
from decisioning.simulator.backfill import backfill, write_tables
from decisioning.simulator.simulation import Simulation
from metrics import experiments as ex
from metrics.arm_stats import arm_stats
from metrics.filters import Filters
from metrics.stats import ArmStats
from momento.kpis import METRICS
from momento.lake import ground_truth
from momento.lake.warehouse import Warehouse
from momento.scenario import Scenario

END = datetime(2026, 6, 12, 21, tzinfo=UTC)
USERS = 60_000
SEED = 42
Z_MAX = 4.0
MAX_WIDTH = {"exp_recovery_offer": 0.8}
"""The recovery offer's population (customers who abandoned a cart and got the message) is a
twentieth of the others: its interval stays wide at this size."""


def _without(scenario: Scenario, name: str) -> Scenario:
    return scenario.model_copy(update={"incidents": [i for i in scenario.incidents if i.name != name]})


def _only(scenario: Scenario, name: str, **changes: Any) -> Scenario:
    chosen = [i.model_copy(update=changes) for i in scenario.incidents if i.name == name]
    return scenario.model_copy(update={"incidents": chosen})


def _analysed(lake: Path, scenario: Scenario) -> tuple[dict[str, ex.ExperimentReport], dict[str, Any], Any]:
    w = Warehouse(lake)
    try:
        frame = ex.load_stats(w, Filters(), scenario.business.pre_period_days, ex.scenario_metrics(scenario))
    finally:
        w.close()
    return {x.id: ex.analyse(frame, x) for x in scenario.experiments}, ground_truth.load(lake), frame


@pytest.fixture(scope="module", params=[USERS, USERS // 3], ids=["one-shot", "streamed-in-3-shards"])
def measured(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, bundled_scenario: Scenario):
    """The lake and truth of one backfill, simulated at once or streamed in shards of customers
    (whose truth is the sum of the shards' tallies: the same checks hold for it)."""
    scenario = _without(bundled_scenario, "srm_bug")
    lake = tmp_path_factory.mktemp("truth") / "lake"
    result = backfill(
        lake, scenario, days=28, users=USERS, seed=SEED, progress=False, end=END, shard_users=request.param
    )
    assert result.shards == -(-USERS // request.param)
    return scenario, *_analysed(lake, scenario)


@pytest.mark.slow
def test_per_user_sums_are_floats_even_over_no_rows() -> None:
    # a shard whose users of an experiment had no cart session sums nothing, and its margin must
    # still take the (float) earlier returns away
    index = np.array([0, 2, 2])
    values = np.array([[1.5, 0.0], [2.0, 1.0], [0.5, 4.0]])
    assert truth._sum_by(index, values, 3).tolist() == [[1.5, 0.0], [0.0, 0.0], [2.5, 5.0]]
    empty = truth._sum_by(np.array([], dtype=np.int64), np.zeros((0, 2)), 3)
    assert empty.dtype == np.float64 and empty.shape == (3, 2) and not empty.any()


def test_each_primary_metrics_interval_contains_the_true_effect(measured) -> None:
    scenario, reports, document, _ = measured
    for experiment in scenario.experiments:
        report, true = reports[experiment.id], document["experiments"][experiment.id]
        assert report.users == true["users"]  # the truth is about exactly the measured population
        primary = report.results.filter(report.results.get_column("metric") == experiment.primary_metric)
        assert primary.height == len(experiment.arms) - 1
        for row in primary.iter_rows(named=True):
            effect = true["metrics"][experiment.primary_metric]["effects"][row["variant"]]["relative"]
            assert row["lift_lower"] <= effect <= row["lift_upper"], (experiment.id, row["variant"], effect, row)
            assert row["lift_upper"] - row["lift_lower"] < MAX_WIDTH.get(
                experiment.id, 0.2
            )  # narrow enough to mean something
    adaptive = reports["exp_adaptive_cta"].results
    ctr = adaptive.filter(adaptive.get_column("metric") == "ctr")
    assert (ctr.get_column("lift_lower") > 0).all()  # and the larger effects are detected, not just contained


def _level(stats: ArmStats, ratio: bool) -> tuple[float, float]:
    """An arm's mean (or ratio, with its delta-method standard error) and standard error."""
    n = stats.n
    if not ratio:
        mean = stats.sum / n
        return mean, math.sqrt(max(stats.sum_squares / n - mean**2, 0.0) / n)
    y, d = stats.sum / n, stats.denominator_sum / n
    r = y / d
    var_y = stats.sum_squares / n - y**2
    var_d = stats.denominator_sum_squares / n - d**2
    cov = stats.sum_product / n - y * d
    return r, math.sqrt(max(var_y - 2 * r * cov + r**2 * var_d, 0.0) / n) / d


@pytest.mark.slow
def test_every_arms_measured_level_agrees_with_its_true_level(measured) -> None:
    scenario, _, document, frame = measured
    checked = 0
    for experiment in scenario.experiments:
        rows = ex.arm_rows(frame, experiment)[()]
        for name, true in document["experiments"][experiment.id]["metrics"].items():
            if name not in ex.roles(experiment):
                continue
            metric = METRICS[name]
            for arm in experiment.arms:
                stats = arm_stats(rows[arm.name], metric, arm.name, cuped=False)
                level, se = _level(stats, metric.type == "ratio")
                z = (level - true["arms"][arm.name]) / se
                assert abs(z) < Z_MAX, (experiment.id, name, arm.name, level, true["arms"][arm.name], z)
                checked += 1
    assert checked >= 20


@pytest.mark.slow
def test_the_truth_file_describes_the_scenario(measured, bundled_scenario: Scenario) -> None:
    _, _, document, _ = measured
    assert document["holdout_share"] == bundled_scenario.population.holdout_share
    assert abs(document["holdout_share_realised"] - 0.05) < 0.01
    assert {e["name"] for e in document["incidents"]} == {
        "latency_spike",
        "model_outage",
        "error_burst",
        "ingestion_stall",
    }
    assert set(document["experiments"]) == {x.id for x in bundled_scenario.experiments}
    assert document["incremental"]["revenue"] > 0 and document["incremental"]["users_reached"] > 0
    home = document["experiments"]["exp_home_showcase"]["metrics"]
    assert home["ctr"]["arms"]["control"] == pytest.approx(
        bundled_scenario.behaviour.click_rate
    )  # the default has no effect


@pytest.mark.slow
def test_the_srm_bug_is_caught_by_the_srm_check(tmp_path: Path, bundled_scenario: Scenario) -> None:
    """The bug loses a share of the cart cross-sell treatment's exposures on the client; a
    user is lost only when all of theirs are, so at this size the test uses a quarter."""
    scenario = _only(bundled_scenario, "srm_bug", drop_share=0.25)
    lake = tmp_path / "lake"
    backfill(lake, scenario, days=28, users=25_000, seed=SEED, progress=False, end=END)
    reports, _, _ = _analysed(lake, scenario)
    for experiment_id, report in reports.items():
        if experiment_id == "exp_cart_cross_sell":
            assert report.srm.p_value < 0.001
            assert report.recommendation.action == "investigate"
        else:
            assert report.srm.p_value > 0.001, experiment_id


OPE_USERS = 6_000
PLACEMENTS = ("homepage_showcase", "product_cta", "cart_cross_sell", "cart_recovery_offer")


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory, bundled_scenario: Scenario) -> tuple[Simulation, Warehouse]:
    """A simulation kept in memory (its truth needs it) and the lake it wrote."""
    sim = Simulation(bundled_scenario, 28, OPE_USERS, SEED, int(END.timestamp() * 1e6), "test-key")
    sim.run(progress=False)
    lake = tmp_path_factory.mktemp("ope") / "lake"
    write_tables(lake, rows.assemble(sim), progress=False)
    w = Warehouse(lake)
    yield sim, w
    w.close()


def _lake(w: Warehouse, placement: str, decision_id: np.ndarray) -> pl.DataFrame:
    """The placement's decisions as the lake has them, in the order of `decision_id`: the
    distribution each was drawn from, its propensity, and the rewards the lake credits to it."""
    frame = w.query(
        """
        SELECT d.decision_id, any_value(d.policy) AS policy, any_value(d.propensity) AS propensity,
               any_value(d.variant) AS variant, any_value([a.p FOR a IN d.action_probabilities]) AS logging,
               count(e.event_id) FILTER (WHERE e.event_type IN ('click', 'email_click')) AS click,
               count(e.event_id) FILTER (WHERE e.event_type = 'purchase') AS conversion,
               coalesce(sum(e.revenue) FILTER (WHERE e.event_type = 'purchase'), 0) AS revenue
        FROM decisions d LEFT JOIN events e ON e.decision_id = d.decision_id
        WHERE d.placement = $placement GROUP BY d.decision_id""",
        {"placement": placement},
    )
    order = pl.DataFrame({"decision_id": decision_id.tolist()}).with_row_index("i")
    return order.join(frame, on="decision_id", how="left").sort("i")


def _z(values: np.ndarray) -> float:
    """The mean of `values` in standard errors."""
    return float(values.mean() / (values.std(ddof=1) / math.sqrt(values.size)))


def test_what_the_lake_credits_each_decision_is_its_expected_reward_under_its_logged_distribution(logged) -> None:
    """Decision by decision: nothing is credited where the truth expects nothing under every
    variant (not seen, not the session's last placement seen, not opened, after the end), and
    over the decisions the credited rewards average to the expected ones (|z| < 4)."""
    sim, w = logged
    for placement in PLACEMENTS:
        for reward in truth.REWARDS:
            expected = truth.decision_rewards(sim, placement, reward)
            lake = _lake(w, placement, expected.decision_id)
            assert lake.get_column("policy").null_count() == 0  # every decision the truth names is in the lake
            assert lake.height == w.scalar("SELECT count(*) FROM decisions WHERE placement = $p", {"p": placement})
            realised = lake.get_column(reward).to_numpy().astype(np.float64)
            assert set(np.unique(realised)) <= ({0.0, 1.0} if reward != "revenue" else set(realised))
            assert (realised[expected.expected.max(axis=1) == 0] == 0).all(), (placement, reward)
            logging = np.array(lake.get_column("logging").to_list())
            on_policy = np.einsum("nk,nk->n", logging, expected.expected)
            assert abs(_z(realised - on_policy)) < 4, (placement, reward, realised.mean(), on_policy.mean())
            assert truth.policy_value(expected, logging) == pytest.approx(on_policy.mean())


def test_inverse_propensity_weighting_of_logged_rewards_agrees_with_the_true_value_of_other_policies(logged) -> None:
    """On the decisions an exploring policy made (every variant possible): for the uniform
    policy and each always-this-variant policy, the IPS estimate from the lake's propensities
    lies within 4 standard errors of the truth's value of that policy. A reward the lake credits
    fewer than 30 of these decisions with is too rare for the normal approximation: left out."""
    sim, w = logged
    cases = 0
    for placement in ("homepage_showcase", "product_cta", "cart_cross_sell"):
        for reward in truth.REWARDS:
            rewards = truth.decision_rewards(sim, placement, reward)
            lake = _lake(w, placement, rewards.decision_id)
            explored = lake.get_column("policy").is_in(["thompson", "propensity"]).to_numpy()
            subset = truth.DecisionRewards(rewards.decision_id[explored], rewards.variants, rewards.expected[explored])
            variants = lake.get_column("variant").to_numpy()[explored]
            propensity = lake.get_column("propensity").to_numpy()[explored]
            realised = lake.get_column(reward).to_numpy().astype(np.float64)[explored]
            if (realised > 0).sum() < 30:
                continue
            k = len(rewards.variants)
            candidates = {"uniform": np.full((explored.sum(), k), 1.0 / k)}
            candidates |= {v: np.tile(np.eye(k)[j], (explored.sum(), 1)) for j, v in enumerate(rewards.variants)}
            for name, pi in candidates.items():
                chosen = pi[np.arange(len(pi)), [rewards.variants.index(v) for v in variants]]
                ips = chosen / propensity * realised
                true = truth.policy_value(subset, pi)
                assert abs(_z(ips - true)) < 4, (placement, reward, name, ips.mean(), true)
                cases += 1
    assert cases >= 20


def test_a_window_counts_only_what_happens_within_it(logged) -> None:
    sim, _ = logged
    clicks = truth.decision_rewards(sim, "homepage_showcase", "click")
    assert clicks.expected.max() > 0
    assert truth.decision_rewards(sim, "homepage_showcase", "click", window_seconds=1).expected.max() == 0  # at +3 s
    assert np.array_equal(
        truth.decision_rewards(sim, "homepage_showcase", "click", window_seconds=60).expected, clicks.expected
    )


def test_the_value_of_a_policy_needs_a_distribution_per_logged_decision(logged) -> None:
    sim, _ = logged
    rewards = truth.decision_rewards(sim, "product_cta", "conversion")
    n, k = rewards.expected.shape
    with pytest.raises(ValueError, match=r"\(decisions, variants\)"):
        truth.policy_value(rewards, np.full((n, k + 1), 1 / (k + 1)))
    bad = np.full((n, k), 1 / k)
    bad[5] = [0.5, 0.6, -0.1]
    with pytest.raises(ValueError, match=f"row 5 \\({rewards.decision_id[5]}\\) is not a distribution"):
        truth.policy_value(rewards, bad)
    with pytest.raises(ValueError, match="reward must be one of"):
        truth.decision_rewards(sim, "product_cta", "margin")  # type: ignore[arg-type]
