"""Live mode against the real service: data reaches the lake, incidents reach the engine, and
a service restart costs retries, not data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cli.processes import free_loopback_port, service_command, wait_until_healthy
from decisioning.simulator.live import LiveStats, run_live, simulate
from momento.lake.warehouse import Warehouse
from momento.scenario import Scenario
from momento.settings import PROJECT_ROOT, Settings


def _environment(lake: Path) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MOMENTO_")}
    return {**inherited, "MOMENTO_LAKE": str(lake), "MOMENTO_FLUSH_SECONDS": "0.2"}


def _eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def _counts(lake: Path) -> dict[str, int]:
    w = Warehouse(lake)
    try:
        return w.query(
            "SELECT (SELECT count(*) FROM decisions) AS decisions, (SELECT count(*) FROM exposures) "
            "AS exposures, (SELECT count(*) FROM events) AS events"
        ).row(0, named=True)
    finally:
        w.close()


@pytest.mark.e2e
def test_momento_simulate_fills_the_warehouse_within_seconds(tmp_path: Path, launch) -> None:
    service = launch(tmp_path)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "simulate",
            "--url",
            service.url,
            "--rate",
            "20",
            "--duration",
            "4",
            "--seed",
            "1",
            "--incident",
            "model_outage",
            "--incident",
            "ingestion_stall",
        ],
        cwd=PROJECT_ROOT,
        env=_environment(service.lake),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "decisions" in run.stderr and "unsent 0" in run.stderr
    assert _eventually(lambda: min(_counts(service.lake).values()) > 0, timeout=5.0), _counts(service.lake)
    w = Warehouse(service.lake)
    linked = w.query(
        "SELECT count(*) FILTER (WHERE d.decision_id IS NULL) AS orphans, count(*) AS linked "
        "FROM events e LEFT JOIN decisions d USING (decision_id) WHERE e.decision_id IS NOT NULL"
    ).row(0, named=True)
    propensity = w.query(
        "SELECT reasons[1] AS reason, count(*) AS n FROM decisions WHERE consent "
        "AND experience_id = 'adaptive_cta' AND arm = 'adaptive' GROUP BY 1"
    )
    kinds = w.query("SELECT DISTINCT event_type FROM events").get_column("event_type").to_list()
    held = w.query("SELECT (SELECT min(received_at) FROM events) > (SELECT max(ts) FROM decisions) AS held").item()
    w.close()
    assert held  # the stalled pipeline delivered every event only after the last decision
    assert linked["orphans"] == 0 and linked["linked"] > 0
    reasons = dict(zip(propensity.get_column("reason"), propensity.get_column("n")))
    assert (
        reasons.get("model_unavailable", 0) > 0 and "policy_propensity" not in reasons
    )  # the incident reached the engine
    assert {"page_view", "click"} <= set(kinds)


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[dict]:
    """A service on a fixed port that the test can stop and start again; always stopped."""
    port = free_loopback_port()
    state: dict = {"url": f"http://127.0.0.1:{port}", "lake": tmp_path / "lake", "process": None}

    def start() -> None:
        with (tmp_path / "service.log").open("ab") as log:
            state["process"] = subprocess.Popen(
                service_command("127.0.0.1", port),
                cwd=PROJECT_ROOT,
                env=_environment(state["lake"]),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until_healthy(state["url"], state["process"])

    def stop() -> None:
        process = state["process"]
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    state.update(start=start, stop=stop)
    start()
    yield state
    stop()


@pytest.mark.e2e
def test_a_service_restart_costs_retries_not_data(restartable: dict, bundled_scenario: Scenario) -> None:
    result: dict[str, LiveStats] = {}
    runner = threading.Thread(
        target=lambda: result.update(
            stats=simulate(restartable["url"], bundled_scenario, rate=15, duration=14, seed=2, users=5_000)
        )
    )
    runner.start()
    time.sleep(2.5)
    restartable["stop"]()
    time.sleep(1.0)
    restarted_at = datetime.now(UTC)
    restartable["start"]()
    runner.join(60)
    stats = result["stats"]
    assert stats.retries > 0 and stats.unsent == 0 and stats.errors == 0, stats
    w = Warehouse(restartable["lake"])
    assert _eventually(lambda: w.scalar("SELECT count(*) FROM decisions WHERE ts > $t", {"t": restarted_at}) > 0)
    # every acknowledged event is stored (once: a batch re-sent after a lost answer counts twice in stats)
    assert _eventually(lambda: w.scalar("SELECT count(*) FROM events") >= 0.99 * stats.events)
    assert w.scalar("SELECT count(*) FROM events") <= stats.events
    w.close()


def test_an_unknown_incident_is_refused_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(lake=tmp_path / "lake")
    assert run_live(settings, "http://127.0.0.1:9", rate=1, duration=0.1, seed=1, incidents=["meteor"]) == 2
    assert "meteor" in capsys.readouterr().err


def test_simulate_draws_from_the_population_it_is_given(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`momento simulate --users N` continues the customers of `momento backfill --users N`."""
    from cli.main import main
    from decisioning.simulator import live

    asked: dict[str, object] = {}

    def fake(url: str, scenario: Scenario, **kwargs: object) -> LiveStats:
        asked.update(kwargs)
        return LiveStats()

    monkeypatch.setattr(live, "simulate", fake)
    monkeypatch.setenv("MOMENTO_LAKE", str(tmp_path / "lake"))
    assert main(["simulate", "--url", "http://127.0.0.1:9", "--duration", "0", "--users", "5000"]) == 0
    assert asked["users"] == 5000
    assert main(["simulate", "--url", "http://127.0.0.1:9", "--duration", "0"]) == 0
    assert asked["users"] is None
