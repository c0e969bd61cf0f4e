"""The reader: views over the current snapshot, cheap refresh, SQLAlchemy, clear errors."""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy
from deltalake import DeltaTable, write_deltalake

from momento.lake.rollups import ROLLUP_RUNS, TABLE_VERSIONS, RollupStore
from momento.lake.schema import TABLES, to_table
from momento.lake.warehouse import Warehouse, WarehouseError
from momento.lake.writer import LakeWriter, table_path

sys.path.insert(0, str(Path(__file__).parent))
from lake_worker import event_batch


def events_lake(path: Path, rows: int) -> LakeWriter:
    """A lake at `path` holding `rows` committed events; its writer, for more."""
    writer = LakeWriter(path, background=False)
    writer.append("events", event_batch(0, rows))
    writer.flush()
    return writer


def test_a_lake_that_does_not_exist_reads_as_empty_tables_with_their_columns(tmp_path):
    warehouse = Warehouse(tmp_path / "nowhere")
    assert warehouse.scalar("SELECT count(*) FROM events") == 0
    assert "propensity" in warehouse.query("SELECT * FROM decisions").columns
    assert warehouse.versions == dict.fromkeys(warehouse.versions)
    assert not (tmp_path / "nowhere").exists()  # a reader never writes


def test_new_commits_appear_after_refresh_and_unchanged_tables_keep_their_view(tmp_path):
    writer = events_lake(tmp_path, 10)
    warehouse = Warehouse(tmp_path, min_refresh_seconds=3600)
    assert warehouse.scalar("SELECT count(*) FROM events") == 10
    writer.append("events", event_batch(10, 5))
    writer.flush()
    assert warehouse.scalar("SELECT count(*) FROM events") == 10  # throttled: same snapshot
    before = warehouse.versions
    after = warehouse.refresh(force=True)
    assert after["events"] == before["events"] + 1 and after["decisions"] == before["decisions"]
    assert warehouse.scalar("SELECT count(*) FROM events") == 15


def test_a_held_warehouse_keeps_its_snapshot_for_every_thread_until_released(tmp_path):
    writer = events_lake(tmp_path, 10)
    warehouse = Warehouse(tmp_path, min_refresh_seconds=0.0)
    with warehouse.held():
        writer.append("events", event_batch(10, 5))
        writer.flush()
        other = threading.Thread(target=warehouse.refresh)  # another session's redraw
        other.start()
        other.join()
        assert warehouse.scalar("SELECT count(*) FROM events") == 10  # queries refresh too: held
    assert warehouse.scalar("SELECT count(*) FROM events") == 15
    with warehouse.held():
        writer.append("events", event_batch(15, 1))
        writer.flush()
        warehouse.refresh(force=True)  # a forced refresh (a vanished file's retry) still moves it
        assert warehouse.scalar("SELECT count(*) FROM events") == 16


def test_the_newest_bound_is_at_most_a_millisecond_under_the_newest_value(tmp_path):
    assert Warehouse(tmp_path / "nowhere").newest_bound("events", "received_at") is None
    writer = events_lake(tmp_path, 30)
    warehouse = Warehouse(tmp_path, min_refresh_seconds=0.0)
    newest = warehouse.scalar("SELECT max(received_at) FROM events")
    bound = warehouse.newest_bound("events", "received_at")
    assert bound is not None and newest - timedelta(milliseconds=2) < bound <= newest
    assert warehouse.newest_bound("events", "event_id") is None  # no statistics kept for ids
    writer.close()


def test_a_memory_bound_warehouse_answers_the_same_and_removes_its_spill_directory(tmp_path):
    """The cockpit's warehouse keeps DuckDB within its memory setting, spilling to a temporary
    directory of its own (not the working directory), removed on close."""
    events_lake(tmp_path / "lake", 200_000).close()
    grouping = (
        "SELECT count(*) AS groups, sum(n) AS rows FROM (SELECT event_id, count(*) AS n FROM events GROUP BY ALL)"
    )
    unbounded = Warehouse(tmp_path / "lake")
    bounded = Warehouse(tmp_path / "lake", memory_limit_mb=64)
    spill = Path(bounded.scalar("SELECT current_setting('temp_directory')"))
    try:
        assert bounded.scalar("SELECT current_setting('memory_limit')") == "61.0 MiB"  # 64 MB
        assert spill.is_dir() and spill.name.startswith("momento-duckdb-")
        assert bounded.query(grouping).rows() == unbounded.query(grouping).rows() == [(200_000, 200_000)]
    finally:
        bounded.close()
        unbounded.close()
    assert not spill.exists()


def test_the_rollup_run_log_is_copied_in_at_each_new_version_not_read_from_its_files(tmp_path):
    """Every rollup read filters by the committed runs: the run log answers from memory, at the
    snapshot of the last refresh, whatever happens to its files meanwhile."""
    store = RollupStore(tmp_path)

    def log_run(run_id: int) -> None:
        rows = pa.table({"run_id": [run_id], TABLE_VERSIONS: ["{}"]})
        store.append(ROLLUP_RUNS, rows, rows.schema)

    log_run(1)
    warehouse = Warehouse(tmp_path, min_refresh_seconds=3600)
    log_run(2)
    assert warehouse.query("SELECT run_id FROM rollup_runs")["run_id"].to_list() == [1]  # its snapshot
    warehouse.refresh(force=True)
    for parquet in (tmp_path / "rollups" / ROLLUP_RUNS).glob("*.parquet"):
        parquet.unlink()  # what a reader of a view over them would fail on
    assert sorted(warehouse.query("SELECT run_id FROM rollup_runs")["run_id"].to_list()) == [1, 2]
    assert not warehouse.errors


def test_a_lookup_of_a_few_hundred_keys_reads_only_the_row_groups_that_hold_them(tmp_path):
    """A live fold looks up the users it touches in state sorted by user: the join must hand the
    scan its keys (not only their range) so that the other row groups are skipped."""
    users = [f"u{i:06d}" for i in range(100 * 200)]  # 200 row groups of 100 users, in order
    pq.write_table(pa.table({"user_id": users}), tmp_path / "state.parquet", row_group_size=100)
    wanted = users[1000:1200:2] + users[15000:15200:2]  # 200 keys in 4 row groups, spanning 150
    wh = Warehouse(tmp_path / "lake")
    try:
        cursor = wh.cursor()
        cursor.execute("CREATE TEMP TABLE touched AS SELECT unnest($wanted) AS user_id", {"wanted": wanted})
        plan = cursor.sql(
            f"EXPLAIN ANALYZE SELECT count(*) FROM read_parquet('{tmp_path / 'state.parquet'}') "
            "WHERE user_id IN (SELECT user_id FROM touched)"
        ).fetchall()[0][1]
    finally:
        wh.close()
    assert "Row Groups Scanned: 4 / 200" in plan


def test_parameters_are_bound_not_interpolated(tmp_path):
    events_lake(tmp_path, 10)
    warehouse = Warehouse(tmp_path)
    hostile = "x' OR '1'='1"
    assert warehouse.scalar("SELECT count(*) FROM events WHERE user_id = $u", {"u": hostile}) == 0
    assert warehouse.scalar("SELECT count(*) FROM events WHERE user_id = $u", {"u": f"{3:032x}"}) == 1


def test_sqlalchemy_connections_see_the_same_views(tmp_path):
    events_lake(tmp_path, 7)
    warehouse = Warehouse(tmp_path)
    with warehouse.engine().connect() as connection:
        result = connection.execute(sqlalchemy.text("SELECT count(*) FROM events WHERE revenue = :r"), {"r": 1.0})
        assert result.scalar() == 7


def test_a_corrupt_parquet_file_is_a_clear_error_not_a_crash(tmp_path):
    events_lake(tmp_path, 10)
    warehouse = Warehouse(tmp_path)
    (parquet,) = (tmp_path / "events").glob("*.parquet")
    parquet.write_bytes(b"not a parquet file")
    with pytest.raises(WarehouseError, match="unreadable file"):
        warehouse.query("SELECT count(*) FROM events")
    assert warehouse.scalar("SELECT count(*) FROM decisions") == 0  # other tables still answer


def test_a_missing_parquet_file_is_a_clear_error(tmp_path):
    events_lake(tmp_path, 10)
    warehouse = Warehouse(tmp_path)
    for parquet in (tmp_path / "events").glob("*.parquet"):
        parquet.unlink()
    with pytest.raises(WarehouseError):
        warehouse.query("SELECT count(*) FROM events")


def test_a_damaged_delta_log_is_a_clear_error(tmp_path):
    events_lake(tmp_path, 10)
    for entry in (tmp_path / "events" / "_delta_log").glob("*.json"):
        entry.write_text("{broken")
    warehouse = Warehouse(tmp_path)
    assert "events" in warehouse.errors
    with pytest.raises(WarehouseError, match="'events'"):
        warehouse.query("SELECT count(*) FROM events")
    assert warehouse.scalar("SELECT count(*) FROM decisions") == 0  # other tables still answer


def test_a_lake_opened_with_a_corrupt_file_answers_for_the_other_tables(tmp_path):
    events_lake(tmp_path, 10)
    (parquet,) = (tmp_path / "events").glob("*.parquet")
    parquet.write_bytes(b"not a parquet file")
    warehouse = Warehouse(tmp_path)
    assert "events" in warehouse.errors
    with pytest.raises(WarehouseError, match="unreadable file"):
        warehouse.query("SELECT count(*) FROM events")
    assert warehouse.scalar("SELECT count(*) FROM decisions") == 0


def test_named_parameters_a_query_does_not_use_are_dropped_but_missing_ones_fail(tmp_path):
    warehouse = Warehouse(tmp_path)
    assert warehouse.scalar("SELECT $a + 1", {"a": 1, "unused": "x"}) == 2
    with pytest.raises(Exception, match="b"):
        warehouse.scalar("SELECT $a + $b", {"a": 1})


EVALUATION_COLUMNS = ("action_probabilities", "context", "context_version")
"""The decision columns added for off-policy evaluation (after lakes had been written without them)."""


def _decisions(start: int, rows: int, evaluated: bool) -> list[dict]:
    """Valid decision rows; `evaluated`: with the off-policy evaluation columns filled."""
    now = datetime.now(UTC)
    out = []
    for i in range(start, start + rows):
        row = dict(
            decision_id=f"d{i}",
            ts=now,
            user_id=f"{i:032x}",
            journey="browse",
            placement="homepage_showcase",
            channel="web",
            experience_id="home_showcase",
            arm="treatment",
            variant="b",
            policy="thompson",
            propensity=0.75,
            reasons=["policy_thompson"],
            fallback=False,
            consent=True,
            latency_us=90,
            status="ok",
        )
        if evaluated:
            row |= dict(
                action_probabilities=[{"variant": "a", "p": 0.25}, {"variant": "b", "p": 0.75}],
                context=[1.0, 0.5],
                context_version="features-2-test",
            )
        out.append(row)
    return out


def _lake_from_before_the_evaluation_columns(path: Path, rows: int) -> None:
    """A decisions table as a writer from before the columns existed left it: the Delta schema
    and the Parquet files both without them."""
    old = pa.schema([field for field in TABLES["decisions"] if field.name not in EVALUATION_COLUMNS])
    table = to_table("decisions", _decisions(0, rows, evaluated=False)).select(old.names)
    write_deltalake(str(table_path(path, "decisions")), table.cast(old), mode="append")


def test_a_lake_from_before_the_evaluation_columns_reads_them_as_nulls_and_takes_new_rows(tmp_path):
    _lake_from_before_the_evaluation_columns(tmp_path, 3)
    warehouse = Warehouse(tmp_path)
    old = warehouse.query("SELECT * FROM decisions")
    assert old.columns == TABLES["decisions"].names and old.height == 3
    assert old.select(EVALUATION_COLUMNS).null_count().row(0) == (3, 3, 3)
    assert (
        warehouse.query("SELECT typeof(action_probabilities) AS t FROM decisions LIMIT 1").item()
        == "STRUCT(variant VARCHAR, p DOUBLE)[]"
    )

    writer = LakeWriter(tmp_path, background=False, compact_every_seconds=None)  # the new service on the old lake
    writer.append("decisions", _decisions(3, 2, evaluated=True))
    writer.flush()
    warehouse.refresh(force=True)
    mixed = warehouse.query(
        "SELECT decision_id, list_sum([a.p FOR a IN action_probabilities]) AS total, context, context_version "
        "FROM decisions ORDER BY decision_id"
    )
    assert mixed.get_column("total").to_list() == [None, None, None, 1.0, 1.0]
    assert mixed.get_column("context").to_list()[3:] == [[1.0, 0.5], [1.0, 0.5]]
    assert DeltaTable(str(table_path(tmp_path, "decisions"))).to_pyarrow_table().num_rows == 5  # Delta readers too

    writer.compact()  # old and new files rewritten together
    warehouse.refresh(force=True)
    assert warehouse.query("SELECT count(*) AS n, count(context) AS with_context FROM decisions").row(0) == (5, 2)
    writer.close()
    warehouse.close()


def test_a_lake_on_s3_reads_through_the_same_views_with_columns_and_filters_pushed_down(s3_lake):
    """DuckDB reads the snapshot's files on S3 through pyarrow's filesystem (moto's server here):
    new commits appear after a refresh, and the Parquet reader still gets the projection and the
    filter (it reads only what the query needs)."""
    writer = events_lake(s3_lake, 10)
    warehouse = Warehouse(s3_lake, min_refresh_seconds=0.0)
    try:
        assert warehouse.scalar("SELECT count(*) FROM events") == 10 and not warehouse.errors
        writer.append("events", event_batch(10, 5))
        writer.flush()
        assert warehouse.scalar("SELECT count(DISTINCT event_id) FROM events") == 15
        assert all(uri.startswith(f"{s3_lake.uri}/events/") for uri in warehouse.snapshot_files()["events"])
        plan = warehouse.cursor().sql("EXPLAIN SELECT event_id FROM events WHERE event_type = 'click'").fetchall()
        scan = plan[0][1]
        assert "READ_PARQUET" in scan and "Projections: event_id" in scan and "Filters: event_type = 'click'" in scan
    finally:
        warehouse.close()
        writer.close()
