"""What the cockpit reads: every aggregate as the rollups hold it plus the live tail, or from raw.

`aggregates(wh, pre_days)` returns, per aggregate table, its rows merged over the committed runs
plus the increments of the raw rows loaded after the newest run's watermark (the *tail*, folded
on the spot by the same procedure the job runs), so numbers are exact and live while a refresh
costs the new rows, not the history. When the rollups cannot serve — none yet, built under other
definitions, an erasure logged since the watermark, or a tail too long to fold quickly (the job is
behind or stopped) — every aggregate is folded from raw instead, and `Source` says so and why.

The cockpit keeps the newest result and renews it in the background (pages/cache.py), so the
panels of a page, and several sessions, share one fold and never wait for the next.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import duckdb
import polars as pl
import pyarrow as pa

from metrics.filters import Filters
from metrics.rollup import definitions as defs
from metrics.rollup.fold import Batch, fold
from metrics.rollup.job import LATEST_RUN, Run, run_of
from metrics.rollup.session import duckdb_engine
from metrics.rollup.state import COMMITTED, RUN_ID, WATERMARKED, Aggregate, schema
from metrics.sql.query import Query, Statement
from momento.lake.rollups import ROLLUP_PREFIX, ROLLUP_RUNS
from momento.lake.warehouse import Warehouse, WarehouseError, used_params

MAX_TAIL_ROWS = 250_000
"""A tail longer than this is not folded on a page refresh: the page reads raw and says so."""

Mode = Literal["rollups", "raw"]


@dataclass(frozen=True)
class Source:
    """Where a page's numbers came from."""

    mode: Mode
    reason: str
    """Why raw (empty when the rollups served)."""
    watermark: datetime | None
    """When the newest run's rows were loaded (rollups only)."""
    tail_rows: int | None
    """Raw rows loaded after the watermark and folded in (None: not folded yet, see `aggregates`)."""
    as_of: datetime
    """The analysis time: just after the newest event (outcomes count before it)."""


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EXAMPLE_AS_OF = datetime(2026, 6, 13, 2, tzinfo=UTC)
"""The as-of the golden files and `momento sql` render the aggregate queries with."""


def day_number(ts: datetime) -> int:
    """The UTC day of `ts` as days since the epoch (the rollups' day keys)."""
    return (ts - EPOCH).days


def period_params(filters: Filters, as_of: datetime) -> dict[str, object]:
    """What a filter's dates select from the aggregates: the units that entered on days
    `$first_day` (None: from the start) to `$last_day`, as of the end of the range or just after the
    newest event (`as_of`), whichever comes first. `$last_day` and `$last_hour` are the UTC day and
    hour of the last instant counted, so rows changed up to them count."""
    until = min(filters.end_ts, as_of) if filters.end_ts is not None else as_of
    last = until - timedelta(microseconds=1) - EPOCH
    return {
        "first_day": day_number(filters.start_ts) if filters.start_ts is not None else None,
        "last_day": last.days,
        "last_hour": last.days * 24 + last.seconds // 3600,
    }


def run_on(aggregates: Aggregates, statement: Statement) -> pl.DataFrame:
    """Run `statement` (SQL over the aggregates, each a table of its name) on the aggregates' own
    in-memory DuckDB (a cursor of its own, so panels of several sessions may run at once)."""
    cursor = aggregates.database().cursor()
    try:
        frame: pl.DataFrame = cursor.sql(statement.sql, params=used_params(statement.sql, statement.params)).pl()
        return frame
    finally:
        cursor.close()


@dataclass(frozen=True)
class Committed:
    """Every aggregate's rows as the logged runs up to `run_id` hold them, merged."""

    run_id: int
    frames: dict[str, pl.DataFrame]
    reads: tuple[tuple[Query, dict[str, object]], ...]
    """The full read of every run's rows these were first assembled from (`MERGED`); the newer runs'
    rows added since are read by `MERGED_SINCE`, shown with the result that added them."""


@dataclass(frozen=True)
class Aggregates:
    """Every aggregate's rows (keys and summed statistics), and where they came from."""

    frames: dict[str, pl.DataFrame]
    source: Source
    reads: tuple[tuple[Query, dict[str, object]], ...] = ()
    """What was read from the warehouse to assemble them, each as (query, its arguments): the full
    read of the committed rows too when an earlier result's were kept (`since`)."""
    committed: Committed | None = None
    """What the logged runs hold, without the tail (None: read from raw); a later read adds the
    newer runs' rows to it (`aggregates`' `since`)."""
    _database: list[duckdb.DuckDBPyConnection] = field(default_factory=list, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __getitem__(self, name: str) -> pl.DataFrame:
        return self.frames[name]

    def database(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB holding every aggregate as a table of its name (made once: the
        panels of a page, and of every session sharing these aggregates, query the same one)."""
        with self._lock:
            if not self._database:
                con = duckdb.connect(
                    config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"}
                )
                con.execute("SET TimeZone = 'UTC'")
                for name, frame in self.frames.items():
                    con.register("frame", frame)
                    con.execute(f"CREATE TABLE {name} AS SELECT * FROM frame")
                    con.unregister("frame")
                self._database.append(con)
            return self._database[0]


_TAIL = "SELECT * FROM {table} WHERE loaded_at > ${table}_w"
_ALL = "SELECT * FROM {table}"
TAIL_ROWS = (
    "SELECT "
    + " + ".join(f"(SELECT count(*) FROM ({_TAIL.format(table=t)}))" for t in ("events", "exposures", "decisions"))
    + " AS tail_rows"
)
"""How many raw rows were loaded after the newest run's watermark (the tail to fold)."""
PENDING_ERASURES = "SELECT count(*) AS pending FROM erasures WHERE loaded_at > $erasures_w"

_SOURCE_METHOD = (
    "The rollup job keeps these sums up to date from a watermark (the newest load time it has "
    "folded); the raw rows loaded after it are folded on the spot by the same definitions and added, "
    "so the numbers are exact and live. Without usable rollups every raw row is folded instead."
)
_EXAMPLE_WATERMARKS = {f"{t}_w": EXAMPLE_AS_OF for t in WATERMARKED}
_EXAMPLE_SINCE = {"after": 1_781_316_000_000_000}
"""The run the golden files and `momento sql` render the reads since a run with."""

LATEST = Query(
    "rollups.latest_run",
    "The rollup job's newest logged run: its watermark per raw table and the versions of the rollup tables it left.",
    lambda filters: Statement(LATEST_RUN, {}),
    method=_SOURCE_METHOD,
)
TAIL = Query(
    "rollups.tail_rows",
    "How many raw rows were loaded after the newest run's watermark (the live tail).",
    lambda filters, **watermarks: Statement(TAIL_ROWS, watermarks),
    example=_EXAMPLE_WATERMARKS,
    method=_SOURCE_METHOD,
)
PENDING = Query(
    "rollups.pending_erasures",
    "Erasures logged after the newest run (the rollups still hold those "
    "users: the numbers come from raw rows until the job has removed them).",
    lambda filters, **watermarks: Statement(PENDING_ERASURES, watermarks),
    example=_EXAMPLE_WATERMARKS,
    method=_SOURCE_METHOD,
)


ONLY_FOLDS_SINCE = (
    f"SELECT count(*) FILTER (WHERE {RUN_ID} = $after) = 1 "
    f"AND count(*) FILTER (WHERE {RUN_ID} > $after AND kind <> 'fold') = 0 "
    f"AS only_folds FROM {ROLLUP_RUNS} WHERE {RUN_ID} >= $after"
)
"""Whether every run logged after run `$after` (still in the log) only appended increments: then
the aggregates as of now are those as of `$after` plus the newer runs' rows. A rebuild, an erasure
or a compaction replaces rows instead."""
ONLY_FOLDS = Query(
    "rollups.only_folds_since",
    "Whether every run logged after the one the cockpit last read only appended increments (none "
    "rebuilt, erased or compacted): then only the newer runs' rows are read and added.",
    lambda filters, after: Statement(ONLY_FOLDS_SINCE, {"after": after}),
    example=_EXAMPLE_SINCE,
    method=_SOURCE_METHOD,
)


def _merged_query(aggregate: Aggregate, newer: bool) -> Query:
    name = defs.TABLE_NAMES(aggregate.name)
    after = f" AND {RUN_ID} > $after" if newer else ""
    sql = aggregate.merged_sql(f"(SELECT * FROM {name} WHERE {COMMITTED}{after})")
    if newer:
        return Query(
            f"rollups.{aggregate.name}_since",
            f"The rollups' {aggregate.name}: the rows of the runs logged after the one last read, added up per "
            "bucket (added to what was read then).",
            lambda filters, after: Statement(sql, {"after": after}),
            example=_EXAMPLE_SINCE,
            method=_SOURCE_METHOD,
        )
    return Query(
        f"rollups.{aggregate.name}",
        f"The rollups' {aggregate.name}: the rows of every logged run, added up per bucket.",
        lambda filters: Statement(sql, {}),
        method=_SOURCE_METHOD,
    )


MERGED: dict[str, Query] = {a.name: _merged_query(a, newer=False) for a in defs.AGGREGATES}
MERGED_SINCE: dict[str, Query] = {a.name: _merged_query(a, newer=True) for a in defs.AGGREGATES}
READS: tuple[Query, ...] = (LATEST, TAIL, PENDING, ONLY_FOLDS, *MERGED.values(), *MERGED_SINCE.values())
"""What `aggregates` may read from the warehouse (listed for "How this is computed" and the goldens)."""


def aggregates(
    wh: Warehouse,
    pre_days: int,
    max_tail_rows: int = MAX_TAIL_ROWS,
    *,
    tail: bool = True,
    since: Aggregates | None = None,
) -> Aggregates:
    """Every aggregate now: the rollups plus the live tail, or every raw row folded (see the module
    docstring). With `tail=False`, usable rollups are served as their newest run left them, exact
    as of its newest event (`Source.tail_rows` None): what a cockpit shows at once while it folds
    the tail. `since`: an earlier result of this lake, whose committed rows are kept and only the
    newer runs' rows read (`ONLY_FOLDS_SINCE`), so a refresh costs the new runs, not every day's
    buckets. Callers that read often keep the result (the cockpit: `pages.cache.aggregates`)."""
    wh.require(WATERMARKED)
    reads = _Reads(wh)
    last = run_of(reads.query(LATEST)) if wh.has(ROLLUP_RUNS) else None
    reason = _unusable(reads, last, pre_days)
    if not reason:
        try:
            return _fold(reads, pre_days, max_tail_rows, last, reason, tail, since.committed if since else None)
        except (WarehouseError, duckdb.Error) as exc:  # a rollup file damaged past its footer
            reason = f"the rollups cannot be read ({exc}); the job rebuilds them"
    return _fold(reads, pre_days, max_tail_rows, last, reason, tail=True, since=None)


class _Reads:
    """The warehouse, remembering every query read through it (shown under the panels)."""

    def __init__(self, wh: Warehouse) -> None:
        self.wh = wh
        self.done: list[tuple[Query, dict[str, object]]] = []

    def query(self, query: Query, **arguments: object) -> pl.DataFrame:
        self.done.append((query, arguments))
        return query.run(self.wh, Filters(), **arguments)

    def scalar(self, query: Query, **arguments: object) -> object:
        frame = self.query(query, **arguments)
        return frame.item(0, 0) if frame.height else None


def _fold(
    reads: _Reads, pre_days: int, max_tail_rows: int, last: Run | None, reason: str, tail: bool, since: Committed | None
) -> Aggregates:
    """The aggregates; with usable rollups and not `tail`, the rollups without their tail."""
    wh = reads.wh
    params: dict[str, object] = {}
    tail_rows: int | None = 0
    if not reason and not tail:
        tail_rows = None
    elif not reason and last is not None:
        params = {f"{t}_w": last.loaded_to[t] or EPOCH for t in WATERMARKED}
        tail_rows = int(reads.scalar(TAIL, **params) or 0)  # type: ignore[call-overload]
        if tail_rows > max_tail_rows:
            reason = f"the rollups are behind by {tail_rows:,} rows (is `momento rollup --follow` running?)"
    increments: dict[str, pl.DataFrame] = {}
    newest = None
    if reason or tail_rows:
        template = _ALL if reason else _TAIL
        events, exposures, decisions = (template.format(table=t) for t in ("events", "exposures", "decisions"))
        batch = Batch(events, exposures, decisions, params, upper=datetime(9999, 1, 1, tzinfo=UTC))
        with duckdb_engine(wh) as session:
            folded = fold(
                session,
                batch,
                pre_days,
                prior=not reason,
                existing=wh.readable,
                keep_state=False,
            )
            newest = session.arrow("SELECT max(ts) AS newest FROM in_events").column(0)[0].as_py()
        increments = {name: _frame(table) for name, table in folded.increments.items()}
    committed = None if reason or last is None else _committed(reads, last, since)
    frames = {}
    for aggregate in defs.AGGREGATES:
        parts = [committed.frames[aggregate.name]] if committed else []
        if aggregate.name in increments:
            parts.append(increments[aggregate.name])
        frames[aggregate.name] = _added(aggregate, parts)
    folded_newest = None if reason or last is None else last.events_max_ts
    known = [t for t in (newest, folded_newest) if t is not None]
    as_of = max(known) + timedelta(microseconds=1) if known else datetime.now(UTC)
    source = Source(
        "raw" if reason else "rollups", reason, None if reason or last is None else last.finished_at, tail_rows, as_of
    )
    carried = [] if committed is None else [r for r in committed.reads if r not in reads.done]
    return Aggregates(frames, source, (*carried, *reads.done), committed)


def _committed(reads: _Reads, last: Run, since: Committed | None) -> Committed:
    """The aggregates as the logged runs up to `last` hold them: `since` plus the newer runs'
    rows when only folds were logged after it, else every committed row."""
    if since is not None and since.run_id == last.run_id:
        return since
    if since is not None and reads.scalar(ONLY_FOLDS, after=since.run_id):
        newer = {a.name: _read(reads, a, MERGED_SINCE, after=since.run_id) for a in defs.AGGREGATES}
        return Committed(
            last.run_id,
            {a.name: _added(a, [since.frames[a.name], *newer[a.name]]) for a in defs.AGGREGATES},
            since.reads,
        )
    start = len(reads.done)
    frames = {a.name: _added(a, _read(reads, a, MERGED)) for a in defs.AGGREGATES}
    return Committed(last.run_id, frames, tuple(reads.done[start:]))


def _read(reads: _Reads, aggregate: Aggregate, queries: dict[str, Query], **arguments: object) -> list[pl.DataFrame]:
    """`aggregate`'s rows read by its query among `queries` ([] when its table is not there)."""
    if not reads.wh.has(defs.TABLE_NAMES(aggregate.name)):
        return []
    return [reads.query(queries[aggregate.name], **arguments)]


def _added(aggregate: Aggregate, parts: list[pl.DataFrame]) -> pl.DataFrame:
    """The rows of `parts` added up per bucket (no rows for no parts)."""
    return aggregate.added(parts) if parts else _frame(schema(aggregate).empty_table().drop_columns([RUN_ID]))


def _frame(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _unusable(reads: _Reads, last: Run | None, pre_days: int) -> str:
    """Why the rollups cannot serve now ("" when they can)."""
    if last is None:
        return "no rollups yet (run `momento rollup`, or `momento demo` which keeps them up to date)"
    if last.definitions != defs.definitions_hash(pre_days):
        return "the rollups were built under other metric definitions and are being rebuilt"
    broken = sorted(name for name in reads.wh.errors if name.startswith(ROLLUP_PREFIX))
    if broken:
        return f"the rollups cannot be read ({', '.join(broken)}); the job rebuilds them"
    pending = reads.scalar(PENDING, erasures_w=last.loaded_to["erasures"] or EPOCH)
    if pending:
        return "an erasure is being applied to the rollups"
    return ""
