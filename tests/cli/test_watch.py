"""`momento watch`: a bad monitors file is a clear error (exit 2, the path of the field, no
traceback); the watcher serves its own /metrics, evaluates on an empty lake, and stops on a plain
SIGTERM leaving no process and no port behind."""

from __future__ import annotations

import httpx
import pytest

from cli.processes import free_loopback_port
from tests.cli.test_main import _kill_and_check, _start, _wait
from tests.support.service import metric

pytestmark = pytest.mark.e2e


def test_a_bad_monitors_file_exits_2_naming_the_field(tmp_path):
    monitors = tmp_path / "monitors.toml"
    monitors.write_text('[[rules]]\nname = "srm"\nkind = "srm"\nthreshold = 7\n')
    process = _start(["watch", "--monitors", str(monitors), "--metrics-port", "0"], tmp_path)
    assert process.wait(timeout=60) == 2
    log = (tmp_path / "command.log").read_text()
    assert "monitors.toml: rules.0.threshold: Input should be less than 0.5" in log
    assert "Traceback" not in log


def test_watch_evaluates_serves_its_metrics_and_stops_on_sigterm(tmp_path):
    port = free_loopback_port()
    watch = _start(["watch", "--interval", "0.5", "--metrics-port", str(port)], tmp_path)
    url = f"http://127.0.0.1:{port}/metrics"
    _wait(lambda: metric(httpx.get(url, timeout=2).text, "momento_watch_evaluations_total") >= 2, "two evaluations")
    assert metric(httpx.get(url, timeout=2).text, "momento_watch_evaluation_errors_total") == 0
    assert _kill_and_check(watch, tmp_path, port) == 0
