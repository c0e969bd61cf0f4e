"""Fixtures for the decisioning tests: the scenario, and the REAL service as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cli.processes import free_loopback_port, service_command, wait_until_healthy
from momento.scenario import Scenario, load_scenario
from momento.settings import PROJECT_ROOT


@pytest.fixture(scope="session")
def scenario() -> Scenario:
    return load_scenario(PROJECT_ROOT / "data" / "scenario.toml")


@dataclass
class RunningService:
    """A `momento serve` subprocess on a free loopback port with its own lake."""

    process: subprocess.Popen
    url: str
    lake: Path
    log: Path

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (graceful: the writer flushes), then SIGKILL if it hangs; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_service(
    workdir: Path, *, env: dict[str, str] | None = None, host: str = "127.0.0.1", wait: bool = True
) -> RunningService:
    """Start the real service (`python -m cli.main serve`) and wait until /healthz answers."""
    lake, log = workdir / "lake", workdir / "service.log"
    port = free_loopback_port()
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("MOMENTO_")}
    environment = {**inherited, "MOMENTO_LAKE": str(lake), "MOMENTO_FLUSH_SECONDS": "0.2", **(env or {})}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            service_command(host, port), cwd=PROJECT_ROOT, env=environment, stdout=sink, stderr=subprocess.STDOUT
        )
    service = RunningService(process, f"http://127.0.0.1:{port}", lake, log)
    if wait:
        try:
            wait_until_healthy(service.url, process)
        except RuntimeError as exc:
            service.stop()
            raise RuntimeError(f"{exc}:\n{log.read_text()}") from None
    return service


@pytest.fixture
def launch() -> Iterator:
    """`launch(workdir, env=..., host=..., wait=...)` starts a service of the test's own; every
    one started is stopped when the test ends."""
    started: list[RunningService] = []

    def _launch(workdir: Path, **options) -> RunningService:
        running = start_service(workdir, **options)
        started.append(running)
        return running

    yield _launch
    for running in started:
        running.stop()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """The real service, shared by a test module; stopped (gracefully) at the end."""
    running = start_service(tmp_path_factory.mktemp("service"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(service: RunningService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=30) as http:
        yield http
