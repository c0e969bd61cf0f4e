"""Derived tables in the lake: the rollups, kept by the rollup job beside the raw tables.

Each rollup is a Delta table under `<lake>/rollups/<name>` whose schema the job defines (it
follows the KPI catalogue, so it is handed in rather than fixed here). Writes go through
`RollupStore`: every batch is conformed to its table's schema before anything is committed, as
the raw writer does, and the store's maintenance (merging small files, vacuuming) never takes a
file from under a reader. Readers see the tables as `Warehouse` views of the same names.

One rollup job per lake: `RollupStore.lock()` holds the lake's rollup lock while it runs. On a
local disk it is an exclusive lock file (the kernel lets go when the job dies). On object storage,
where nothing locks a file, it is a Delta table of its own, `rollups/_job_lock`, whose commits
take and give back the lock: a commit lands only as the very next version of the log (no
retry), so of two jobs that read the lock free, one commits and the other is refused. A job that
died holding it leaves it held: a job on the same host takes it over once that process is gone;
from another host it has to be given back by hand (`momento rollup --release-lock`, after making
sure that job is dead).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any, Literal

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError

from momento.lake.location import Lake, Location, lake_location

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
SMALL_FILES_MERGED_TO = 32 * 1024 * 1024
"""Maintenance merges files up to this size: below the ~100 MB files a whole rewrite of the
state writes, so it merges the runs' small files and never rewrites the state's base whole (nor
mixes the runs that a compaction's merge replaces into the base's files)."""
_CONFIGURATION = {
    # No per-file statistics in the Delta log, which erasure cannot rewrite: the state's user ids
    # would stay there (readers list files; the Parquet footers keep the ranges).
    "delta.dataSkippingNumIndexedCols": "0",
    # A checkpoint every 10 commits (not 100): every reader opening a rollup table replays the
    # commits since the last one, and a run commits to every table.
    "delta.checkpointInterval": "10",
}


class RollupLocked(RuntimeError):
    """Another rollup job holds this lake."""


_NAME = re.compile(rf"^{ROLLUP_PREFIX}[a-z0-9_]+$")
"""A rollup table's name: also a SQL identifier (a view's name), so nothing else is accepted."""


def rollup_path(root: Lake, name: str) -> Location:
    """Where the rollup table `name` (`rollup_...`) lives."""
    if not _NAME.match(name):
        raise ValueError(f"not a rollup table name: {name!r}")
    return lake_location(root) / ROLLUPS_DIR / name


def rollup_tables(root: Lake) -> dict[str, Location]:
    """The rollup tables in the lake at `root`: name -> location. One listing (on object storage,
    one request per refresh), so a directory whose table is half created or half dropped is
    listed too: its users open it only if `is_delta` (the store's `table`, the warehouse)."""
    folder = lake_location(root) / ROLLUPS_DIR
    return {path.name: path for path in folder.subdirectories() if _NAME.match(path.name)}


def _removes_rows(commit: dict[str, Any]) -> bool:
    """Whether a Delta commit (from the table's history) replaced or deleted rows."""
    operation = commit.get("operation")
    mode = (commit.get("operationParameters") or {}).get("mode")
    return operation in ("DELETE", "MERGE") or (operation == "WRITE" and mode == "Overwrite")


def parse_versions(text: str) -> dict[str, int]:
    """The run log's `table_versions` JSON as {table: version}."""
    return {str(k): int(v) for k, v in json.loads(text).items()}


def dump_versions(versions: dict[str, int]) -> str:
    """{table: version} as the run log's `table_versions` JSON."""
    return json.dumps(dict(sorted(versions.items())))


def conform(name: str, data: pa.Table, schema: pa.Schema) -> pa.Table:
    """`data` in exactly `schema` (columns by name, cast); a ValueError names what does not fit."""
    _check_columns(name, data.column_names, schema)
    return data.select(schema.names).cast(schema)


def conform_stream(name: str, data: pa.RecordBatchReader, schema: pa.Schema) -> pa.RecordBatchReader:
    """`conform` batch by batch, as the batches are read (a table too large to hold is streamed)."""
    _check_columns(name, data.schema.names, schema)
    return pa.RecordBatchReader.from_batches(schema, (b.select(schema.names).cast(schema) for b in data))


def _check_columns(name: str, columns: list[str], schema: pa.Schema) -> None:
    missing = [field.name for field in schema if field.name not in columns]
    extra = [column for column in columns if column not in schema.names]
    if missing or extra:
        raise ValueError(f"{name}: columns do not match its schema (missing {missing}, unexpected {extra})")


class RollupStore:
    """Appends, replaces and deletes rows of the lake's rollup tables (one job per lake).

    The tables stay open between calls (opening one replays its log): while the store's job holds
    the lock it is their only writer, so each write leaves the open table at its new version; on
    taking the lock it catches up with what another job may have committed meanwhile."""

    def __init__(self, root: Lake) -> None:
        self.root = lake_location(root)
        self.root.check()
        self._open: dict[str, DeltaTable] = {}
        self._current: set[str] = set()  # open tables read since the lock was last taken
        self._guard = threading.Lock()  # tables are written from several threads at once

    def table(self, name: str) -> DeltaTable | None:
        """Rollup table `name` at its newest version (None if it does not exist)."""
        with self._guard:
            table = self._open.get(name)
            if table is None:
                path = rollup_path(self.root, name)
                if not path.is_delta():
                    return None
                table = self._open[name] = path.delta()
                if table.metadata().configuration != _CONFIGURATION:
                    table.alter.set_table_properties(_CONFIGURATION)  # a table made before a setting was
            elif name not in self._current:
                table.update_incremental()
            self._current.add(name)
            return table

    def append(self, name: str, data: pa.Table, schema: pa.Schema) -> int:
        """Commit `data` to `name`, creating the table with `schema` the first time; the table's
        new version."""
        return self._write(name, conform(name, data, schema), schema, "append")

    def replace(
        self, name: str, data: pa.Table | pa.RecordBatchReader, schema: pa.Schema, where: str | None = None
    ) -> int:
        """Replace every row of `name` (or only those matching the SQL predicate `where`, which
        every row of `data` must match) by `data` in one commit (readers see old or new); the
        table's new version. A reader is written as it is read, never held whole."""
        rows = conform(name, data, schema) if isinstance(data, pa.Table) else conform_stream(name, data, schema)
        return self._write(name, rows, schema, "overwrite", where)

    def _write(
        self,
        name: str,
        data: pa.Table | pa.RecordBatchReader,
        schema: pa.Schema,
        mode: Literal["append", "overwrite"],
        where: str | None = None,
    ) -> int:
        table = self.table(name)
        if table is None:
            rollup_path(self.root, name).create_delta(schema, name=name, configuration=_CONFIGURATION)
            table = self.table(name)
            assert table is not None  # just created
        if mode == "append":  # deltalake types the two modes as separate overloads
            write_deltalake(table, data, mode="append", writer_properties=_WRITER)
        else:
            write_deltalake(table, data, mode="overwrite", predicate=where, writer_properties=_WRITER)
        return table.version()  # the write moved the open table to the version it committed

    def maintain(self, retention_hours: float) -> None:
        """Vacuum what no snapshot younger than the retention reads, then merge small files.

        In that order: readers are pinned at the versions the newest run logged, and merging
        makes a newer version; vacuumed after it with no retention (an erasure), the files of the
        pinned versions would go and the rollups could not be read until the next run."""
        for name in rollup_tables(self.root):
            table = self.table(name)
            if table is None:
                continue
            table.vacuum(retention_hours=int(retention_hours), dry_run=False, enforce_retention_duration=False)
            table.optimize.compact(target_size=SMALL_FILES_MERGED_TO, writer_properties=_WRITER)
            table.create_checkpoint()
            table.cleanup_metadata()

    def roll_back(self, pinned: dict[str, int]) -> list[str]:
        """Restore to its pinned version (the one the newest logged run left) every table that a
        run which died before logging itself replaced or deleted rows of; the names restored.

        Such a run is a compaction cut short: readers, pinned, never see it, but the next run
        would append to what it left and lose the rows it had replaced. Appends of an unlogged
        run are left (their rows stay invisible) and so are merges of small files (`maintain`)."""
        restored = []
        for name, version in sorted(pinned.items()):
            table = self.table(name)
            if table is None or table.version() <= version:
                continue
            since = [c for c in table.history(table.version() - version) if c.get("version", -1) > version]
            if any(_removes_rows(commit) for commit in since):
                table.restore(version)
                restored.append(name)
        return restored

    def drop_all(self) -> None:
        """Remove every rollup table (a rebuild starts from nothing)."""
        with self._guard:
            self._open.clear()
        for path in rollup_tables(self.root).values():
            path.remove()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the lake's rollup lock; `RollupLocked` if another job has it (see the module
        docstring for the two kinds)."""
        with self._file_lock() if self.root.is_local else self._commit_lock():
            with self._guard:
                self._current.clear()  # another job may have written since the last time
            yield

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        folder = (self.root / ROLLUPS_DIR).path
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

    @contextlib.contextmanager
    def _commit_lock(self) -> Iterator[None]:
        table = self._lock_table()
        holder, held = _lock_state(table)
        me = f"{socket.gethostname()}:{os.getpid()}"
        if held and not _gone(holder):
            raise RollupLocked(
                f"another rollup job ({holder}) holds the rollup lock of {self.root}; if it is dead, "
                "give the lock back with `momento rollup --release-lock`"
            )
        try:
            _commit_lock_state(table, me, held=True, retries=0)
        except CommitFailedError:
            raise RollupLocked(f"another rollup job took the rollup lock of {self.root} first") from None
        try:
            yield
        finally:
            _commit_lock_state(table, me, held=False)

    def release_lock(self) -> None:
        """Give back an object-storage lock left held by a job that died on another host (a lock
        file needs no such thing: it is let go with its process)."""
        if not self.root.is_local:
            _commit_lock_state(self._lock_table(), "released by hand", held=False)

    def _lock_table(self) -> DeltaTable:
        # Empty commits only; checkpoints and log cleanup keep the log short.
        configuration = {"delta.logRetentionDuration": "interval 1 hours", "delta.checkpointInterval": "100"}
        return (self.root / ROLLUPS_DIR / LOCK_TABLE).create_delta(_LOCK_SCHEMA, configuration=configuration)


LOCK_TABLE = "_job_lock"
"""The object-storage rollup lock: a Delta table whose commits (empty, with metadata) hold it."""
_LOCK_SCHEMA = pa.schema([pa.field("unused", pa.string())])


def _lock_state(table: DeltaTable) -> tuple[str, bool]:
    """(who last took or gave back the lock, whether it is held) from the newest commit."""
    commit = table.history(1)[0]
    return str(commit.get("holder", "")), commit.get("held") == "true"


def _commit_lock_state(table: DeltaTable, holder: str, *, held: bool, retries: int | None = None) -> None:
    """Commit the lock's new state on top of the version `table` shows; with `retries=0`, only as
    the very next version (`CommitFailedError` if another commit got there first)."""
    metadata = {"holder": holder, "held": "true" if held else "false"}
    properties = CommitProperties(custom_metadata=metadata, max_commit_retries=retries)
    write_deltalake(table, _LOCK_SCHEMA.empty_table(), mode="append", commit_properties=properties)


def _gone(holder: str) -> bool:
    """Whether the job holding the lock ran on this host and its process is gone."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
