"""metrics/rollup/live.py: the cockpit serves the newest finished fold at once and renews it in the
background, at most once per period, exactly (what it serves equals a full scan of its snapshot)."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from metrics.rollup.job import RollupJob
from metrics.rollup.live import LiveAggregates
from metrics.rollup.read import Aggregates, aggregates
from momento.lake.warehouse import Warehouse
from momento.lake.writer import LakeWriter

sys.path.insert(0, str(Path(__file__).parent))
from random_lake import stream

from tests.support import rollups

PRE_DAYS = 7


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _append(writer: LakeWriter, batch: dict) -> None:
    for table, rows in batch.items():
        if rows:
            writer.append(table, rows)
    writer.flush()


def _lake(tmp_path: Path, batches: int) -> tuple[Path, LakeWriter, object]:
    lake = tmp_path / "lake"
    rows = stream(3, batches + 2)
    writer = LakeWriter(lake, background=False, compact_every_seconds=None)
    for _ in range(batches):
        _append(writer, next(rows))
    RollupJob(lake, PRE_DAYS).run_once()
    _append(writer, next(rows))  # a live tail after the run
    return lake, writer, rows


def _scanned(lake: Path) -> Aggregates:
    wh = Warehouse(lake, min_refresh_seconds=0.0)
    try:
        return aggregates(wh, PRE_DAYS, max_tail_rows=-1)
    finally:
        wh.close()


def _next_value(live: LiveAggregates, old: Aggregates, timeout: float = 60.0) -> Aggregates:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = live.latest()
        if value is not old:
            return value
        time.sleep(0.05)
    raise AssertionError(f"no renewal within {timeout} s (last error: {live.last_error!r})")


def test_the_first_read_folds_the_rollups_and_the_tail_exactly(tmp_path):
    lake, writer, _ = _lake(tmp_path, 3)
    live = LiveAggregates(lake, PRE_DAYS, period=5.0, clock=Clock())
    try:
        served = live.latest()
        assert served.source.mode == "rollups" and served.source.tail_rows > 0
        rollups.assert_same(served, _scanned(lake))
    finally:
        live.close()
        writer.close()


def test_a_read_within_the_period_serves_the_same_value_without_folding(tmp_path):
    lake, writer, rows = _lake(tmp_path, 2)
    clock = Clock()
    live = LiveAggregates(lake, PRE_DAYS, period=5.0, clock=clock)
    try:
        first = live.latest()
        _append(writer, next(rows))  # the lake moves, but the period has not passed
        clock.now += 4.9
        assert live.latest() is first
        assert not live._folding.locked()
    finally:
        live.close()
        writer.close()


def test_after_the_period_the_old_value_is_served_while_the_new_snapshot_is_folded(tmp_path):
    lake, writer, rows = _lake(tmp_path, 2)
    clock = Clock()
    live = LiveAggregates(lake, PRE_DAYS, period=5.0, clock=clock)
    try:
        first = live.latest()
        _append(writer, next(rows))
        clock.now += 5.0
        assert live.latest() is first  # answered at once, from memory
        renewed = _next_value(live, first)
        assert renewed.source.tail_rows > first.source.tail_rows
        rollups.assert_same(renewed, _scanned(lake))
    finally:
        live.close()
        writer.close()


def test_an_unchanged_lake_is_not_folded_again(tmp_path):
    lake, writer, _ = _lake(tmp_path, 2)
    clock = Clock()
    live = LiveAggregates(lake, PRE_DAYS, period=5.0, clock=clock)
    try:
        first = live.latest()
        for _ in range(3):
            clock.now += 5.0
            assert live.latest() is first
            with live._folding:  # the renewal, if one started, has finished
                pass
        assert live.latest() is first
    finally:
        live.close()
        writer.close()


def test_a_failed_renewal_keeps_serving_the_last_value_and_says_why(tmp_path):
    lake, writer, _ = _lake(tmp_path, 2)
    clock = Clock()
    live = LiveAggregates(lake, PRE_DAYS, period=5.0, clock=clock)
    try:
        first = live.latest()
        writer.close()
        shutil.rmtree(lake)  # nothing left to read
        clock.now += 5.0
        assert live.latest() is first
        with live._folding:
            pass
        assert live.latest() is first
        assert "cannot be read" in live.last_error  # the lake is gone
    finally:
        live.close()
