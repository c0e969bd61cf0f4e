"""What every cockpit page shares: the warehouse, the scenario, the global filters (kept in
the URL so a view can be shared), the header with freshness and engine status, cached
computations, error states, tables with CSV download and number formats. Pages stay thin:
numbers come from `metrics/`, drawing from Altair.
"""

from __future__ import annotations

import contextlib
import hmac
import importlib
import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime, timezone
from typing import Any, TypeVar

import altair as alt
import duckdb
import httpx
import polars as pl
import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from momento.scenario import Scenario, ScenarioError, load_scenario
from metrics import health
from metrics.filters import Filters
from momento.lake.warehouse import Warehouse, WarehouseError
from momento.settings import Settings, is_loopback, load_settings

log = logging.getLogger(__name__)
T = TypeVar("T")

REFRESH_SECONDS = 5
"""How often live panels re-run (their cached queries expire just before)."""
CACHE_SECONDS = 4
SLOW_REFRESH_SECONDS = 30
"""How often heavy panels (model quality, parity) re-run."""

CHANNELS = ("web", "app", "email", "push")
SEGMENTS = ("new", "returning")
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2099, 12, 31)
"""The date picker's bounds (Streamlit's default is ten years either side of today)."""


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


def cached(fn: Callable[..., T], *args: Any, slow: bool = False, **kwargs: Any) -> T:
    """`fn(warehouse(), *args, **kwargs)`, cached per distinct arguments for a few seconds (or,
    with `slow`, for SLOW_REFRESH_SECONDS: heavy panels).

    `fn` is a module-level function of `metrics/`; its arguments must be hashable values
    (Filters, strings, numbers, tuples). Errors are not cached: the next run tries again."""
    call = _cached_slow if slow else _cached
    return call(fn.__module__, fn.__qualname__, args, tuple(sorted(kwargs.items())))


def _call(module: str, name: str, args: tuple, kwargs: tuple) -> Any:
    fn = getattr(importlib.import_module(module), name)
    return fn(warehouse(), *args, **dict(kwargs))


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, max_entries=512)
def _cached(module: str, name: str, args: tuple, kwargs: tuple) -> Any:
    return _call(module, name, args, kwargs)


@st.cache_data(ttl=SLOW_REFRESH_SECONDS - 1, show_spinner=False, max_entries=256)
def _cached_slow(module: str, name: str, args: tuple, kwargs: tuple) -> Any:
    return _call(module, name, args, kwargs)


# -- the engine ---------------------------------------------------------------------------


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
def service_metrics(url: str) -> str | None:
    """The service's Prometheus text from /metrics, or None when it cannot be fetched."""
    try:
        response = httpx.get(f"{url.rstrip('/')}/metrics", timeout=0.5)
    except httpx.HTTPError:
        return None
    return response.text if response.status_code == 200 else None


# -- filters ------------------------------------------------------------------------------


def sidebar_filters() -> Filters:
    """Draw the global filters in the sidebar (app.py, once per run, before the page). Each
    widget is bound to the URL query parameter named by its key (dates, channel, segment,
    journey), so a view can be shared and survives page switches; pages read the values with
    `filters()`."""
    st.sidebar.header("Filters")
    st.sidebar.date_input("Date range (UTC)", value=[], min_value=FIRST_DAY, max_value=LAST_DAY, key="dates",
                          bind="query-params", help="Leave empty for all dates.")
    st.sidebar.selectbox("Channel", CHANNELS, index=None, placeholder="All channels", key="channel",
                         bind="query-params")
    st.sidebar.selectbox("Segment", SEGMENTS, index=None, placeholder="All segments", key="segment",
                         bind="query-params")
    try:
        journeys = {j.id: j.name for j in scenario().journeys}
    except ScenarioError as exc:
        st.sidebar.error(f"Journeys unavailable: {exc}")
        journeys = {}
    # Options are the journeys' ids, not their names: a bound widget writes what it displays
    # into the URL, and ids keep shared links valid when a journey is renamed.
    st.sidebar.selectbox("Journey", list(journeys), index=None, placeholder="All journeys", key="journey",
                         bind="query-params", help=" · ".join(f"{k}: {v}" for k, v in journeys.items()))
    return filters()


def filters() -> Filters:
    """The global filters of this run (the sidebar's values)."""
    _through_app()
    state = st.session_state
    start, end = _date_range(state.get("dates"))
    return Filters(start=start, end=end, channel=state.get("channel"), segment=state.get("segment"),
                   journey=state.get("journey"))


def _date_range(value: Any) -> tuple[date | None, date | None]:
    """The picked (start, end), or (None, None) while the range is empty or half-picked."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return min(value), max(value)
    return None, None


def describe(f: Filters) -> str:
    """The active filters in words, for empty-state messages."""
    parts = []
    if f.start and f.end:
        parts.append(f"{f.start:%d %b %Y} – {f.end:%d %b %Y}")
    parts += [f"{name} = {value}" for name, value in
              (("channel", f.channel), ("segment", f.segment), ("journey", f.journey)) if value]
    return ", ".join(parts) or "no filter"


# -- header -------------------------------------------------------------------------------


def _through_app() -> None:
    """Make sure this page runs inside app.py's navigation.

    A fresh Streamlit server whose app has a `pages/` folder serves its first deep link (say
    /governance?channel=web) the legacy multipage way: the page file alone, without app.py's
    layout, navigation and filters, until some run calls st.navigation. A page run that way
    switches the server to st.navigation and reruns, so app.py draws the requested page."""
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def header(title: str, caption: str) -> None:
    """Page title, the active filters, a freshness badge (age of the newest event) and the
    engine's live status."""
    _through_app()
    st.title(title)
    st.caption(f"{caption} · Showing: {describe(filters())}")
    _status_row()


def newest_event() -> datetime | None:
    """When the newest event reached the lake (cached like every query)."""
    return cached(health.newest_received)


@st.fragment(run_every=REFRESH_SECONDS)
def _status_row() -> None:
    left, right = st.columns(2)
    with left:
        _freshness()
    with right:
        up, sentence = service_status(settings().service_url)
        st.markdown(f":green-badge[:material/check_circle: Engine up] {sentence}" if up
                    else f":red-badge[:material/error: Engine down] {sentence}")


def _freshness() -> None:
    lake = settings().lake
    if not lake.exists():
        st.warning(f"No lake at `{lake}`: run `momento backfill` or `momento demo` to create one.")
        return
    try:
        newest = newest_event()
        broken = dict(warehouse().errors)
    except (WarehouseError, duckdb.Error) as exc:
        # Warehouse() and refresh() let DuckDB's own error through when a table's first Parquet
        # file is corrupt or missing (they bind the view's schema from it): same message.
        st.error(f"The warehouse cannot be read: {exc}")
        return
    for message in broken.values():
        st.warning(message)
    if newest is None:
        st.info("No events in the lake yet: run `momento backfill` or `momento demo`.")
        return
    seconds = (datetime.now(timezone.utc) - newest).total_seconds()
    color, label = ("green", "Live") if seconds < 30 else ("orange", "Delayed") if seconds < 600 else ("red", "Stale")
    st.markdown(f":{color}-badge[:material/schedule: {label}] Newest event **{age(seconds)}** ago",
                help=f"{newest:%Y-%m-%d %H:%M:%S} UTC. Live under 30 s, delayed under 10 min, stale after.")


def age(seconds: float) -> str:
    """A duration in the largest sensible unit (42 s, 7 min, 3.5 h, 2.0 days)."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# -- panels, tables, charts ---------------------------------------------------------------


@contextlib.contextmanager
def panel(name: str) -> Iterator[None]:
    """Run one panel's body; a damaged lake or scenario, or any unexpected failure, shows a
    message there instead of a traceback, and the rest of the page keeps working."""
    try:
        yield
    except (WarehouseError, duckdb.Error) as exc:  # duckdb.Error: see _freshness
        st.error(f"{name}: the warehouse cannot be read. {exc}")
    except ScenarioError as exc:
        st.error(f"{name}: the scenario is invalid. {exc}")
    except Exception as exc:  # a panel must never take the page down
        log.exception("panel %r failed", name)
        st.error(f"{name}: could not be drawn ({type(exc).__name__}: {exc}). The rest of the page is unaffected.")


def no_data(message: str) -> None:
    """The empty state of a panel."""
    st.info(message)


def table(frame: pl.DataFrame, name: str, column_config: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
    """A formatted table with a CSV download of exactly what it shows."""
    st.dataframe(frame, hide_index=True, column_config=dict(column_config or {}), **kwargs)
    csv_frame = frame.with_columns(pl.col(c).cast(pl.List(pl.String)).list.join(" ")
                                   for c, t in frame.schema.items() if isinstance(t, pl.List))
    st.download_button("Download CSV", csv_frame.write_csv(), file_name=f"{name}.csv", mime="text/csv",
                       key=f"csv_{name}", icon=":material/download:")


def chart(spec: alt.TopLevelMixin) -> None:
    """An Altair chart across the container's width, themed for light and dark."""
    st.altair_chart(spec, width="stretch")


def time_axis(field: str = "bucket", title: str = "Time (UTC)", bucket_s: int | None = None) -> alt.X:
    """A readable time x-axis; with `bucket_s`, labels show days for hourly-or-coarser buckets
    and hours and minutes below that."""
    fmt = {} if bucket_s is None else {"format": "%d %b" if bucket_s >= 3600 else "%d %b %H:%M"}
    return alt.X(f"{field}:T", title=title, axis=alt.Axis(labelAngle=0, labelOverlap=True, **fmt))


def money(value: float | None, currency: str = "BRL") -> str:
    """R$ 1.234,56-style money for display (Brazilian Portuguese grouping)."""
    if value is None:
        return "—"
    text = f"{abs(value):,.2f}".replace(",", "_").replace(".", ",").replace("_", ".")
    symbol = "R$" if currency == "BRL" else currency
    return f"{'-' if value < 0 else ''}{symbol} {text}"


def percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def number(value: float | None, digits: int = 0) -> str:
    """Grouped thousands (1,234) for counts and rates."""
    return "—" if value is None else f"{value:,.{digits}f}"


# -- the login gate (off loopback) ----------------------------------------------------------

PROXY_USER_HEADER = "X-Forwarded-User"
PROXY_SECRET_HEADER = "X-Momento-Proxy-Secret"


def require_login() -> None:
    """Off loopback, show nothing to a viewer the reverse proxy did not sign in: app.py calls
    this before any page renders. The proxy (oauth2-proxy, nginx auth_request, a company SSO)
    authenticates the viewer and sends, with every request, the user name in `X-Forwarded-User`
    and `MOMENTO_COCKPIT_PROXY_SECRET` in `X-Momento-Proxy-Secret`; it must drop both headers
    from what the viewer sends. Without the secret a header naming a user proves nothing, so a
    cockpit reached around the proxy stays closed. The cockpit counts as off loopback when
    `MOMENTO_COCKPIT_HOST`, or the address Streamlit was told to bind, is not a loopback address."""
    config = settings()
    bound = st.get_option("server.address")
    if is_loopback(config.cockpit_host) and (not bound or is_loopback(str(bound))):
        return
    headers = st.context.headers
    user = (headers.get(PROXY_USER_HEADER) or "").strip()
    given = (headers.get(PROXY_SECRET_HEADER) or "").encode()
    secret = (config.cockpit_proxy_secret or "").encode()
    if secret and user and hmac.compare_digest(given, secret):
        st.sidebar.caption(f"Signed in as {user}")
        return
    st.title("Momento")
    st.error("Sign in through your company's single sign-on to open this cockpit.", icon=":material/lock:")
    st.stop()
