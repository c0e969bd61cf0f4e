"""Arm pauses on the REAL service (a subprocess): a paused arm's units are served as control with
`paused_by_guardrail` through the normal flow, control's own units are untouched, every change is
audited in the lake, a restarted service keeps the pause, and the API refuses bad input with a
reason and a field, and any caller without the server key off loopback."""

from __future__ import annotations

import httpx
import pytest

from momento.lake.warehouse import Warehouse
from tests.support.service import DEV_KEY, decide, raw_user

EXPERIMENT, PLACEMENT = "exp_cart_cross_sell", "cart_cross_sell"
TOKEN, SITE_KEY = "pause-token-6b1e", "pause-site-key-0c4d"
SECRETS = {"MOMENTO_API_TOKEN": TOKEN, "MOMENTO_SITE_KEY": SITE_KEY, "MOMENTO_PSEUDONYM_KEY": DEV_KEY + "-off"}


def _pause(http: httpx.Client, action: str = "pause", arm: str = "treatment", **body) -> httpx.Response:
    return http.post(f"/v1/experiments/{EXPERIMENT}/arms/{arm}/{action}", json=body or None)


def _codes(decision: dict) -> list[str]:
    return [reason["code"] for reason in decision["reasons"]]


def test_a_paused_arm_is_served_as_control_audited_and_kept_across_a_restart(tmp_path, launch, scenario):
    treated = [raw_user(scenario, EXPERIMENT, "treatment", f"t{i}") for i in range(3)]
    control = raw_user(scenario, EXPERIMENT, "control", "c")
    running = launch(tmp_path)
    with httpx.Client(base_url=running.url, timeout=30) as http:
        assert {decide(http, user, PLACEMENT)["arm"] for user in treated} == {"treatment"}
        paused = _pause(http, by="ana", reason="returns up", evidence={"p": 0.001})
        assert paused.status_code == httpx.codes.OK, paused.text
        assert paused.json() == {
            "experiment_id": EXPERIMENT,
            "arm": "treatment",
            "paused": True,
            "changed": True,
            "served_as": "control",
            "durable": True,
        }
        again = _pause(http, rule="guardrail")
        assert again.json()["changed"] is False  # idempotent: nothing written
        for user in treated:
            d = decide(http, user, PLACEMENT)
            assert (d["arm"], d["variant"], _codes(d)) == ("control", "bestsellers", ["paused_by_guardrail"])
        assert _codes(decide(http, control, PLACEMENT)) == ["control_arm"]
    assert running.stop() == 0

    restarted = launch(tmp_path)
    with httpx.Client(base_url=restarted.url, timeout=30) as http:
        assert _codes(decide(http, treated[0], PLACEMENT)) == ["paused_by_guardrail"]
        resumed = _pause(http, "resume", by="ana", reason="fixed")
        assert resumed.json()["paused"] is False
        assert decide(http, treated[0], PLACEMENT)["arm"] == "treatment"
    assert restarted.stop() == 0

    warehouse = Warehouse(tmp_path / "lake")
    try:
        audit = warehouse.query("SELECT action, actor, reason, evidence FROM arm_pauses ORDER BY ts").rows()
        logged = warehouse.query(
            "SELECT arm, reasons FROM decisions WHERE list_contains(reasons, 'paused_by_guardrail')"
        ).rows()
    finally:
        warehouse.close()
    assert audit == [("pause", "ana", "returns up", '{"p": 0.001}'), ("resume", "ana", "fixed", None)]
    assert len(logged) == len(treated) + 1
    assert {arm for arm, _ in logged} == {"control"}  # no decision logged in the paused arm


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/experiments/nope/arms/treatment/pause", None, "experiment_id"),
        (f"/v1/experiments/{EXPERIMENT}/arms/nope/pause", None, "arm"),
        (f"/v1/experiments/{EXPERIMENT}/arms/control/pause", None, "arm"),
        (f"/v1/experiments/{EXPERIMENT}/arms/treatment/pause", {"bogus": 1}, "bogus"),
        (f"/v1/experiments/{EXPERIMENT}/arms/treatment/resume", {"by": ""}, "by"),
    ],
)
def test_bad_input_is_a_422_with_reason_and_field(client, path, body, field):
    response = client.post(path, json=body)
    assert response.status_code == httpx.codes.UNPROCESSABLE_ENTITY, response.text
    assert response.json()["field"] == field
    assert response.json()["reason"]


def test_off_loopback_pausing_needs_the_server_key(tmp_path, launch):
    running = launch(tmp_path, host="0.0.0.0", env=SECRETS)
    with httpx.Client(base_url=running.url, timeout=30) as http:
        assert _pause(http).status_code == httpx.codes.UNAUTHORIZED
        refused = http.post(
            f"/v1/experiments/{EXPERIMENT}/arms/treatment/pause", headers={"Authorization": f"Bearer {SITE_KEY}"}
        )
        assert refused.status_code == httpx.codes.FORBIDDEN
        assert refused.json()["field"] == "Authorization"
        allowed = http.post(
            f"/v1/experiments/{EXPERIMENT}/arms/treatment/pause",
            json={"rule": "guardrail"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert allowed.status_code == httpx.codes.OK
        assert allowed.json()["paused"] is True
    running.stop()
    warehouse = Warehouse(tmp_path / "lake")
    try:
        assert warehouse.query("SELECT actor FROM arm_pauses").rows() == [("rule:guardrail",)]
    finally:
        warehouse.close()
