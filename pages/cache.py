"""The cockpit's one cache: what a query returned is kept until the lake changes.

Every panel reads through `cached(fn, *args)`, where `fn` is a function of `metrics/` taking the
warehouse first. A result is keyed on the function, its arguments and the lake's snapshot (the
table versions `Warehouse.refresh()` reports, re-read at most once per `SNAPSHOT_SECONDS`), so a
quiet lake is never queried twice however often the panels redraw, the sessions that redraw in the
same few seconds share one snapshot and its results, and a new version is read on a later redraw.
The rollups' aggregates, which every analytics panel reads and which take a fold of the live tail
to renew, are kept apart: the newest finished ones, renewed in the background
(`metrics.rollup.live`). The process-wide resources (settings, warehouse, scenario) live here too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import streamlit as st

from metrics.rollup.live import LiveAggregates
from momento.lake.warehouse import Warehouse
from momento.scenario import Scenario, load_scenario
from momento.settings import Settings, load_settings

P = ParamSpec("P")
T = TypeVar("T")
Snapshot = tuple[tuple[str, int | None], ...]

MAX_ENTRIES = 512
"""Results kept (least recently used go first): a few pages × filters × the last snapshots."""
SNAPSHOT_SECONDS = 5.0
"""How long the cockpit keeps reading one snapshot of the lake (the live panels' refresh period):
under live traffic the lake moves every second, and each new snapshot costs every panel a query."""


@st.cache_resource
def settings() -> Settings:
    return load_settings()


@st.cache_resource
def warehouse() -> Warehouse:
    """One read-only warehouse per cockpit process; it refreshes its snapshot itself."""
    return Warehouse(settings().lake, min_refresh_seconds=SNAPSHOT_SECONDS)


@st.cache_resource
def scenario() -> Scenario:
    return load_scenario(settings().scenario)


@st.cache_resource
def live_aggregates() -> LiveAggregates:
    """The rollups' aggregates plus the live tail, one holder per cockpit process."""
    return LiveAggregates(settings().lake, scenario().business.pre_period_days, SNAPSHOT_SECONDS)


def snapshot() -> Snapshot:
    """The lake's table versions now."""
    return tuple(sorted(warehouse().refresh().items()))


def cached(fn: Callable[Concatenate[Warehouse, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(warehouse(), *args, **kwargs)`, computed once per snapshot of the lake.

    `fn` is a module-level function of `metrics/`; its arguments must be hashable values
    (Filters, strings, numbers, tuples, frozen dataclasses). Errors are not cached: the next
    redraw tries again."""
    return _cached(fn, f"{fn.__module__}.{fn.__qualname__}", snapshot(), args, tuple(sorted(kwargs.items())))


@st.cache_data(show_spinner=False, max_entries=MAX_ENTRIES)
def _cached(
    _fn: Callable[..., Any], name: str, lake: Snapshot, args: tuple[Any, ...], kwargs: tuple[tuple[str, Any], ...]
) -> Any:
    """The cached call; `name`, `lake` and the arguments are the key (`_fn` is not hashed:
    Streamlit skips parameters whose name starts with an underscore)."""
    return _fn(warehouse(), *args, **dict(kwargs))
