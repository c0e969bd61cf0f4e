"""The cockpit's caches: what a query returned is kept until the lake changes.

Every panel reads through `cached(fn, *args)` or `periodic(fn, *args)`, where `fn` is a function of
`metrics/` taking the warehouse first. A result is keyed on the function, its arguments and the
lake's snapshot (the table versions `Warehouse.refresh()` reports, re-read at most once per
`SNAPSHOT_SECONDS`), so a quiet lake is never queried twice however often the panels redraw, the
sessions that redraw in the same few seconds share one snapshot and its results, and a new
version is read on a later redraw.

- `cached` waits for the result of the snapshot: for what must be current when shown (alerts,
  pauses, the freshness header) and for quick queries.
- `periodic`, for the scans of the raw history that cost seconds on a large lake, never waits
  once a result exists: the panel shows its newest result while a newer one is computed in the
  background (`pages.renewing`) at most every `PERIODIC_SECONDS`, and shows that on a later
  redraw. Its first result is waited for `FIRST_WAIT_SECONDS` at most (all the panels of a run
  together: `new_run`): past them the panel says it is being computed (`Pending`, drawn by
  `pages.ui.panel`) and fills in on a later redraw, so a page's first render never waits for a
  scan of the whole history.
  The rollups' aggregates behind every analytics panel are renewed the same way, for every
  snapshot or less often when folding the live tail takes long (`aggregates`). The scans run on
  a DuckDB of their own (`scan_warehouse`), with one thread, so that one of them never holds
  every core while a page is drawn.

The process-wide resources (settings, warehouses, scenario) live here too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx
import streamlit as st

from metrics.rollup import read
from momento.lake.warehouse import Warehouse
from momento.scenario import Scenario, load_scenario
from momento.settings import Settings, load_settings
from pages.renewing import Renewing

P = ParamSpec("P")
T = TypeVar("T")
Snapshot = tuple[tuple[str, int | None], ...]

MAX_ENTRIES = 512
"""Results kept (least recently used go first): a few pages × filters × the last snapshots."""
SNAPSHOT_SECONDS = 5.0
"""How long the cockpit keeps reading one snapshot of the lake (the live panels' refresh period):
under live traffic the lake moves every second, and each new snapshot costs every panel a query."""
FIRST_WAIT_SECONDS = 1.0
"""How long the panels of a page's run wait, together, for first results computed in the
background (see `new_run`)."""
PERIODIC_SECONDS = 30.0
"""How long a `periodic` result is kept however the lake moves."""
PERIODIC_SHARE = 0.1
"""The most of the time each `periodic` scan is renewed for: one that took 12 s is kept 108 s."""
_SCANS = threading.Semaphore(1)
"""`periodic` scans run one at a time: each reads the whole history, so several at once only slow
each other and leave the pages less of the machine."""
SCAN_THREADS = 1
"""The threads of the scans' DuckDB (`scan_warehouse`)."""
SCAN_MEMORY_SHARE = 0.25
"""The scans' share of `MOMENTO_COCKPIT_MEMORY_MB`; the pages' queries have the rest."""
FOLD_SHARE = 0.25
"""The most of the time the aggregates' folds of the live tail take. A fold looks up the state of
every user in the tail: tenths of a second on the demo's lake, about 2 s at 100M events under
live traffic, which renewed for every snapshot kept most of a core busy beside the pages."""
AGGREGATES = "rollups.aggregates"
"""The key of the aggregates among the renewed results."""


@st.cache_resource
def settings() -> Settings:
    return load_settings()


@st.cache_resource
def warehouse() -> Warehouse:
    """The read-only warehouse of the pages' queries, one per cockpit process; it refreshes its
    snapshot itself, and its DuckDB keeps to the pages' share of `MOMENTO_COCKPIT_MEMORY_MB`
    (spilling past it)."""
    return Warehouse(
        settings().lake,
        min_refresh_seconds=SNAPSHOT_SECONDS,
        memory_limit_mb=round(settings().cockpit_memory_mb * (1 - SCAN_MEMORY_SHARE)),
    )


@st.cache_resource
def scan_warehouse() -> Warehouse:
    """The read-only warehouse of the `periodic` scans of the raw history, one per cockpit process.

    A DuckDB of its own, because DuckDB's threads are set per database: with `SCAN_THREADS` a
    scan leaves the other cores to the pages (at 100M events, on 2 cores, Engine health's first
    render took 3.2 s beside a 2.2 s scan of every decision, 1.7 s without); with no cache of file
    data, as the history it reads would push the rollups out of the pages' cache; within
    `SCAN_MEMORY_SHARE` of the cockpit's memory (spilling past it)."""
    return Warehouse(
        settings().lake,
        min_refresh_seconds=SNAPSHOT_SECONDS,
        memory_limit_mb=round(settings().cockpit_memory_mb * SCAN_MEMORY_SHARE),
        cache_file_data=False,
        threads=SCAN_THREADS,
    )


@st.cache_resource
def service_client() -> httpx.Client:
    """One client for the cockpit's calls to the service, its connections kept between calls (a
    client made per call builds a TLS context every time: ~20 ms of every probe)."""
    return httpx.Client()


@st.cache_resource
def scenario() -> Scenario:
    return load_scenario(settings().scenario)


@st.cache_resource
def renewing() -> Renewing:
    """The results `periodic` and `aggregates` serve, one store per cockpit process."""
    return Renewing(MAX_ENTRIES)


def snapshot() -> Snapshot:
    """The lake's table versions now."""
    return tuple(sorted(warehouse().refresh().items()))


def _key(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    return f"{fn.__module__}.{fn.__qualname__}", args, tuple(sorted(kwargs.items()))


def cached(fn: Callable[Concatenate[Warehouse, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(warehouse(), *args, **kwargs)`, computed once per snapshot of the lake.

    `fn` is a module-level function of `metrics/`; its arguments must be hashable values
    (Filters, strings, numbers, tuples, frozen dataclasses). Errors are not cached: the next
    redraw tries again."""
    name, args_key, kwargs_key = _key(fn, args, kwargs)
    return _cached(fn, name, snapshot(), args_key, kwargs_key)


def periodic(fn: Callable[Concatenate[Warehouse, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`cached`, except that once a result exists it is served at once while a newer one is
    computed in the background, at most every `PERIODIC_SECONDS`, so that renewing it takes at
    most `PERIODIC_SHARE` of the time, one scan at a time, on `scan_warehouse` (at its own
    snapshot, refreshed as often as the pages'); and that the first raises `Pending` past
    `FIRST_WAIT_SECONDS` (see the module docstring). For the scans of the raw tables that cost
    seconds on a large lake (run once per snapshot, each would keep a core busy). The result is
    shared by every session, not copied: callers only read it."""

    def compute() -> T:
        return fn(scan_warehouse(), *args, **kwargs)

    return renewing().get(
        _key(fn, args, kwargs),
        snapshot(),
        compute,
        wait=_first_wait(),
        every=PERIODIC_SECONDS,
        share=PERIODIC_SHARE,
        gate=_SCANS,
    )


_run = threading.local()  # the deadline of first results in this script thread's run


def new_run() -> None:
    """Called by app.py at the start of every run of a page: its panels share one wait of
    `FIRST_WAIT_SECONDS` for first results, rather than each waiting that long in turn. A
    fragment's rerun later in the run's thread finds the deadline passed: a new key there (a
    widget changed) says it is pending until the next redraw rather than holding the rerun."""
    _run.deadline = time.monotonic() + FIRST_WAIT_SECONDS


def _first_wait() -> float:
    deadline: float | None = getattr(_run, "deadline", None)
    return FIRST_WAIT_SECONDS if deadline is None else max(0.0, deadline - time.monotonic())


def aggregates() -> read.Aggregates:
    """Every rollup aggregate plus the live tail (or from raw), as newly as the cockpit has folded
    them; shared by every panel and session. The first read serves the rollups as their newest
    run left them (exact as of it) and folds the tail in behind; later folds come for every
    snapshot, or less often so that they take at most `FOLD_SHARE` of the time. A fold holds the
    warehouse on its snapshot (the panels keep reading that snapshot until the fold ends), and
    reads of the rollups only the runs logged since the newest result's."""
    pre_days = scenario().business.pre_period_days

    def fold(tail: bool = True) -> read.Aggregates:
        wh = warehouse()
        since = renewing().newest(AGGREGATES)
        with wh.held():  # one snapshot for the whole fold, while the panels go on querying
            folded = read.aggregates(wh, pre_days, tail=tail, since=since)
        folded.database()  # made here, in the background, rather than by the first panel to query it
        return folded

    return renewing().get(AGGREGATES, snapshot(), fold, quick=lambda: fold(tail=False), share=FOLD_SHARE)


@st.cache_data(show_spinner=False, max_entries=MAX_ENTRIES)
def _cached(
    _fn: Callable[..., Any], name: str, lake: Snapshot, args: tuple[Any, ...], kwargs: tuple[tuple[str, Any], ...]
) -> Any:
    """The cached call; `name`, `lake` and the arguments are the key (`_fn` is not hashed:
    Streamlit skips parameters whose name starts with an underscore)."""
    return _fn(warehouse(), *args, **dict(kwargs))
