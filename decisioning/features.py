"""Real-time features: the numeric encoding models read, and the live store that feeds it.

`encode` turns feature rows (plain mappings, see `ROW_KEYS`) into an (n, d) float matrix in
`FEATURE_NAMES` order; `encode_columns` does the same from columns, so the backfill encodes
100k rows with numpy and the service encodes one row with the same code.

`FeatureStore` keeps per-user and per-session state in memory for only as long as decisions
need it (session and user time-to-live), is safe under concurrent requests, and erases a user
on request. A consent withdrawal is kept apart from the expiring state so it can never lapse.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FEATURE_NAMES: tuple[str, ...] = (
    "bias",
    "recency",  # log-scaled seconds since the user's previous visit (1.0 = never seen / 30+ days)
    "pages_viewed",  # pages viewed in this session, /10, capped at 2
    "cart_value",  # log-scaled cart value (1.0 ~ BRL 1,000)
    "device_mobile",
    "device_desktop",
    "device_tablet",
    "returning",
    "price_sensitivity",  # low 0, medium 0.5, high 1
    "category_match",  # the page's category is the user's last category
    "referrer_search",
    "referrer_social",
    "referrer_email",
    "referrer_direct",
    "hour_sin",
    "hour_cos",
    "email_open_recency",  # log-scaled seconds since the last e-mail open (1.0 = none in 30 days)
)

# The keys a feature row may hold (missing keys take neutral values).
ROW_KEYS: tuple[str, ...] = (
    "recency_seconds", "pages_viewed", "cart_value", "device", "returning", "price_sensitivity",
    "last_category", "category", "referrer", "hour", "seconds_since_email_open",
)

DEVICES = ("mobile", "desktop", "tablet")
REFERRERS = ("search", "social", "email", "direct")
PRICE_SENSITIVITY = {"low": 0.0, "medium": 0.5, "high": 1.0}
_LOG_MONTH = math.log1p(30 * 86_400.0)
_LOG_CART = math.log1p(1_000.0)
_SEARCH = ("google.", "bing.", "duckduckgo.", "yahoo.", "search")
_SOCIAL = ("facebook.", "instagram.", "tiktok.", "twitter.", "x.com", "pinterest.", "youtube.", "social")
_EMAIL = ("mail", "newsletter", "utm_medium=email", "push")


def referrer_type(referrer: str | None) -> str:
    """The referrer's kind (search, social, email, direct, other) from a kind or a URL."""
    if not referrer:
        return "direct"
    text = referrer.lower()
    if text in REFERRERS or text == "other":
        return text
    for kind, needles in (("email", _EMAIL), ("search", _SEARCH), ("social", _SOCIAL)):
        if any(needle in text for needle in needles):
            return kind
    return "other"


def _numbers(values: Any, n: int, missing: float) -> np.ndarray:
    array = np.asarray(values if values is not None else np.full(n, np.nan), dtype=np.float64)
    array = np.broadcast_to(array, (n,)) if array.ndim == 0 else array
    return np.where(np.isfinite(array), array, missing)


def _log_seconds(values: Any, n: int) -> np.ndarray:
    seconds = _numbers(values, n, np.inf)
    scaled = np.log1p(np.clip(seconds, 0.0, 30 * 86_400.0)) / _LOG_MONTH
    return np.where(np.isfinite(seconds), scaled, 1.0)


def _labels(values: Any, n: int) -> np.ndarray:
    if values is None:
        return np.full(n, None, dtype=object)
    array = np.asarray(values, dtype=object)
    return np.broadcast_to(array, (n,)) if array.ndim == 0 else array


def _sensitivity(values: Any, n: int) -> np.ndarray:
    labels = _labels(values, n)
    out = np.full(n, 0.5)
    for index, value in enumerate(labels):
        if isinstance(value, str):
            out[index] = PRICE_SENSITIVITY.get(value, 0.5)
        elif value is not None and np.isfinite(float(value)):
            out[index] = min(max(float(value), 0.0), 1.0)
    return out


def encode_columns(columns: Mapping[str, Any], n: int) -> np.ndarray:
    """Encode feature columns (keys of `ROW_KEYS`, each length n or a scalar) to (n, d)."""
    X = np.empty((n, len(FEATURE_NAMES)), dtype=np.float64)
    X[:, 0] = 1.0
    X[:, 1] = _log_seconds(columns.get("recency_seconds"), n)
    X[:, 2] = np.minimum(_numbers(columns.get("pages_viewed"), n, 0.0), 20.0) / 10.0
    X[:, 3] = np.log1p(np.clip(_numbers(columns.get("cart_value"), n, 0.0), 0.0, 1e6)) / _LOG_CART
    devices = _labels(columns.get("device"), n)
    for offset, device in enumerate(DEVICES):
        X[:, 4 + offset] = devices == device
    X[:, 7] = _numbers(columns.get("returning"), n, 0.0) > 0
    X[:, 8] = _sensitivity(columns.get("price_sensitivity"), n)
    last, current = _labels(columns.get("last_category"), n), _labels(columns.get("category"), n)
    X[:, 9] = (last == current) & (current != None)  # noqa: E711 (element-wise comparison)
    referrers = _labels(columns.get("referrer"), n)
    for offset, kind in enumerate(REFERRERS):
        X[:, 10 + offset] = referrers == kind
    angle = _numbers(columns.get("hour"), n, 12.0) * (2 * math.pi / 24)
    X[:, 14] = np.sin(angle)
    X[:, 15] = np.cos(angle)
    X[:, 16] = _log_seconds(columns.get("seconds_since_email_open"), n)
    return X


def encode(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Encode feature rows (mappings with keys of `ROW_KEYS`) to an (n, d) float matrix."""
    n = len(rows)
    columns = {
        key: np.array([_nan_if_none(row.get(key)) for row in rows], dtype=object if key in _LABEL_KEYS else np.float64)
        for key in ROW_KEYS
    }
    return encode_columns(columns, n)


_LABEL_KEYS = frozenset({"device", "price_sensitivity", "last_category", "category", "referrer"})


def _nan_if_none(value: Any) -> Any:
    if value is None:
        return np.nan
    if isinstance(value, bool):
        return float(value)
    return value


# -- the live store ---------------------------------------------------------------------------


@dataclass
class _Session:
    touched: float
    pages_viewed: int = 0
    cart_value: float = 0.0
    device: str | None = None
    referrer: str | None = None


@dataclass
class _User:
    touched: float
    last_visit: float | None = None  # last activity before the current session
    current_session: str | None = None
    sessions_seen: int = 0
    last_category: str | None = None
    price_sensitivity: str | float | None = None
    last_email_open: float | None = None
    bought_on: set[int] = field(default_factory=set)  # local day numbers with a purchase
    sessions: dict[str, _Session] = field(default_factory=dict)


class FeatureStore:
    """Live per-user and per-session state with expiry, thread-safe, erasable per user.

    Users live `user_ttl_seconds` after their last activity, sessions `session_ttl_seconds`;
    the users are kept in touch order so expired ones are swept from the front cheaply, and
    at most `max_users` are kept (the least recently seen go first).
    """

    def __init__(
        self,
        *,
        user_ttl_seconds: float = 14 * 86_400.0,
        session_ttl_seconds: float = 30 * 60.0,
        max_users: int = 1_000_000,
        day_of: Callable[[float], int] | None = None,
    ) -> None:
        self.user_ttl, self.session_ttl, self.max_users = user_ttl_seconds, session_ttl_seconds, max_users
        self._users: OrderedDict[str, _User] = OrderedDict()
        self._withdrawn: set[str] = set()
        self._lock = threading.Lock()
        self._day_of = day_of or (lambda ts: int(ts // 86_400))

    def __len__(self) -> int:
        return len(self._users)

    def _find(self, unit: str, now: float) -> _User | None:
        user = self._users.get(unit)
        if user is not None and now - user.touched > self.user_ttl:
            del self._users[unit]
            return None
        return user

    def _touch(self, unit: str, session_id: str | None, now: float) -> tuple[_User, _Session | None]:
        user = self._find(unit, now) or _User(touched=now)
        if session_id and user.current_session != session_id:
            if user.current_session is not None:
                user.last_visit = user.touched
            user.current_session = session_id
            user.sessions_seen += 1
            user.sessions = {k: s for k, s in user.sessions.items() if now - s.touched <= self.session_ttl}
        user.touched = max(user.touched, now)
        self._users[unit] = user
        self._users.move_to_end(unit)
        if len(self._users) > self.max_users:
            self._users.popitem(last=False)
        if not session_id:
            return user, None
        session = user.sessions.get(session_id)
        if session is None or now - session.touched > self.session_ttl:
            session = user.sessions[session_id] = _Session(touched=now)
        session.touched = max(session.touched, now)
        return user, session

    def observe_context(
        self, unit: str, session_id: str | None, now: float, *, device: str | None = None,
        referrer: str | None = None, cart_value: float | None = None, category: str | None = None,
        price_sensitivity: str | float | None = None,
    ) -> None:
        """Record what a decide request tells about the visitor (newest value wins)."""
        with self._lock:
            user, session = self._touch(unit, session_id, now)
            if price_sensitivity is not None:
                user.price_sensitivity = price_sensitivity
            if category:
                user.last_category = category
            if session is not None:
                session.device = device or session.device
                session.referrer = referrer if referrer is not None else session.referrer
                if cart_value is not None:
                    session.cart_value = cart_value

    def observe_event(
        self, unit: str, session_id: str | None, event_type: str, ts: float, *,
        category: str | None = None, revenue: float | None = None, consent: bool | None = None,
    ) -> None:
        """Apply one ingested event to the live state (synchronously, before the next decision)."""
        with self._lock:
            if event_type == "consent_change" and consent is not None:
                (self._withdrawn.discard if consent else self._withdrawn.add)(unit)
            elif event_type == "opt_out":
                self._withdrawn.add(unit)
            user, session = self._touch(unit, session_id, ts)
            if event_type == "page_view" and session is not None:
                session.pages_viewed += 1
            elif event_type == "add_to_cart" and session is not None:
                session.cart_value += max(revenue or 0.0, 0.0)
            elif event_type == "purchase":
                user.bought_on = {day for day in user.bought_on if day >= self._day_of(ts) - 1} | {self._day_of(ts)}
                if session is not None:
                    session.cart_value = 0.0
            elif event_type == "email_open":
                user.last_email_open = ts
            if category:
                user.last_category = category

    def consent_withdrawn(self, unit: str) -> bool:
        """Whether the user withdrew consent (or opted out) and has not consented since."""
        with self._lock:
            return unit in self._withdrawn

    def bought_today(self, unit: str, now: float) -> bool:
        """Whether the user made a purchase on `now`'s (local) day."""
        with self._lock:
            user = self._find(unit, now)
            return user is not None and self._day_of(now) in user.bought_on

    def row(self, unit: str, session_id: str | None, now: float) -> dict[str, Any]:
        """The stored part of a feature row (keys of `ROW_KEYS`) for a decision at `now`."""
        with self._lock:
            user = self._find(unit, now)
            if user is None:
                return {}
            row: dict[str, Any] = {
                "recency_seconds": None if user.last_visit is None else now - user.last_visit,
                "returning": user.sessions_seen > 1,
                "last_category": user.last_category,
                "price_sensitivity": user.price_sensitivity,
                "seconds_since_email_open": None if user.last_email_open is None else now - user.last_email_open,
            }
            session = user.sessions.get(session_id) if session_id else None
            if session is not None and now - session.touched <= self.session_ttl:
                row.update(pages_viewed=session.pages_viewed, cart_value=session.cart_value,
                           device=session.device, referrer=session.referrer)
            return row

    def merge(self, anonymous_unit: str, user_unit: str, now: float) -> None:
        """Identity stitching: the anonymous visitor's state joins the customer's profile."""
        with self._lock:
            if anonymous_unit in self._withdrawn:
                self._withdrawn.add(user_unit)
            anon = self._users.pop(anonymous_unit, None)
            if anon is None:
                return
            user, _ = self._touch(user_unit, None, now)
            user.last_category = anon.last_category or user.last_category
            user.price_sensitivity = user.price_sensitivity or anon.price_sensitivity
            user.last_email_open = max(filter(None, (user.last_email_open, anon.last_email_open)), default=None)
            user.bought_on |= anon.bought_on
            user.sessions_seen = max(user.sessions_seen, anon.sessions_seen)
            user.current_session = user.current_session or anon.current_session
            user.sessions = {**anon.sessions, **user.sessions}

    def erase(self, unit: str) -> None:
        """Forget everything about `unit` (right to erasure), including a consent withdrawal."""
        with self._lock:
            self._users.pop(unit, None)
            self._withdrawn.discard(unit)

    def sweep(self, now: float | None = None) -> int:
        """Drop users not seen within their time-to-live; returns how many were removed."""
        now = time.time() if now is None else now
        removed = 0
        with self._lock:
            while self._users:
                unit, user = next(iter(self._users.items()))
                if now - user.touched <= self.user_ttl:
                    break
                del self._users[unit]
                removed += 1
        return removed
