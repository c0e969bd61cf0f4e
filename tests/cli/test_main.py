"""`momento`'s long-running commands stop on a plain `kill` (SIGTERM) and leave nothing behind:
each is started in a session of its own, sent SIGTERM, and then no process of that session may
be left and its port must be free. (`momento demo` is tested the same way in
tests/e2e/test_demo.py; the service's graceful flush in tests/decisioning/test_runner.py.)"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from cli.processes import free_loopback_port, wait_until_healthy
from momento.settings import PROJECT_ROOT
from tests.support.service import metric

pytestmark = pytest.mark.e2e


def _session(sid: int) -> list[str]:
    """The command lines of the processes alive in session `sid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip())
        except (OSError, ValueError):
            continue  # it ended while we looked
    return found


def _start(args: list[str], tmp_path: Path, *, script: bool = False, **env: str) -> subprocess.Popen:
    """`momento ARGS` (`python ARGS` when `script`) in a session of its own, with its own lake and
    no inherited MOMENTO_*."""
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("MOMENTO_")}
    log = (tmp_path / "command.log").open("wb")
    return subprocess.Popen(
        [sys.executable, *([] if script else ["-m", "cli.main"]), *args],
        cwd=PROJECT_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**inherited, "MOMENTO_LAKE": str(tmp_path / "lake"), **env},
    )


def _wait(condition: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def _kill_and_check(process: subprocess.Popen, tmp_path: Path, port: int | None = None) -> int:
    """SIGTERM `process`; its exit code, once no process of its session is left (else fail)."""
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=60)
    _wait(lambda: not _session(process.pid), f"the session of {process.args} to end", timeout=10)
    assert port is None or _port_free(port)
    assert "Traceback" not in (tmp_path / "command.log").read_text()
    return code


def test_serve_stops_on_sigterm(tmp_path):
    port = free_loopback_port()
    serve = _start(["serve", "--port", str(port)], tmp_path)
    wait_until_healthy(f"http://127.0.0.1:{port}", serve)
    assert _kill_and_check(serve, tmp_path, port) == 0


def test_simulate_stops_on_sigterm(launch, tmp_path):
    service = launch(tmp_path)
    simulate = _start(["simulate", "--url", service.url, "--rate", "5"], tmp_path)
    _wait(
        lambda: metric(httpx.get(f"{service.url}/metrics").text, "momento_decisions_total") > 0,
        "the simulator's first decisions",
    )
    assert _kill_and_check(simulate, tmp_path) == 0


def test_cockpit_becomes_streamlit_and_stops_on_sigterm(tmp_path):
    port = free_loopback_port()
    cockpit = _start(["cockpit", "--port", str(port)], tmp_path)
    _wait(lambda: httpx.get(f"http://127.0.0.1:{port}/_stcore/health").status_code == 200, "the cockpit")
    (command,) = _session(cockpit.pid)  # one process: `momento cockpit` replaced itself with Streamlit
    assert "streamlit run" in command and "--server.address 127.0.0.1" in command
    assert _kill_and_check(cockpit, tmp_path, port) == 0


def test_cockpit_refuses_to_serve_off_loopback_without_the_proxy_secret(tmp_path):
    cockpit = _start(["cockpit", "--port", str(free_loopback_port())], tmp_path, MOMENTO_COCKPIT_HOST="0.0.0.0")
    assert cockpit.wait(timeout=60) == 2
    assert "MOMENTO_COCKPIT_PROXY_SECRET" in (tmp_path / "command.log").read_text()


@pytest.mark.parametrize("script", [False, True], ids=["momento bench", "python bench/decide.py"])
def test_a_benchmark_stops_the_service_it_started_on_sigterm(tmp_path, script):
    arguments = ["--duration", "60", "--rates", "50", "--repeats", "1"]
    command = ["bench/decide.py"] if script else ["bench", "decide"]
    bench = _start([*command, *arguments], tmp_path, script=script)
    _wait(lambda: any("cli.main serve" in command for command in _session(bench.pid)), "the benchmark's service")
    assert _kill_and_check(bench, tmp_path) == 128 + signal.SIGTERM


@pytest.mark.parametrize("delay", [0.2, 0.35, 0.5])
def test_rollup_follow_stops_on_sigterm_even_in_the_middle_of_a_query(small_lake, tmp_path, delay):
    """A signal that lands while DuckDB runs a query comes back from it as "Query interrupted";
    the job must take that as the stop, not as a failed run to retry (it then ignored the stop).
    Rebuilding this lake's rollups takes about 0.6 s: the delays land the signal inside it."""
    shutil.copytree(small_lake, tmp_path / "lake")
    rollup = _start(["rollup", "--follow", "--interval", "60"], tmp_path)
    _wait(lambda: "following" in (tmp_path / "command.log").read_text(), "the rollup job to start")
    time.sleep(delay)
    assert _kill_and_check(rollup, tmp_path) == 0
    assert "rollup run failed" not in (tmp_path / "command.log").read_text()
