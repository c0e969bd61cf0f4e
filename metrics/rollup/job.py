"""The rollup job: `momento rollup` (catch up once) and `momento rollup --follow`.

A run reads the raw rows loaded since the last run's watermark (`loaded_at` per raw table),
folds them (`metrics.rollup.fold`), appends the new facts and the aggregates' increments to
the rollup tables under a fresh run id, and then logs the run with its new watermark in
`rollup_runs`: that last commit is what makes the run's rows visible (readers keep only rows
of logged runs). A crash before it leaves the rows invisible and the watermark where it was;
the next run folds the same rows again under another id, so nothing is counted twice.

A run rebuilds everything from raw instead when there is no run yet or the definitions (the
SQL from the catalogue, the pre-period) changed. A large rebuild goes in partitions of the
users (`rebuild_parts`), each folded on the job's engine and appended before the next, all
under the run's one id, so its memory is that of a partition and the run still commits at
once. Erasures logged since the watermark are folded as users to forget; their state rows are
then deleted, the rollups merged and the files that held them vacuumed at once, as the raw tables
are.

Every run appends rows, so now and then a compaction merges them to one row per key (`compact`):
the per-user state whole only once the rows appended since it was last written whole reach a
share of it (`WHOLE_SHARE`), and until then only those newer rows, which costs seconds where a
whole rewrite of a long history costs minutes with every fold held back.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from metrics.rollup import definitions as defs
from metrics.rollup.fold import Batch, fold
from metrics.rollup.session import Engine, duckdb_engine
from metrics.rollup.state import COMMITTED, RUN_ID, RUNS_SCHEMA, WATERMARKED, Aggregate, RawTable, StateTable, schema
from momento.lake.location import Lake, lake_location
from momento.lake.rollups import (
    ROLLUP_PREFIX,
    ROLLUP_RUNS,
    TABLE_VERSIONS,
    RollupStore,
    dump_versions,
    parse_versions,
)
from momento.lake.warehouse import Warehouse, used_params
from momento.pacing import pause

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """A logged run: its id, kind, definitions and the watermark it left."""

    run_id: int
    kind: str
    definitions: str
    loaded_to: dict[str, datetime | None]
    finished_at: datetime
    events_max_ts: datetime | None
    table_versions: dict[str, int]
    """The Delta version it left each rollup table at: what readers are pinned to."""


@dataclass(frozen=True)
class RunReport:
    """What one run did."""

    run_id: int
    kind: str
    rows_folded: int
    users: int
    seconds: float


LATEST_RUN = f"SELECT * FROM {ROLLUP_RUNS} ORDER BY {RUN_ID} DESC LIMIT 1"
"""The run log's newest row: the watermark and the rollups' snapshot readers start from."""


def latest_run(wh: Warehouse) -> Run | None:
    """The last logged run (None: the lake has no rollups yet)."""
    return run_of(wh.query(LATEST_RUN)) if wh.has(ROLLUP_RUNS) else None


def run_of(frame: pl.DataFrame) -> Run | None:
    """The run in `LATEST_RUN`'s result (None for no row)."""
    if not frame.height:
        return None
    row = frame.row(0, named=True)
    return Run(
        row[RUN_ID],
        row["kind"],
        row["definitions"],
        {t: row[f"{t}_loaded_to"] for t in WATERMARKED},
        row["finished_at"],
        row["events_max_ts"],
        parse_versions(row[TABLE_VERSIONS]),
    )


def _tail(table: RawTable) -> str:
    return f"SELECT * FROM {table} WHERE loaded_at > ${table}_w AND loaded_at <= ${table}_u"


APPEND_THREADS = 4
"""Rollup tables committed at once by a run."""
PARTITION_ROWS = 4_000_000
"""Raw rows (events, exposures and decisions) a rebuild folds at once (on DuckDB, about 2.5M
events: 2-3 GB of memory)."""


def batch_rows(wh: Warehouse, batch: Batch) -> int:
    """The raw rows (events, exposures and decisions) of `batch`."""
    counts = " + ".join(f"(SELECT count(*) FROM ({sql}))" for sql in (batch.events, batch.exposures, batch.decisions))
    return int(wh.scalar(f"SELECT {counts}", batch.params))


PARTITION_SAMPLE_ROWS = 100_000
"""Events sampled to place the bounds of a rebuild's partitions (`partition_bounds`)."""


def partition_bounds(wh: Warehouse, batch: Batch, parts: int) -> tuple[str, ...]:
    """`parts - 1` user ids cutting the users of `batch` into ranges of about as many events
    each (quantiles of a repeatable sample of its events); () for one part. Any bounds give an
    exact partition (`rebuild_parts`): the sample only balances the parts."""
    if parts <= 1:
        return ()
    sql = (
        "SELECT quantile_disc(user_id, $fractions) FROM "
        f"(SELECT user_id FROM ({batch.events}) WHERE user_id IS NOT NULL) "
        f"USING SAMPLE reservoir({PARTITION_SAMPLE_ROWS} ROWS) REPEATABLE (7)"
    )
    bounds = wh.scalar(sql, {**batch.params, "fractions": [part / parts for part in range(1, parts)]})
    return () if bounds is None else tuple(sorted(set(bounds)))  # no users: one part


def rebuild_parts(batch: Batch, bounds: tuple[str, ...]) -> Iterator[Batch]:
    """A rebuild's batch cut into partitions of the users by the ranges between `bounds` (sorted
    user ids; the first range also holds rows without a user). Every state row and every
    contribution to an aggregate belongs to one user, so the partitions' state rows are the whole
    rebuild's and their aggregate rows add up to its aggregates; a fold's memory is that of one
    partition. Ranges rather than a hash of the user: each partition's state, written in user
    order, fills row groups of neighbouring users, so a later lookup of a few users (a live fold)
    reads the row groups that hold them and skips the rest (`momento.lake.rollups`)."""
    if not bounds:
        yield batch
        return
    edges = (None, *bounds, None)
    for lower, upper in itertools.pairwise(edges):
        if lower is None:
            condition = "user_id < $part_upper OR user_id IS NULL"
        elif upper is None:
            condition = "user_id >= $part_lower"
        else:
            condition = "user_id >= $part_lower AND user_id < $part_upper"
        params = {**batch.params, "part_lower": lower, "part_upper": upper}
        events, exposures, decisions = (
            f"SELECT * FROM ({sql}) WHERE {condition}" for sql in (batch.events, batch.exposures, batch.decisions)
        )
        yield Batch(events, exposures, decisions, params, batch.upper)


BASES = ("rebuild", "compact")
"""Kinds of run that write the state tables whole."""
COMPACTED = (*BASES, "merge")
"""Kinds of run after which every rollup table holds one row per key and run: nothing to compact."""
BASE_RUN = f"SELECT max({RUN_ID}) FROM {ROLLUP_RUNS} WHERE list_contains($bases, kind)"
"""The newest run that wrote the state tables whole: their rows up to it are one per key."""

WHOLE_SHARE = 0.25
"""A compaction rewrites the state tables whole once the rows of the runs since their base reach
this share of the base's rows, and merges only those newer rows before: a whole rewrite costs the
history, so it comes once per quarter of it appended, and each merge costs what came since."""

COMPACTION_SHARE = 0.05
"""The most of the job's time compactions take: a whole rewrite of the state takes a second on
the demo's lake and minutes on a history of 100M events."""

COMPACTION_THREADS = 1
"""The threads of a following job's compactions: a merge of the state at 100M events held every
core for 6–15 s while the cockpit drew pages beside it. Its runs, short and paced, keep every core
(they are many small statements: a live minute at 10M folded in 1.19 s on one thread, 1.15 s on
two)."""

RUN_SHARE = 0.25
"""The most of the time a following job's folds take (a rebuild does not set the pace). A run's
fixed costs (the snapshot's logs, a lookup per state table) grow slowly with the history: a few
tenths of a second on the demo's lake, every 2 s; about 2 s at 100M events, which run back to
back would keep a core busy beside the cockpit. The pages fold the raw rows a run has not
reached, so a longer pause leaves every number exact and live."""


def next_start(now: float, began: float, every: float, share: float) -> float:
    """When to start work again after it ran from `began` to `now`: `every` seconds later, or
    later still so that it takes at most `share` of the time."""
    return now + pause(now - began, every, share)


class RollupJob:
    """Keeps the rollups of one lake up to date (see the module docstring)."""

    def __init__(
        self,
        lake: Lake,
        pre_days: int,
        engine: Engine = duckdb_engine,
        partition_rows: int = PARTITION_ROWS,
        memory_limit_mb: int | None = None,
        whole_share: float = WHOLE_SHARE,
    ) -> None:
        self.lake = lake_location(lake)
        self.pre_days = pre_days
        self.definitions = defs.definitions_hash(pre_days)
        self.store = RollupStore(self.lake)
        self.engine = engine
        """Where folds run: DuckDB here, or Spark (`metrics.engines.spark`); raw reads, commits
        and the run log stay on this process either way."""
        self.partition_rows = partition_rows
        """Raw rows a rebuild folds at once (`rebuild_parts`)."""
        self.memory_limit_mb = memory_limit_mb
        """The bound of the warehouse's DuckDB (None: DuckDB's default, 80% of the machine)."""
        self.whole_share = whole_share
        """When a compaction rewrites the state whole (`WHOLE_SHARE`)."""
        self._wh: Warehouse | None = None

    def run_once(self) -> RunReport:
        """Catch up with the lake now (a rebuild when needed); one run, then `close`."""
        try:
            return self.run()
        finally:
            self.close()

    def run(self) -> RunReport:
        """One run under the lake's rollup lock, keeping the warehouse for the next (`close`
        lets go of it)."""
        with self.store.lock():
            return self._run()

    def close(self) -> None:
        """Let go of the warehouse kept between runs."""
        if self._wh is not None:
            self._wh.close()
            self._wh = None

    def _warehouse(self) -> Warehouse:
        """The job's warehouse at the lake's newest snapshot. It is kept between runs (opening
        one replays every table's log: seconds on a lake with a long history, against a refresh
        that reads only the new commits), without DuckDB's cache of file data, which would grow
        with the lake for as long as the job runs. It moves only here, when a run or a compaction
        starts, and where one says so (`refresh(force=True)`): every query of a run reads the same
        snapshot, and none replays the logs of what the service committed meanwhile (with it
        writing, a run at 10M events spent 0.3-0.5 s refreshing, one refresh per query)."""
        if self._wh is None:
            self._wh = Warehouse(
                self.lake,
                min_refresh_seconds=math.inf,
                memory_limit_mb=self.memory_limit_mb,
                cache_file_data=False,
            )
        else:
            self._wh.refresh(force=True)
        return self._wh

    def _run(self) -> RunReport:
        started = time.perf_counter()
        started_at = datetime.now(UTC)
        try:
            return self._fold_new_rows(self._warehouse(), started, started_at)
        except BaseException:
            self.close()  # the next run starts from a fresh warehouse
            raise

    def _pinned_run(self, wh: Warehouse) -> Run | None:
        """The newest logged run, with every table that an unlogged run (a compaction cut short)
        replaced rows of rolled back to the version the run left: what comes next writes onto
        what readers are pinned to."""
        last = latest_run(wh)
        if last is not None:
            restored = self.store.roll_back(last.table_versions)
            if restored:
                log.warning("rolled back what an unlogged run replaced in %s", ", ".join(restored))
        return last

    def _fold_new_rows(self, wh: Warehouse, started: float, started_at: datetime) -> RunReport:
        last = self._pinned_run(wh)
        upper = self._uppers(wh)
        unreadable = [name for name in wh.errors if name.startswith(ROLLUP_PREFIX)]
        if unreadable:
            log.warning("rollup tables %s cannot be read: rebuilding", ", ".join(sorted(unreadable)))
        if last is None or last.definitions != self.definitions or unreadable:
            self.store.drop_all()
            wh.refresh(force=True)
            kind, batch = "rebuild", self._batch_all(upper)
        else:
            kind, batch = "fold", self._batch_since(wh, last, upper)
        if kind == "fold" and not _has_rows(wh, batch):
            return RunReport(last.run_id if last else 0, "idle", 0, 0, time.perf_counter() - started)
        run_id = self._next_run_id(last)
        touched = 0
        rows = batch_rows(wh, batch)
        parts = [batch]
        if kind == "rebuild":
            parts = list(rebuild_parts(batch, partition_bounds(wh, batch, -(-rows // self.partition_rows))))
        existing = wh.readable if kind == "fold" else frozenset()
        increments: dict[str, pl.DataFrame] = {}
        for part in parts:
            with self.engine(wh) as session:
                folded = fold(session, part, self.pre_days, prior=kind == "fold", existing=existing)
            # per-user state in user order: a fold's lookup of its users skips the rest (momento.lake.rollups)
            self._append({t: folded.state[t.name].sort_by("user_id") for t in defs.STATE}, run_id)
            for a in defs.AGGREGATES:
                rows_of_part = pl.DataFrame(folded.increments[a.name])
                earlier = [increments[a.name]] if a.name in increments else []
                increments[a.name] = a.added([*earlier, rows_of_part])
            touched += folded.touched_users
        # after the partitions' state: every partition adds to every bucket, so the increments are
        # appended once, added up, rather than once per partition for every read to add up again
        self._append({a: increments[a.name].to_arrow() for a in defs.AGGREGATES}, run_id)
        kind = "erase" if batch.erased else kind
        self._log(run_id, kind, started_at, upper, rows, self._newest_event(wh, last, kind, upper))
        if batch.erased:
            self._forget(batch.erased)
        return RunReport(run_id, kind, rows, touched, time.perf_counter() - started)

    # -- inputs ---------------------------------------------------------------------------------

    def _uppers(self, wh: Warehouse) -> dict[str, datetime | None]:
        """The newest load time of each raw table in this snapshot: the new watermark. Read from
        the rows at or above the lower bound the Delta log gives (`Warehouse.newest_bound`), so
        only the newest row groups are read, whatever the history; all rows when there is none."""
        return {
            t: wh.scalar(
                f"SELECT max(loaded_at) FROM {t} WHERE loaded_at >= coalesce($bound, TIMESTAMPTZ '-infinity')",
                {"bound": wh.newest_bound(t, "loaded_at")},
            )
            for t in WATERMARKED
        }

    def _batch_all(self, upper: dict[str, datetime | None]) -> Batch:
        """Every row of this snapshot (the warehouse's views are pinned to it, so `upper` is what
        they hold)."""
        return Batch(
            "SELECT * FROM events",
            "SELECT * FROM exposures",
            "SELECT * FROM decisions",
            {},
            upper["events"] or datetime.now(UTC),
        )

    def _batch_since(self, wh: Warehouse, last: Run, upper: dict[str, datetime | None]) -> Batch:
        params: dict[str, object] = {}
        for table in WATERMARKED:
            params[f"{table}_w"] = last.loaded_to[table] or datetime(1970, 1, 1, tzinfo=UTC)
            params[f"{table}_u"] = upper[table] or params[f"{table}_w"]
        erased = self._erased(wh, params)
        return Batch(
            _tail("events"),
            _tail("exposures"),
            _tail("decisions"),
            params,
            upper["events"] or datetime.now(UTC),
            erased,
        )

    def _erased(self, wh: Warehouse, params: dict[str, Any]) -> tuple[str, ...]:
        """The users in the rollups whose erasure was logged since the watermark."""
        subjects = wh.query(
            _tail("erasures").replace("SELECT *", "SELECT DISTINCT subject_hash"),
            {k: v for k, v in params.items() if k.startswith("erasures_")},
        )
        if not subjects.height:
            return ()
        found: set[str] = set()
        for table in defs.USER_TABLES:
            name = defs.TABLE_NAMES(table.name)
            if wh.has(name):
                frame = wh.query(
                    f"SELECT DISTINCT user_id FROM {name} WHERE {COMMITTED} "
                    f"AND list_contains($subjects, sha256(user_id))",
                    {"subjects": subjects["subject_hash"].to_list()},
                )
                found.update(frame["user_id"].to_list())
        return tuple(sorted(found))

    # -- outputs --------------------------------------------------------------------------------

    def _next_run_id(self, last: Run | None) -> int:
        """A run id never used before, larger than every logged one (a crashed run's rows can
        never be mistaken for a later run's)."""
        now = time.time_ns() // 1000
        return max(now, (last.run_id + 1) if last else 0)

    def _append(self, tables: Mapping[StateTable, pa.Table] | Mapping[Aggregate, pa.Table], run_id: int) -> None:
        """Append each table's rows under `run_id`, a commit per table, several at once (each
        commit waits on the disk or the object store more than on this process)."""

        def append(table: StateTable | Aggregate, rows: pa.Table) -> None:
            if rows.num_rows or self.store.table(defs.TABLE_NAMES(table.name)) is None:
                stamped = rows.append_column(RUN_ID, pa.array([run_id] * rows.num_rows, pa.int64()))
                self.store.append(defs.TABLE_NAMES(table.name), stamped, schema(table))

        with ThreadPoolExecutor(APPEND_THREADS, thread_name_prefix="momento-rollup-append") as pool:
            for done in [pool.submit(append, table, rows) for table, rows in tables.items()]:
                done.result()  # raises what an append raised: the run is not logged

    def _newest_event(
        self, wh: Warehouse, last: Run | None, kind: str, upper: dict[str, datetime | None]
    ) -> datetime | None:
        """The newest event time folded so far (the as-of of every analysis)."""
        if kind == "rebuild" or last is None:
            newest: datetime | None = wh.scalar(
                "SELECT max(ts) FROM events WHERE loaded_at IS NULL OR loaded_at <= $u", {"u": upper["events"]}
            )
            return newest
        tail = wh.scalar(
            "SELECT max(ts) FROM events WHERE loaded_at > $w AND loaded_at <= $u",
            {"w": last.loaded_to["events"], "u": upper["events"]},
        )
        known = [t for t in (last.events_max_ts, tail) if t is not None]
        return max(known) if known else None

    def _log(
        self,
        run_id: int,
        kind: str,
        started_at: datetime,
        upper: dict[str, datetime | None],
        rows: int,
        newest: datetime | None,
    ) -> None:
        versions = {}
        for table in (*defs.STATE, *defs.AGGREGATES):
            delta = self.store.table(defs.TABLE_NAMES(table.name))
            if delta is not None:
                versions[defs.TABLE_NAMES(table.name)] = delta.version()
        record = {
            RUN_ID: run_id,
            "kind": kind,
            "definitions": self.definitions,
            "started_at": started_at,
            "finished_at": datetime.now(UTC),
            "rows_folded": rows,
            "events_max_ts": newest,
            TABLE_VERSIONS: dump_versions(versions),
            **{f"{t}_loaded_to": upper[t] for t in WATERMARKED},
        }
        self.store.append(ROLLUP_RUNS, pa.Table.from_pylist([record], RUNS_SCHEMA), RUNS_SCHEMA)

    def _forget(self, users: tuple[str, ...]) -> None:
        """Erasure, after the run that retracted the users' contributions: rewrite every rollup
        table without their state rows (merged, so no stored row of an aggregate was computed
        with them) and vacuum at once the files that held them."""
        self.compact(forget=users)
        self.store.maintain(retention_hours=0)

    def compact(self, forget: tuple[str, ...] = (), threads: int | None = None) -> str:
        """Merge the rollups' committed rows to one row per key under a run of its own, and keep
        in the run log only the runs the rows still refer to; rows of runs that never committed
        are dropped. The kind logged is returned. `threads`: the most DuckDB uses meanwhile
        (None: every core).

        The aggregates are rewritten whole (a row per bucket: small whatever the history). The
        per-user state tables are rewritten whole (`compact`) only when users are forgotten
        (their state rows are left out) or when the rows of the runs since the state's last whole
        rewrite (its *base*) reach `whole_share` of the base's; otherwise only those newer rows
        are merged (`merge`), replacing them in the same commit. At 100M events a whole rewrite
        takes minutes, during which no fold is committed; a merge costs what the runs since the
        base appended."""
        started_at = datetime.now(UTC)
        wh = self._warehouse()
        with _threads(wh, threads):
            return self._compact(wh, started_at, forget)

    def _compact(self, wh: Warehouse, started_at: datetime, forget: tuple[str, ...]) -> str:
        last = self._pinned_run(wh)  # a merge replaces the newer rows of the tables as they are
        if last is None or (last.kind in COMPACTED and not forget):
            return "idle"
        base: int | None = wh.scalar(BASE_RUN, {"bases": list(BASES)})
        whole = bool(forget) or base is None or self._newer_share(wh, base) >= self.whole_share
        run_id = self._next_run_id(last)
        for table in (*defs.STATE, *defs.AGGREGATES):
            name = defs.TABLE_NAMES(table.name)
            if not wh.has(name):
                continue
            state = table in defs.STATE
            newer = f"{RUN_ID} > {base}" if state and not whole else None
            conditions = [COMMITTED]
            if newer:
                conditions.append(newer)
            if state:
                conditions.append("NOT list_contains($forget, user_id)")
            merged = table.merged_sql(f"(SELECT * FROM {name} WHERE {' AND '.join(conditions)})")
            names = [c.name for c in table.keys]
            order = ", ".join(sorted(names, key=lambda n: n != "user_id"))
            cursor = wh.cursor()
            try:
                sql = f"SELECT *, CAST({run_id} AS BIGINT) AS {RUN_ID} FROM ({merged}) ORDER BY {order}"
                # streamed from DuckDB's sort (which spills) into the commit: a table of a long
                # history is never held in this process
                rows = cursor.sql(sql, params=used_params(sql, {"forget": list(forget)})).arrow()
                self.store.replace(name, rows, schema(table), where=newer)
            finally:
                cursor.close()
        kind = "compact" if whole else "merge"
        self._log(run_id, kind, started_at, last.loaded_to, 0, last.events_max_ts)
        runs = self.store.table(ROLLUP_RUNS)
        assert runs is not None  # it holds the row just logged
        kept = pc.field(RUN_ID) >= run_id
        if not whole:
            kept = kept | (pc.field(RUN_ID) == base)
        self.store.replace(ROLLUP_RUNS, runs.to_pyarrow_dataset().to_table(filter=kept), RUNS_SCHEMA)
        return kind

    def _newer_share(self, wh: Warehouse, base: int) -> float:
        """The state tables' rows of the runs after `base` as a share of the base's."""
        newer = total = 0
        for table in defs.STATE:
            name = defs.TABLE_NAMES(table.name)
            if wh.has(name):
                # two counts, not one FILTER: the filtered one skips the base's row groups by their
                # run-id statistics, the plain one reads only the Parquet footers
                total += int(wh.scalar(f"SELECT count(*) FROM {name}") or 0)
                newer += int(wh.scalar(f"SELECT count(*) FROM {name} WHERE {RUN_ID} > $base", {"base": base}) or 0)
        return newer / max(total - newer, 1)

    def follow(self, interval: float, stop: threading.Event, compact_every: float = 300.0) -> None:
        """Run every `interval` seconds, or less often so that folds take at most `RUN_SHARE` of
        the time, until `stop` is set; compact after the first run (what piled up while no job
        followed the lake: every fold's lookups read each run's files) and then every
        `compact_every` seconds, or less often so that compactions take at most
        `COMPACTION_SHARE` of the time."""
        next_compaction = time.monotonic()
        while not stop.is_set():
            try:
                with self.store.lock():
                    began = time.monotonic()
                    report = self._run()
                    # only folds set the pace: after a rebuild (minutes on a long history) the
                    # job folds what came meanwhile at once, rather than leave it to every page
                    paced = RUN_SHARE if report.kind == "fold" else 1.0
                    next_run = next_start(time.monotonic(), began, interval, paced)
                    if report.kind != "idle":
                        log.info(
                            "rollup run %s (%s): %d rows, %d users in %.2f s",
                            report.run_id,
                            report.kind,
                            report.rows_folded,
                            report.users,
                            report.seconds,
                        )
                    if time.monotonic() >= next_compaction:
                        began = time.monotonic()
                        kind = self.compact(threads=COMPACTION_THREADS)
                        if kind != "idle":
                            self.store.maintain(retention_hours=1)
                            log.info("rollup compaction (%s) in %.2f s", kind, time.monotonic() - began)
                        next_compaction = next_start(time.monotonic(), began, compact_every, COMPACTION_SHARE)
            except Exception:
                if stop.is_set():  # the run was broken off by the stop itself
                    return
                log.exception("rollup run failed; retried in %.0f s", interval)
                next_run = time.monotonic() + interval
            stop.wait(max(0.0, next_run - time.monotonic()))
        self.close()


@contextlib.contextmanager
def _threads(wh: Warehouse, threads: int | None) -> Iterator[None]:
    """DuckDB on at most `threads` for the block (None: as it is). The setting is the database's,
    so only for a warehouse no other thread queries meanwhile (the job's)."""
    if threads is None:
        yield
        return
    wh.cursor().execute(f"SET threads = {int(threads)}")
    try:
        yield
    finally:
        wh.cursor().execute("RESET threads")


def _has_rows(wh: Warehouse, batch: Batch) -> bool:
    if batch.erased:
        return True
    for sql in (batch.events, batch.exposures, batch.decisions):
        probe = f"SELECT EXISTS ({sql})"
        if wh.scalar(probe, batch.params):
            return True
    return False
