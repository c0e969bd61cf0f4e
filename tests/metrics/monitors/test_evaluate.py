"""Rules judged on hand-made numbers: each kind fires exactly past its threshold, with its
evidence, and the tracker opens an alert once and resolves it once."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from metrics import stats
from metrics.monitors.evaluate import (
    FIRING,
    RESOLVED,
    ExperimentNumbers,
    Finding,
    ModelWindow,
    Numbers,
    Tracker,
    Window,
    evaluate,
    windows_needed,
)
from metrics.monitors.rules import parse_monitors

AT = datetime(2026, 6, 12, 12, tzinfo=UTC)


def rules(*raw: dict):
    return parse_monitors({"rules": list(raw)}).rules


def proportion(name: str, n: int, successes: int) -> stats.ArmStats:
    return stats.ArmStats(name, n, float(successes), float(successes))


def experiment(
    control: tuple[int, int],
    treatment: tuple[int, int],
    margin: float = 0.05,
    paused: frozenset[str] = frozenset(),
    alpha: float = 0.05,
) -> ExperimentNumbers:
    c, t = proportion("control", *control), proportion("treatment", *treatment)
    comparison = stats.compare(c, t, "proportion", alpha)
    guard = stats.non_inferiority(comparison, margin, True, "conversion_rate")
    srm = stats.srm_check([c, t], [0.5, 0.5])
    return ExperimentNumbers(
        "exp",
        {"control": control[0], "treatment": treatment[0]},
        srm,
        (guard,),
        {"treatment": comparison},
        "conversion_rate",
        True,
        paused,
    )


def numbers(
    x: ExperimentNumbers | None = None, windows: dict[int, Window] | None = None, lag: float | None = None
) -> Numbers:
    return Numbers(AT, {0.05: {"exp": x}} if x else {}, windows or {}, lag)


def window(seconds: int, decisions: int, within: int | None = None, **counts: int) -> Window:
    """A window of `decisions`, `within` of them within budget; `errors`, `failure_fallbacks`,
    `consent_violations` as given (else 0)."""
    return Window(
        seconds,
        decisions,
        decisions if within is None else within,
        counts.get("errors", 0),
        counts.get("failure_fallbacks", 0),
        counts.get("consent_violations", 0),
    )


def test_srm_fires_on_a_strict_threshold_and_skips_paused_experiments():
    (rule,) = rules({"name": "srm", "kind": "srm", "threshold": 0.001, "min_users": 100})
    (balanced,) = evaluate(rule, numbers(experiment((1000, 100), (1010, 100))))
    assert not balanced.firing
    (skewed,) = evaluate(rule, numbers(experiment((1000, 100), (800, 80))))
    assert skewed.firing
    assert skewed.subject == "exp"
    assert skewed.evidence["p_value"] < rule.threshold
    assert evaluate(rule, numbers(experiment((1000, 100), (800, 80), paused=frozenset({"treatment"})))) == []
    assert evaluate(rule, numbers(experiment((40, 4), (20, 2)))) == []  # too few users to judge


def test_guardrail_fires_only_when_the_interval_lies_beyond_the_margin_and_carries_its_action():
    (rule,) = rules({"name": "guard", "kind": "guardrail", "action": "pause"})
    (breached,) = evaluate(rule, numbers(experiment((2000, 1000), (2000, 600))))
    assert breached.firing
    assert breached.subject == "exp/treatment"
    assert breached.action == "pause"
    assert breached.evidence["guardrails"][0]["verdict"] == "failed"
    json.dumps(breached.evidence, allow_nan=False)
    (unsure,) = evaluate(rule, numbers(experiment((100, 50), (100, 44))))
    assert not unsure.firing
    assert unsure.action is None


def test_harmful_arm_fires_when_the_primary_interval_is_below_zero():
    (rule,) = rules({"name": "harm", "kind": "harmful_arm"})
    (harm,) = evaluate(rule, numbers(experiment((2000, 1000), (2000, 800))))
    assert harm.firing
    assert harm.evidence["comparison"]["absolute"]["ci_upper"] < 0
    (fine,) = evaluate(rule, numbers(experiment((2000, 1000), (2000, 1000))))
    assert not fine.firing


def test_latency_burn_needs_both_windows_of_a_pair_to_burn():
    (rule,) = rules(
        {
            "name": "burn",
            "kind": "latency_burn",
            "target": 0.99,
            "min_decisions": 10,
            "windows": [{"long_s": 600, "short_s": 60, "burn": 10}],
        }
    )
    assert windows_needed([rule]) == (60, 600)
    # 20% over budget over both windows: burn 20 > 10
    (hot,) = evaluate(rule, numbers(windows={600: window(600, 1000, 800), 60: window(60, 100, 80)}))
    assert hot.firing
    assert hot.evidence["windows"][0]["long_burn"] == pytest.approx(20.0)
    # the long window burns, the short one has recovered: no page
    (cooled,) = evaluate(rule, numbers(windows={600: window(600, 1000, 800), 60: window(60, 100, 100)}))
    assert not cooled.firing


def test_error_and_fallback_rates_fire_above_their_threshold_with_enough_decisions():
    error, fallback = rules(
        {"name": "e", "kind": "error_rate", "window_s": 60, "threshold": 0.05},
        {"name": "f", "kind": "fallback_rate", "window_s": 60, "threshold": 0.1},
    )
    (hot,) = evaluate(error, numbers(windows={60: window(60, 100, errors=6)}))
    assert hot.firing
    assert hot.evidence["rate"] == pytest.approx(6 / 100)
    (few,) = evaluate(error, numbers(windows={60: window(60, 10, errors=5)}))
    assert not few.firing  # under min_decisions
    (fell,) = evaluate(fallback, numbers(windows={60: window(60, 100, failure_fallbacks=11)}))
    assert fell.firing


def test_freshness_and_consent():
    fresh, consent = rules(
        {"name": "lag", "kind": "freshness", "max_lag_s": 60},
        {"name": "c", "kind": "consent_violation", "window_s": 60},
    )
    assert evaluate(fresh, numbers(lag=None)) == []
    assert evaluate(fresh, numbers(lag=61))[0].firing
    assert not evaluate(fresh, numbers(lag=5))[0].firing
    assert evaluate(consent, numbers(windows={60: window(60, 100, consent_violations=1)}))[0].firing
    assert not evaluate(consent, numbers(windows={60: window(60, 100)}))[0].firing


def test_the_tracker_opens_once_and_resolves_once():
    tracker = Tracker()
    on = Finding("r", "error_rate", "service", True, "on", {"rate": 0.5})
    off = Finding("r", "error_rate", "service", False, "off", {"rate": 0.0})
    (opened,) = tracker.update([on], AT)
    assert opened.state == FIRING
    assert opened.row()["evidence"] == '{"rate": 0.5}'
    assert tracker.update([on], AT) == []  # de-duplicated while open
    (resolved,) = tracker.update([off], AT)
    assert resolved.state == RESOLVED
    assert tracker.update([off], AT) == []
    assert Tracker([("r", "service")]).update([on], AT) == []  # restored open alerts stay open


def test_model_health_fires_on_a_real_auc_drop_or_calibration_drift_not_on_noise():
    (rule,) = rules(
        {
            "name": "model",
            "kind": "model_health",
            "max_auc_drop": 0.05,
            "max_calibration_drift": 0.05,
            "min_decisions": 500,
            "min_outcomes": 20,
        }
    )
    reference = ModelWindow(20_000, 2_000, 0.75, 0.006, 0.10)

    def judged(recent: ModelWindow) -> list[Finding]:
        return evaluate(rule, Numbers(AT, models={"model": (recent, reference)}))

    (dropped,) = judged(ModelWindow(5_000, 500, 0.62, 0.012, 0.10))  # drop 0.13, 9.7 standard errors
    assert dropped.firing and "AUC fell from 0.750 to 0.620" in dropped.summary
    assert dropped.evidence["auc_drop"] == pytest.approx(0.13)
    json.dumps(dropped.evidence, allow_nan=False)
    (noisy,) = judged(ModelWindow(600, 30, 0.66, 0.05, 0.10))  # 0.09 below, but under 3 standard errors
    assert not noisy.firing
    (drifted,) = judged(ModelWindow(5_000, 200, 0.75, 0.02, 0.10))  # rate 10% -> 4%: gap 0 -> +0.06
    assert drifted.firing and "calibration gap" in drifted.summary
    assert drifted.evidence["calibration_drift"] == pytest.approx(0.06)
    (healthy,) = judged(ModelWindow(5_000, 510, 0.74, 0.012, 0.10))
    assert not healthy.firing
    assert judged(ModelWindow(100, 10, 0.5, 0.1, 0.10)) == []  # too little to judge yet
    assert evaluate(rule, Numbers(AT)) == []
