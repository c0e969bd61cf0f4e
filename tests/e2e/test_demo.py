"""`momento demo` — the README's main command — brings the whole system up and Ctrl-C stops it.

Starts the real `momento demo` on a temp lake and free ports: it must backfill the empty lake,
start the service, the rollup job, the monitors, the simulator and the cockpit, and live decisions
must reach the lake; then one SIGINT (what Ctrl-C sends), a SIGTERM, or a second Ctrl-C while it is stopping must stop
every child (no process of theirs left, the ports free) and leave a readable lake. The demo keys
user ids with a random key of the lake's own, kept owner-only in the lake, and hands it to every
child: the live simulator's customers are the backfilled ones.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from cli.lake_secrets import key_path
from decisioning.identity import customer_unit
from decisioning.simulator.behaviour import raw_user_id
from momento.lake.warehouse import Warehouse
from momento.scenario import load_scenario
from momento.settings import DEV_PSEUDONYM_KEY, PROJECT_ROOT

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def sessions_of_children(pid: int) -> set[int]:
    """The sessions of `pid`'s child processes (the demo starts each child in its own)."""
    sessions = set()
    for entry in Path("/proc").iterdir():
        try:
            stat_line = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        fields = stat_line[stat_line.rindex(")") + 2 :].split()  # after "pid (comm) "
        if int(fields[1]) == pid:
            sessions.add(int(fields[3]))
    return sessions


def alive_in(sessions: set[int]) -> list[int]:
    """Processes still alive (not zombies) in any of `sessions`."""
    alive = []
    for entry in Path("/proc").iterdir():
        try:
            stat_line = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        fields = stat_line[stat_line.rindex(")") + 2 :].split()
        if int(fields[3]) in sessions and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


def port_closed(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize(
    "stop",
    [(signal.SIGINT,), (signal.SIGTERM,), (signal.SIGINT, signal.SIGINT)],
    ids=["ctrl-c", "kill", "ctrl-c-twice"],
)
def test_demo_backfills_runs_everything_live_and_stops_cleanly(tmp_path, stop):
    lake = tmp_path / "lake"
    service_port, cockpit_port = free_port(), free_port()
    inherited = {key: value for key, value in os.environ.items() if key != "MOMENTO_PSEUDONYM_KEY"}
    env = {**inherited, "MOMENTO_LAKE": str(lake), "MOMENTO_FLUSH_SECONDS": "0.5"}
    started = datetime.now(UTC)
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "demo",
            "--days",
            "3",
            "--users",
            "800",
            "--rate",
            "4",
            "--port",
            str(service_port),
            "--cockpit-port",
            str(cockpit_port),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{service_port}/healthz").status_code == 200, 120, "the service")
        wait_for(
            lambda: httpx.get(f"http://127.0.0.1:{cockpit_port}/_stcore/health").status_code == 200, 60, "the cockpit"
        )
        warehouse = Warehouse(lake, min_refresh_seconds=0)
        assert warehouse.scalar("SELECT count(*) FROM events WHERE ts < $t", {"t": started}) > 0, (
            "no backfilled history"
        )
        wait_for(
            lambda: warehouse.scalar("SELECT count(*) FROM decisions WHERE ts >= $t", {"t": started}) > 0,
            60,
            "live decisions in the lake",
        )
        children = sessions_of_children(demo.pid)
        assert len(children) == 5, children  # service, rollup job, monitors, simulator, cockpit
        for sig in stop:
            demo.send_signal(sig)
            time.sleep(0.05)  # the next one lands as the demo begins to stop (as make passing on a SIGTERM does)
        output, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:  # a failed check: take the children down too, or they hold the pipe open
            children = sessions_of_children(demo.pid)
            demo.kill()
            for session in children:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(session, signal.SIGKILL)
            demo.communicate()
    assert demo.returncode == 0, output
    assert f"http://127.0.0.1:{cockpit_port}" in output
    assert port_closed(service_port) and port_closed(cockpit_port), "a child outlived the demo"
    assert not alive_in(children), "a child outlived the demo"
    assert "Traceback" not in output, output
    warehouse = Warehouse(lake)
    assert warehouse.scalar("SELECT count(*) FROM decisions WHERE ts >= $t", {"t": started}) > 0

    key = key_path(lake).read_text().strip()
    assert stat.S_IMODE(key_path(lake).stat().st_mode) == 0o600
    assert stat.S_IMODE(key_path(lake).parent.stat().st_mode) == 0o700
    backfilled = set(warehouse.query("SELECT DISTINCT user_id FROM events WHERE ts < $t", {"t": started})["user_id"])
    assert {customer_unit(raw_user_id(i), key) for i in range(800)} & backfilled  # keyed with the lake's key
    assert not {customer_unit(raw_user_id(i), DEV_PSEUDONYM_KEY) for i in range(800)} & backfilled
    customers = load_scenario(PROJECT_ROOT / "data" / "scenario.toml").population.users
    live = set(warehouse.query("SELECT DISTINCT user_id FROM decisions WHERE ts >= $t", {"t": started})["user_id"])
    assert {customer_unit(raw_user_id(i), key) for i in range(customers)} & live  # the simulator has the key too
