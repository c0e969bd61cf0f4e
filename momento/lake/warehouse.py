"""The one door to the warehouse for readers: an in-process DuckDB over the lake's snapshot.

Each table of the lake becomes a DuckDB view over the Parquet files of its current Delta
snapshot; the rollup tables (`momento.lake.rollups`) too, pinned at the versions the newest
logged rollup run left. `refresh()` re-reads only the Delta logs and re-creates a view only when
its table has a new version, so it is cheap to call before every query. A reader never writes.
The rollups' run log is the exception: a small table every rollup read filters by (which runs
committed), made of a small file per run, so it is copied into memory when it changes rather than
read from its files by every query.
A column added to a table's schema after some of its files were written (Delta's schema
evolution) reads as null in those files' rows, and as a null column of its type in a lake
written before it existed: every view has the columns of `momento.lake.schema.TABLES`.
Queries go through `query()` (polars out, named parameters bound — unused ones dropped —
never text-built) or through SQLAlchemy connections from `engine()` that see the same views.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy
from deltalake import DeltaTable
from duckdb_engine import ConnectionWrapper

from momento.lake.location import Lake, Location, lake_location
from momento.lake.rollups import ROLLUP_RUNS, TABLE_VERSIONS, parse_versions, rollup_tables
from momento.lake.schema import TABLES, empty_table
from momento.lake.writer import table_path

JOIN_FILTER_KEYS = 10_000
"""Up to this many distinct keys, a hash join hands its keys to the scan of the other side as a
list (DuckDB's default: 50), so a lookup of the few hundred users a live fold touches reads only
the row groups whose range of users holds one of them (`momento.lake.rollups`); past it the scan
gets the keys' range, which for random pseudonyms is every row group."""
_DUCKDB_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": "false",
    "autoload_known_extensions": "false",
    "dynamic_or_filter_threshold": JOIN_FILTER_KEYS,
}


def used_params(sql: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The named parameters `sql` refers to. DuckDB refuses unused ones, and dropping them here
    lets every query take `Filters.params()` whole; a misspelt name still fails, as unbound."""
    return {key: value for key, value in params.items() if re.search(rf"\${re.escape(key)}\b", sql)}


def _mount(con: duckdb.DuckDBPyConnection, lake: Location) -> None:
    """Let DuckDB read the files of a lake on object storage. Its own S3/GCS/Azure readers are
    extensions it downloads from its own site, which a deployment may not reach; pyarrow's
    filesystems ship in the wheel, so DuckDB reads through them (as an fsspec filesystem, one
    per database): the same `read_parquet` views, projections and filters pushed down alike."""
    if lake.is_local:
        return
    from fsspec.implementations.arrow import ArrowFSWrapper

    filesystem, _ = lake.filesystem()
    wrapper = type(f"{lake.scheme}_lake_files", (ArrowFSWrapper,), {"protocol": lake.scheme})
    con.register_filesystem(wrapper(filesystem))


def _read(files: list[str]) -> str:
    """`read_parquet` of `files`. DDL cannot take bound parameters; the paths come from the
    Delta log, not from a user."""
    listed = ", ".join("'" + path.replace("'", "''") + "'" for path in files)
    return f"read_parquet([{listed}])"


COPIED = frozenset({ROLLUP_RUNS})
"""Tables copied into the warehouse at each new version instead of viewed: small, and read by
nearly every rollup query (a view over 41 files of the run log took 4.4 ms a read, the copy
0.3 ms; a live fold reads it nine times)."""
_SQL_KIND = {"VIEW": "VIEW", "COPY": "TABLE", "EMPTY": "TABLE"}
"""What answers for a name (`Warehouse._kinds`) -> the kind of relation DuckDB holds for it."""

LOAD_THREADS = 8
"""Delta tables a refresh opens or updates at once (`Warehouse._load`)."""


class WarehouseError(RuntimeError):
    """The lake cannot be read (missing, corrupt, or a file vanished): says which and why."""


class Warehouse:
    """Read-only DuckDB views over the lake's current snapshot (see the module docstring)."""

    def __init__(
        self,
        lake: Lake,
        *,
        min_refresh_seconds: float = 1.0,
        memory_limit_mb: int | None = None,
        cache_file_data: bool = True,
        threads: int | None = None,
    ) -> None:
        """`memory_limit_mb` bounds DuckDB's memory (its buffers, hash tables and cache of file
        data; None: DuckDB's default, 80% of the machine's): past it a query spills to a
        temporary directory of its own, removed on `close`. `cache_file_data`: DuckDB keeps the
        Parquet data it read in memory for the next queries (up to that bound). `threads`: the
        most a query uses (None: DuckDB's default, one per core)."""
        self.lake = lake_location(lake)
        self.lake.check()
        self.min_refresh_seconds = min_refresh_seconds
        self._spill: str | None = None
        config = dict(_DUCKDB_CONFIG, enable_external_file_cache=cache_file_data)
        if threads is not None:
            config["threads"] = threads
        if memory_limit_mb is not None:
            self._spill = tempfile.mkdtemp(prefix="momento-duckdb-")
            config |= {"memory_limit": f"{int(memory_limit_mb)}MB", "temp_directory": self._spill}
        self._con = duckdb.connect(":memory:", config=config)
        _mount(self._con, self.lake)
        self._con.execute("SET TimeZone = 'UTC'")  # storage is UTC; display converts
        # A Delta data file never changes once written: its Parquet footer is read once, not by
        # every query that lists it (a rollup table holds a small file per run between compactions).
        self._con.execute("SET parquet_metadata_cache = true")
        self._versions: dict[str, int | None] = {}
        self._kinds: dict[str, str] = {}  # what answers for each name: a VIEW, a COPY or an EMPTY table
        # Tables whose Delta log cannot be read: queries touching them raise WarehouseError.
        self.errors: dict[str, str] = {}
        self._tables: dict[str, DeltaTable] = {}
        self._paths: dict[str, Location] = {}
        self._files: dict[str, list[str]] = {}  # table -> the files its view reads
        self._file_columns: dict[str, dict[str, frozenset[str]]] = {}  # table -> file -> columns (a file never changes)
        self._types: dict[str, dict[str, str]] = {}  # table -> column -> DuckDB type
        self._refreshed_at = 0.0
        self._lock = threading.Lock()
        self._held = 0  # readers inside `held()`: the snapshot stays
        self._engine: sqlalchemy.Engine | None = None
        self.refresh(force=True)

    # -- snapshot ---------------------------------------------------------------------------

    def refresh(self, force: bool = False) -> dict[str, int | None]:
        """Point each view at its table's newest snapshot; return the table versions.

        Never raises: a table whose log cannot be read is recorded in `errors` and shown empty,
        so the other tables keep answering."""
        with self._lock:
            if not force and (self._held or time.monotonic() - self._refreshed_at < self.min_refresh_seconds):
                return dict(self._versions)
            # Order matters to readers that follow the lake: the rollups' run log first, then the
            # rollups at the versions its newest run left (one snapshot across them), then the
            # raw tables, so the raw rows loaded after that run's watermark are all visible.
            try:
                rollups = rollup_tables(self.lake)
            except OSError:  # object storage out of reach: each table's own read says why
                rollups = {name: path for name, path in self._paths.items() if name not in TABLES}
            if ROLLUP_RUNS in rollups:
                self._refresh_table(ROLLUP_RUNS, rollups[ROLLUP_RUNS], None)
            pins = self._pins()
            shown = {name: path for name, path in rollups.items() if name in pins}
            raw = {name: table_path(self.lake, name) for name in TABLES}
            loaded = self._load([(name, path, pins[name]) for name, path in shown.items()] + list(raw.items()))
            for name, path in shown.items():
                self._refresh_table(name, path, None, pins[name], loaded=name in loaded)
            for name in set(self._paths) - set(shown) - {ROLLUP_RUNS} - set(TABLES):
                self._forget(name)
            for name, path in raw.items():
                self._refresh_table(name, path, empty_table(name), loaded=name in loaded)
            self._refreshed_at = time.monotonic()
            return dict(self._versions)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Keep the views on their snapshot for the block: refreshes that are not forced leave
        them as they are. For a reader that must see one snapshot across many queries while other
        threads query and refresh (the cockpit's fold of the live tail)."""
        with self._lock:
            self._held += 1
        try:
            yield
        finally:
            with self._lock:
                self._held -= 1

    def _load(self, tables: list[tuple[str, Location] | tuple[str, Location, int]]) -> set[str]:
        """`_open` each table of `tables` (name, path[, pinned version]), several at once: each
        waits on storage and replays its log outside the interpreter's lock, so a warehouse over
        a lake of many tables opens and refreshes in a fraction of the time one after the other
        takes. The names done; a table that failed is left to `_refresh_table`, which says why."""
        with ThreadPoolExecutor(LOAD_THREADS, thread_name_prefix="momento-delta-log") as pool:
            futures = {table[0]: pool.submit(self._open, *table) for table in tables}
        return {name for name, future in futures.items() if future.exception() is None}

    def _open(self, name: str, path: Location, pin: int | None = None) -> DeltaTable | None:
        """The Delta table of view `name`, opened or moved to its newest (or pinned) version;
        None while `path` holds no table."""
        table = self._tables.get(name)
        if table is None:
            if not path.is_delta():
                return None
            table = self._tables[name] = path.delta(version=pin)
        elif pin is not None:
            if pin != table.version():
                table.load_as_version(pin)
        else:
            table.update_incremental()
        return table

    def _refresh_table(
        self, name: str, path: Location, empty: pa.Table | None, pin: int | None = None, *, loaded: bool = False
    ) -> None:
        """Point view `name` at the Delta table at `path` (at version `pin`, else the newest);
        `empty` answers while it has no files (None: no view at all, for derived tables, which
        readers check with `has`). `loaded`: `_load` has just opened or moved it."""
        self._paths[name] = path
        try:
            table = self._tables.get(name) if loaded else self._open(name, path, pin)
            if table is None:
                self._show_empty(name, empty)
                return
            version = table.version()
            if self._versions.get(name) == version:
                return
            files = table.file_uris()
        except Exception as exc:  # deltalake raises several types for a damaged log
            self._tables.pop(name, None)
            self._show_empty(name, empty)
            self.errors[name] = f"table {name!r} in {self.lake} cannot be read: {exc}"
            return
        if not files:
            self._show_empty(name, empty)
            return
        cursor = self._con.cursor()
        kind = "COPY" if name in COPIED else "VIEW"
        if self._kinds.get(name) != kind:
            self._drop(cursor, name)
        try:
            try:
                select = self._select(cursor, name, files)
            except duckdb.IOException:  # a file vacuumed since the listing (erasure): read the snapshot after it
                table.update_incremental()
                version, files = table.version(), table.file_uris()
                select = self._select(cursor, name, files)
            cursor.execute(f"CREATE OR REPLACE {_SQL_KIND[kind]} {name} AS {select}")
        except duckdb.Error as exc:  # files' footers are read here
            self._show_empty(name, empty)
            self.errors[name] = f"table {name!r} in {self.lake} cannot be read: unreadable file: {exc}"
            return
        self._kinds[name] = kind
        self._files[name] = files
        self._versions[name] = version
        self.errors.pop(name, None)

    def _select(self, cursor: duckdb.DuckDBPyConnection, name: str, files: list[str]) -> str:
        """The view's query over `files`. Files with every column of the table are read as they
        are; files written before a column existed are read per set of columns they hold, the
        missing ones as typed nulls, and the groups put together in the table's column order.
        A file's columns are read once (its footer), when it first appears. A rollup table is
        rebuilt whole when its columns change, so its files are read as they are."""
        if name not in TABLES:
            return f"SELECT * FROM {_read(files)}"
        known, columns_of = self._file_columns.get(name, {}), {}
        groups: dict[frozenset[str], list[str]] = {}
        for path in files:
            columns = columns_of[path] = known.get(path) or frozenset(
                row[0] for row in cursor.execute(f"DESCRIBE SELECT * FROM {_read([path])}").fetchall()
            )
            groups.setdefault(columns, []).append(path)
        self._file_columns[name] = columns_of
        names = TABLES[name].names
        if len(groups) == 1 and set(names) <= next(iter(groups)):
            return f"SELECT * FROM {_read(files)}"
        types = self._duckdb_types(name)
        return " UNION ALL ".join(
            "SELECT "
            + ", ".join(f'"{c}"' if c in columns else f'CAST(NULL AS {types[c]}) AS "{c}"' for c in names)
            + f" FROM {_read(paths)}"
            for columns, paths in groups.items()
        )

    def _duckdb_types(self, name: str) -> dict[str, str]:
        """Each column's DuckDB type, as DuckDB reads the table's Arrow schema."""
        if name not in self._types:
            relation = self._con.cursor().from_arrow(empty_table(name))
            self._types[name] = dict(zip(relation.columns, map(str, relation.types), strict=True))
        return self._types[name]

    def _pins(self) -> dict[str, int]:
        """The rollup tables' versions the newest logged run left (read through this snapshot's
        run log, so the watermark readers see and the rollups they read always match)."""
        if self._kinds.get(ROLLUP_RUNS) in (None, "EMPTY"):
            return {}
        cursor = self._con.cursor()
        try:
            row = cursor.sql(f"SELECT {TABLE_VERSIONS} FROM {ROLLUP_RUNS} ORDER BY run_id DESC LIMIT 1").fetchall()
        except duckdb.Error:
            return {}
        finally:
            cursor.close()
        return parse_versions(row[0][0]) if row else {}

    def _show_empty(self, name: str, empty: pa.Table | None) -> None:
        self._versions[name] = None
        self._files.pop(name, None)
        self.errors.pop(name, None)
        if empty is None:
            self._drop(self._con.cursor(), name)
            return
        if self._kinds.get(name) == "EMPTY":
            return
        cursor = self._con.cursor()
        self._drop(cursor, name)
        cursor.from_arrow(empty).create(name)
        self._kinds[name] = "EMPTY"

    def _forget(self, name: str) -> None:
        """A derived table that is gone (its directory removed): no view, no error."""
        self._drop(self._con.cursor(), name)
        for registry in (self._paths, self._tables, self._versions, self.errors, self._files):
            registry.pop(name, None)

    def has(self, name: str) -> bool:
        """Whether a view answers for `name` (derived tables exist only once written)."""
        return name in self._kinds

    def _drop(self, cursor: duckdb.DuckDBPyConnection, name: str) -> None:
        """Drop the view, copy or empty stand-in table that currently answers for `name`."""
        kind = self._kinds.pop(name, None)
        if kind is not None:
            cursor.execute(f"DROP {_SQL_KIND[kind]} IF EXISTS {name}")

    def snapshot_files(self) -> dict[str, list[str]]:
        """Every table a view answers for -> the Parquet files of the snapshot it shows ([] for a
        raw table with no file yet): what another engine reads to see the same rows."""
        with self._lock:
            return {name: list(self._files.get(name, [])) for name in self._kinds}

    def newest_bound(self, table: str, column: str) -> datetime | None:
        """A lower bound of the newest `column` value in the snapshot of `table`, from the Delta
        log's per-file statistics (the raw tables keep them for their time columns): a query for
        the newest rows that also filters on it reads only the row groups that can hold them,
        whatever the history. 1 ms under the largest file maximum (the log keeps times to the
        millisecond); None when a file has no such statistic or there is no file."""
        with self._lock:
            delta = self._tables.get(table)
            if delta is None:
                return None
            actions = pa.table(delta.get_add_actions(flatten=True))
        name = f"max.{column}"
        if not actions.num_rows or name not in actions.column_names or actions[name].null_count:
            return None
        newest = pc.max(actions[name]).as_py()
        return newest - timedelta(milliseconds=1) if isinstance(newest, datetime) else None

    @property
    def readable(self) -> frozenset[str]:
        """The tables a view answers for now (derived tables only once written)."""
        return frozenset(name for name in self._versions if name in self._kinds)

    @property
    def versions(self) -> dict[str, int | None]:
        """The Delta version each view shows (None: the table does not exist yet)."""
        return dict(self._versions)

    # -- querying ---------------------------------------------------------------------------

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor on the shared in-memory database; one per thread, never shared."""
        return self._con.cursor()

    def query(self, sql: str, params: Mapping[str, Any] | Sequence[Any] | None = None) -> pl.DataFrame:
        """Run `sql` with bound `params` over a fresh snapshot and return a polars frame.

        A file that vanished under an old snapshot (vacuum after erasure) triggers one forced
        refresh and a retry; anything else unreadable raises `WarehouseError`."""
        self.refresh()
        self._check_readable(sql)
        try:
            return self._run(sql, params)
        except duckdb.IOException:
            self.refresh(force=True)
            try:
                return self._run(sql, params)
            except duckdb.IOException as exc:
                raise WarehouseError(f"the lake at {self.lake} cannot be read: unreadable file: {exc}") from exc
        except duckdb.InvalidInputException as exc:
            raise WarehouseError(f"the lake at {self.lake} cannot be read: unreadable file: {exc}") from exc

    def require(self, names: Sequence[str]) -> None:
        """Raise `WarehouseError` if any of the tables `names` cannot be read (for work that goes
        through cursors rather than `query`)."""
        broken = [message for name, message in sorted(self.errors.items()) if name in names]
        if broken:
            raise WarehouseError("; ".join(broken))

    def _check_readable(self, sql: str) -> None:
        """Refuse a query that reads a table recorded as unreadable (it would see no rows).

        A textual check, not DuckDB's binder: a parameterised statement cannot be bound alone."""
        broken = [
            message
            for name, message in sorted(self.errors.items())
            if re.search(rf"\b(?:FROM|JOIN)\s+{name}\b", sql, re.IGNORECASE)
        ]
        if broken:
            raise WarehouseError("; ".join(broken))

    def _run(self, sql: str, params: Mapping[str, Any] | Sequence[Any] | None) -> pl.DataFrame:
        if isinstance(params, Mapping):
            params = used_params(sql, params)
        cursor = self._con.cursor()
        try:
            frame: pl.DataFrame = cursor.sql(sql, params=params).pl()
            return frame
        finally:
            cursor.close()

    def scalar(self, sql: str, params: Mapping[str, Any] | Sequence[Any] | None = None) -> Any:
        """The single value `sql` returns (None for no row)."""
        frame = self.query(sql, params)
        return frame.item(0, 0) if frame.height else None

    def engine(self) -> sqlalchemy.Engine:
        """A SQLAlchemy engine whose connections are cursors on this warehouse (same views)."""
        if self._engine is None:
            self._engine = sqlalchemy.create_engine(
                "duckdb:///:memory:",
                creator=lambda: ConnectionWrapper(self.cursor()),
                poolclass=sqlalchemy.pool.NullPool,
            )
        return self._engine

    def close(self) -> None:
        """Release the DuckDB database."""
        if self._engine is not None:
            self._engine.dispose()
        self._con.close()
        if self._spill is not None:
            shutil.rmtree(self._spill, ignore_errors=True)
