"""`momento serve` (`decisioning.runner`): the REAL service as a subprocess. A plain SIGTERM or a
Ctrl-C stops it gracefully with exit code 0, every decision answered flushed to the lake and the
port free. This is also the check on uvicorn's signal handling, which the runner relies on
through public API only: if uvicorn stopped handing the signal back, or handed it back
differently, the exit code or the flush here would change."""

from __future__ import annotations

import signal
import socket

import httpx
import pytest

from momento.lake.warehouse import Warehouse
from tests.support.service import decide


def _port_free(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.socket() as probe:
        return probe.connect_ex((host, int(port))) != 0


@pytest.mark.e2e
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_a_signal_stops_it_cleanly_and_flushes_every_decision(launch, tmp_path, sig):
    running = launch(tmp_path, env={"MOMENTO_FLUSH_SECONDS": "3600"})  # only shutdown can flush
    with httpx.Client(base_url=running.url, timeout=30) as http:
        ids = [decide(http, f"flush-{i}", "homepage_showcase")["decision_id"] for i in range(25)]
    running.process.send_signal(sig)
    assert running.process.wait(timeout=30) == 0, running.log.read_text()
    assert "Traceback" not in running.log.read_text()
    assert _port_free(running.url)
    warehouse = Warehouse(running.lake)
    stored = warehouse.query("SELECT decision_id FROM decisions")["decision_id"].to_list()
    assert sorted(stored) == sorted(ids)


@pytest.mark.e2e
@pytest.mark.parametrize("missing", ["MOMENTO_API_TOKEN", "MOMENTO_SITE_KEY", "MOMENTO_PSEUDONYM_KEY"])
def test_refuses_to_listen_off_loopback_without_each_secret(launch, tmp_path, missing):
    secrets = {
        "MOMENTO_API_TOKEN": "server-secret",
        "MOMENTO_SITE_KEY": "site-secret",
        "MOMENTO_PSEUDONYM_KEY": "deployment-secret",
    }
    running = launch(tmp_path, host="0.0.0.0", env={**secrets, missing: ""}, wait=False)
    assert running.process.wait(timeout=60) == 2
    log = running.log.read_text()
    assert f"refusing to listen on 0.0.0.0:\n  - {missing}" in log and "Traceback" not in log
