"""pages/engine_health.py in Streamlit's AppTest: the numbers it shows are the ones metrics/
computes, and every damaged or empty state renders a message, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cli.processes import free_loopback_port, wait_until_healthy
from metrics import health
from metrics import model_quality as mq
from metrics.filters import Filters
from metrics.rollup.read import aggregates
from momento.lake.warehouse import Warehouse
from momento.scenario import load_scenario
from momento.settings import PROJECT_ROOT, load_settings

PAGE = "pages/engine_health.py"
BUDGET_MS = load_settings({}).decision_budget_ms
PRE_DAYS = load_scenario(PROJECT_ROOT / "data" / "scenario.toml").business.pre_period_days


@pytest.fixture(scope="module")
def warehouse(small_lake: Path):
    wh = Warehouse(small_lake)
    yield wh
    wh.close()


def _captions(at) -> str:
    return "\n".join(c.value for c in at.caption)


def _no_traceback(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_key_numbers_equal_metrics(run_page, small_lake, warehouse, metric_values, pt_br):
    at = run_page(PAGE, small_lake)
    _no_traceback(at)
    assert not at.error, [e.value for e in at.error]
    assert "Computed from every raw row (no rollups yet" in _captions(at)
    shown = metric_values(at)
    s = health.summary(aggregates(warehouse, PRE_DAYS), Filters(), BUDGET_MS)
    assert s.decisions > 0
    assert shown["Decisions"] == pt_br(f"{s.decisions:,}")
    assert shown["Latency p50"] == pt_br(f"{s.p50_ms:,.2f} ms")
    assert shown["Latency p99"] == pt_br(f"{s.p99_ms:,.2f} ms")
    assert shown["Error rate"] == pt_br(f"{s.error_rate * 100:.2f}%")
    assert shown["Fallback rate"] == pt_br(f"{s.fallback_rate * 100:.2f}%")
    assert shown["Within budget"] == pt_br(f"{s.attainment * 100:.2f}%")
    q = mq.quality(warehouse, Filters())
    assert shown["Scored decisions"] == pt_br(f"{q.decisions:,}")
    assert shown["AUC"] == pt_br(f"{q.auc:.3f}")
    charts = at.get("vega_lite_chart")
    assert len(charts) >= 5  # latency, throughput, rates, errors/fallbacks, reliability
    tables = [d.value for d in at.dataframe]
    versions = next(t for t in tables if "latest_version" in t.columns)
    assert versions["decisions"].sum() == s.decisions


def test_filters_from_the_url(run_page, small_lake, warehouse, metric_values, pt_br):
    at = run_page(PAGE, small_lake, query={"channel": "app", "segment": "returning"})
    _no_traceback(at)
    served = aggregates(warehouse, PRE_DAYS)
    s = health.summary(served, Filters(channel="app", segment="returning"), BUDGET_MS)
    assert 0 < s.decisions < health.summary(served, Filters(), BUDGET_MS).decisions
    assert metric_values(at)["Decisions"] == pt_br(f"{s.decisions:,}")


def test_from_the_rollups_the_same_numbers(run_page, rolled_up_lake, small_lake, metric_values):
    at = run_page(PAGE, rolled_up_lake)
    _no_traceback(at)
    assert "From the rollups" in _captions(at)
    raw = run_page(PAGE, small_lake)
    for label in (
        "Decisions",
        "Latency p50",
        "Latency p95",
        "Latency p99",
        "Error rate",
        "Fallback rate",
        "Within budget",
    ):
        assert metric_values(at)[label] == metric_values(raw)[label], label


def test_service_down_is_a_status_not_an_error(run_page, small_lake, metric_values, texts):
    at = run_page(PAGE, small_lake)
    assert metric_values(at)["API status"] == "down"
    assert "not answering" in texts(at)
    assert "Decisions" in metric_values(at)  # the lake's panels keep working


def test_a_filter_with_no_data(run_page, small_lake, texts):
    at = run_page(PAGE, small_lake, query={"dates": ["2001-01-01", "2001-01-02"]})
    _no_traceback(at)
    assert "No decisions in the lake for 01/01/2001 – 02/01/2001" in texts(at)
    assert "No mature propensity-model decisions" in texts(at)


@pytest.mark.parametrize("which", ["empty", "missing"])
def test_empty_or_missing_lake(run_page, empty_lake, tmp_path, which, texts):
    lake = empty_lake if which == "empty" else tmp_path / "no-such-lake"
    at = run_page(PAGE, lake)
    _no_traceback(at)
    assert not at.error
    shown = texts(at)
    assert "No decisions in the lake" in shown
    assert ("No events in the lake yet" if which == "empty" else "No lake at") in shown


def test_corrupt_parquet_file(run_page, corrupt_lake, metric_values):
    at = run_page(PAGE, corrupt_lake)
    _no_traceback(at)
    assert any("cannot be read" in e.value and "magic bytes" in e.value for e in at.error)
    assert metric_values(at)["API status"] == "down"  # the rest of the page keeps working


def test_missing_parquet_file(run_page, missing_file_lake, metric_values):
    at = run_page(PAGE, missing_file_lake)
    _no_traceback(at)
    assert any("cannot be read" in e.value and "No files found" in e.value for e in at.error)
    assert metric_values(at)["API status"] == "down"  # the rest of the page keeps working


@pytest.fixture
def stalled_service(tmp_path, monkeypatch):
    """The real service with a writer that stalls 8 s in every flush and holds 50 rows at most."""
    port = free_loopback_port()
    env = {
        **os.environ,
        "MOMENTO_LAKE": str(tmp_path / "lake"),
        "MOMENTO_FLUSH_DELAY_SECONDS": "8",
        "MOMENTO_QUEUE_LIMIT": "50",
        "MOMENTO_FLUSH_SECONDS": "0.2",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, timeout=60)
        yield url
    finally:
        process.kill()  # the lake is a throwaway: no need to wait out the stalled flush
        process.wait(timeout=10)


@pytest.mark.e2e
def test_backpressure_from_a_stalled_writer(run_page, small_lake, stalled_service, metric_values):
    refused = 0
    for batch in range(6):
        events = [
            {"event_id": f"e{batch}-{i}", "user_id": f"u{i}", "event_type": "page_view", "channel": "web"}
            for i in range(20)
        ]
        refused += httpx.post(f"{stalled_service}/v1/events", json={"events": events}, timeout=5).status_code == 503
    assert refused > 0  # the queue bound held
    at = run_page(PAGE, small_lake, service_url=stalled_service)
    assert not at.exception
    shown = metric_values(at)
    assert shown["API status"] == "up"
    assert 20 <= int(shown["Writer queue"].split()[0].replace(".", "")) <= 50
    assert int(shown["Refused: queue full"].replace(".", "")) == refused
