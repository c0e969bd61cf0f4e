"""What every cockpit page shares: the global filters (kept in the URL so a view can be
shared), the header with freshness and engine status, error and empty states, and drawing a
chart. Pages stay thin: numbers come from `metrics/` through the one cache (`pages.cache`),
charts from `pages.charts`, tables from `pages.tables`, text from `momento.formatting`.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import duckdb
import httpx
import streamlit as st

from metrics import health
from metrics.filters import Filters
from momento import formatting as fmt
from momento.codes import CHANNELS
from momento.lake.location import LocationError
from momento.lake.warehouse import WarehouseError
from momento.scenario import ScenarioError
from momento.settings import is_loopback
from pages import charts
from pages.cache import cached, scenario, service_client, settings, warehouse
from pages.navigation import through_app
from pages.renewing import Pending

log = logging.getLogger(__name__)

REFRESH_SECONDS = 5
"""How often live panels re-run (a query runs again only when the lake has changed)."""
PENDING = "computed over the whole history for the first time: it shows here within a few seconds."
"""What a panel whose first result is still being computed says."""

SEGMENTS = ("new", "returning")
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2099, 12, 31)
"""The date picker's bounds (Streamlit's default is ten years either side of today)."""


# -- the engine ---------------------------------------------------------------------------


@st.cache_data(ttl=2, show_spinner=False)
def service_status(url: str) -> tuple[bool, str]:
    """Live probe of the decisioning service: (up, a short status sentence)."""
    try:
        response = service_client().get(f"{url.rstrip('/')}/healthz", timeout=0.5)
    except httpx.HTTPError as exc:
        return False, f"engine unreachable at {url} ({type(exc).__name__})"
    if response.status_code != 200:
        return False, f"engine at {url} answered {response.status_code}"
    return True, f"engine up at {url}"


@st.cache_data(ttl=2, show_spinner=False)
def service_metrics(url: str) -> str | None:
    """The service's Prometheus text from /metrics, or None when it cannot be fetched."""
    try:
        response = service_client().get(f"{url.rstrip('/')}/metrics", timeout=0.5)
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
    st.sidebar.date_input(
        "Date range (UTC)",
        value=[],
        min_value=FIRST_DAY,
        max_value=LAST_DAY,
        key="dates",
        bind="query-params",
        help="Leave empty for all dates.",
    )
    st.sidebar.selectbox(
        "Channel", CHANNELS, index=None, placeholder="All channels", key="channel", bind="query-params"
    )
    st.sidebar.selectbox(
        "Segment", SEGMENTS, index=None, placeholder="All segments", key="segment", bind="query-params"
    )
    try:
        journeys = {j.id: j.name for j in scenario().journeys}
    except ScenarioError as exc:
        st.sidebar.error(f"Journeys unavailable: {exc}")
        journeys = {}
    # Options are the journeys' ids, not their names: a bound widget writes what it displays
    # into the URL, and ids keep shared links valid when a journey is renamed.
    st.sidebar.selectbox(
        "Journey",
        list(journeys),
        index=None,
        placeholder="All journeys",
        key="journey",
        bind="query-params",
        help=" · ".join(f"{k}: {v}" for k, v in journeys.items()),
    )
    return filters()


def filters() -> Filters:
    """The global filters of this run (the sidebar's values)."""
    through_app()
    state = st.session_state
    start, end = _date_range(state.get("dates"))
    return Filters(
        start=start, end=end, channel=state.get("channel"), segment=state.get("segment"), journey=state.get("journey")
    )


def _date_range(value: Any) -> tuple[date | None, date | None]:
    """The picked (start, end), or (None, None) while the range is empty or half-picked."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return min(value), max(value)
    return None, None


def describe(f: Filters) -> str:
    """The active filters in words, for empty-state messages."""
    parts = []
    if f.start and f.end:
        parts.append(f"{fmt.date(f.start)} – {fmt.date(f.end)}")
    parts += [
        f"{name} = {value}"
        for name, value in (("channel", f.channel), ("segment", f.segment), ("journey", f.journey))
        if value
    ]
    return ", ".join(parts) or "no filter"


# -- header -------------------------------------------------------------------------------


def header(title: str, caption: str) -> None:
    """Page title, the active filters, a freshness badge (age of the newest event) and the
    engine's live status."""
    through_app()
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
        st.markdown(
            f":green-badge[:material/check_circle: Engine up] {sentence}"
            if up
            else f":red-badge[:material/error: Engine down] {sentence}"
        )


def _freshness() -> None:
    lake = settings().lake
    try:
        lake.check()
    except LocationError as exc:  # object storage out of reach
        st.error(f"The lake cannot be read: {exc}")
        return
    if not lake.is_dir():
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
    seconds = (datetime.now(UTC) - newest).total_seconds()
    color, label = ("green", "Live") if seconds < 30 else ("orange", "Delayed") if seconds < 600 else ("red", "Stale")
    st.markdown(
        f":{color}-badge[:material/schedule: {label}] Newest event **{fmt.duration(seconds)}** ago",
        help=f"{fmt.timestamp(newest)} UTC. Live under 30 s, delayed under 10 min, stale after.",
    )


# -- panels and charts ---------------------------------------------------------------------


PANEL_FAILED = ("cannot be read", "is invalid", "could not be drawn")
"""What a panel that failed says (`panel`): the benchmarks count such panels."""


@contextlib.contextmanager
def panel(name: str) -> Iterator[None]:
    """Run one panel's body; a damaged lake or scenario, or any unexpected failure, shows a
    message there instead of a traceback, and the rest of the page keeps working. A result still
    being computed for the first time (`Pending`) says so: the panel fills in on a later redraw
    (every panel that can be pending is in a fragment redrawn every `REFRESH_SECONDS`)."""
    try:
        yield
    except Pending:
        st.info(f"{name}: {PENDING}", icon=":material/hourglass_top:")
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


def chart(spec: charts.Spec) -> None:
    """An Altair chart (`pages.charts`) across the container's width, themed for light and dark,
    its numbers written the pt-BR way."""
    st.altair_chart(charts.pt_br(spec), width="stretch")


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
