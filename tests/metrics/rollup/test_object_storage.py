"""A lake on S3 (moto's server, started by the tests): the service's writer appends to it, the
warehouse reads it, the rollup job keeps its rollups, and every number equals that of the same
rows in a lake on a local disk. Spark without hadoop-aws refuses it, naming what is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from metrics.engines.spark import EngineUnavailable, SparkEngine, s3a_settings
from metrics.rollup.job import RollupJob
from metrics.rollup.read import Aggregates, aggregates
from momento.lake.location import Location
from momento.lake.schema import TABLES
from momento.lake.warehouse import Warehouse
from momento.lake.writer import LakeWriter

sys.path.insert(0, str(Path(__file__).parent))
from random_lake import stream

from tests.support import rollups

PRE_DAYS = 7


def _fill(lake: Path | Location, batches: list[dict]) -> list[str]:
    """Write the batches, a rollup run after each; the runs' kinds."""
    kinds = []
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        for batch in batches:
            for table, rows in batch.items():
                writer.append(table, rows)
            writer.flush()
            kinds.append(RollupJob(lake, PRE_DAYS).run_once().kind)
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


def test_spark_without_hadoop_aws_refuses_an_s3_lake_naming_what_the_cluster_needs(spark_engine: SparkEngine, s3_lake):
    with LakeWriter(s3_lake, background=False, compact_every_seconds=None) as writer:
        for table, rows in next(stream(6, 1)).items():
            writer.append(table, rows)
    with pytest.raises(EngineUnavailable, match=r"through s3a, which needs hadoop-aws and its AWS SDK bundle"):
        RollupJob(s3_lake, PRE_DAYS, spark_engine).run_once()
