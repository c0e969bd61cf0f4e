"""The rollup job under faults: killed mid-run, a damaged rollup file, far behind the lake. In
each case what the cockpit reads stays exactly what a full scan gives, and the job recovers."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from metrics.rollup.job import RollupJob
from momento.lake.rollups import ROLLUPS_DIR
from momento.lake.writer import LakeWriter
from momento.settings import PROJECT_ROOT
from tests.support.rollups import check

PRE_DAYS = 14


@pytest.fixture
def lake(small_lake: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "lake"
    shutil.copytree(small_lake, copy)
    return copy


def _rollup(lake: Path) -> subprocess.Popen:
    env = {**os.environ, "MOMENTO_LAKE": str(lake)}
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "rollup"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_a_job_killed_at_any_moment_leaves_the_cockpit_exact_and_the_next_run_completes(lake):
    rng = random.Random(20261206)
    for _ in range(5):
        process = _rollup(lake)
        time.sleep(rng.uniform(0.5, 6.0))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait()
        check(lake, PRE_DAYS, expect_mode=None)  # from rollups if a run was logged, else from raw
    process = _rollup(lake)
    assert process.wait(timeout=300) == 0, process.stderr.read().decode() if process.stderr else ""
    check(lake, PRE_DAYS, expect_mode="rollups")


def test_a_damaged_rollup_file_is_read_around_and_rebuilt(lake):
    job = RollupJob(lake, PRE_DAYS)
    job.run_once()
    stats = lake / ROLLUPS_DIR / "rollup_experiment_stats"
    victim = sorted(stats.glob("*.parquet"))[0]
    victim.write_bytes(b"not a parquet file" * 64)
    served = check(lake, PRE_DAYS, expect_mode="raw")
    assert "cannot be read" in served.source.reason
    assert job.run_once().kind == "rebuild"
    check(lake, PRE_DAYS, expect_mode="rollups")


def test_a_job_far_behind_sends_the_cockpit_to_raw_rows_and_says_why(lake):
    RollupJob(lake, PRE_DAYS).run_once()
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        decisions = check(lake, PRE_DAYS).source  # before: the rollups serve
        assert decisions.mode == "rollups"
        rows = [
            {
                "event_id": f"late-{i}",
                "ts": decisions.as_of,
                "received_at": decisions.as_of,
                "user_id": f"{i:032x}",
                "channel": "web",
                "event_type": "page_view",
            }
            for i in range(50)
        ]
        writer.append("events", rows)
        writer.flush()
    served = check(lake, PRE_DAYS, expect_mode="raw", max_tail_rows=10)
    assert "behind by 50 rows" in served.source.reason
    check(lake, PRE_DAYS, expect_mode="rollups")  # a tail of 50 is folded on the spot by default
