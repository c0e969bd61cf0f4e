"""What every cockpit page shares: the warehouse, the scenario, the global filters (kept in
the URL so a view can be shared), the header with freshness and engine status, error states
and number formats. Pages stay thin: numbers come from `metrics/`, drawing from Altair.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import date, datetime, timezone

import httpx
import streamlit as st

from decisioning.scenario import Scenario, ScenarioError, load_scenario
from metrics.filters import Filters
from metrics.warehouse import Warehouse, WarehouseError
from momento.config import Settings, load_settings

ALL = "All"


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


@st.cache_data(ttl=2, show_spinner=False)
def service_status(url: str) -> tuple[bool, str]:
    """Live probe of the decisioning service: (up, a short status sentence)."""
    try:
        response = httpx.get(f"{url.rstrip('/')}/healthz", timeout=0.5)
    except httpx.HTTPError as exc:
        return False, f"engine unreachable at {url} ({type(exc).__name__})"
    if response.status_code != 200:
        return False, f"engine at {url} answered {response.status_code}"
    return True, f"engine up at {url}"


@st.cache_data(ttl=2, show_spinner=False)
def newest_event() -> datetime | None:
    return warehouse().scalar("SELECT max(received_at) FROM events")


def _choice(label: str, key: str, options: list[str]) -> str | None:
    current = st.query_params.get(key, ALL)
    options = [ALL, *options]
    chosen = st.sidebar.selectbox(label, options, index=options.index(current) if current in options else 0, key=f"flt_{key}")
    if chosen == ALL:
        st.query_params.pop(key, None)
        return None
    st.query_params[key] = chosen
    return chosen


def _date(key: str) -> date | None:
    raw = st.query_params.get(key)
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        st.sidebar.warning(f"Ignored the URL's {key}={raw!r}: not a date (YYYY-MM-DD).")
        return None


def filters() -> Filters:
    """The sidebar's global filters, read from and written back to the URL."""
    sc = scenario()
    st.sidebar.header("Filters")
    start, end = _date("start"), _date("end")
    picked = st.sidebar.date_input("Date range (UTC)", value=(start, end) if start and end else (), key="flt_dates")
    if isinstance(picked, tuple) and len(picked) == 2:
        start, end = picked
        st.query_params["start"], st.query_params["end"] = start.isoformat(), end.isoformat()
    elif not picked:
        start = end = None
        st.query_params.pop("start", None)
        st.query_params.pop("end", None)
    channel = _choice("Channel", "channel", ["web", "app", "email", "push"])
    segment = _choice("Segment", "segment", ["new", "returning"])
    journey = _choice("Journey", "journey", [j.id for j in sc.journeys])
    return Filters(start=start, end=end, channel=channel, segment=segment, journey=journey)


def header(title: str, caption: str) -> None:
    """Page title, a freshness badge (age of the newest event) and the engine's live status."""
    st.title(title)
    st.caption(caption)
    left, right = st.columns(2)
    with left:
        try:
            newest = newest_event()
        except WarehouseError as exc:
            st.error(f"Warehouse unreadable: {exc}")
            newest = None
        if newest is None:
            st.info("No events in the lake yet: run `momento backfill` or `momento demo`.")
        else:
            age = (datetime.now(timezone.utc) - newest).total_seconds()
            badge = "🟢" if age < 30 else ("🟠" if age < 600 else "🔴")
            st.markdown(f"{badge} Newest event **{_age(age)}** ago")
    with right:
        up, sentence = service_status(settings().service_url)
        st.markdown(("🟢 " if up else "🔴 ") + sentence)


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


@contextlib.contextmanager
def panel(name: str) -> Iterator[None]:
    """Run one panel's body; a damaged lake or scenario shows a message there, not a traceback,
    and the rest of the page keeps working."""
    try:
        yield
    except WarehouseError as exc:
        st.error(f"{name}: the warehouse cannot be read. {exc}")
    except ScenarioError as exc:
        st.error(f"{name}: the scenario is invalid. {exc}")


def no_data(message: str) -> None:
    """The empty state of a panel."""
    st.info(message)


def money(value: float | None, currency: str = "BRL") -> str:
    """R$ 1.234,56-style money for display (Brazilian Portuguese grouping)."""
    if value is None:
        return "—"
    text = f"{abs(value):,.2f}".replace(",", "_").replace(".", ",").replace("_", ".")
    symbol = "R$" if currency == "BRL" else currency
    return f"{'-' if value < 0 else ''}{symbol} {text}"


def percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"
