"""Incident drills against the REAL service, the REAL monitor (`momento watch`, both subprocesses)
and a local webhook receiver (`http.server` on a thread), on an empty lake, with short windows.

One service, one watcher and one receiver for the module, the drills in order:
1. the webhook is down while `latency_spike` decisions burn the latency SLO: the burn-rate alert is
   in the lake at once and the watcher counts failed deliveries (monitoring unaffected); the
   receiver comes up and gets it exactly once, signed;
2. `error_burst` -> the error-rate alert;
3. the `srm_bug` (a share of one arm's exposures lost on the client) -> the SRM alert;
4. a harmful arm: the cart cross-sell's treatment converts far worse than control (the drill's
   traffic plays a negative true effect on the `conversion_rate` guardrail) -> the guardrail alert,
   the arm paused by the rule within 10 s (audited, by the rule), after which its users' decisions
   are logged in control with `paused_by_guardrail` and the lake has no new decision in the arm.

The traffic is sent by the test itself (decide, exposures, events over HTTP), not the simulator:
the simulator's realistic rates need far more users than a drill of seconds to reach significance.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from cli.processes import free_loopback_port
from decisioning.assignment import assign_arm, in_holdout
from decisioning.identity import customer_unit
from momento.lake.warehouse import Warehouse
from momento.scenario import Scenario, load_scenario
from momento.settings import PROJECT_ROOT
from tests.decisioning.conftest import start_service
from tests.support.service import DEV_KEY, metric
from tests.support.webhook import Receiver

pytestmark = pytest.mark.e2e

SECRET = b"drill-hook-secret-17"
ALERT_WITHIN_S = 15.0
PAUSE_WITHIN_S = 10.0

MONITORS = """
interval_s = 1

[webhook]
url = "{url}"
secret_file = "hook.key"
max_backoff_s = 1

[[rules]]
name = "srm"
kind = "srm"
threshold = 0.001
min_users = 50
experiments = ["exp_home_showcase"]

[[rules]]
name = "guardrail"
kind = "guardrail"
action = "pause"
experiments = ["exp_cart_cross_sell"]

[[rules]]
name = "latency_burn"
kind = "latency_burn"
target = 0.99
min_decisions = 10
windows = [{{ long_s = 120, short_s = 20, burn = 5 }}]

[[rules]]
name = "error_rate"
kind = "error_rate"
window_s = 20
threshold = 0.1
min_decisions = 10
"""


@dataclass
class Drill:
    url: str
    lake: Path
    receiver: Receiver
    watch: subprocess.Popen
    watch_log: Path
    metrics_url: str
    scenario: Scenario


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    workdir = tmp_path_factory.mktemp("drills")
    receiver = Receiver(free_loopback_port(), SECRET)  # not started: the webhook is down
    (workdir / "hook.key").write_bytes(SECRET)
    monitors = workdir / "monitors.toml"
    monitors.write_text(MONITORS.format(url=receiver.url))
    service = start_service(workdir)
    metrics_port = free_loopback_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MOMENTO_")},
        "MOMENTO_LAKE": str(service.lake),
        "MOMENTO_SERVICE_URL": service.url,
    }
    watch_log = workdir / "watch.log"
    with watch_log.open("wb") as sink:
        watch = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli.main",
                "watch",
                "--monitors",
                str(monitors),
                "--metrics-port",
                str(metrics_port),
            ],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Drill(
            service.url,
            service.lake,
            receiver,
            watch,
            watch_log,
            f"http://127.0.0.1:{metrics_port}/metrics",
            load_scenario(PROJECT_ROOT / "data" / "scenario.toml"),
        )
    finally:
        watch.terminate()  # a plain SIGTERM stops it
        code = watch.wait(timeout=20)
        receiver.stop()
        service.stop()
        assert code == 0, watch_log.read_text()


def users(scenario: Scenario, experiment_id: str, per_arm: int, prefix: str) -> dict[str, list[str]]:
    """`per_arm` raw customer ids in each arm of the experiment (none in the holdout)."""
    experiment = scenario.experiment_by_id[experiment_id]
    out: dict[str, list[str]] = {arm.name: [] for arm in experiment.arms}
    for i in itertools.count():
        raw = f"{prefix}-{i}"
        unit = customer_unit(raw, DEV_KEY)
        if in_holdout(unit, scenario.population):
            continue
        arm = assign_arm(unit, experiment)
        if len(out[arm]) < per_arm:
            out[arm].append(raw)
        if all(len(ids) == per_arm for ids in out.values()):
            return out
    raise AssertionError("unreachable")


def decide(http: httpx.Client, user: str, placement: str, **extra) -> dict:
    response = http.post(
        "/v1/decide",
        json={
            "user_id": user,
            "placement": placement,
            "channel": "web",
            "consent": True,
            "session_id": f"s-{user}",
            **extra,
        },
    )
    assert response.status_code == httpx.codes.OK, response.text
    return response.json()["decisions"][0]


def post(http: httpx.Client, path: str, key: str, rows: list[dict], durable: bool = False) -> None:
    for start in range(0, len(rows), 500):
        response = http.post(path + ("?wait=durable" if durable else ""), json={key: rows[start : start + 500]})
        assert response.status_code == httpx.codes.OK, response.text


def alert_rows(lake: Path, rule: str) -> list[dict]:
    warehouse = Warehouse(lake)
    try:
        if not warehouse.has("alerts"):
            return []
        return warehouse.query("SELECT * FROM alerts WHERE rule = $rule ORDER BY ts", {"rule": rule}).to_dicts()
    finally:
        warehouse.close()


def wait_for_alert(drill: Drill, rule: str, subject: str, timeout: float = ALERT_WITHIN_S) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        firing = [r for r in alert_rows(drill.lake, rule) if r["state"] == "firing" and r["subject"] == subject]
        if firing:
            return firing[0]
        assert drill.watch.poll() is None, drill.watch_log.read_text()
        assert time.monotonic() < deadline, f"no {rule} alert for {subject}:\n{drill.watch_log.read_text()}"
        time.sleep(0.3)


def delivered(drill: Drill, alert_id: str) -> list:
    return drill.receiver.wait_for(lambda body: body["momento"]["alert_id"] == alert_id)


def test_latency_spike_raises_the_burn_rate_alert_and_a_webhook_down_loses_nothing(drill):
    with httpx.Client(base_url=drill.url, timeout=30) as http:
        for i in range(30):
            decide(http, f"spike-{i}", "product_cta", incidents=["latency_spike"])
    sent = datetime.now(UTC)
    alert = wait_for_alert(drill, "latency_burn", "service")
    print(f"latency_spike: burn-rate alert {(alert['ts'] - sent).total_seconds():.1f} s after the last decision")
    assert '"long_burn"' in alert["evidence"]
    time.sleep(2.0)  # the webhook is down: deliveries fail, counted; evaluations go on
    counters = httpx.get(drill.metrics_url, timeout=5).text
    assert metric(counters, "momento_webhook_delivery_failures_total") >= 1
    evaluations = metric(counters, "momento_watch_evaluations_total")
    assert evaluations >= 2
    drill.receiver.start()
    (message,) = delivered(drill, alert["alert_id"])
    assert message.signed
    assert message.body["text"].startswith("[FIRING] latency_burn: decision latency SLO burning")
    time.sleep(1.5)
    assert len([m for m in drill.receiver.messages if m.body["momento"]["alert_id"] == alert["alert_id"]]) == 1


def test_error_burst_raises_the_error_rate_alert(drill):
    with httpx.Client(base_url=drill.url, timeout=30) as http:
        for i in range(60):
            decide(http, f"burst-{i}", "homepage_showcase", incidents=["error_burst"])
    alert = wait_for_alert(drill, "error_rate", "service")
    assert alert["summary"].startswith("errors at ")
    assert delivered(drill, alert["alert_id"])


def test_srm_bug_raises_the_sample_ratio_alert(drill):
    arms = users(drill.scenario, "exp_home_showcase", 120, "srm")
    with httpx.Client(base_url=drill.url, timeout=30) as http:
        exposures = []
        for arm, ids in arms.items():
            for i, user in enumerate(ids):
                d = decide(http, user, "homepage_showcase")
                if arm != "treatment" or i % 2 == 0:  # the srm_bug: half the treatment's exposures lost
                    exposures.append({"decision_id": d["decision_id"]})
        post(http, "/v1/exposures", "exposures", exposures, durable=True)
    alert = wait_for_alert(drill, "srm", "exp_home_showcase")
    assert '"p_value"' in alert["evidence"]
    assert delivered(drill, alert["alert_id"])


def test_a_harmful_arm_is_alerted_and_paused_within_ten_seconds(drill):
    arms = users(drill.scenario, "exp_cart_cross_sell", 200, "harm")
    converts = {"control": 0.6, "treatment": 0.1}  # the treatment's true effect on conversion: -83%
    with httpx.Client(base_url=drill.url, timeout=30) as http:
        exposures, events = [], []
        for arm, ids in arms.items():
            for i, user in enumerate(ids):
                d = decide(http, user, "cart_cross_sell")
                assert d["arm"] == arm
                exposures.append({"decision_id": d["decision_id"]})
                if i < converts[arm] * len(ids):
                    events.append(
                        {
                            "event_id": uuid.uuid4().hex,
                            "event_type": "purchase",
                            "user_id": user,
                            "channel": "web",
                            "decision_id": d["decision_id"],
                            "revenue": 100.0,
                        }
                    )
        post(http, "/v1/exposures", "exposures", exposures, durable=True)
        time.sleep(0.05)  # outcomes after the first exposure
        post(http, "/v1/events", "events", events, durable=True)
        breached = datetime.now(UTC)
        alert = wait_for_alert(drill, "guardrail", "exp_cart_cross_sell/treatment")
        assert alert["action"] == "pause"
        assert delivered(drill, alert["alert_id"])
        deadline = time.monotonic() + PAUSE_WITHIN_S
        while decide(http, arms["treatment"][0], "cart_cross_sell")["arm"] != "control":
            assert time.monotonic() < deadline, drill.watch_log.read_text()
            time.sleep(0.2)
        after = [decide(http, user, "cart_cross_sell") for user in arms["treatment"][:20]]
    assert {(d["arm"], d["reasons"][0]["code"]) for d in after} == {("control", "paused_by_guardrail")}
    time.sleep(1.0)  # the service hands decisions to the writer every 0.2 s, flushed every 0.2 s
    warehouse = Warehouse(drill.lake)
    try:
        (pause,) = warehouse.query("SELECT * FROM arm_pauses").to_dicts()
        treated_since = warehouse.scalar(
            "SELECT count(*) FROM decisions WHERE experiment_id = 'exp_cart_cross_sell' AND arm = 'treatment' "
            "AND ts > $at",
            {"at": pause["ts"]},
        )
        paused_logged = warehouse.scalar(
            "SELECT count(*) FROM decisions WHERE list_contains(reasons, 'paused_by_guardrail') AND arm = 'control'"
        )
    finally:
        warehouse.close()
    assert (pause["experiment_id"], pause["arm"], pause["action"]) == ("exp_cart_cross_sell", "treatment", "pause")
    assert (pause["actor"], pause["rule"]) == ("rule:guardrail", "guardrail")
    print(f"harmful arm: paused {(pause['ts'] - breached).total_seconds():.1f} s after the breach was in the lake")
    assert (pause["ts"] - breached).total_seconds() < PAUSE_WITHIN_S
    assert '"guardrails"' in pause["evidence"]
    assert treated_since == 0
    assert paused_logged >= len(after)
