"""The numbers monitors read, on the shared small lake: window counts against an independent
count of the decisions, experiment numbers equal to the Experiments page's analysis, paused arms
from the audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from metrics import experiments
from metrics import model_quality as mq
from metrics.filters import Filters
from metrics.monitors.inputs import paused_arms, read_numbers
from metrics.monitors.rules import ModelHealth, load_monitors
from momento.codes import FAILURES
from momento.lake.warehouse import Warehouse
from momento.lake.writer import LakeWriter
from momento.settings import PROJECT_ROOT
from tests.conftest import SMALL_LAKE_END


@pytest.fixture(scope="module")
def warehouse(small_lake):
    wh = Warehouse(small_lake)
    yield wh
    wh.close()


def test_windows_count_the_decisions_of_each_window(warehouse, bundled_scenario):
    monitors = load_monitors(PROJECT_ROOT / "data" / "monitors.toml")
    numbers = read_numbers(warehouse, bundled_scenario, monitors, now=SMALL_LAKE_END)
    budget_us = bundled_scenario.governance.decision_budget_ms * 1000
    rows = warehouse.query("SELECT ts, latency_us, status, fallback, fallback_reason, consent, policy FROM decisions")
    for seconds, window in numbers.windows.items():
        since = SMALL_LAKE_END - timedelta(seconds=seconds)
        inside = [r for r in rows.iter_rows(named=True) if since < r["ts"] <= SMALL_LAKE_END]
        assert window.decisions == len(inside) > 0
        assert window.within_budget == sum(r["latency_us"] <= budget_us for r in inside)
        assert window.errors == sum(r["status"] == "error" for r in inside)
        assert window.failure_fallbacks == sum(bool(r["fallback"]) and r["fallback_reason"] in FAILURES for r in inside)
        assert window.consent_violations == sum(not r["consent"] and r["policy"] != "default" for r in inside)
    assert numbers.writer_lag_s is not None


def test_experiment_numbers_are_the_experiments_pages(warehouse, bundled_scenario):
    monitors = load_monitors(PROJECT_ROOT / "data" / "monitors.toml")
    numbers = read_numbers(warehouse, bundled_scenario, monitors, now=SMALL_LAKE_END)
    frame = experiments.load_stats(
        warehouse, Filters(), bundled_scenario.business.pre_period_days, experiments.scenario_metrics(bundled_scenario)
    )
    for x in bundled_scenario.experiments:
        report = experiments.analyse(frame, x)
        got = numbers.experiments[0.05][x.id]
        assert got.srm == report.srm
        # the same sums, added in another order: equal up to rounding
        assert [(g.name, g.variant, g.verdict) for g in got.guardrails] == [
            (g.name, g.variant, g.verdict) for g in report.guardrails
        ]
        bounds = [g.bound_absolute for g in report.guardrails]
        assert [g.bound_absolute for g in got.guardrails] == pytest.approx(bounds)
        primary = {v: c for (m, v), c in report.comparisons.items() if m == x.primary_metric}
        assert set(got.primary) == set(primary)
        for variant, c in primary.items():
            assert got.primary[variant].absolute.ci_upper == pytest.approx(c.absolute.ci_upper)


def test_model_windows_are_the_models_mature_decisions_of_each_window(warehouse, bundled_scenario):
    monitors = load_monitors(PROJECT_ROOT / "data" / "monitors.toml")
    rule = next(r for r in monitors.rules if isinstance(r, ModelHealth))
    recent, reference = read_numbers(warehouse, bundled_scenario, monitors, now=SMALL_LAKE_END).models[rule.name]
    mature_until = SMALL_LAKE_END - timedelta(minutes=rule.maturity_minutes)
    rows = warehouse.query(
        "SELECT d.ts, d.score, d.decision_id IN (SELECT decision_id FROM events WHERE list_contains($types, "
        "event_type)) AS outcome FROM decisions d WHERE d.policy = 'propensity' AND d.score IS NOT NULL "
        "AND d.status = 'ok' AND NOT d.fallback AND d.arm <> 'holdout'",
        {"types": list(mq.OUTCOMES[rule.outcome])},
    )
    for got, start, end in (
        (recent, mature_until - timedelta(seconds=rule.recent_s), mature_until),
        (
            reference,
            mature_until - timedelta(seconds=rule.recent_s + rule.reference_s),
            mature_until - timedelta(seconds=rule.recent_s),
        ),
    ):
        part = [r for r in rows.iter_rows(named=True) if start < r["ts"] <= end]
        assert got.decisions == len(part) > 0
        assert got.outcomes == sum(r["outcome"] for r in part)
        assert got.mean_score == pytest.approx(sum(r["score"] for r in part) / len(part))
        labels = [r["outcome"] for r in part]
        if any(labels) and not all(labels):
            assert got.auc == pytest.approx(mq.auc([r["score"] for r in part], labels))
            assert 0 < got.auc_se < 0.5


def test_paused_arms_follow_the_newest_change(tmp_path):
    lake = tmp_path / "lake"
    at = datetime(2026, 6, 12, tzinfo=UTC)
    with LakeWriter(lake, compact_every_seconds=None, background=False) as writer:
        writer.append(
            "arm_pauses",
            [
                {"change_id": "1", "ts": at, "experiment_id": "e", "arm": "a", "action": "pause", "actor": "rule:g"},
                {
                    "change_id": "2",
                    "ts": at + timedelta(seconds=1),
                    "experiment_id": "e",
                    "arm": "a",
                    "action": "resume",
                    "actor": "ana",
                },
                {"change_id": "3", "ts": at, "experiment_id": "e", "arm": "b", "action": "pause", "actor": "rule:g"},
            ],
        )
    wh = Warehouse(lake)
    try:
        assert paused_arms(wh) == {"e": frozenset({"b"})}
    finally:
        wh.close()
