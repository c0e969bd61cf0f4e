"""What the cockpit reads: every aggregate as the rollups hold it plus the live tail, or from raw.

`aggregates(wh, pre_days)` returns, per aggregate table, its rows merged over the committed runs
plus the increments of the raw rows loaded after the newest run's watermark (the *tail*, folded
on the spot by the same procedure the job runs), so numbers are exact and live while a refresh
costs the new rows, not the history. When the rollups cannot serve — none yet, built under other
definitions, an erasure logged since the watermark, or a tail too long to fold quickly (the job is
behind or stopped) — every aggregate is folded from raw instead, and `Source` says so and why.

Results are cached per snapshot (the warehouse's table versions), so the panels of a page, and
several sessions, fold the same tail once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

import duckdb
import polars as pl
import pyarrow as pa

from metrics.rollup import definitions as defs
from metrics.rollup.fold import Batch, fold
from metrics.rollup.job import Run, latest_run
from metrics.rollup.state import COMMITTED, RUN_ID, WATERMARKED, schema
from momento.lake.rollups import ROLLUP_PREFIX
from momento.lake.warehouse import Warehouse, WarehouseError

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
    tail_rows: int
    as_of: datetime
    """The analysis time: just after the newest event (outcomes count before it)."""


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def day_number(ts: datetime) -> int:
    """The UTC day of `ts` as days since the epoch (the rollups' day keys)."""
    return (ts - EPOCH).days


@dataclass(frozen=True)
class Period:
    """What a filter's dates select: units that entered on days `first`..`last` (None: from the
    start), their outcomes as of `as_of` (the end of the range, or just after the newest event,
    whichever comes first), whose UTC day is `last`."""

    first: int | None
    last: int
    as_of: datetime


def period(start: datetime | None, end: datetime | None, source: Source) -> Period:
    """The `Period` of a date filter [start, end) (midnights, None: open) over `source`'s data."""
    as_of = min(end, source.as_of) if end is not None else source.as_of
    return Period(day_number(start) if start is not None else None, day_number(as_of - timedelta(microseconds=1)),
                  as_of)


@dataclass(frozen=True)
class Aggregates:
    """Every aggregate's rows (keys and summed statistics), and where they came from."""

    frames: dict[str, pl.DataFrame]
    source: Source

    def __getitem__(self, name: str) -> pl.DataFrame:
        return self.frames[name]


_TAIL = "SELECT * FROM {table} WHERE loaded_at > ${table}_w"
_ALL = "SELECT * FROM {table}"
_cache: OrderedDict[tuple, Aggregates] = OrderedDict()
_cache_lock = threading.Lock()
_CACHED = 8


def aggregates(wh: Warehouse, pre_days: int, max_tail_rows: int = MAX_TAIL_ROWS) -> Aggregates:
    """The aggregates now (see the module docstring), cached per snapshot."""
    versions = wh.refresh()
    key = (id(wh), pre_days, max_tail_rows, tuple(sorted(versions.items())))
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    result = _compute(wh, pre_days, max_tail_rows)
    with _cache_lock:
        _cache[key] = result
        while len(_cache) > _CACHED:
            _cache.popitem(last=False)
    return result


def _compute(wh: Warehouse, pre_days: int, max_tail_rows: int) -> Aggregates:
    wh.require(WATERMARKED)
    last = latest_run(wh)
    reason = _unusable(wh, last, pre_days)
    if not reason:
        try:
            return _fold(wh, pre_days, max_tail_rows, last, reason)
        except (WarehouseError, duckdb.Error) as exc:  # a rollup file damaged past its footer
            reason = f"the rollups cannot be read ({exc}); the job rebuilds them"
    return _fold(wh, pre_days, max_tail_rows, last, reason)


def _fold(wh: Warehouse, pre_days: int, max_tail_rows: int, last: Run | None, reason: str) -> Aggregates:
    params: dict[str, object] = {}
    tail_rows = 0
    if not reason and last is not None:
        params = {f"{t}_w": last.loaded_to[t] or datetime(1970, 1, 1, tzinfo=timezone.utc) for t in WATERMARKED}
        counts = " + ".join(f"(SELECT count(*) FROM ({_TAIL.format(table=t)}))" for t in ("events", "exposures",
                                                                                             "decisions"))
        tail_rows = int(wh.scalar(f"SELECT {counts}", params) or 0)
        if tail_rows > max_tail_rows:
            reason = f"the rollups are behind by {tail_rows:,} rows (is `momento rollup --follow` running?)"
    increments: dict[str, pl.DataFrame] = {}
    newest = None
    if reason or tail_rows:
        template = _ALL if reason else _TAIL
        batch = Batch(*(template.format(table=t) for t in ("events", "exposures", "decisions")), params,
                      upper=datetime(9999, 1, 1, tzinfo=timezone.utc))
        cursor = wh.cursor()
        try:
            folded = fold(cursor, batch, pre_days, prior=not reason, existing=frozenset(wh.versions),
                          keep_state=False)
            newest = cursor.sql("SELECT max(ts) FROM in_events").fetchall()[0][0]
        finally:
            cursor.close()
        increments = {name: _frame(table) for name, table in folded.increments.items()}
    frames = {}
    for aggregate in defs.AGGREGATES:
        name = defs.TABLE_NAMES(aggregate.name)
        parts = [] if reason or not wh.has(name) else \
            [wh.query(aggregate.merged_sql(f"(SELECT * FROM {name} WHERE {COMMITTED})"))]
        if aggregate.name in increments:
            parts.append(increments[aggregate.name])
        if not parts:
            parts.append(_frame(schema(aggregate).empty_table().drop_columns([RUN_ID])))
        keys = [c.name for c in aggregate.keys]
        both = pl.concat([p.cast(parts[0].schema) for p in parts])
        frames[aggregate.name] = both if len(parts) == 1 else both.group_by(keys).agg(pl.exclude(keys).sum())
    folded_newest = None if reason or last is None else last.events_max_ts
    known = [t for t in (newest, folded_newest) if t is not None]
    as_of = max(known) + timedelta(microseconds=1) if known else datetime.now(timezone.utc)
    source = Source("raw" if reason else "rollups", reason, None if reason or last is None else last.finished_at,
                    tail_rows, as_of)
    return Aggregates(frames, source)


def _frame(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _unusable(wh: Warehouse, last: Run | None, pre_days: int) -> str:
    """Why the rollups cannot serve now ("" when they can)."""
    if last is None:
        return "no rollups yet (run `momento rollup`, or `momento demo` which keeps them up to date)"
    if last.definitions != defs.definitions_hash(pre_days):
        return "the rollups were built under other metric definitions and are being rebuilt"
    broken = sorted(name for name in wh.errors if name.startswith(ROLLUP_PREFIX))
    if broken:
        return f"the rollups cannot be read ({', '.join(broken)}); the job rebuilds them"
    pending = wh.scalar("SELECT count(*) FROM erasures WHERE loaded_at > $w",
                        {"w": last.loaded_to["erasures"] or datetime(1970, 1, 1, tzinfo=timezone.utc)})
    if pending:
        return "an erasure is being applied to the rollups"
    return ""
