"""Spark (local[2]) gives DuckDB's numbers: on a backfilled lake, every rollup table the job builds
on Spark (a rebuild in partitions of the users, then a fold of late rows and a duplicate), the
cockpit's aggregates and experiment statistics read over them, and every experiment's sufficient
statistics from `momento analyze-lake --engine spark` equal DuckDB's: counts exactly, sums to
1e-9 relative."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from metrics.experiments import scenario_metrics, stats_frame
from metrics.filters import Filters
from metrics.rollup import definitions as defs
from metrics.rollup.job import RollupJob, latest_run
from metrics.rollup.read import aggregates
from metrics.rollup.session import duckdb_engine
from metrics.rollup.state import COMMITTED
from momento.lake.warehouse import Warehouse
from momento.lake.writer import LakeWriter
from tests.support.rollups import analyze_lake, assert_same_arm_statistics

RELATIVE = 1e-9


def assert_same(duck: pl.DataFrame, spark: pl.DataFrame, keys: list[str], what: str) -> None:
    """Same columns and rows; integers, strings and times equal, floats to 1e-9 of the column's scale."""
    assert spark.columns == duck.columns, what
    assert spark.height == duck.height, what
    duck, spark = duck.sort(keys, nulls_last=True), spark.sort(keys, nulls_last=True)
    for column in duck.columns:
        a, b = duck[column], spark[column]
        if a.dtype.is_float() or b.dtype.is_float():
            x, y = a.cast(pl.Float64).to_numpy(), b.cast(pl.Float64).to_numpy()
            scale = max(float(np.nanmax(np.abs(x))) if len(x) else 0.0, 1.0)
            np.testing.assert_allclose(y, x, rtol=RELATIVE, atol=RELATIVE * scale, err_msg=f"{what}.{column}")
        else:
            assert b.cast(a.dtype).to_list() == a.to_list(), f"{what}.{column}"


@pytest.fixture(scope="module")
def lakes(small_lake: Path, tmp_path_factory: pytest.TempPathFactory, spark_engine, bundled_scenario) -> dict:
    """The small lake rolled up twice: by the job on DuckDB, and by the job on Spark."""
    pre_days = bundled_scenario.business.pre_period_days
    out = {}
    for name, engine in (("duckdb", duckdb_engine), ("spark", spark_engine)):
        lake = tmp_path_factory.mktemp(f"parity_{name}") / "lake"
        shutil.copytree(small_lake, lake)
        # in two partitions of the users, as a rebuild of a large lake runs (the small lake has 77,504 raw rows)
        report = RollupJob(lake, pre_days, engine, partition_rows=40_000).run_once()
        assert report.kind == "rebuild"
        out[name] = lake
    return out


def _merged_tables(lake: Path) -> dict[str, pl.DataFrame]:
    """Every rollup table's committed rows merged per key (each partition or run appends rows of its
    own, and the engines' hashes cut the users differently: only the sums per key are the same)."""
    wh = Warehouse(lake)
    try:
        return {
            table.name: wh.query(table.merged_sql(f"(SELECT * FROM {defs.TABLE_NAMES(table.name)} WHERE {COMMITTED})"))
            for table in (*defs.STATE, *defs.AGGREGATES)
        }
    finally:
        wh.close()


@pytest.fixture(scope="module")
def folded(lakes: dict, tmp_path_factory: pytest.TempPathFactory, spark_engine, bundled_scenario) -> dict:
    """The rolled-up lakes with the same new rows appended (late ones and a duplicate delivery
    among them), folded in by the job on each engine: the incremental path."""
    pre_days = bundled_scenario.business.pre_period_days
    wh = Warehouse(lakes["duckdb"])
    try:
        late = wh.query("SELECT * EXCLUDE (loaded_at) FROM events ORDER BY ts LIMIT 40").to_arrow()
    finally:
        wh.close()
    new_rows = late.set_column(
        late.schema.get_field_index("event_id"), "event_id", pa.array([f"late-{i}" for i in range(late.num_rows)])
    )
    out = {}
    for name, engine in (("duckdb", duckdb_engine), ("spark", spark_engine)):
        lake = tmp_path_factory.mktemp(f"folded_{name}") / "lake"
        shutil.copytree(lakes[name], lake)
        with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
            writer.append("events", new_rows.to_pylist())
            writer.append("events", new_rows.slice(0, 5).to_pylist())  # delivered twice: stored once
            writer.flush()
        report = RollupJob(lake, pre_days, engine).run_once()
        assert report.kind == "fold" and report.rows_folded > 0
        out[name] = _merged_tables(lake)
    return out


@pytest.mark.parametrize("table", [*defs.STATE, *defs.AGGREGATES], ids=lambda t: t.name)
def test_every_rollup_table_built_on_spark_equals_duckdbs(lakes, table):
    frames = {name: _merged_tables(lake)[table.name] for name, lake in lakes.items()}
    assert frames["duckdb"].height > 0
    assert_same(frames["duckdb"], frames["spark"], [c.name for c in table.keys], table.name)


@pytest.mark.parametrize("table", [*defs.STATE, *defs.AGGREGATES], ids=lambda t: t.name)
def test_every_rollup_table_folded_on_spark_equals_duckdbs(folded, table):
    assert folded["duckdb"][table.name].height > 0
    keys = [c.name for c in table.keys]
    assert_same(folded["duckdb"][table.name], folded["spark"][table.name], keys, f"folded {table.name}")


def test_the_run_logs_agree_and_the_cockpit_reads_spark_rollups_unchanged(lakes, bundled_scenario):
    pre_days = bundled_scenario.business.pre_period_days
    read = {}
    for name, lake in lakes.items():
        wh = Warehouse(lake)
        try:
            run = latest_run(wh)
            aggs = aggregates(wh, pre_days)
            stats = stats_frame(aggs, Filters(), pre_days, scenario_metrics(bundled_scenario))
        finally:
            wh.close()
        assert run is not None
        assert (aggs.source.mode, aggs.source.tail_rows) == ("rollups", 0)
        read[name] = (run, aggs, stats)
    (duck_run, duck, duck_stats), (spark_run, spark, spark_stats) = read["duckdb"], read["spark"]
    assert (spark_run.definitions, spark_run.loaded_to, spark_run.events_max_ts) == (
        duck_run.definitions,
        duck_run.loaded_to,
        duck_run.events_max_ts,
    )
    for aggregate in defs.AGGREGATES:
        assert_same(duck[aggregate.name], spark[aggregate.name], [c.name for c in aggregate.keys], aggregate.name)
    assert_same(duck_stats, spark_stats, ["experiment_id", "arm", "segment", "day"], "experiments.stats")


def test_analyze_lake_on_spark_gives_every_experiments_sufficient_statistics_as_duckdb(
    small_lake, spark_engine, bundled_scenario, monkeypatch
):
    duck = analyze_lake(str(small_lake), "duckdb", monkeypatch)  # reads only: the shared lake is left as it is
    spark = analyze_lake(str(small_lake), "spark", monkeypatch)  # on the session's Spark (getOrCreate)
    assert (
        [x["experiment"] for x in spark]
        == [x["experiment"] for x in duck]
        == [x.id for x in bundled_scenario.experiments]
    )
    assert_same_arm_statistics(duck, spark, RELATIVE)
    for d, s in zip(duck, spark, strict=True):
        assert s["recommendation"] == d["recommendation"]
        assert [r["verdict"] for r in s["results"]] == [r["verdict"] for r in d["results"]]
    assert any(stats["exposed__users"] > 0 for x in duck for stats in x["arms"].values())
