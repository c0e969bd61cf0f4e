"""metrics/rollup/job.py: how the job lays out what it writes. Per-user state goes to the lake in
user order, in row groups of `ROW_GROUP_ROWS`, after a rebuild, a fold and a compaction alike, so
a fold that looks up a few users reads only the row groups whose range of users holds them."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq

from metrics.rollup import definitions as defs
from metrics.rollup.job import RollupJob
from momento.lake.rollups import ROW_GROUP_ROWS
from momento.lake.warehouse import Warehouse
from momento.lake.writer import LakeWriter

sys.path.insert(0, str(Path(__file__).parent))
from random_lake import stream

PRE_DAYS = 7


def _assert_state_files_in_user_order(lake: Path) -> int:
    """Every state file of the snapshot is sorted by user, in row groups no bigger than
    `ROW_GROUP_ROWS`; returns how many files were checked."""
    wh = Warehouse(lake, min_refresh_seconds=0.0)
    try:
        files = wh.snapshot_files()
    finally:
        wh.close()
    checked = 0
    for table in defs.STATE:
        for file in files[defs.TABLE_NAMES(table.name)]:
            parquet = pq.ParquetFile(file)
            sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)]
            assert max(sizes, default=0) <= ROW_GROUP_ROWS, (file, sizes)
            users = parquet.read(columns=["user_id"]).column("user_id").to_pylist()
            assert users == sorted(users), f"{file} is not in user order"
            checked += 1
    return checked


def test_state_is_written_in_user_order_by_a_rebuild_a_fold_and_a_compaction(tmp_path):
    lake = tmp_path / "lake"
    job = RollupJob(lake, PRE_DAYS, partition_rows=400)  # a rebuild in several partitions
    batches = stream(5, 4)
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        for table, rows in next(batches).items():
            writer.append(table, rows)
        writer.flush()
        assert job.run_once().kind == "rebuild"
        assert _assert_state_files_in_user_order(lake)
        for batch in batches:
            for table, rows in batch.items():
                writer.append(table, rows)
            writer.flush()
            assert job.run_once().kind == "fold"
        assert _assert_state_files_in_user_order(lake)
        job.compact()
        assert _assert_state_files_in_user_order(lake)
