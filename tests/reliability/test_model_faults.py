"""Model faults: a policy that raises, is unavailable, or overruns the decision budget gets the
experience's safe default served with its reason code; the client sees a normal 200 answer;
the fallback is counted in `/metrics` and logged in the `decisions` table.

Two levels: the REAL service (subprocess) with the incident switches every request may carry
(`model_outage`, `latency_spike`, `error_burst`), and the real app in process with a policy
swapped for one that raises or sleeps (a code path no switch reaches: the policy itself fails).
"""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from decisioning.http import create_app
from momento.codes import Code
from momento.lake.warehouse import Warehouse
from momento.settings import load_settings
from tests.support.service import decide, metric, raw_user, wait_for_count

ADAPTIVE = ("exp_adaptive_cta", "adaptive", "product_cta")  # the propensity model chooses
SHOWCASE = ("exp_home_showcase", "treatment", "homepage_showcase")  # Thompson sampling chooses


def _decide(http: httpx.Client, user: str, placement: str, **extra) -> dict:
    return decide(http, user, placement, session_id=f"s-{user}", **extra)  # a session per user


def _assert_safe_default(decision: dict, scenario, code: Code) -> None:
    experience = scenario.experience_by_placement[decision["placement"]]
    assert decision["variant"] == experience.default_variant and decision["policy"] == "default"
    assert decision["fallback"] is True and decision["fallback_reason"] == code
    assert code in [r["code"] for r in decision["reasons"]] and decision["propensity"] == 1.0


def _logged(lake, decisions: list[dict]) -> dict[str, dict]:
    """The `decisions` rows of these decisions, once they reach the lake."""
    ids = [d["decision_id"] for d in decisions]
    sql = "SELECT count(*) FROM decisions WHERE list_contains($ids, decision_id)"
    assert wait_for_count(lake, sql, {"ids": ids}, expected=len(ids)) == len(ids)
    warehouse = Warehouse(lake)
    rows = warehouse.query(
        "SELECT decision_id, variant, policy, fallback, fallback_reason, reasons, status, "
        "error_code, latency_us FROM decisions WHERE list_contains($ids, decision_id)",
        {"ids": ids},
    )
    warehouse.close()
    return {row["decision_id"]: row for row in rows.iter_rows(named=True)}


@pytest.mark.e2e
def test_injected_model_faults_serve_the_default_counted_and_logged(client, service, scenario):
    before = client.get("/metrics").text
    users = [raw_user(scenario, ADAPTIVE[0], ADAPTIVE[1], f"fault-{i}") for i in range(6)]
    outage = [_decide(client, u, ADAPTIVE[2], incidents=["model_outage"]) for u in users]
    slow = [_decide(client, u, ADAPTIVE[2], incidents=["latency_spike"]) for u in users]
    healthy = [_decide(client, u, ADAPTIVE[2]) for u in users]  # the model is back at once
    burst = [_decide(client, f"burst-{i}", "homepage_showcase", incidents=["error_burst"]) for i in range(40)]
    after = client.get("/metrics").text

    for decision in outage:
        _assert_safe_default(decision, scenario, Code.MODEL_UNAVAILABLE)
    for decision in slow:
        _assert_safe_default(decision, scenario, Code.BUDGET_EXCEEDED)
        assert decision["latency_us"] > 10_000  # it did overrun the 10 ms budget
    assert all(d["policy"] == "propensity" and not d["fallback"] for d in healthy)
    errored = [d for d in burst if d["status"] == "error"]
    assert 0 < len(errored) < len(burst)  # a share of the burst fails...
    for decision in errored:  # ...and each failure is still a served default, flagged as an error
        assert decision["error_code"] == Code.INTERNAL_ERROR
        _assert_safe_default(decision, scenario, Code.INTERNAL_ERROR)

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, labels) - metric(before, name, labels)

    assert delta("momento_fallbacks_total", reason=Code.MODEL_UNAVAILABLE) == len(outage)
    assert delta("momento_fallbacks_total", reason=Code.BUDGET_EXCEEDED) == len(slow)
    assert delta("momento_decision_errors_total", code=Code.INTERNAL_ERROR) == len(errored)
    assert delta("momento_unexpected_errors_total") == 0

    rows = _logged(service.lake, outage + slow + errored)
    for decision in outage + slow + errored:
        row = rows[decision["decision_id"]]
        assert row["fallback"] and row["fallback_reason"] == decision["fallback_reason"]
        assert row["fallback_reason"] in row["reasons"] and row["variant"] == decision["variant"]
    assert {rows[d["decision_id"]]["status"] for d in errored} == {"error"}


class _Faulty:
    """The real policy with its model broken: `probabilities` raises `error` (a bug, a corrupt
    model file) or takes `delay_s` longer (a model grown too big for the budget)."""

    def __init__(self, policy, *, error: Exception | None = None, delay_s: float = 0.0) -> None:
        self.policy, self.error, self.delay_s = policy, error, delay_s

    def __getattr__(self, name: str):
        return getattr(self.policy, name)

    def probabilities(self, X, eligible):
        if self.error is not None:
            raise self.error
        time.sleep(self.delay_s)
        return self.policy.probabilities(X, eligible)


def test_a_policy_that_raises_or_overruns_serves_the_default(tmp_path, scenario):
    lake = tmp_path / "lake"
    settings = load_settings({"MOMENTO_LAKE": str(lake), "MOMENTO_FLUSH_SECONDS": "0.1"})
    app = create_app(settings)
    engine = app.state.service.engine
    budget_s = settings.decision_budget_ms / 1000
    for key, fault in (
        (("adaptive_cta", "propensity"), {"error": FloatingPointError("model weights are NaN")}),
        (("home_showcase", "thompson"), {"delay_s": 2 * budget_s}),
    ):
        engine.policies[key] = _Faulty(engine.policies[key], **fault)
    broken = [raw_user(scenario, ADAPTIVE[0], ADAPTIVE[1], f"broken-{i}") for i in range(5)]
    slow = [raw_user(scenario, SHOWCASE[0], SHOWCASE[1], f"slow-{i}") for i in range(5)]
    with TestClient(app) as http:
        raised = [_decide(http, u, ADAPTIVE[2]) for u in broken]
        overran = [_decide(http, u, SHOWCASE[2]) for u in slow]
        again = _decide(http, broken[0], ADAPTIVE[2])  # still broken, still a served default
        metrics = http.get("/metrics").text
    for decision in [*raised, again]:
        _assert_safe_default(decision, scenario, Code.MODEL_ERROR)
    for decision in overran:
        _assert_safe_default(decision, scenario, Code.BUDGET_EXCEEDED)
        # The budget is checked when the policy returns: the answer waited for it (no pre-emption).
        assert decision["latency_us"] >= 2 * budget_s * 1e6
    assert metric(metrics, "momento_fallbacks_total", {"reason": Code.MODEL_ERROR}) == len(raised) + 1
    assert metric(metrics, "momento_fallbacks_total", {"reason": Code.BUDGET_EXCEEDED}) == len(overran)
    assert metric(metrics, "momento_unexpected_errors_total") == 0
    rows = _logged(lake, raised + overran)
    assert {rows[d["decision_id"]]["fallback_reason"] for d in raised} == {Code.MODEL_ERROR}
    assert {rows[d["decision_id"]]["fallback_reason"] for d in overran} == {Code.BUDGET_EXCEEDED}
    logged_ms = np.array([rows[d["decision_id"]]["latency_us"] for d in overran]) / 1000
    assert (logged_ms >= 2 * settings.decision_budget_ms).all()  # the overrun is visible in the lake
