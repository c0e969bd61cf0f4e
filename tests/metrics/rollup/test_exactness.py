"""Rollups plus the live tail equal a full scan, on random lakes with late rows, erasures and a
crashed run: counts exactly, sums to 1e-9 relative (metrics/rollup/)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from metrics.rollup import definitions as defs
from metrics.rollup.fold import fold
from metrics.rollup.session import DuckSession
from metrics.rollup.job import RollupJob, latest_run
from momento.lake.warehouse import Warehouse
from momento.lake.writer import LakeWriter

sys.path.insert(0, str(Path(__file__).parent))
from random_lake import stream, user  # noqa: E402

from tests.support import rollups  # noqa: E402

PRE_DAYS = 7


def _append(writer: LakeWriter, batch: dict) -> None:
    for table, rows in batch.items():
        if rows:
            writer.append(table, rows)
    writer.flush()


def check(lake: Path, expect_mode: str = "rollups") -> None:
    rollups.check(lake, PRE_DAYS, expect_mode)


@pytest.mark.parametrize("seed", range(4))
def test_rollups_plus_tail_equal_a_full_scan_before_and_after_every_run(tmp_path, seed):
    lake = tmp_path / "lake"
    job = RollupJob(lake, PRE_DAYS)
    batches = stream(seed, 6)
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        _append(writer, next(batches))
        job.run_once()
        check(lake)
        for batch in batches:
            _append(writer, batch)  # late rows included: the tail must fold them exactly
            check(lake)
            job.run_once()
            check(lake)


def test_an_erasure_is_exact_from_raw_until_folded_then_leaves_no_row_of_the_user(tmp_path):
    lake = tmp_path / "lake"
    job = RollupJob(lake, PRE_DAYS)
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        for batch in stream(11, 4):
            _append(writer, batch)
        job.run_once()
        writer.erase_user(user(3))
        check(lake, expect_mode="raw")  # an erasure logged after the watermark: raw until folded
        report = job.run_once()
        assert report.kind == "erase"
        check(lake)
    wh = Warehouse(lake, min_refresh_seconds=0.0)
    try:
        for table in defs.STATE:
            assert wh.scalar(f"SELECT count(*) FROM rollup_{table.name} WHERE user_id = $u", {"u": user(3)}) == 0
    finally:
        wh.close()
    files = [p for p in (lake / "rollups").rglob("*.parquet")]
    assert not any(user(3).encode() in p.read_bytes() for p in files)


def test_a_run_that_crashed_before_logging_is_never_counted_and_is_redone(tmp_path):
    lake = tmp_path / "lake"
    job = RollupJob(lake, PRE_DAYS)
    batches = stream(5, 3)
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        _append(writer, next(batches))
        job.run_once()
        _append(writer, next(batches))
        # A run that appended its rows but died before logging itself:
        wh = Warehouse(lake, min_refresh_seconds=0.0)
        last = latest_run(wh)
        assert last is not None
        batch = job._batch_since(wh, last, job._uppers(wh))
        cursor = wh.cursor()
        folded = fold(DuckSession(cursor), batch, PRE_DAYS, prior=True, existing=frozenset(wh.versions))
        cursor.close()
        wh.close()
        job._append(folded, job._next_run_id(last))
        check(lake)  # the orphan rows are invisible: rollups + tail still equal the scan
        job.run_once()
        check(lake)
        job.compact()
        check(lake)
        _append(writer, next(batches))
        check(lake)
