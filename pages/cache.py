"""The cockpit's one cache: what a query returned is kept until the lake changes.

Every panel reads through `cached(fn, *args)`, where `fn` is a function of `metrics/` taking the
warehouse first. A result is keyed on the function, its arguments and the lake's snapshot (the
table versions `Warehouse.refresh()` reports, re-read at most once a second), so a quiet lake is
never queried twice however often the panels redraw, and a new version is read on the next
redraw (every few seconds). The process-wide resources (settings, warehouse, scenario) live here
too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import streamlit as st

from momento.lake.warehouse import Warehouse
from momento.scenario import Scenario, load_scenario
from momento.settings import Settings, load_settings

P = ParamSpec("P")
T = TypeVar("T")
Snapshot = tuple[tuple[str, int | None], ...]

MAX_ENTRIES = 512
"""Results kept (least recently used go first): a few pages × filters × the last snapshots."""
SHARED_ENTRIES = 4
"""Shared results kept: the newest snapshots' (one is read, the rest are on their way out)."""


@st.cache_resource
def settings() -> Settings:
    return load_settings()


@st.cache_resource
def warehouse() -> Warehouse:
    """One read-only warehouse per cockpit process; it refreshes its snapshot itself."""
    return Warehouse(settings().lake)


@st.cache_resource
def scenario() -> Scenario:
    return load_scenario(settings().scenario)


def snapshot() -> Snapshot:
    """The lake's table versions now."""
    return tuple(sorted(warehouse().refresh().items()))


def cached(fn: Callable[Concatenate[Warehouse, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(warehouse(), *args, **kwargs)`, computed once per snapshot of the lake.

    `fn` is a module-level function of `metrics/`; its arguments must be hashable values
    (Filters, strings, numbers, tuples, frozen dataclasses). Errors are not cached: the next
    redraw tries again."""
    return _cached(fn, f"{fn.__module__}.{fn.__qualname__}", snapshot(), args, tuple(sorted(kwargs.items())))


def shared(fn: Callable[Concatenate[Warehouse, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`cached`, for large results every session reads and none changes (the rollups' aggregates):
    kept once per snapshot and handed out as is, not copied for each reader."""
    return _shared(fn, f"{fn.__module__}.{fn.__qualname__}", snapshot(), args, tuple(sorted(kwargs.items())))


@st.cache_resource(show_spinner=False, max_entries=SHARED_ENTRIES)
def _shared(
    _fn: Callable[..., Any], name: str, lake: Snapshot, args: tuple[Any, ...], kwargs: tuple[tuple[str, Any], ...]
) -> Any:
    return _fn(warehouse(), *args, **dict(kwargs))


@st.cache_data(show_spinner=False, max_entries=MAX_ENTRIES)
def _cached(
    _fn: Callable[..., Any], name: str, lake: Snapshot, args: tuple[Any, ...], kwargs: tuple[tuple[str, Any], ...]
) -> Any:
    """The cached call; `name`, `lake` and the arguments are the key (`_fn` is not hashed:
    Streamlit skips parameters whose name starts with an underscore)."""
    return _fn(warehouse(), *args, **dict(kwargs))
