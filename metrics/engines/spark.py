"""The rollup job and the experiment reduction on Apache Spark (`--engine spark`).

Spark runs the same SQL texts as DuckDB (`metrics.rollup.definitions`, the Query registry),
transpiled (`metrics.engines.transpile`). It reads the lake's current Delta snapshot as the
warehouse pins it: the Parquet files the Delta log lists (`Warehouse.snapshot_files`, resolved by
`deltalake`), `spark.read.parquet(files)` under each table's schema, so files written before a
column existed read it as null, as on DuckDB. What a fold produces comes back to this process as
Arrow and is committed by the job through the same writer as DuckDB's (`momento.lake.rollups`):
the same rollup tables, the same `rollup_runs` row, so the cockpit reads them unchanged.

A lake on S3 is read through Hadoop's s3a filesystem where the cluster has it (hadoop-aws and
the AWS SDK bundle on its classpath, configured from the lake's storage options: `s3a_settings`);
otherwise, and for other object stores, through a Python data source that opens each file with
pyarrow's filesystem of the lake's store (`metrics.engines.lake_source`), slower (Python workers,
no column pruning) but needing nothing on the JVM's classpath.

pyspark is an optional extra (`pip install momento[spark]`) and needs a Java runtime: both are
looked for only when the engine is first used, and their absence is said plainly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from metrics.engines.transpile import to_spark
from metrics.rollup.session import SqlSession
from momento.lake.location import Location
from momento.lake.schema import TABLES, empty_table
from momento.lake.warehouse import Warehouse, used_params

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

log = logging.getLogger(__name__)

LOCAL_SHUFFLE_PARTITIONS = "8"
"""Shuffle partitions on a local master (Spark's 200 suit a cluster: on two cores, tiny tasks)."""


class EngineUnavailable(RuntimeError):
    """The Spark engine cannot start here: says what to install."""


def _spark_session(master: str, conf: Mapping[str, str]) -> SparkSession:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise EngineUnavailable("the Spark engine needs pyspark: pip install momento[spark]") from None
    if master.startswith("local") and shutil.which("java") is None:
        raise EngineUnavailable(
            "the Spark engine needs a Java runtime (17 or later) on the PATH: "
            "on Debian, apt-get install openjdk-17-jre-headless"
        )
    if master.startswith("local"):
        # Python workers (the lake's data source) run this interpreter, which has pyarrow and
        # momento, rather than the first `python3` on the PATH; read when the JVM starts.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(master)
        .appName("momento")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
    )
    # The relations a fold computes are checkpointed blocks, freed once unreferenced when the
    # cleaner's garbage collection runs: often, for a job that folds every few seconds.
    builder = builder.config("spark.cleaner.periodicGC.interval", "2min")
    if master.startswith("local"):
        builder = builder.config("spark.sql.shuffle.partitions", LOCAL_SHUFFLE_PARTITIONS)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


class SparkSql:
    """A `SqlSession` on a Spark session: relations are temporary views, those made by `create`
    computed at once (a fold reads each several times), dropped by `close` (their blocks then go
    with Spark's cleaner, `spark.cleaner.periodicGC.interval`)."""

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark
        self._views: set[str] = set()

    def create(self, name: str, sql: str, params: Mapping[str, Any] | None = None, *, view: bool = False) -> None:
        frame = self._frame(sql, params)
        if not view:
            # Computed now, as a DuckDB temporary table is, and cut from the plan that made it: a
            # fold's later statements join relations built on relations, and with their whole
            # lineage inlined Spark's analyzer runs out of heap (a cached frame keeps its lineage).
            frame = frame.localCheckpoint(eager=True)
        self._bind(name, frame)

    def register(self, name: str, rows: pa.Table) -> None:
        self._bind(name, self.spark.createDataFrame(rows))

    def arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        return self._frame(sql, params).toArrow()

    def mount(self, wh: Warehouse) -> None:
        """Make every table the warehouse shows a view of the same name over the same files."""
        read = _files_reader(self.spark, wh.lake)
        for name, files in wh.snapshot_files().items():
            if name in TABLES:  # raw: read under the table's schema (older files lack newer columns)
                empty = self.spark.createDataFrame(empty_table(name))
                frame = read(files, empty.schema) if files else empty
            else:
                frame = read(files, None)
            frame.createOrReplaceTempView(name)

    def close(self) -> None:
        """Drop the relations made here."""
        for name in self._views:
            self.spark.catalog.dropTempView(name)
        self._views.clear()

    def _frame(self, sql: str, params: Mapping[str, Any] | None) -> DataFrame:
        bound = used_params(sql, params or {})
        return self.spark.sql(to_spark(sql), args=bound or None)

    def _bind(self, name: str, frame: DataFrame) -> None:
        frame.createOrReplaceTempView(name)
        self._views.add(name)


def s3a_settings(options: Mapping[str, str]) -> dict[str, str]:
    """Hadoop's s3a settings for the storage options `deltalake` takes (`momento.lake.location`).
    A custom endpoint (an S3-compatible server) is addressed by path, as `deltalake` does."""
    endpoint = options.get("AWS_ENDPOINT_URL")
    names = {
        "AWS_ACCESS_KEY_ID": "fs.s3a.access.key",
        "AWS_SECRET_ACCESS_KEY": "fs.s3a.secret.key",
        "AWS_SESSION_TOKEN": "fs.s3a.session.token",
        "AWS_REGION": "fs.s3a.endpoint.region",
    }
    settings = {key: options[name] for name, key in names.items() if options.get(name)}
    if endpoint:
        settings["fs.s3a.endpoint"] = endpoint
        settings["fs.s3a.connection.ssl.enabled"] = str(endpoint.startswith("https://")).lower()
        settings["fs.s3a.path.style.access"] = "true"
    return settings


def _files_reader(spark: SparkSession, lake: Location) -> Callable[[list[str], StructType | None], DataFrame]:
    """How Spark reads the lake's files (under a schema, else as their footers say): with its
    Parquet reader on a local disk, and on S3 through s3a where the cluster has it (set up from
    the lake's storage options); otherwise through the Python data source over pyarrow's
    filesystem of the lake's store (`metrics.engines.lake_source`)."""
    if lake.is_local:
        return lambda files, schema: _parquet(spark, files, schema)
    if lake.scheme == "s3" and _has_s3a(spark):
        hadoop = spark._jsc.hadoopConfiguration()
        for key, value in s3a_settings(lake.storage_options).items():
            hadoop.set(key, value)
        return lambda files, schema: _parquet(spark, ["s3a://" + uri.partition("://")[2] for uri in files], schema)
    from metrics.engines.lake_source import lake_files

    return lake_files(spark, lake)


def _parquet(spark: SparkSession, files: list[str], schema: StructType | None) -> DataFrame:
    reader = spark.read if schema is None else spark.read.schema(schema)
    return reader.parquet(*files)


def _has_s3a(spark: SparkSession) -> bool:
    """Whether Hadoop's s3a filesystem (hadoop-aws) is on the cluster's classpath."""
    hadoop = spark._jsc.hadoopConfiguration()
    try:
        spark._jvm.org.apache.hadoop.fs.FileSystem.getFileSystemClass("s3a", hadoop)  # type: ignore[union-attr]
    except Exception:  # py4j's error: the class is not on the classpath
        log.info("no s3a on the cluster's classpath: the lake is read through the Python data source")
        return False
    return True


class SparkEngine:
    """Folds on Spark (`metrics.rollup.session.Engine`): one Spark session per process, started on
    first use against `master` (`local[2]`, `spark://host:7077`, `yarn`, `k8s://...`) with extra
    Spark settings `conf`; each fold gets a session of its own (its own temporary views)."""

    def __init__(self, master: str = "local[2]", conf: Mapping[str, str] | None = None) -> None:
        self.master = master
        self.conf = dict(conf or {})
        self._spark: SparkSession | None = None

    def spark(self) -> SparkSession:
        """The process's Spark session (started now if need be)."""
        if self._spark is None:
            self._spark = _spark_session(self.master, self.conf)
        return self._spark

    @contextlib.contextmanager
    def __call__(self, wh: Warehouse) -> Iterator[SqlSession]:
        session = SparkSql(self.spark().newSession())
        try:
            session.mount(wh)
            yield session
        finally:
            session.close()
