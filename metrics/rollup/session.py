"""The engine seam of the rollups: where their SQL runs.

A fold (`metrics.rollup.fold`) is a sequence of statements over named relations: relations made
from SQL (`create`), relations made from Arrow rows (`register`), and results read back as Arrow
(`arrow`). `SqlSession` is that much of an engine; `DuckSession` is DuckDB's (a cursor of the
warehouse, so the lake's views are there), `metrics.engines.spark` is Spark's. Every SQL text
handed to a session is DuckDB SQL written once (`metrics.rollup.definitions`); an engine that
speaks another dialect transpiles it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol

import duckdb
import pyarrow as pa

from momento.lake.warehouse import Warehouse, used_params


class SqlSession(Protocol):
    """Named relations and queries over them, on one engine (see the module docstring)."""

    def create(self, name: str, sql: str, params: Mapping[str, Any] | None = None, *, view: bool = False) -> None:
        """Make relation `name` the rows of `sql` (DuckDB SQL, `$name` parameters bound from
        `params`): computed now, or, with `view`, on every use."""

    def register(self, name: str, rows: pa.Table) -> None:
        """Make relation `name` the rows of `rows`."""

    def arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """The rows of `sql` (DuckDB SQL, parameters bound from `params`)."""


_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def relation_name(name: str) -> str:
    """`name` if it is a plain lower-case identifier (the fold's relation names are); ValueError otherwise."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a relation name: {name!r}")
    return name


class DuckSession:
    """A `SqlSession` on a DuckDB cursor (temporary relations are private to the cursor)."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection) -> None:
        self.cursor = cursor

    def create(self, name: str, sql: str, params: Mapping[str, Any] | None = None, *, view: bool = False) -> None:
        bound = used_params(sql, params or {})
        kind = "VIEW" if view else "TABLE"
        self.cursor.execute(f"CREATE OR REPLACE TEMP {kind} {relation_name(name)} AS {sql}", bound or None)

    def register(self, name: str, rows: pa.Table) -> None:
        self.cursor.register("registered_rows", rows)
        try:
            self.cursor.execute(f"CREATE OR REPLACE TEMP TABLE {relation_name(name)} AS SELECT * FROM registered_rows")
        finally:
            self.cursor.unregister("registered_rows")

    def arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        return self.cursor.sql(sql, params=used_params(sql, params or {}) or None).arrow().read_all()


Engine = Callable[[Warehouse], AbstractContextManager[SqlSession]]
"""Where a rollup job folds: (the warehouse pinned to the snapshot it folds) -> a session that
sees the same tables under the same names, for the duration of the fold."""


@contextlib.contextmanager
def duckdb_engine(wh: Warehouse) -> Iterator[SqlSession]:
    """The embedded engine: a private cursor on the warehouse's own DuckDB."""
    cursor = wh.cursor()
    try:
        yield DuckSession(cursor)
    finally:
        cursor.close()
