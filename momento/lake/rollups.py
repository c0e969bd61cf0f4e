"""Derived tables in the lake: the rollups, kept by the rollup job beside the raw tables.

Each rollup is a Delta table under `<lake>/rollups/<name>` whose schema the job defines (it
follows the KPI catalogue, so it is handed in rather than fixed here). Writes go through
`RollupStore`: every batch is conformed to its table's schema before anything is committed, as
the raw writer does, and the store's maintenance (merging small files, vacuuming) never takes a
file from under a reader. Readers see the tables as `Warehouse` views of the same names.

One rollup job per lake: `RollupStore.lock()` holds an exclusive lock file while it runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pyarrow as pa
from deltalake import DeltaTable, WriterProperties, write_deltalake

ROLLUPS_DIR = "rollups"
ROLLUP_PREFIX = "rollup_"
ROLLUP_RUNS = "rollup_runs"
"""The run log: a rollup row is visible to readers only once its run is logged here."""
TABLE_VERSIONS = "table_versions"
"""The run log's column holding, as JSON, the Delta version of every rollup table the run left:
readers pin the rollups at the newest run's versions, a snapshot consistent across tables."""


ROW_GROUP_ROWS = 16_384
"""Rows per Parquet row group. The job writes per-user state in user order, so each row group
spans a narrow range of users and a lookup of a few users (a fold of the live tail) reads the
few row groups whose range holds them, not the whole table."""
_WRITER = WriterProperties(max_row_group_size=ROW_GROUP_ROWS)


class RollupLocked(RuntimeError):
    """Another rollup job holds this lake."""


_NAME = re.compile(rf"^{ROLLUP_PREFIX}[a-z0-9_]+$")
"""A rollup table's name: also a SQL identifier (a view's name), so nothing else is accepted."""


def rollup_path(root: Path, name: str) -> Path:
    """Where the rollup table `name` (`rollup_...`) lives."""
    if not _NAME.match(name):
        raise ValueError(f"not a rollup table name: {name!r}")
    return Path(root) / ROLLUPS_DIR / name


def rollup_tables(root: Path) -> dict[str, Path]:
    """The rollup tables that exist in the lake at `root`: name -> path."""
    folder = Path(root) / ROLLUPS_DIR
    if not folder.is_dir():
        return {}
    return {
        path.name: path
        for path in sorted(folder.iterdir())
        if _NAME.match(path.name) and (path / "_delta_log").is_dir()
    }


def parse_versions(text: str) -> dict[str, int]:
    """The run log's `table_versions` JSON as {table: version}."""
    return {str(k): int(v) for k, v in json.loads(text).items()}


def dump_versions(versions: dict[str, int]) -> str:
    """{table: version} as the run log's `table_versions` JSON."""
    return json.dumps(dict(sorted(versions.items())))


def conform(name: str, data: pa.Table, schema: pa.Schema) -> pa.Table:
    """`data` in exactly `schema` (columns by name, cast); a ValueError names what does not fit."""
    missing = [field.name for field in schema if field.name not in data.column_names]
    extra = [column for column in data.column_names if column not in schema.names]
    if missing or extra:
        raise ValueError(f"{name}: columns do not match its schema (missing {missing}, unexpected {extra})")
    return data.select(schema.names).cast(schema)


class RollupStore:
    """Appends, replaces and deletes rows of the lake's rollup tables (one job per lake)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def table(self, name: str) -> DeltaTable | None:
        path = rollup_path(self.root, name)
        return DeltaTable(str(path)) if DeltaTable.is_deltatable(str(path)) else None

    def append(self, name: str, data: pa.Table, schema: pa.Schema) -> None:
        """Commit `data` to `name`, creating the table with `schema` the first time."""
        self._write(name, conform(name, data, schema), schema, "append")

    def replace(self, name: str, data: pa.Table, schema: pa.Schema) -> None:
        """Replace every row of `name` by `data` in one commit (readers see old or new)."""
        self._write(name, conform(name, data, schema), schema, "overwrite")

    def _write(self, name: str, data: pa.Table, schema: pa.Schema, mode: Literal["append", "overwrite"]) -> None:
        path = rollup_path(self.root, name)
        path.mkdir(parents=True, exist_ok=True)
        if self.table(name) is None:
            # No per-file statistics in the Delta log, which erasure cannot rewrite: the state's
            # user ids would stay there (readers list files; the Parquet footers keep the ranges).
            DeltaTable.create(
                str(path), schema, mode="ignore", name=name, configuration={"delta.dataSkippingNumIndexedCols": "0"}
            )
        if mode == "append":  # deltalake types the two modes as separate overloads
            write_deltalake(str(path), data, mode="append", writer_properties=_WRITER)
        else:
            write_deltalake(str(path), data, mode="overwrite", writer_properties=_WRITER)

    def maintain(self, retention_hours: float) -> None:
        """Merge small files and vacuum what no snapshot younger than the retention reads."""
        for name in rollup_tables(self.root):
            table = self.table(name)
            if table is None:
                continue
            table.optimize.compact(target_size=128 * 1024 * 1024, writer_properties=_WRITER)
            table.create_checkpoint()
            table.cleanup_metadata()
            table.vacuum(retention_hours=int(retention_hours), dry_run=False, enforce_retention_duration=False)

    def drop_all(self) -> None:
        """Remove every rollup table (a rebuild starts from nothing)."""
        for path in rollup_tables(self.root).values():
            shutil.rmtree(path)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the lake's rollup lock; `RollupLocked` if another job has it."""
        folder = self.root / ROLLUPS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / "_job.lock", "a+")  # noqa: SIM115 - held for the whole block
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RollupLocked(f"another rollup job is running on {self.root}") from None
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            yield
        finally:
            handle.close()
