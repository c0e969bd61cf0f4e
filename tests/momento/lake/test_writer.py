"""The lake writer: buffering, flushing, duplicates, bounds, bad batches, erasure, crashes,
and a reader in another process while the writer appends and compacts."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest
from deltalake import DeltaTable

from momento.lake.schema import BatchError
from momento.lake.warehouse import Warehouse
from momento.lake.writer import LakeWriter, QueueFull, RecentKeys

WORKER = Path(__file__).with_name("lake_worker.py")
sys.path.insert(0, str(WORKER.parent))
from lake_worker import event_batch  # noqa: E402

NOW = datetime(2026, 6, 10, 12, tzinfo=UTC)


def count(lake: Path, table: str = "events") -> int:
    return Warehouse(lake).scalar(f"SELECT count(*) FROM {table}")


def test_buffered_rows_are_invisible_until_flushed(tmp_path):
    writer = LakeWriter(tmp_path, background=False)
    seq = writer.append("events", event_batch(0, 100))
    assert count(tmp_path) == 0 and writer.committed_seq < seq
    assert writer.flush() >= seq
    assert count(tmp_path) == 100 and writer.stats.committed_rows == 100


def test_background_thread_flushes_by_time(tmp_path):
    writer = LakeWriter(tmp_path, flush_seconds=0.2, compact_every_seconds=None)
    seq = writer.append("events", event_batch(0, 10))
    assert writer.wait_committed(seq, timeout=10)
    assert count(tmp_path) == 10
    writer.close()


def test_background_thread_flushes_by_size(tmp_path):
    writer = LakeWriter(tmp_path, flush_rows=50, flush_seconds=3600, compact_every_seconds=None)
    seq = writer.append("events", event_batch(0, 60))
    assert writer.wait_committed(seq, timeout=10)
    writer.close()


def test_duplicate_event_ids_count_once_within_a_batch_across_batches_and_restarts(tmp_path):
    writer = LakeWriter(tmp_path, background=False)
    writer.append("events", event_batch(0, 50))
    writer.append("events", event_batch(25, 50))  # 25 re-sent
    writer.flush()
    assert count(tmp_path) == 75 and writer.stats.duplicates_dropped == 25
    restarted = LakeWriter(tmp_path, background=False)
    restarted.append("events", event_batch(70, 10))  # 5 re-sent after a "restart"
    restarted.flush()
    frame = Warehouse(tmp_path).query("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM events")
    assert frame.row(0) == (80, 80)


def test_recent_keys_forget_the_oldest_first():
    keys = RecentKeys(capacity=2)
    assert keys.add_new(["a", "b", "a"]) == [True, True, False]
    assert keys.add_new(["c"]) == [True]
    assert keys.add_new(["a", "c"]) == [True, False]


def test_recent_keys_remember_at_least_95_percent_of_their_capacity_in_order():
    keys = RecentKeys(capacity=1_000)  # generations of 50 keys
    for start in range(0, 3_500, 70):
        assert all(keys.add_new([f"k{i}" for i in range(start, start + 70)]))
    assert 950 <= len(keys) <= 1_000
    assert keys.add_new([f"k{i}" for i in range(3_500 - 950, 3_500)]) == [False] * 950  # the newest 950: known
    assert keys.add_new([f"k{i}" for i in range(2_000)]) == [True] * 2_000  # long forgotten: new again


def test_recent_keys_cost_about_nine_bytes_a_key_before_a_generation_is_full():
    """A generation of the default capacity is 100,000 keys: the keys of one being filled are
    kept as sorted digests too, not as Python ints (~100 bytes each), so memory follows the
    count from the first key instead of growing 10x faster until the generation is sealed."""
    keys = RecentKeys(capacity=2_000_000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for start in range(0, 60_000, 1_000):
            keys.add_new([f"k{i}" for i in range(start, start + 1_000)])
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(keys) == 60_000
    assert held / 60_000 < 20  # bytes a key; ~100 with the generation as a set
    assert keys.add_new([f"k{i}" for i in range(59_000, 61_000)]) == [False] * 1_000 + [True] * 1_000


def test_queue_bound_refuses_more_work_and_keeps_what_it_has(tmp_path):
    writer = LakeWriter(tmp_path, background=False, queue_limit=100)
    writer.append("events", event_batch(0, 80))
    with pytest.raises(QueueFull):
        writer.append("events", event_batch(80, 30))
    assert writer.stats.queue_full_rejections == 1
    writer.flush()
    assert count(tmp_path) == 80
    writer.append("events", event_batch(80, 30))  # room again after the flush
    writer.flush()
    assert count(tmp_path) == 110


def test_bad_batches_are_refused_and_committed_data_is_untouched(tmp_path):
    writer = LakeWriter(tmp_path, background=False)
    writer.append("events", event_batch(0, 20))
    writer.flush()
    version = DeltaTable(str(tmp_path / "events")).version()
    good = event_batch(100, 1).to_pylist()[0]
    cases = [
        ("events", [{**good, "revenue": "ten"}], "events.revenue"),
        ("events", [{**good, "user_id": None}], "events.user_id"),
        ("events", [{k: v for k, v in good.items() if k != "event_type"}], "events.event_type"),
        ("clicks", [good], "unknown table"),
    ]
    for table, rows, message in cases:
        with pytest.raises(BatchError, match=message.replace(".", r"\.")):
            writer.append(table, rows)
    writer.flush()
    assert writer.stats.rejected_batches == len(cases)
    assert DeltaTable(str(tmp_path / "events")).version() == version
    assert count(tmp_path) == 20


def decision(user: str, i: int) -> dict:
    return dict(
        decision_id=f"d-{user}-{i}",
        ts=NOW,
        user_id=user,
        journey="browse",
        placement="homepage_showcase",
        channel="web",
        experience_id="home_showcase",
        arm="control",
        variant="editorial",
        policy="fixed",
        propensity=1.0,
        reasons=["control_arm"],
        fallback=False,
        consent=True,
        latency_us=120,
        status="ok",
    )


def test_erasure_removes_every_row_of_one_user_from_every_table(tmp_path):
    alice, bob = "a" * 32, "b" * 32
    writer = LakeWriter(tmp_path, background=False, compact_every_seconds=None)
    for user in (alice, bob):
        writer.append(
            "events",
            [
                dict(
                    event_id=f"e-{user}-{i}",
                    ts=NOW,
                    received_at=NOW,
                    user_id=user,
                    channel="web",
                    event_type="page_view",
                )
                for i in range(5)
            ],
        )
        writer.append("decisions", [decision(user, i) for i in range(3)])
        writer.append(
            "exposures",
            [
                dict(
                    exposure_id=f"x-{user}",
                    decision_id=f"d-{user}-0",
                    ts=NOW,
                    user_id=user,
                    placement="homepage_showcase",
                    variant="editorial",
                    channel="web",
                )
            ],
        )
        writer.append("identities", [dict(anonymous_id=f"anon-{user}", user_id=user, ts=NOW)])
    writer.flush()
    deleted = writer.erase_user(alice, requested_by="test")
    assert deleted == {"events": 5, "decisions": 3, "exposures": 1, "identities": 1}
    warehouse = Warehouse(tmp_path)
    for table in ("events", "decisions", "exposures", "identities"):
        assert warehouse.scalar(f"SELECT count(*) FROM {table} WHERE user_id = $u", {"u": alice}) == 0
        assert warehouse.scalar(f"SELECT count(*) FROM {table} WHERE user_id = $u", {"u": bob}) > 0
    # Vacuumed: no Parquet file on disk still holds the user's rows.
    import duckdb

    for table in ("events", "decisions", "exposures", "identities"):
        for parquet in (tmp_path / table).glob("*.parquet"):
            query = "SELECT count(*) FROM read_parquet(?) WHERE user_id = ?"
            assert duckdb.execute(query, [str(parquet), alice]).fetchall()[0][0] == 0
    log = warehouse.query("SELECT rows_deleted, tables, requested_by FROM erasures")
    assert log.row(0) == (10, ["events", "decisions", "exposures", "identities"], "test")


def test_erasure_refuses_an_id_that_is_not_pseudonymised(tmp_path):
    writer = LakeWriter(tmp_path, background=False)
    with pytest.raises(BatchError, match="pseudonymised"):
        writer.erase_user("x' OR '1'='1")


def test_compaction_merges_small_files_and_keeps_every_row(tmp_path):
    writer = LakeWriter(tmp_path, background=False, vacuum_retention_hours=0)
    for b in range(12):
        writer.append("events", event_batch(b * 10, 10))
        writer.flush()
    assert len(DeltaTable(str(tmp_path / "events")).file_uris()) == 12
    report = writer.compact()
    assert report["events"]["files_removed"] == 12 and report["events"]["files_added"] == 1
    assert len(DeltaTable(str(tmp_path / "events")).file_uris()) == 1
    assert len(list((tmp_path / "events").glob("*.parquet"))) == 1  # vacuumed
    assert count(tmp_path) == 120


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_reader_process_never_errors_and_never_goes_back_while_writer_appends_and_compacts(tmp_path):
    LakeWriter(tmp_path, background=False)  # create the tables
    writer = _start("write", str(tmp_path), "150", "500", "40")
    reader = _start("read", str(tmp_path), "8")
    reader_out, reader_err = reader.communicate(timeout=120)
    writer_out, writer_err = writer.communicate(timeout=120)
    assert writer.returncode == 0, writer_err
    assert reader.returncode == 0, reader_err
    errors = [line for line in reader_out.splitlines() if line.startswith("error")]
    counts = [int(line.split()[1]) for line in reader_out.splitlines() if line.startswith("count")]
    assert errors == []
    assert len(counts) > 20 and counts[-1] > counts[0]
    assert all(b >= a for a, b in itertools.pairwise(counts)), "a reader saw the count go down"
    assert writer_out.count("compacted") >= 2
    assert count(tmp_path) == 150 * 500


def test_sigkill_mid_stream_leaves_a_readable_lake_with_every_committed_batch(tmp_path):
    LakeWriter(tmp_path, background=False)
    writer = _start("write", str(tmp_path), "100000", "2000")
    committed = 0
    deadline = time.monotonic() + 60
    while committed < 40_000 and time.monotonic() < deadline:
        line = writer.stdout.readline()
        if line.startswith("committed"):
            committed = int(line.split()[1])
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=10)
    assert committed >= 40_000
    warehouse = Warehouse(tmp_path)
    stored = warehouse.scalar("SELECT count(*) FROM events")
    assert stored >= committed
    assert stored % 2000 == 0  # whole batches only: a commit is atomic
    ids = warehouse.query(
        "SELECT count(DISTINCT event_id) AS d, min(event_id) AS lo FROM events WHERE event_id < $last",
        {"last": f"ev-{committed:09d}"},
    )
    assert ids.row(0) == (committed, "ev-000000000")


def test_an_append_of_only_duplicates_is_committed_at_once(tmp_path):
    writer = LakeWriter(tmp_path, flush_seconds=3600, compact_every_seconds=None)
    seq = writer.append("events", event_batch(0, 5))
    writer.flush()
    again = writer.append("events", event_batch(0, 5))
    assert again > seq and writer.wait_committed(again, timeout=1)
    writer.close()


def test_on_s3_the_writer_appends_dedupes_across_a_restart_compacts_and_erases(s3_lake):
    """The same writer on a lake on S3 (moto's server): what a restart seeds its duplicate
    filter from, compaction's vacuum and an erasure all go through the storage options."""
    writer = LakeWriter(s3_lake, background=False, compact_every_seconds=None, vacuum_retention_hours=0)
    for b in range(3):
        writer.append("events", event_batch(b * 10, 10))
        writer.flush()
    restarted = LakeWriter(s3_lake, background=False, compact_every_seconds=None, vacuum_retention_hours=0)
    restarted.append("events", event_batch(25, 10))  # 5 re-sent after a "restart"
    restarted.flush()
    assert restarted.stats.duplicates_dropped == 5 and count(s3_lake) == 35
    report = restarted.compact()
    assert report["events"]["files_removed"] == 4 and report["events"]["files_added"] == 1
    assert len((s3_lake / "events").delta().file_uris()) == 1
    user = event_batch(0, 1).column("user_id")[0].as_py()
    assert restarted.erase_user(user)["events"] == 1
    assert count(s3_lake) == 34 and count(s3_lake, "erasures") == 1
