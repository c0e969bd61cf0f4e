"""Fixtures every suite shares: a small backfilled lake and its ground truth, and a local
S3-compatible server for the lake on object storage (`s3`, `s3_lake`).

`small_lake` is built once per test session in a temp dir (a few seconds): the bundled
scenario, a few thousand users over the scenario's full 28 days (14 pre-campaign, 14 campaign,
with the scheduled incidents: latency spike, model outage, error burst, ingestion stall and the
SRM bug on the cart cross-sell), a fixed seed and a fixed end (23:00 in São Paulo on Dia dos
Namorados, the campaign's peak), so every run sees exactly the same rows. Treat it as
read-only: copy it (`shutil.copytree`) to modify it. `small_truth` is its ground truth.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from decisioning.simulator.backfill import backfill
from momento.lake import ground_truth as truth
from momento.lake.location import Location
from momento.scenario import Scenario, load_scenario
from momento.settings import PROJECT_ROOT
from tests.support.s3 import S3Server, s3_server

SMALL_LAKE_USERS = 2_500
SMALL_LAKE_DAYS = 28
SMALL_LAKE_SEED = 20260612
SMALL_LAKE_END = datetime(2026, 6, 13, 2, tzinfo=UTC)


@pytest.fixture(scope="session")
def bundled_scenario() -> Scenario:
    """The scenario in `data/scenario.toml`."""
    return load_scenario(PROJECT_ROOT / "data" / "scenario.toml")


@pytest.fixture(scope="session")
def small_lake(tmp_path_factory: pytest.TempPathFactory, bundled_scenario: Scenario) -> Path:
    """Root of a backfilled lake (read-only; see the module docstring)."""
    lake = tmp_path_factory.mktemp("small_lake") / "lake"
    backfill(
        lake,
        bundled_scenario,
        days=SMALL_LAKE_DAYS,
        users=SMALL_LAKE_USERS,
        seed=SMALL_LAKE_SEED,
        progress=False,
        end=SMALL_LAKE_END,
    )
    return lake


@pytest.fixture(scope="session")
def small_truth(small_lake: Path) -> dict[str, Any]:
    """The ground truth of `small_lake` (the JSON document `truth.py` writes)."""
    document = truth.load(small_lake)
    assert document is not None
    return document


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """moto's S3 server, started once per test session (tests.support.s3)."""
    with s3_server() as server:
        yield server


@pytest.fixture
def s3_lake(s3: S3Server) -> Location:
    """An empty lake on `s3`, in a bucket of its own."""
    return s3.new_lake()
