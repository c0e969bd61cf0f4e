"""metrics/rollup/job.py: how the job lays out what it writes. Per-user state goes to the lake in
user order, in row groups of `ROW_GROUP_ROWS`, after a rebuild, a fold and a compaction alike, and
a rebuild's partitions are ranges of users, so a fold that looks up a few users reads only the row
groups whose range of users holds them."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from metrics.rollup import definitions as defs
from metrics.rollup.job import COMPACTION_SHARE, COMPACTION_THREADS, RUN_SHARE, RollupJob, next_start
from momento.lake.rollups import ROW_GROUP_ROWS
from momento.lake.warehouse import Warehouse
from momento.lake.writer import LakeWriter

sys.path.insert(0, str(Path(__file__).parent))
import itertools

from random_lake import commit, stream

from tests.support import rollups

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


def _small_lake(tmp_path: Path) -> Path:
    """A lake of one random batch (a few dozen users), without rollups."""
    lake = tmp_path / "lake"
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        commit(writer, next(stream(5, 1)))
    return lake


def _files_user_ranges(lake: Path) -> dict[str, list[tuple[str, str]]]:
    """Per state table, the (first, last) user of each of its files in the snapshot."""
    wh = Warehouse(lake, min_refresh_seconds=0.0)
    try:
        files = wh.snapshot_files()
    finally:
        wh.close()
    ranges: dict[str, list[tuple[str, str]]] = {}
    for table in defs.STATE:
        for file in files[defs.TABLE_NAMES(table.name)]:
            users = pq.read_table(file, columns=["user_id"]).column("user_id").to_pylist()
            if users:
                ranges.setdefault(table.name, []).append((users[0], users[-1]))
    return ranges


def test_a_rebuild_in_partitions_writes_each_its_own_range_of_users(tmp_path):
    lake = _small_lake(tmp_path)
    assert RollupJob(lake, PRE_DAYS, partition_rows=50).run_once().kind == "rebuild"
    for table, ranges in _files_user_ranges(lake).items():
        assert len(ranges) >= 3, f"{table}: the rebuild was not cut into partitions ({ranges})"
        ordered = sorted(ranges)
        # a partition by a hash of the user would spread every file over the whole range
        overlaps = [(a, b) for a, b in itertools.pairwise(ordered) if b[0] <= a[1]]
        assert not overlaps, f"{table}: partitions share users' ranges: {overlaps}"


def test_state_is_written_in_user_order_by_a_rebuild_a_fold_and_a_compaction(tmp_path):
    lake = tmp_path / "lake"
    job = RollupJob(lake, PRE_DAYS, partition_rows=400)  # a rebuild in several partitions
    batches = stream(5, 4)
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        commit(writer, next(batches))
        assert job.run_once().kind == "rebuild"
        assert _assert_state_files_in_user_order(lake)
        for batch in batches:
            commit(writer, batch)
            assert job.run_once().kind == "fold"
        assert _assert_state_files_in_user_order(lake)
        job.compact()
        assert _assert_state_files_in_user_order(lake)


def _state_runs(lake: Path) -> dict[str, tuple[set[int], bool]]:
    """Per state table: the run ids its rows carry, and whether each run holds one row per key."""
    wh = Warehouse(lake, min_refresh_seconds=0.0)
    try:
        found = {}
        for table in defs.STATE:
            name = defs.TABLE_NAMES(table.name)
            keys = ", ".join(c.name for c in table.keys)
            runs = wh.query(f"SELECT DISTINCT run_id FROM {name}")["run_id"].to_list()
            repeated = wh.scalar(
                f"SELECT count(*) FROM (SELECT run_id, {keys} FROM {name} GROUP BY ALL HAVING count(*) > 1)"
            )
            found[table.name] = (set(runs), repeated == 0)
        return found
    finally:
        wh.close()


def test_a_compaction_merges_only_the_rows_since_the_state_was_last_written_whole(tmp_path):
    """At 100M events a whole rewrite of the state takes minutes with every fold held back: below
    `whole_share` a compaction merges only the rows the runs since the base appended, and leaves
    the base's files as they are; past it, the state is written whole again."""
    lake = tmp_path / "lake"
    batches = stream(9, 4)
    merging, rewriting = RollupJob(lake, PRE_DAYS, whole_share=float("inf")), RollupJob(lake, PRE_DAYS, whole_share=0.0)
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        commit(writer, next(batches))
        base = merging.run_once()
        assert base.kind == "rebuild"
        base_files = _state_files(lake)
        for batch in itertools.islice(batches, 2):
            commit(writer, batch)
            assert merging.run_once().kind == "fold"
        assert merging.compact() == "merge"
        merging.close()
        merged = _state_files(lake)
        assert base_files <= merged  # the base is not rewritten
        runs = _state_runs(lake)
        merge_run = max(max(ids) for ids, _ in runs.values())
        assert all(ids <= {base.run_id, merge_run} and one_per_key for ids, one_per_key in runs.values()), runs
        rollups.check(lake, PRE_DAYS)
        _assert_state_files_in_user_order(lake)
        commit(writer, next(batches))  # a fold onto the merged state
        assert merging.run_once().kind == "fold"
        rollups.check(lake, PRE_DAYS)
        assert rewriting.compact() == "compact"
        rewriting.close()
        assert not base_files & _state_files(lake)
        runs = _state_runs(lake)
        assert len(set.union(*(ids for ids, _ in runs.values()))) == 1 and all(one for _, one in runs.values())
        rollups.check(lake, PRE_DAYS)


def test_a_following_job_merges_what_piled_up_before_it_started_after_its_first_run(tmp_path):
    lake = tmp_path / "lake"
    batches = stream(11, 3)
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        for batch in batches:
            commit(writer, batch)
            RollupJob(lake, PRE_DAYS).run_once()  # a rebuild, then folds no job compacted
    # the folds' rows are most of the state here: merged, not rewritten whole, as on a long history
    job, stop = RollupJob(lake, PRE_DAYS, whole_share=float("inf")), threading.Event()
    following = threading.Thread(target=job.follow, args=(0.05, stop))
    following.start()
    try:
        deadline = time.monotonic() + 60
        while _run_kinds(lake) != ["rebuild", "merge"]:  # not 5 minutes later: at once
            assert time.monotonic() < deadline, _run_kinds(lake)
            time.sleep(0.1)
        time.sleep(0.5)  # idle runs after it
    finally:
        stop.set()
        following.join(timeout=60)
    assert _run_kinds(lake) == ["rebuild", "merge"]  # idle runs log nothing
    assert RollupJob(lake, PRE_DAYS).compact() == "idle"  # nothing to merge since
    rollups.check(lake, PRE_DAYS)


def _run_kinds(lake: Path) -> list[str]:
    wh = Warehouse(lake, min_refresh_seconds=0.0)
    try:
        return wh.query("SELECT kind FROM rollup_runs ORDER BY run_id")["kind"].to_list()
    finally:
        wh.close()


def _state_files(lake: Path) -> set[str]:
    wh = Warehouse(lake, min_refresh_seconds=0.0)
    try:
        files = wh.snapshot_files()
    finally:
        wh.close()
    return {str(f) for table in defs.STATE for f in files[defs.TABLE_NAMES(table.name)]}


def test_compactions_take_at_most_their_share_of_the_job_time():
    # a quick compaction (the demo's lake): the next one the period later
    assert next_start(now=101.0, began=100.0, every=300.0, share=COMPACTION_SHARE) == 401.0
    # one of ten minutes (a long history): the next waits so that compacting is 5% of the time
    after = next_start(now=1600.0, began=1000.0, every=300.0, share=COMPACTION_SHARE)
    assert 600.0 / (after - 1000.0) == pytest.approx(COMPACTION_SHARE)


def test_a_following_job_runs_every_interval_or_less_often_so_that_runs_take_at_most_their_share():
    # a run of 0.3 s (the demo's lake): the next one the interval later
    assert next_start(now=10.3, began=10.0, every=2.0, share=RUN_SHARE) == pytest.approx(12.3)
    # a run of 2 s (a history of 100M events): the job is busy a quarter of the time, not half
    after = next_start(now=12.0, began=10.0, every=2.0, share=RUN_SHARE)
    assert 2.0 / (after - 10.0) == pytest.approx(RUN_SHARE)


def test_the_job_keeps_its_duckdb_to_the_memory_it_is_given(tmp_path):
    lake = _small_lake(tmp_path)
    job = RollupJob(lake, PRE_DAYS, memory_limit_mb=300)
    try:
        assert job.run().kind == "rebuild"
        # 300 MB, which DuckDB reports in MiB
        assert job._warehouse().scalar("SELECT current_setting('memory_limit')") == "286.1 MiB"
    finally:
        job.close()


def test_a_compaction_keeps_duckdb_to_the_threads_it_is_given_and_gives_them_back(tmp_path, monkeypatch):
    """A following job compacts on one thread (`COMPACTION_THREADS`): a merge at 100M events held
    every core for seconds beside the cockpit; its runs keep every core."""
    lake = tmp_path / "lake"
    job = RollupJob(lake, PRE_DAYS, whole_share=float("inf"))  # a merge, as at 100M
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        for batch in stream(5, 3):
            commit(writer, batch)
            job.run()
    assert job._wh is not None

    def threads() -> int:
        return job._wh.cursor().execute("SELECT current_setting('threads')").fetchone()[0]

    every_core, during = threads(), []
    replace = job.store.replace

    def recording(*args, **kwargs):
        during.append(threads())
        return replace(*args, **kwargs)

    monkeypatch.setattr(job.store, "replace", recording)
    try:
        assert job.compact(threads=COMPACTION_THREADS) == "merge"
        assert during and set(during) == {COMPACTION_THREADS}
        assert threads() == every_core
    finally:
        job.close()


def test_a_run_reads_the_snapshot_it_started_from_while_the_service_commits(tmp_path, monkeypatch):
    """Rows committed during a run wait for the next run: every query of a run reads one snapshot
    (a query that moved the views replayed every table's log, and the statements of one run would
    read different lakes)."""
    lake = tmp_path / "lake"
    first, second, third = stream(17, 3)
    job = RollupJob(lake, PRE_DAYS)
    folded_tables = ("events", "exposures", "decisions")
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        commit(writer, first)
        assert job.run().kind == "rebuild"
        commit(writer, second)
        uppers, seen = job._uppers, []

        def committing_meanwhile(wh: Warehouse) -> dict:
            found = uppers(wh)
            seen.append(wh.versions)
            commit(writer, third)  # the service commits while the run folds
            return found

        monkeypatch.setattr(job, "_uppers", committing_meanwhile)
        try:
            folded = job.run()
            assert job._wh is not None and job._wh.versions == seen[0]
            monkeypatch.undo()
            later = job.run()
        finally:
            job.close()
    assert folded.kind == later.kind == "fold"
    assert folded.rows_folded == _new_rows(second, first, folded_tables)
    assert later.rows_folded == _new_rows(third, second, folded_tables)
    rollups.check(lake, PRE_DAYS)


def _new_rows(batch: dict, before: dict, tables: tuple[str, ...]) -> int:
    """Rows of `batch` in `tables` not delivered in `before` (the lake keeps one copy of a row
    delivered again)."""

    def rows(b: dict, table: str) -> set[str]:
        return {repr(sorted(row.items())) for row in b[table]}

    return sum(len(rows(batch, t) - rows(before, t)) for t in tables)
