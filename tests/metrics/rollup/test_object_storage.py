"""A lake on S3 (moto's server, started by the tests): the service's writer appends to it, the
warehouse reads it, the rollup job keeps its rollups, and every number equals that of the same
rows in a lake on a local disk. Spark, without hadoop-aws here, reads it through the lake's Python
data source (`metrics.engines.lake_source`): the rollups it builds and the experiments'
sufficient statistics it reduces equal DuckDB's."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from metrics.engines.spark import SparkEngine, s3a_settings
from metrics.rollup import definitions as defs
from metrics.rollup.job import RollupJob
from metrics.rollup.read import Aggregates, aggregates
from metrics.rollup.session import Engine, duckdb_engine
from momento.lake.location import Location
from momento.lake.schema import TABLES
from momento.lake.warehouse import Warehouse
from momento.lake.writer import LakeWriter

sys.path.insert(0, str(Path(__file__).parent))
from random_lake import commit, stream
from test_spark_parity import RELATIVE, assert_same

from tests.support import rollups
from tests.support.rollups import analyze_lake, assert_same_arm_statistics
from tests.support.s3 import S3Server

PRE_DAYS = 7


def _fill(lake: Path | Location, batches: list[dict], engine: Engine = duckdb_engine) -> list[str]:
    """Write the batches, a rollup run on `engine` after each; the runs' kinds."""
    kinds = []
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        for batch in batches:
            commit(writer, batch)
            kinds.append(RollupJob(lake, PRE_DAYS, engine).run_once().kind)
        writer.compact()  # merged, checkpointed and vacuumed on S3 too
    return kinds


def _read(lake: Path | Location) -> tuple[dict[str, int], Aggregates]:
    """Each raw table's row count, and the aggregates as the cockpit reads them (the rollups)."""
    wh = Warehouse(lake, min_refresh_seconds=3600.0)  # one snapshot: nothing writes meanwhile
    try:
        assert not wh.errors
        served = aggregates(wh, PRE_DAYS)
        assert served.source.mode == "rollups", served.source.reason
        return {name: wh.scalar(f"SELECT count(*) FROM {name}") for name in TABLES}, served
    finally:
        wh.close()


def test_a_lake_on_s3_reads_and_rolls_up_as_the_same_rows_on_a_local_disk(tmp_path, s3_lake):
    batches = list(stream(5, 2))
    local = tmp_path / "lake"
    assert _fill(s3_lake, batches) == _fill(local, batches) == ["rebuild", "fold"]
    (counts, on_s3), (local_counts, on_disk) = _read(s3_lake), _read(local)
    assert counts == local_counts and counts["events"] > 0
    rollups.assert_same(on_s3, on_disk)


def test_s3a_settings_follow_the_storage_options():
    options = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ACCESS_KEY_ID": "id",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_REGION": "eu-west-1",
    }
    assert s3a_settings(options) == {
        "fs.s3a.access.key": "id",
        "fs.s3a.secret.key": "secret",
        "fs.s3a.endpoint.region": "eu-west-1",
        "fs.s3a.endpoint": "http://127.0.0.1:9000",
        "fs.s3a.connection.ssl.enabled": "false",
        "fs.s3a.path.style.access": "true",
    }
    assert s3a_settings({"AWS_REGION": "us-east-1"}) == {"fs.s3a.endpoint.region": "us-east-1"}


@pytest.fixture(scope="module")
def rolled_on_s3(s3: S3Server, spark_engine: SparkEngine) -> dict[str, Location]:
    """The same rows in two lakes on S3, rebuilt by the job: on DuckDB in one, on Spark in the other."""
    batches = list(stream(7, 1))
    lakes = {"duckdb": s3.new_lake(), "spark": s3.new_lake()}
    assert _fill(lakes["duckdb"], batches) == _fill(lakes["spark"], batches, spark_engine) == ["rebuild"]
    return lakes


def _rollup(lake: Location, name: str) -> pl.DataFrame:
    wh = Warehouse(lake, min_refresh_seconds=3600.0)
    try:
        return wh.query(f"SELECT * EXCLUDE (run_id) FROM {name}")
    finally:
        wh.close()


@pytest.mark.parametrize("table", [*defs.STATE, *defs.AGGREGATES], ids=lambda t: t.name)
def test_every_rollup_table_spark_builds_on_s3_equals_duckdbs(rolled_on_s3, table):
    name = defs.TABLE_NAMES(table.name)
    duck, spark = _rollup(rolled_on_s3["duckdb"], name), _rollup(rolled_on_s3["spark"], name)
    assert duck.height > 0
    assert_same(duck, spark, [c.name for c in table.keys], table.name)


def test_spark_reads_every_table_of_an_s3_lake_through_the_python_data_source_as_duckdb(rolled_on_s3, spark_engine):
    """No hadoop-aws here: the raw tables and the rollups (their schemas from the files' footers)
    are read through `momento_lake_files`, row for row as DuckDB reads them."""
    wh = Warehouse(rolled_on_s3["duckdb"], min_refresh_seconds=3600.0)
    try:
        names = sorted(name for name, files in wh.snapshot_files().items() if files)
        assert "events" in names and defs.TABLE_NAMES("user_hours") in names
        with spark_engine(wh) as session:
            assert "momento_lake_files" in session.spark.table("events")._jdf.queryExecution().toString()
            for name in names:
                duck = wh.query(f"SELECT * FROM {name}")
                spark = pl.from_arrow(session.arrow(f"SELECT * FROM {name}"))
                assert isinstance(spark, pl.DataFrame)
                assert_same(duck, spark, duck.columns, name)
    finally:
        wh.close()


def test_analyze_lake_on_spark_over_s3_gives_every_experiments_sufficient_statistics_as_duckdb(
    rolled_on_s3, s3: S3Server, monkeypatch
):
    lake = rolled_on_s3["duckdb"]  # read only
    duck = analyze_lake(lake.uri, "duckdb", monkeypatch, s3.env)
    spark = analyze_lake(lake.uri, "spark", monkeypatch, s3.env)  # on the session's Spark (getOrCreate)
    assert [x["experiment"] for x in spark] == [x["experiment"] for x in duck]
    assert any(stats["exposed__users"] > 0 for x in duck for stats in x["arms"].values())
    assert_same_arm_statistics(duck, spark, RELATIVE)


def test_the_data_sources_reader_reads_a_file_lacking_a_column_as_null_under_the_tables_schema(tmp_path):
    """The reader alone (no Spark): one partition per file, the store's options back under their
    names, a column the file lacks null, the others cast to the schema Spark checks batches against."""
    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

    from metrics.engines.lake_source import LakeFilesReader

    old = tmp_path / "old.parquet"
    pq.write_table(pa.table({"n": pa.array([1, 2], pa.int32()), "x": [0.5, None]}), old)
    schema = StructType(
        [StructField("n", LongType()), StructField("added", StringType()), StructField("x", DoubleType())]
    )
    reader = LakeFilesReader({"files": json.dumps([str(old)]), "storage.aws_region": "eu-west-1"}, schema)
    assert reader.storage_options == {"AWS_REGION": "eu-west-1"}
    (partition,) = reader.partitions()
    batches = list(reader.read(partition))
    assert all(batch.schema == reader.schema for batch in batches)
    assert pa.Table.from_batches(batches).to_pydict() == {"n": [1, 2], "added": [None, None], "x": [0.5, None]}
