"""Shared by the cockpit's AppTest tests: run a page (or the whole app) on a given lake with
the engine at a given address, and lakes damaged in the ways the cockpit must survive."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from cli.processes import free_loopback_port
from metrics.rollup.job import RollupJob
from metrics.sql.query import Statement
from momento.lake.warehouse import Warehouse
from momento.scenario import load_scenario
from momento.settings import PROJECT_ROOT
from tests.support.cockpit import settled

RunPage = Callable[..., AppTest]


@pytest.fixture
def down_url() -> str:
    """The address of an engine that is not running."""
    return f"http://127.0.0.1:{free_loopback_port()}"


def _clear_caches() -> None:
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def run_page(monkeypatch: pytest.MonkeyPatch, down_url: str) -> Iterator[RunPage]:
    """`run_page(page, lake, service_url=down, query=None, settle=True)`: a finished AppTest run of the app
    opened on `page` (e.g. "pages/governance.py"; None: the default page) with `query` in the
    URL. Pages run inside app.py, as in production (it puts the project on the import path and
    draws the sidebar). The cockpit's caches are emptied first: AppTest runs in this process
    and they would otherwise carry the previous test's lake. The run returned is the first whose
    panels are all drawn (`settled`), unless `settle` is False."""

    def run(
        page: str | None,
        lake: Path,
        service_url: str | None = None,
        query: Mapping[str, str | list[str]] | None = None,
        settle: bool = True,
    ) -> AppTest:
        monkeypatch.setenv("MOMENTO_LAKE", str(lake))
        monkeypatch.setenv("MOMENTO_SERVICE_URL", service_url or down_url)
        _clear_caches()
        at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=90)
        for key, value in (query or {}).items():
            at.query_params[key] = value
        if page is not None:
            at.switch_page(page)
        return settled(at.run()) if settle else at.run()

    yield run
    _clear_caches()


@pytest.fixture
def statements_run(monkeypatch: pytest.MonkeyPatch) -> list[Statement]:
    """Every statement the warehouse runs from now on, in order (the real queries still run)."""
    ran: list[Statement] = []
    query = Warehouse.query

    def recording(self: Warehouse, sql: str, params: Any = None) -> Any:
        ran.append(Statement(sql, dict(params or {})))
        return query(self, sql, params)

    monkeypatch.setattr(Warehouse, "query", recording)
    return ran


@pytest.fixture(scope="session")
def rolled_up_lake(small_lake: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the small lake whose rollups are up to date (read-only, like `small_lake`)."""
    lake = _copy(small_lake, tmp_path_factory.mktemp("rolled-up") / "lake")
    RollupJob(lake, load_scenario(PROJECT_ROOT / "data" / "scenario.toml").business.pre_period_days).run_once()
    return lake


def _copy(lake: Path, target: Path) -> Path:
    shutil.copytree(lake, target)
    return target


def _data_file(lake: Path, table: str) -> Path:
    """The first of `table`'s data files (not its log's checkpoints)."""
    return sorted(p for p in (lake / table).glob("**/*.parquet") if "_delta_log" not in p.parts)[0]


@pytest.fixture
def corrupt_lake(small_lake: Path, tmp_path: Path) -> Path:
    """A copy of the small lake with one `decisions` Parquet file overwritten by garbage."""
    lake = _copy(small_lake, tmp_path / "corrupt-lake")
    _data_file(lake, "decisions").write_bytes(b"this is not parquet" * 100)
    return lake


@pytest.fixture
def missing_file_lake(small_lake: Path, tmp_path: Path) -> Path:
    """A copy of the small lake with one `events` Parquet file deleted under the Delta log."""
    lake = _copy(small_lake, tmp_path / "missing-file-lake")
    _data_file(lake, "events").unlink()
    return lake


@pytest.fixture
def empty_lake(tmp_path: Path) -> Path:
    """A lake directory with no tables in it yet."""
    lake = tmp_path / "empty-lake"
    lake.mkdir()
    return lake


def _texts(at: AppTest) -> str:
    parts = [
        e.value for kind in ("error", "warning", "info", "success", "markdown", "caption") for e in getattr(at, kind)
    ]
    return "\n".join(str(p) for p in parts)


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


@pytest.fixture
def texts() -> Callable[[AppTest], str]:
    """`texts(at)`: everything a reader sees in messages (errors, warnings, infos, markdown)."""
    return _texts


@pytest.fixture
def metric_values() -> Callable[[AppTest], dict[str, str]]:
    """`metric_values(at)`: the page's st.metric values by label."""
    return _metrics


def _pt_br(text: str) -> str:
    return text.translate(str.maketrans(",.", ".,"))


@pytest.fixture
def pt_br() -> Callable[[str], str]:
    """`pt_br("1,234.5%")` -> "1.234,5%": numbers formatted by Python's en-US grouping, written the
    cockpit's pt-BR way, so tests spell what a page should show independently of the page's code."""
    return _pt_br
