"""The ground truth against what `metrics/` estimates from the lake.

A backfill large enough for the intervals to mean something (tens of thousands of users, the
full 28 days, every scheduled incident but the SRM bug, a fixed seed): each experiment's
primary-metric interval contains the true effect, and every arm's measured level agrees
with the truth's level for that arm within sampling error (a much sharper check of the truth
itself than the lifts). The SRM bug, on its own backfill, is caught by the SRM check.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from momento.scenario import Scenario
from momento.lake import ground_truth
from decisioning.simulator.backfill import backfill
from metrics import experiments as ex
from metrics.filters import Filters
from momento.kpis import METRICS
from metrics.arm_stats import arm_stats
from metrics.stats import ArmStats
from momento.lake.warehouse import Warehouse

pytestmark = pytest.mark.slow

END = datetime(2026, 6, 12, 21, tzinfo=timezone.utc)
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


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory, bundled_scenario: Scenario):
    scenario = _without(bundled_scenario, "srm_bug")
    lake = tmp_path_factory.mktemp("truth") / "lake"
    backfill(lake, scenario, days=28, users=USERS, seed=SEED, progress=False, end=END)
    return scenario, *_analysed(lake, scenario)


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
            assert row["lift_upper"] - row["lift_lower"] < MAX_WIDTH.get(experiment.id, 0.2)  # narrow enough to mean something
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


def test_the_truth_file_describes_the_scenario(measured, bundled_scenario: Scenario) -> None:
    _, _, document, _ = measured
    assert document["holdout_share"] == bundled_scenario.population.holdout_share
    assert abs(document["holdout_share_realised"] - 0.05) < 0.01
    assert {e["name"] for e in document["incidents"]} == {"latency_spike", "model_outage", "error_burst", "ingestion_stall"}
    assert set(document["experiments"]) == {x.id for x in bundled_scenario.experiments}
    assert document["incremental"]["revenue"] > 0 and document["incremental"]["users_reached"] > 0
    home = document["experiments"]["exp_home_showcase"]["metrics"]
    assert home["ctr"]["arms"]["control"] == pytest.approx(bundled_scenario.behaviour.click_rate)  # the default has no effect


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
