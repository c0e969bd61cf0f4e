"""Real-time features: the numeric encoding models read, and the live store that feeds it.

`encode` turns feature rows (plain mappings, see `ROW_KEYS`) into an (n, d) float matrix in
`FEATURE_NAMES` order; `encode_columns` does the same from columns, so the backfill encodes
100k rows with numpy and the service encodes one row with the same code.

`FeatureStore` keeps per-user and per-session state in memory for only as long as decisions
need it (session and user time-to-live), is safe under concurrent requests, and erases a user
on request. A consent withdrawal is kept apart from the expiring state so it can never lapse.
The state is columnar (one typed array per field, a row per user) so a million live customers
cost a few hundred bytes each rather than a few Python objects each.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from array import array
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from decisioning.identity import compact_unit

# The policies' features, defined with their shared maths (the Policy lab recomputes choices from them).
from momento.policy_maths import FEATURE_NAMES as FEATURE_NAMES

# The keys a feature row may hold (missing keys take neutral values): numbers, then labels.
_NUMERIC_KEYS = ("recency_seconds", "seconds_since_email_open", "pages_viewed", "cart_value", "returning", "hour")
_LABEL_KEYS = ("device", "price_sensitivity", "last_category", "category", "referrer")
ROW_KEYS: tuple[str, ...] = _NUMERIC_KEYS + _LABEL_KEYS

DEVICES = ("mobile", "desktop", "tablet")
REFERRERS = ("search", "social", "email", "direct")
PRICE_SENSITIVITY = {"low": 0.0, "medium": 0.5, "high": 1.0}
_MONTH = 30 * 86_400.0
_LOG_MONTH = math.log1p(_MONTH)
_LOG_CART = math.log1p(1_000.0)
_SEARCH = ("google.", "bing.", "duckduckgo.", "yahoo.", "search")
_SOCIAL = ("facebook.", "instagram.", "tiktok.", "twitter.", "x.com", "pinterest.", "youtube.", "social")
_EMAIL = ("mail", "newsletter", "utm_medium=email", "push")


@functools.lru_cache(maxsize=4096)  # a site's referrers repeat; the decide path classifies each one
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


# Per numeric key: the value when missing, the clipping range, and the log scale (first four).
_MISSING = np.array([_MONTH, _MONTH, 0.0, 0.0, 0.0, 12.0])
_LOW = np.array([0.0, 0.0, 0.0, 0.0, -np.inf, -np.inf])
_HIGH = np.array([_MONTH, _MONTH, 20.0, 1e6, np.inf, np.inf])
_LOG_SCALES = np.array([_LOG_MONTH, _LOG_MONTH, 1.0, _LOG_CART])
_DEVICE_CODE = {device: code for code, device in enumerate(DEVICES)}
_DEVICE_RANGE = np.arange(len(DEVICES))
_REFERRER_CODE = {kind: code for code, kind in enumerate(REFERRERS)}
_REFERRER_RANGE = np.arange(len(REFERRERS))


def _labels(values: Any, n: int) -> list[Any]:
    if values is None or isinstance(values, str):
        return [values] * n
    return list(values)


def _sensitivity(value: Any) -> float:
    if isinstance(value, str):
        return PRICE_SENSITIVITY.get(value, 0.5)
    if value is None or not math.isfinite(value):
        return 0.5
    return min(max(float(value), 0.0), 1.0)


def _encode(numeric: np.ndarray, labels: Mapping[str, list[Any]]) -> np.ndarray:
    """The one encoding: `numeric` is (n, 6) in `_NUMERIC_KEYS` order (NaN = missing),
    `labels` holds the label columns as lists."""
    n = numeric.shape[0]
    values = np.minimum(np.maximum(np.where(np.isfinite(numeric), numeric, _MISSING), _LOW), _HIGH)
    X = np.empty((n, len(FEATURE_NAMES)), dtype=np.float64)
    X[:, 0] = 1.0
    logs = np.log1p(values[:, :4]) / _LOG_SCALES
    X[:, 1], X[:, 16], X[:, 2], X[:, 3] = logs[:, 0], logs[:, 1], values[:, 2] / 10.0, logs[:, 3]  # see FEATURE_NAMES
    device = np.array([_DEVICE_CODE.get(value, -1) for value in labels["device"]])
    X[:, 4:7] = device[:, None] == _DEVICE_RANGE
    X[:, 7] = values[:, 4] > 0
    X[:, 8] = [_sensitivity(value) for value in labels["price_sensitivity"]]
    X[:, 9] = [
        current is not None and current == last for last, current in zip(labels["last_category"], labels["category"])
    ]
    referrer = np.array([_REFERRER_CODE.get(value, -1) for value in labels["referrer"]])
    X[:, 10:14] = referrer[:, None] == _REFERRER_RANGE
    angle = values[:, 5] * (2 * math.pi / 24)
    X[:, 14] = np.sin(angle)
    X[:, 15] = np.cos(angle)
    return X


def encode_columns(columns: Mapping[str, Any], n: int) -> np.ndarray:
    """Encode feature columns (keys of `ROW_KEYS`, each a length-n sequence or one scalar
    for all rows; missing keys take neutral values) to an (n, d) float matrix."""
    numeric = np.empty((n, len(_NUMERIC_KEYS)))
    for index, key in enumerate(_NUMERIC_KEYS):
        numeric[:, index] = np.nan if columns.get(key) is None else np.asarray(columns[key], dtype=np.float64)
    return _encode(numeric, {key: _labels(columns.get(key), n) for key in _LABEL_KEYS})


def encode(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Encode feature rows (mappings with keys of `ROW_KEYS`) to an (n, d) float matrix."""
    numeric = np.array([[row.get(key) for key in _NUMERIC_KEYS] for row in rows], dtype=np.float64)
    return _encode(
        numeric.reshape(len(rows), len(_NUMERIC_KEYS)), {key: [row.get(key) for row in rows] for key in _LABEL_KEYS}
    )


# -- the live store ---------------------------------------------------------------------------

_NONE = -1  # the label code of "no value"
_RARE = -2  # a label past the interning table's capacity, kept in the store's `_rare` dict
_NO_DAY = -(2**63)
_USER_FIELDS = {  # column -> array type code; a row per user, the current session's state included
    "touched": "d",
    "last_visit": "d",
    "sessions_seen": "q",
    "last_category": "i",
    "price_sensitivity": "i",
    "last_email_open": "d",
    "purchase_day": "q",
    "session": "q",  # hash of the current session id (0: none); its state follows
    "session_touched": "d",
    "pages_viewed": "q",
    "cart_value": "d",
    "device": "i",
    "referrer": "i",
}
_LABEL_FIELDS = ("last_category", "price_sensitivity", "device", "referrer")
_EMPTY_USER = {
    "touched": math.nan,
    "last_visit": math.nan,
    "sessions_seen": 0,
    "last_category": _NONE,
    "price_sensitivity": _NONE,
    "last_email_open": math.nan,
    "purchase_day": _NO_DAY,
    "session": 0,
    "session_touched": math.nan,
    "pages_viewed": 0,
    "cart_value": 0.0,
    "device": _NONE,
    "referrer": _NONE,
}

# A session that is not a user's current one (a second tab or device, or an identified visitor's
# anonymous session): (touched, pages viewed, cart value, device, referrer), kept in a dict.
_Session = tuple[float, int, float, "str | None", "str | None"]


def _later(a: float, b: float) -> float:
    """The later of two instants, NaN meaning none."""
    return b if math.isnan(a) else a if math.isnan(b) else max(a, b)


class _Labels:
    """Interned labels (categories, devices, referrer kinds, price sensitivity): text <-> code.

    Clients choose these texts, so the table is bounded: past `capacity` distinct texts a new
    one gets `_RARE` and the store keeps it per user instead."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._codes: dict[str, int] = {}
        self._texts: list[str] = []

    def code(self, text: str | None) -> int:
        if text is None:
            return _NONE
        code = self._codes.get(text)
        if code is None:
            if len(self._texts) >= self.capacity:
                return _RARE
            code = self._codes[text] = len(self._texts)
            self._texts.append(text)
        return code

    def text(self, code: int) -> str | None:
        return None if code < 0 else self._texts[code]


class FeatureStore:
    """Live per-user and per-session state with expiry, thread-safe, erasable per user.

    Users live `user_ttl_seconds` after their last activity, sessions `session_ttl_seconds`;
    `sweep` (the service runs it every minute) drops the expired users in one vectorised pass,
    and at most `max_users` are kept (past it the least recently seen 1% go at once).

    Layout: a user is a row (a slot) of typed arrays, one per field of `_USER_FIELDS`, found
    through a dict from the user's compact id (`identity.compact_unit`: 32 bytes for a
    pseudonym); labels are interned codes; the current session's state sits in the user's row,
    other live sessions of the same user (rare) in a dict. About 250 bytes per live user
    (`bench/memory.py`) where a dict per user and per session cost ~1.2 kB, and the garbage
    collector has a few dozen containers to scan, not millions.
    """

    def __init__(
        self,
        *,
        user_ttl_seconds: float = 14 * 86_400.0,
        session_ttl_seconds: float = 30 * 60.0,
        max_users: int = 1_000_000,
        day_of: Callable[[float], int] | None = None,
        max_labels: int = 65_536,
    ) -> None:
        self.user_ttl, self.session_ttl, self.max_users = user_ttl_seconds, session_ttl_seconds, max_users
        # an int or a float array per field (its `_USER_FIELDS` type code)
        self._columns: dict[str, array[Any]] = {name: array(code) for name, code in _USER_FIELDS.items()}
        self._slots: dict[bytes | str, int] = {}  # compact unit -> row
        self._units: list[bytes | str | None] = []  # row -> compact unit (None: a free row)
        self._free: list[int] = []
        self._labels = _Labels(max_labels)
        self._rare: dict[tuple[str, int], str] = {}  # (label field, row) -> a label past the table
        self._other_sessions: dict[tuple[bytes | str, int], _Session] = {}
        self._others_of: dict[bytes | str, tuple[int, ...]] = {}  # unit -> its session hashes above
        self._withdrawn: set[bytes | str] = set()
        self._lock = threading.Lock()
        self._day_of = day_of or (lambda ts: int(ts // 86_400))

    def __len__(self) -> int:
        return len(self._slots)

    # -- rows ------------------------------------------------------------------------------

    def _new_row(self, unit: bytes | str) -> int:
        if self._free:
            slot = self._free.pop()
            for name, column in self._columns.items():
                column[slot] = _EMPTY_USER[name]
            self._units[slot] = unit
        else:
            slot = len(self._units)
            for name, column in self._columns.items():
                column.append(_EMPTY_USER[name])
            self._units.append(unit)
        self._slots[unit] = slot
        return slot

    def _find(self, unit: bytes | str, now: float) -> int | None:
        slot = self._slots.get(unit)
        if slot is not None and now - self._columns["touched"][slot] > self.user_ttl:
            self._drop(unit)
            return None
        return slot

    def _drop(self, unit: bytes | str) -> None:
        """Remove a user and their sessions."""
        for session in self._others_of.pop(unit, ()):
            del self._other_sessions[(unit, session)]
        slot = self._slots.pop(unit, None)
        if slot is None:
            return
        self._columns["touched"][slot] = math.nan
        self._units[slot] = None
        self._free.append(slot)
        for name in _LABEL_FIELDS:
            self._rare.pop((name, slot), None)

    def _set_label(self, name: str, slot: int, text: str | None) -> None:
        code = self._labels.code(text)
        self._columns[name][slot] = code
        if code == _RARE:
            self._rare[(name, slot)] = text  # type: ignore[assignment]  # _RARE only for a text
        else:
            self._rare.pop((name, slot), None)

    def _label(self, name: str, slot: int) -> str | None:
        code = self._columns[name][slot]
        return self._rare[(name, slot)] if code == _RARE else self._labels.text(code)

    # -- sessions --------------------------------------------------------------------------

    def _current_session(self, slot: int) -> _Session:
        c = self._columns
        return (
            c["session_touched"][slot],
            c["pages_viewed"][slot],
            c["cart_value"][slot],
            self._label("device", slot),
            self._label("referrer", slot),
        )

    def _load_session(self, slot: int, session: _Session) -> None:
        c = self._columns
        c["session_touched"][slot], c["pages_viewed"][slot], c["cart_value"][slot] = session[:3]
        self._set_label("device", slot, session[3])
        self._set_label("referrer", slot, session[4])

    def _park(self, unit: bytes | str, session: int, state: _Session) -> None:
        if (unit, session) not in self._other_sessions:
            self._others_of[unit] = (*self._others_of.get(unit, ()), session)
        self._other_sessions[(unit, session)] = state

    def _unpark(self, unit: bytes | str, session: int) -> _Session | None:
        state = self._other_sessions.pop((unit, session), None)
        if state is not None:
            kept = tuple(s for s in self._others_of[unit] if s != session)
            if kept:
                self._others_of[unit] = kept
            else:
                del self._others_of[unit]
        return state

    def _session_state(self, unit: bytes | str, slot: int, session_id: str | None, now: float) -> _Session | None:
        """The state of `session_id` for the user in `slot` if it is live at `now`."""
        if not session_id:
            return None
        session = hash(session_id)
        if session == self._columns["session"][slot]:
            state: _Session | None = self._current_session(slot)
        else:
            state = self._other_sessions.get((unit, session))
        return state if state is not None and now - state[0] <= self.session_ttl else None

    def _touch(self, unit: bytes | str, session_id: str | None, now: float) -> tuple[int, bool]:
        """The user's row (made if new or expired), switched to `session_id` when it is a new
        session for them; returns (row, whether there is a live session to write to)."""
        c = self._columns
        slot = self._find(unit, now)
        created = slot is None
        if slot is None:
            slot = self._new_row(unit)
            c["touched"][slot] = now
        session = hash(session_id) if session_id else 0
        if session and c["session"][slot] != session:
            previous = c["session"][slot]
            if previous:
                c["last_visit"][slot] = c["touched"][slot]
                if now - c["session_touched"][slot] <= self.session_ttl:
                    self._park(unit, previous, self._current_session(slot))
            c["sessions_seen"][slot] += 1
            for old in self._others_of.get(unit, ()):
                if now - self._other_sessions[(unit, old)][0] > self.session_ttl:
                    self._unpark(unit, old)
            self._load_session(slot, self._unpark(unit, session) or (now, 0, 0.0, None, None))
            c["session"][slot] = session
        c["touched"][slot] = max(c["touched"][slot], now)
        if created and len(self._slots) > self.max_users:
            self._evict(keep=slot)
        if not session:
            return slot, False
        if now - c["session_touched"][slot] > self.session_ttl:
            self._load_session(slot, (now, 0, 0.0, None, None))
        c["session_touched"][slot] = max(c["session_touched"][slot], now)
        return slot, True

    def _evict(self, keep: int) -> None:
        """Drop the least recently seen users (1% of `max_users`, at least the excess)."""
        excess = len(self._slots) - self.max_users
        touched = np.frombuffer(self._columns["touched"], dtype=np.float64).copy()
        touched[np.isnan(touched)] = np.inf
        touched[keep] = np.inf
        n = min(max(excess, self.max_users // 100), len(self._slots) - 1)
        for slot in np.argpartition(touched, n)[:n]:
            self._drop(self._units[slot])  # an in-use row (not None): its touch is finite

    # -- the interface ---------------------------------------------------------------------

    def observe_context(
        self,
        unit: str,
        session_id: str | None,
        now: float,
        *,
        device: str | None = None,
        referrer: str | None = None,
        cart_value: float | None = None,
        category: str | None = None,
        price_sensitivity: str | None = None,
    ) -> None:
        """Record what a decide request tells about the visitor (newest value wins)."""
        key = compact_unit(unit)
        with self._lock:
            slot, in_session = self._touch(key, session_id, now)
            if price_sensitivity is not None:
                self._set_label("price_sensitivity", slot, price_sensitivity)
            if category:
                self._set_label("last_category", slot, category)
            if in_session:
                if device:
                    self._set_label("device", slot, device)
                if referrer is not None:
                    self._set_label("referrer", slot, referrer)
                if cart_value is not None:
                    self._columns["cart_value"][slot] = cart_value

    def observe_event(
        self,
        unit: str,
        session_id: str | None,
        event_type: str,
        ts: float,
        *,
        category: str | None = None,
        revenue: float | None = None,
        consent: bool | None = None,
    ) -> None:
        """Apply one ingested event to the live state (synchronously, before the next decision)."""
        key = compact_unit(unit)
        c = self._columns
        with self._lock:
            if event_type == "consent_change" and consent is not None:
                (self._withdrawn.discard if consent else self._withdrawn.add)(key)
            elif event_type == "opt_out":
                self._withdrawn.add(key)
            slot, in_session = self._touch(key, session_id, ts)
            if event_type == "page_view" and in_session:
                c["pages_viewed"][slot] += 1
            elif event_type == "add_to_cart" and in_session:
                c["cart_value"][slot] += max(revenue or 0.0, 0.0)
            elif event_type == "purchase":
                c["purchase_day"][slot] = max(c["purchase_day"][slot], self._day_of(ts))
                if in_session:
                    c["cart_value"][slot] = 0.0
            elif event_type == "email_open":
                c["last_email_open"][slot] = ts
            if category:
                self._set_label("last_category", slot, category)

    def consent_withdrawn(self, unit: str) -> bool:
        """Whether the user withdrew consent (or opted out) and has not consented since."""
        key = compact_unit(unit)
        with self._lock:
            return key in self._withdrawn

    def bought_today(self, unit: str, now: float) -> bool:
        """Whether the user made a purchase on `now`'s (local) day."""
        key = compact_unit(unit)
        with self._lock:
            slot = self._find(key, now)
            return slot is not None and self._columns["purchase_day"][slot] == self._day_of(now)

    def row(self, unit: str, session_id: str | None, now: float) -> dict[str, Any]:
        """The stored part of a feature row (keys of `ROW_KEYS`) for a decision at `now`."""
        key = compact_unit(unit)
        c = self._columns
        with self._lock:
            slot = self._find(key, now)
            if slot is None:
                return {}
            last_visit, email_open = c["last_visit"][slot], c["last_email_open"][slot]
            row: dict[str, Any] = {
                "recency_seconds": None if math.isnan(last_visit) else now - last_visit,
                "returning": c["sessions_seen"][slot] > 1,
                "last_category": self._label("last_category", slot),
                "price_sensitivity": self._label("price_sensitivity", slot),
                "seconds_since_email_open": None if math.isnan(email_open) else now - email_open,
            }
            session = self._session_state(key, slot, session_id, now)
            if session is not None:
                row.update(pages_viewed=session[1], cart_value=session[2], device=session[3], referrer=session[4])
            return row

    def merge(self, anonymous_unit: str, user_unit: str, now: float) -> None:
        """Identity stitching: the anonymous visitor's state joins the customer's profile."""
        anonymous, customer = compact_unit(anonymous_unit), compact_unit(user_unit)
        c = self._columns
        with self._lock:
            if anonymous in self._withdrawn:
                self._withdrawn.add(customer)
            source = self._slots.get(anonymous)
            if source is None:
                return
            anon = {name: column[source] for name, column in c.items()}
            anon_labels = {name: self._label(name, source) for name in ("last_category", "price_sensitivity")}
            sessions = {hash_: self._other_sessions[(anonymous, hash_)] for hash_ in self._others_of.get(anonymous, ())}
            if anon["session"]:
                sessions[anon["session"]] = self._current_session(source)
            self._drop(anonymous)
            slot, _ = self._touch(customer, None, now)
            self._set_label("last_category", slot, anon_labels["last_category"] or self._label("last_category", slot))
            self._set_label(
                "price_sensitivity", slot, self._label("price_sensitivity", slot) or anon_labels["price_sensitivity"]
            )
            c["last_email_open"][slot] = _later(c["last_email_open"][slot], anon["last_email_open"])
            c["purchase_day"][slot] = max(c["purchase_day"][slot], anon["purchase_day"])
            c["sessions_seen"][slot] = max(c["sessions_seen"][slot], anon["sessions_seen"])
            if not c["session"][slot] and anon["session"]:
                state = sessions.pop(anon["session"])
                self._load_session(slot, self._unpark(customer, anon["session"]) or state)
                c["session"][slot] = anon["session"]
            for session, state in sessions.items():
                if session != c["session"][slot] and (customer, session) not in self._other_sessions:
                    self._park(customer, session, state)

    def erase(self, unit: str) -> None:
        """Forget everything about `unit` (right to erasure), including a consent withdrawal."""
        key = compact_unit(unit)
        with self._lock:
            self._drop(key)
            self._withdrawn.discard(key)

    def sweep(self, now: float | None = None) -> int:
        """Drop users not seen within their time-to-live; returns how many were removed."""
        now = time.time() if now is None else now
        with self._lock:
            touched = np.frombuffer(self._columns["touched"], dtype=np.float64).copy()
            expired = np.flatnonzero(now - touched > self.user_ttl)  # a free row's NaN is never expired
            for slot in expired:
                self._drop(self._units[slot])  # type: ignore[arg-type]
            return len(expired)
