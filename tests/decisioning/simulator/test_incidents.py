"""Incidents on the backfill's timeline and what each does."""

from __future__ import annotations

import numpy as np
from scipy import stats

from decisioning.simulator import incidents as inc
from momento.scenario import Scenario

HOUR = 3_600_000_000


def test_the_schedule_places_each_incident_by_day_and_hour_from_the_start(bundled_scenario: Scenario) -> None:
    windows = {w.name: w for w in inc.schedule(bundled_scenario, start_us=0)}
    spike = windows["latency_spike"]
    assert (spike.start_us, spike.end_us) == ((20 * 24 + 14) * HOUR, (20 * 24 + 16) * HOUR)
    ts = np.array([spike.start_us - 1, spike.start_us, spike.end_us - 1, spike.end_us])
    assert inc.active(list(windows.values()), "latency_spike", ts).tolist() == [False, True, True, False]
    assert not inc.active(list(windows.values()), "model_outage", ts).any()


def test_the_srm_bug_drops_its_share_of_one_arms_exposures_only(bundled_scenario: Scenario) -> None:
    experiment, arm, share = inc.srm_setting(bundled_scenario)
    assert (experiment, arm, share) == ("exp_cart_cross_sell", "treatment", 0.08)
    windows = inc.schedule(bundled_scenario, start_us=0)
    bug = next(w for w in windows if w.name == "srm_bug")
    n = 40_000
    ts = np.full(n, bug.start_us + HOUR)
    u = np.random.default_rng(0).random(n)
    arms = np.where(np.arange(n) % 2 == 0, "treatment", "control")
    dropped = inc.srm_drops(windows, bundled_scenario, np.full(n, experiment), arms, ts, u)
    assert not dropped[arms == "control"].any()
    assert stats.binomtest(int(dropped.sum()), n // 2, share).pvalue > 0.001
    assert not inc.srm_drops(windows, bundled_scenario, np.full(n, "exp_home_showcase"), arms, ts, u).any()
    assert not inc.srm_drops(windows, bundled_scenario, np.full(n, experiment), arms, ts - 2 * bug.start_us, u).any()


def test_a_latency_spike_puts_decisions_over_the_budget(bundled_scenario: Scenario) -> None:
    budget_us = bundled_scenario.governance.decision_budget_ms * 1000
    latency = inc.latency_us(np.random.default_rng(1), np.array([False] * 1000 + [True] * 1000))
    assert np.median(latency[:1000]) < budget_us / 10
    assert (latency[1000:] > budget_us).all()
