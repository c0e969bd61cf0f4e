"""Folding raw rows into the rollups: one procedure for the job, the cockpit's tail and a rebuild.

`fold` takes a batch of raw rows (the relations `in_events`, `in_exposures`, `in_decisions`) and
the users to forget, and works out, for the users the batch touches:
- their state before (`old_*`: the committed rows of the state tables that share their
  `defs.FOLD_KEYS` with the batch's rows or belong to a forgotten user, merged: the other rows'
  contributions cancel out) and after
  (`cur_*`: before plus the batch's facts, the first hour of every unit whose start moved read
  from raw rows, the forgotten users left out);
- the increments of every aggregate: contributions after minus contributions before.

The job appends the batch's facts and the increments under a new run; the cockpit adds the
increments of the rows loaded after the last run to what the runs committed; a rebuild folds
every raw row with no state before. So the same definitions (`metrics.rollup.definitions`)
give the same numbers on every path.

A rebuild (nothing before, nobody to forget) skips what would be copies: the state after is
the batch's facts (views over them, not merged again), and the first hours are read from the
batch's own events, which hold every event of its users (the whole snapshot, or the users of
one partition of it: `metrics.rollup.job`).

Everything runs on one `SqlSession` (`metrics.rollup.session`): a DuckDB cursor, whose temporary
tables are private to it so concurrent folds of several cockpit sessions never see each other's,
or a Spark session (`metrics.engines.spark`) that runs the same texts transpiled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import pyarrow as pa

from metrics.rollup import definitions as defs
from metrics.rollup.session import SqlSession
from metrics.rollup.state import COMMITTED, RUN_ID, Aggregate, StateTable, schema
from momento.lake.warehouse import used_params

_FAR_PAST = datetime(1970, 1, 1, tzinfo=UTC)
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Batch:
    """Raw rows to fold: a SELECT each (over the warehouse's views, with bound parameters in
    `params`), the users to forget (erased), and the load time no raw read may pass."""

    events: str
    exposures: str
    decisions: str
    params: dict[str, object]
    upper: datetime
    erased: tuple[str, ...] = ()


@dataclass(frozen=True)
class Folded:
    """What a fold produced: rows to append to each state table, and the increments of each
    aggregate table (both without `run_id`)."""

    state: dict[str, pa.Table]
    increments: dict[str, pa.Table]
    touched_users: int


def _columns(table: StateTable | Aggregate) -> list[str]:
    return [c.name for c in (*table.keys, *table.values)]


def _empty(session: SqlSession, name: str, table: StateTable) -> None:
    session.register(name, pa.schema([f for f in schema(table) if f.name != RUN_ID]).empty_table())


def fold(
    session: SqlSession, batch: Batch, pre_days: int, *, prior: bool, existing: frozenset[str], keep_state: bool = True
) -> Folded:
    """Fold `batch` into the rollups' state (see the module docstring). `prior`: read the
    committed state of the touched users (False for a rebuild: nothing came before);
    `existing`: the rollup tables present in the lake (views `rollup_<name>`); `keep_state`:
    return the state rows to append (a reader that only wants the increments says False)."""
    for name, sql in (
        ("in_events", batch.events),
        ("in_exposures", batch.exposures),
        ("in_decisions", batch.decisions),
    ):
        # A whole table is a view (each use reads only the columns it needs); a tail, which
        # takes bound parameters, is copied (a view cannot keep them; the tail is small).
        session.create(name, sql, batch.params, view=not used_params(sql, batch.params))
    for table in defs.FACTS:
        session.create(f"batch_{table.name}", defs.facts_sql(table.name))
    session.register("erased", pa.table({"user_id": pa.array(sorted(set(batch.erased)), pa.string())}))
    touched = " UNION ".join(f"SELECT user_id FROM batch_{t.name}" for t in defs.FACTS)
    session.create("touched", f"{touched} UNION SELECT user_id FROM erased")
    # the batch's values of the lookup keys finer than the user (`_rows_before` reads by them)
    finer = dict.fromkeys(k for k in defs.FOLD_KEYS.values() if len(k) > 1) if prior else {}
    for shared in finer:
        columns = ", ".join(shared)
        sharing = [f"SELECT {columns} FROM batch_{t.name}" for t in defs.FACTS if defs.FOLD_KEYS[t.name] == shared]
        session.create(_touched(shared), " UNION ".join(sharing))

    for table in defs.STATE:
        rollup = defs.TABLE_NAMES(table.name)
        if prior and rollup in existing:
            session.create(f"near_{table.name}", _rows_of_users(table))
            session.create(f"old_{table.name}", table.merged_sql(_rows_before(table, bool(batch.erased))))
        else:
            _empty(session, f"old_{table.name}", table)
    rebuild = not prior and not batch.erased
    for table in defs.FACTS:
        columns = ", ".join(_columns(table))
        if rebuild:  # nothing before: the state after is the batch's facts, merged already
            session.create(f"cur_{table.name}", f"SELECT {columns} FROM batch_{table.name}", view=True)
            continue
        union = (
            f"(SELECT {columns} FROM old_{table.name} UNION ALL SELECT {columns} FROM batch_{table.name}) "
            "WHERE user_id NOT IN (SELECT user_id FROM erased)"
        )
        session.create(f"cur_{table.name}", table.merged_sql(f"(SELECT * FROM {union})"))
    _partials(session, batch, "in_events" if rebuild else "events")

    for table in defs.STATE:
        before = f" UNION ALL SELECT -1 AS side, * FROM old_{table.name}" if prior else ""
        # nothing before: the state after with its side, a view rather than a copy
        session.create(f"both_{table.name}", f"SELECT 1 AS side, * FROM cur_{table.name}{before}", view=not prior)
    increments = {}
    for aggregate in defs.AGGREGATES:
        keys = ", ".join(c.name for c in aggregate.keys)
        values = [c.name for c in aggregate.values]
        total = ", ".join(f"sum({v}) AS {v}" for v in values)
        nonzero = " OR ".join(f"{v} <> 0" for v in values)
        rows = defs.contributions_sql(aggregate.name, pre_days, "both_")
        sql = f"SELECT * FROM (SELECT {keys}, {total} FROM ({rows}) GROUP BY {keys}) WHERE {nonzero}"
        increments[aggregate.name] = session.arrow(sql)

    state = (
        {table.name: session.arrow(f"SELECT * FROM {_appended(table)}") for table in defs.STATE} if keep_state else {}
    )
    users = session.arrow("SELECT count(*) AS users FROM touched").column(0)[0].as_py()
    return Folded(state, increments, int(users))


def _touched(keys: tuple[str, ...]) -> str:
    """The relation of the batch's values of `keys` (made by `fold` for keys of several columns)."""
    return "touched_" + "_".join(keys)


def _rows_of_users(table: StateTable) -> str:
    """The rows of state table `table` of the users a fold may read (`_rows_before`): the touched
    users' (only the forgotten ones' when `defs.FOLD_KEYS` says no other row matters).

    A join with the users and nothing else, so DuckDB builds its hash table on them and hands
    them to the scan, which reads only the row groups whose range of users holds one
    (`momento.lake.warehouse.JOIN_FILTER_KEYS`). Joined in the same query as the committed runs,
    the estimates could turn the join round and hash the whole table instead (at 100M events,
    0.3 s a fold for `placement_hours` alone)."""
    users = "touched" if defs.FOLD_KEYS[table.name] else "erased"
    return f"SELECT * FROM {defs.TABLE_NAMES(table.name)} WHERE user_id IN (SELECT user_id FROM {users})"


def _rows_before(table: StateTable, forgetting: bool) -> str:
    """The committed rows of state table `table` a fold reads, among its users' rows
    (`near_*`, `_rows_of_users`): those sharing its `defs.FOLD_KEYS` with a row of the batch,
    and, when it is `forgetting` users, theirs (an OR DuckDB cannot turn into a filter of the
    scan, so the users come first)."""
    keys = defs.FOLD_KEYS[table.name]
    matched = ""
    if len(keys) > 1:
        columns = ", ".join(keys)
        shared = f"({columns}) IN (SELECT {columns} FROM {_touched(keys)})"
        forgotten = "user_id IN (SELECT user_id FROM erased)"
        matched = f" AND ({shared} OR {forgotten})" if forgetting else f" AND {shared}"
    return f"(SELECT * FROM near_{table.name} WHERE {COMMITTED}{matched})"


def _appended(table: StateTable) -> str:
    """The rows of `table` a run appends: the batch's facts (the forgotten users' left out), or,
    for partials, every touched unit's recomputed first hour."""
    if table is defs.PARTIALS:
        return "cur_partials"
    return f"batch_{table.name} WHERE user_id NOT IN (SELECT user_id FROM erased)"


def _partials(session: SqlSession, batch: Batch, events: Literal["events", "in_events"]) -> None:
    """`cur_partials`: units whose first exposure (decision) is unchanged keep their first hour
    plus the batch's events in it; units that are new or start earlier read theirs from raw
    (`events`: the whole table, or, in a rebuild, the batch's events, which hold all of theirs)."""
    anchors = " UNION ALL ".join(sql.replace("FROM ", "FROM cur_") for sql in defs.ANCHOR_SQL.values())
    session.create("cur_anchors", anchors)
    session.create(
        "anchors",
        """
        SELECT a.* FROM cur_anchors a JOIN old_partials p
          ON p.family = a.family AND p.unit = a.unit AND p.user_id = a.user_id AND p.first_ts = a.first_ts""",
    )
    measures = [defs.col(m) for m in (*defs.USER_MEASURES, *defs.ELEMENT_MEASURES)]
    columns = ", ".join(["family", "unit", "user_id", "first_ts", *measures])
    open_ended = {"lo": _FAR_PAST, "hi": _FAR_FUTURE, "upper": batch.upper}
    added = ", ".join(f"p.{c} + n.{c} AS {c}" for c in measures)
    session.create(
        "kept_partials",
        f"""
        SELECT p.family, p.unit, p.user_id, p.first_ts, {added}
        FROM old_partials p JOIN ({defs.partials_sql("in_events")}) n
          USING (family, unit, user_id, first_ts)""",
        open_ended,
    )
    session.create(
        "anchors",
        """
        SELECT a.* FROM cur_anchors a ANTI JOIN kept_partials k USING (family, unit, user_id, first_ts)""",
    )
    span = session.arrow("SELECT min(first_ts) AS lo, max(first_ts) AS hi FROM anchors").to_pylist()[0]
    lo, hi = (span["lo"], span["hi"] + timedelta(hours=1)) if span["lo"] is not None else (_FAR_PAST, _FAR_PAST)
    session.create(
        "cur_partials",
        f"""
        SELECT {columns} FROM kept_partials
        UNION ALL
        SELECT {columns} FROM ({defs.partials_sql(events)})""",
        {"lo": lo, "hi": hi, "upper": batch.upper},
    )
