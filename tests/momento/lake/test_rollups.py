"""momento/lake/rollups.py: the rollup store's lock, one rollup job per lake, on a local disk (a lock
file) and on object storage (commits to a Delta table of its own, on a real S3-compatible server);
and how it writes: Parquet in row groups of `ROW_GROUP_ROWS`, appends and replacements alike (the
small row groups are what lets a lookup skip most of a table), with no column statistics in the
Delta log."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from momento.lake.location import Location, lake_location
from momento.lake.rollups import ROW_GROUP_ROWS, RollupLocked, RollupStore, _commit_lock_state, _lock_state


@pytest.fixture(params=["local", "s3"])
def lake(request: pytest.FixtureRequest, tmp_path) -> Location:
    if request.param == "local":
        return lake_location(tmp_path / "lake")
    s3_lake: Location = request.getfixturevalue("s3_lake")
    return s3_lake


def test_a_second_job_is_refused_while_the_first_holds_the_lock(lake):
    first, second = RollupStore(lake), RollupStore(lake)
    with first.lock(), pytest.raises(RollupLocked), second.lock():
        pass
    with second.lock():  # given back
        pass


def test_of_two_jobs_that_saw_the_lock_free_one_takes_it(s3_lake):
    """The commit that takes the lock lands only as the next version of its log."""
    store = RollupStore(s3_lake)
    seen_by_one, seen_by_other = store._lock_table(), store._lock_table()
    assert _lock_state(seen_by_one)[1] is False and _lock_state(seen_by_other)[1] is False
    _commit_lock_state(seen_by_one, "one", held=True, retries=0)
    with pytest.raises(CommitFailedError):
        _commit_lock_state(seen_by_other, "other", held=True, retries=0)
    assert _lock_state(store._lock_table()) == ("one", True)


def test_a_lock_left_by_a_dead_job_on_this_host_is_taken_over(s3_lake):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store = RollupStore(s3_lake)
    _commit_lock_state(store._lock_table(), f"{socket.gethostname()}:{dead.pid}", held=True)
    with store.lock():
        assert _lock_state(store._lock_table()) == (f"{socket.gethostname()}:{os.getpid()}", True)
    assert _lock_state(store._lock_table())[1] is False


def test_a_lock_held_from_another_host_waits_for_a_hand_release(s3_lake):
    store = RollupStore(s3_lake)
    _commit_lock_state(store._lock_table(), "elsewhere:123", held=True)
    with pytest.raises(RollupLocked, match=r"elsewhere:123"), store.lock():
        pass
    store.release_lock()
    with store.lock():
        pass


def _row_groups(store: RollupStore, name: str) -> list[list[int]]:
    table = store.table(name)
    assert table is not None
    sizes = []
    for file in table.file_uris():
        metadata = pq.ParquetFile(file).metadata
        sizes.append([metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)])
    return sizes


def test_appends_and_replacements_write_row_groups_of_row_group_rows(tmp_path):
    store = RollupStore(tmp_path / "lake")
    rows = pa.table({"user_id": [f"u{i:06d}" for i in range(3 * ROW_GROUP_ROWS + 5)]})
    store.append("rollup_example", rows, rows.schema)
    assert _row_groups(store, "rollup_example") == [[ROW_GROUP_ROWS] * 3 + [5]]
    store.replace("rollup_example", rows.slice(0, ROW_GROUP_ROWS + 1), rows.schema)
    assert _row_groups(store, "rollup_example") == [[ROW_GROUP_ROWS, 1]]


def test_a_replacement_streamed_from_a_reader_is_conformed_batch_by_batch(tmp_path):
    store = RollupStore(tmp_path / "lake")
    schema = pa.schema([("user_id", pa.string()), ("visits", pa.float64())])
    batches = [pa.record_batch({"visits": [i, i + 1], "user_id": [f"u{i}", f"u{i + 1}"]}) for i in (0, 2, 4)]
    store.replace("rollup_example", pa.RecordBatchReader.from_batches(batches[0].schema, batches), schema)
    table = store.table("rollup_example")
    assert table is not None
    stored = table.to_pyarrow_table()
    assert stored.schema == schema  # columns in the table's order, ints cast to its doubles
    assert sorted(stored.column("user_id").to_pylist()) == [f"u{i}" for i in range(6)]
    wrong = pa.RecordBatchReader.from_batches(pa.schema([("user_id", pa.string())]), [])
    with pytest.raises(ValueError, match=r"rollup_example: columns do not match its schema \(missing \['visits'\]"):
        store.replace("rollup_example", wrong, schema)


def test_maintenance_keeps_the_files_of_the_version_readers_are_pinned_at(tmp_path):
    """Readers read the versions the newest run logged; merging small files makes a newer one, and
    even a vacuum with no retention (an erasure's) must leave the pinned version readable."""
    store = RollupStore(tmp_path / "lake")
    for part in range(3):  # three small files
        rows = pa.table({"user_id": [f"u{part}a", f"u{part}b"]})
        pinned = store.append("rollup_example", rows, rows.schema)
    store.maintain(retention_hours=0)
    table = store.table("rollup_example")
    assert table is not None and table.version() > pinned  # the small files were merged
    at_pin = DeltaTable(str(tmp_path / "lake" / "rollups" / "rollup_example"), version=pinned)
    assert sorted(at_pin.to_pyarrow_table().column("user_id").to_pylist()) == [
        f"u{part}{x}" for part in range(3) for x in "ab"
    ]


def test_the_delta_log_keeps_no_column_statistics(tmp_path):
    """Erasure rewrites files but cannot rewrite the log: no user id may be written there."""
    store = RollupStore(tmp_path / "lake")
    rows = pa.table({"user_id": ["someone", "someone else"], "hour": [1, 2]})
    store.append("rollup_example", rows, rows.schema)
    log = "".join(
        path.read_text() for path in (tmp_path / "lake" / "rollups" / "rollup_example" / "_delta_log").glob("*.json")
    )
    assert "someone" not in log
    assert '\\"numRecords\\":2' in log
