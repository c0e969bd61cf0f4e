"""A Spark data source over the lake's Parquet files, read through pyarrow's filesystems.

Spark's own Parquet reader opens files through Hadoop filesystems: a lake on S3 needs s3a, whose
jars (hadoop-aws and the AWS SDK bundle) are not in pyspark. Where the cluster lacks them, Spark
reads the lake through this data source instead (PySpark 4's Python Data Source API): each
partition is one file of the snapshot the warehouse pins, and each Python worker opens it through
the pyarrow filesystem of the lake's store (`Location.filesystem`, the one the writer and
DuckDB's reads use), built on the executor from the storage options passed as data source
options, and hands Spark Arrow record batches under the table's schema (columns a file lacks
read as null). Python data sources get no column pruning: a file is read whole, every column.

The executors import this module: their Python needs momento and pyarrow (on a local master
they run this process's interpreter, `metrics.engines.spark`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import StructType

from momento.lake.location import Location

NAME = "momento_lake_files"
_FILES = "files"
_STORAGE = "storage."  # prefix of the storage options among the data source's options


class LakeFile(InputPartition):
    """One Parquet file of the snapshot (its URI in the lake's store)."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.uri = uri


class LakeFiles(DataSource):
    """`spark.read.format("momento_lake_files")`: the files in option `files` (a JSON list of
    URIs), read with the schema given to the reader; the store's options as `storage.<NAME>`."""

    @classmethod
    def name(cls) -> str:
        return NAME

    def reader(self, schema: StructType) -> DataSourceReader:
        return LakeFilesReader(self.options, schema)


class LakeFilesReader(DataSourceReader):
    """Made on the driver, pickled to the executors: one partition per file."""

    def __init__(self, options: Mapping[str, str], schema: StructType) -> None:
        self.files: list[str] = json.loads(options[_FILES])
        # Spark hands the options with lower-cased names; the stores' option names are upper case.
        self.storage_options = {
            key.removeprefix(_STORAGE).upper(): value for key, value in options.items() if key.startswith(_STORAGE)
        }
        self.schema = to_arrow_schema(schema, timezone="UTC")  # what Spark checks the batches against

    def partitions(self) -> Sequence[InputPartition]:
        return [LakeFile(uri) for uri in self.files]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        assert isinstance(partition, LakeFile)
        filesystem, path = Location(partition.uri, self.storage_options).filesystem()
        parquet = pq.ParquetFile(path, filesystem=filesystem)
        present = set(parquet.schema_arrow.names)
        columns = [name for name in self.schema.names if name in present]
        for batch in parquet.iter_batches(columns=columns):
            yield conform(batch, self.schema)


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """`batch` under `schema`: its columns in that order and of those types, the missing ones null
    (a file written before the column existed)."""
    names = set(batch.schema.names)
    columns = [
        batch.column(field.name).cast(field.type) if field.name in names else pa.nulls(batch.num_rows, field.type)
        for field in schema
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def lake_files(spark: SparkSession, lake: Location) -> Callable[[list[str], StructType | None], DataFrame]:
    """How `spark` reads files (URIs in `lake`'s store) through this data source, registered on
    it now unless it is already (registrations are per session): as a frame of the schema given,
    else of the first file's footer's (a rollup table's files share theirs: it is rebuilt whole
    when its columns change)."""
    # Spark looks a Python data source up in the thread's active session, not the reader's: the
    # session mounting the lake becomes the active one (as `createDataFrame` makes it).
    spark._jvm.SparkSession.setActiveSession(spark._jsparkSession)  # type: ignore[union-attr]
    try:
        spark.dataSource.register(LakeFiles)
    except AnalysisException as exc:  # mounted before in this session
        if exc.getCondition() != "DATA_SOURCE_ALREADY_EXISTS":
            raise

    def read(files: list[str], schema: StructType | None) -> DataFrame:
        if schema is None:
            filesystem, path = Location(files[0], lake.storage_options).filesystem()
            schema = spark.createDataFrame(pq.read_schema(path, filesystem=filesystem).empty_table()).schema
        reader = spark.read.format(NAME).schema(schema).option(_FILES, json.dumps(files))
        for key, value in lake.storage_options.items():
            reader = reader.option(_STORAGE + key, value)
        return reader.load()

    return read
