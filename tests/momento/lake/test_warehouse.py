"""The reader: views over the current snapshot, cheap refresh, SQLAlchemy, clear errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import sqlalchemy

from momento.lake.writer import LakeWriter
from momento.lake.warehouse import Warehouse, WarehouseError

sys.path.insert(0, str(Path(__file__).parent))
from lake_worker import event_batch  # noqa: E402


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
    assert warehouse.versions == {name: None for name in warehouse.versions}
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
