"""The rollups' state: per-user facts that merge exactly, whatever order rows arrive in.

A state table holds rows appended by rollup runs; what a key *is* comes from merging all its
committed rows, so a run never rewrites a row, a late or out-of-order event just adds one, and
a crashed run's rows (its run not in the run log) are ignored until maintenance drops them:

- additive tables (`Additive`): sums, minima and maxima per key (an hour of a user's events);
- pick tables (`Pick`): one row per key, the first by an ordering (a unit's entry: the first
  exposure, ties broken by id) or the newest run's (a value recomputed whole, like a partial hour).

`merged_sql` is the one SQL that turns a table's rows into its state, used by the job, the
cockpit's live tail and the from-scratch path alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import polars as pl
import pyarrow as pa

from momento.lake.rollups import ROLLUP_RUNS, TABLE_VERSIONS
from momento.lake.schema import UTC_TS

RUN_ID = "run_id"
Merge = Literal["sum", "min", "max"]

RUNS_SCHEMA = pa.schema(
    [
        pa.field(RUN_ID, pa.int64(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # rebuild | fold | erase | compact | merge
        pa.field("definitions", pa.string(), nullable=False),  # hash of every rollup SQL text
        pa.field("started_at", UTC_TS, nullable=False),
        pa.field("finished_at", UTC_TS, nullable=False),
        pa.field("events_loaded_to", UTC_TS),  # the watermark per raw table: loaded_at folded up to
        pa.field("decisions_loaded_to", UTC_TS),
        pa.field("exposures_loaded_to", UTC_TS),
        pa.field("erasures_loaded_to", UTC_TS),
        pa.field("rows_folded", pa.int64(), nullable=False),
        pa.field("events_max_ts", UTC_TS),  # the newest event time folded: the analyses' as-of
        pa.field(TABLE_VERSIONS, pa.string(), nullable=False),  # JSON {table: Delta version}: the snapshot
    ]
)
RawTable = Literal["events", "decisions", "exposures", "erasures"]
WATERMARKED: tuple[RawTable, ...] = ("events", "decisions", "exposures", "erasures")
"""The raw tables whose rows the rollups fold; `<table>_loaded_to` is each one's watermark."""

COMMITTED = f"{RUN_ID} IN (SELECT {RUN_ID} FROM {ROLLUP_RUNS})"
"""Rows of committed runs only (a crashed run's rows stay invisible)."""


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    merge: Merge | None = None
    """How rows of one key combine (additive tables); None for keys and picked values."""


@dataclass(frozen=True)
class Additive:
    """A table whose rows per key combine by sum / min / max."""

    name: str
    keys: tuple[Column, ...]
    values: tuple[Column, ...]

    def merged_sql(self, rows: str) -> str:
        keys = ", ".join(c.name for c in self.keys)
        values = ", ".join(f"CAST({c.merge}({c.name}) AS {sql_type(c.type)}) AS {c.name}" for c in self.values)
        return f"SELECT {keys}, {values} FROM {rows} GROUP BY {keys}"


@dataclass(frozen=True)
class Pick:
    """A table holding, per key, the row that comes first by `order` (each `(column, DESC?)`)."""

    name: str
    keys: tuple[Column, ...]
    values: tuple[Column, ...]
    order: tuple[tuple[str, bool], ...]

    def merged_sql(self, rows: str) -> str:
        keys = ", ".join(c.name for c in self.keys)
        order = ", ".join(f"{name} {'DESC' if descending else 'ASC'}" for name, descending in self.order)
        columns = ", ".join(c.name for c in (*self.keys, *self.values))
        return (
            f"SELECT {columns} FROM (SELECT {columns}, row_number() OVER (PARTITION BY {keys} ORDER BY {order}) "
            f"AS pick_rank FROM {rows}) WHERE pick_rank = 1"
        )


StateTable = Additive | Pick


def schema(table: StateTable | Aggregate) -> pa.Schema:
    """The Delta schema of a rollup table: its columns and the run that wrote each row."""
    columns = (*table.keys, *table.values)
    return pa.schema([pa.field(c.name, c.type) for c in columns] + [pa.field(RUN_ID, pa.int64(), nullable=False)])


@dataclass(frozen=True)
class Aggregate:
    """What pages read: sufficient statistics per bucket, sums over the rows of committed runs."""

    name: str
    keys: tuple[Column, ...]
    values: tuple[Column, ...]

    def merged_sql(self, rows: str) -> str:
        keys = ", ".join(c.name for c in self.keys)
        values = ", ".join(f"CAST(sum({c.name}) AS {sql_type(c.type)}) AS {c.name}" for c in self.values)
        return f"SELECT {keys}, {values} FROM {rows} GROUP BY {keys}"

    def added(self, parts: Sequence[pl.DataFrame]) -> pl.DataFrame:
        """The rows of `parts` (frames of this table's keys and values; at least one) added up per
        bucket: what `merged_sql` does in SQL, for rows already read."""
        keys = [c.name for c in self.keys]
        both = pl.concat([p.cast(parts[0].schema) for p in parts])
        return both if len(parts) == 1 else both.group_by(keys).agg(pl.exclude(keys).sum())


_SQL_TYPES = {
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.float64(): "DOUBLE",
    pa.string(): "VARCHAR",
    UTC_TS: "TIMESTAMPTZ",
}


def sql_type(type_: pa.DataType) -> str:
    """The SQL type of a rollup column's Arrow type."""
    return _SQL_TYPES[type_]


def key(name: str, type_: pa.DataType) -> Column:
    return Column(name, type_)


def summed(names: Sequence[str], type_: pa.DataType = pa.float64()) -> tuple[Column, ...]:
    return tuple(Column(name, type_, "sum") for name in names)
