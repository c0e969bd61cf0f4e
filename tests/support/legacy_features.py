"""The feature store as it was before its state became columnar (commit af2c01e), kept only as
the oracle of `tests/decisioning/test_features.py::test_the_columnar_store_answers_as_the_dict_store_did`:
the same calls must give the same rows, purchases, consent and sizes."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypedDict


class _Session(TypedDict):
    touched: float
    pages_viewed: int
    cart_value: float
    device: str | None
    referrer: str | None


class _User(TypedDict):
    touched: float
    last_visit: float | None  # last activity before the current session
    current_session: str | None
    sessions_seen: int
    last_category: str | None
    price_sensitivity: str | float | None
    last_email_open: float | None
    purchase_day: int | None  # the local day number of the latest purchase


def _latest(*values: float | None) -> Any:
    return max((value for value in values if value is not None), default=None)


class FeatureStore:
    """Live per-user and per-session state with expiry, thread-safe, erasable per user.

    Users live `user_ttl_seconds` after their last activity, sessions `session_ttl_seconds`;
    the users are kept in touch order so expired ones are swept from the front cheaply, and
    at most `max_users` are kept (the least recently seen go first).

    The state is plain dicts of numbers and strings, and tuples of strings: containers that
    CPython's cycle collector stops tracking, so a store of a million users is not millions of
    objects for every full collection to scan. With objects per user, session and recent
    decision (the engine's memos are kept the same way), a full collection of the state left by
    20,000 decisions paused the service 59-69 ms, 2-5 ms now (`bench/decide.py`), and the pause
    grew with traffic. The state never forms reference cycles, so nothing is lost by it.
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
        self._sessions: dict[tuple[str, str], _Session] = {}  # (unit, session id) -> session
        self._session_ids: dict[str, tuple[str, ...]] = {}  # unit -> its sessions kept above
        self._withdrawn: set[str] = set()
        self._lock = threading.Lock()
        self._day_of = day_of or (lambda ts: int(ts // 86_400))

    def __len__(self) -> int:
        return len(self._users)

    def _find(self, unit: str, now: float) -> _User | None:
        user = self._users.get(unit)
        if user is not None and now - user["touched"] > self.user_ttl:
            self._drop(unit)
            return None
        return user

    def _drop(self, unit: str) -> _User | None:
        """Remove a user and their sessions; returns the user's state."""
        for session_id in self._session_ids.pop(unit, ()):
            del self._sessions[(unit, session_id)]
        return self._users.pop(unit, None)

    def _live_session(self, unit: str, session_id: str | None, now: float) -> _Session | None:
        session = self._sessions.get((unit, session_id)) if session_id else None
        return session if session is not None and now - session["touched"] <= self.session_ttl else None

    def _touch(self, unit: str, session_id: str | None, now: float) -> tuple[_User, _Session | None]:
        user = self._find(unit, now) or _User(
            touched=now,
            last_visit=None,
            current_session=None,
            sessions_seen=0,
            last_category=None,
            price_sensitivity=None,
            last_email_open=None,
            purchase_day=None,
        )
        if session_id and user["current_session"] != session_id:
            if user["current_session"] is not None:
                user["last_visit"] = user["touched"]
            user["current_session"] = session_id
            user["sessions_seen"] += 1
            for old in self._session_ids.get(unit, ()):
                if self._live_session(unit, old, now) is None:
                    self._forget_session(unit, old)
        user["touched"] = max(user["touched"], now)
        self._users[unit] = user
        self._users.move_to_end(unit)
        if len(self._users) > self.max_users:
            self._drop(next(iter(self._users)))
        if not session_id:
            return user, None
        session = self._live_session(unit, session_id, now)
        if session is None:
            session = _Session(touched=now, pages_viewed=0, cart_value=0.0, device=None, referrer=None)
            if (unit, session_id) not in self._sessions:
                self._session_ids[unit] = (*self._session_ids.get(unit, ()), session_id)
            self._sessions[(unit, session_id)] = session
        session["touched"] = max(session["touched"], now)
        return user, session

    def _forget_session(self, unit: str, session_id: str) -> None:
        del self._sessions[(unit, session_id)]
        self._session_ids[unit] = tuple(s for s in self._session_ids[unit] if s != session_id)

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
        price_sensitivity: str | float | None = None,
    ) -> None:
        """Record what a decide request tells about the visitor (newest value wins)."""
        with self._lock:
            user, session = self._touch(unit, session_id, now)
            if price_sensitivity is not None:
                user["price_sensitivity"] = price_sensitivity
            if category:
                user["last_category"] = category
            if session is not None:
                session["device"] = device or session["device"]
                if referrer is not None:
                    session["referrer"] = referrer
                if cart_value is not None:
                    session["cart_value"] = cart_value

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
        with self._lock:
            if event_type == "consent_change" and consent is not None:
                (self._withdrawn.discard if consent else self._withdrawn.add)(unit)
            elif event_type == "opt_out":
                self._withdrawn.add(unit)
            user, session = self._touch(unit, session_id, ts)
            if event_type == "page_view" and session is not None:
                session["pages_viewed"] += 1
            elif event_type == "add_to_cart" and session is not None:
                session["cart_value"] += max(revenue or 0.0, 0.0)
            elif event_type == "purchase":
                user["purchase_day"] = _latest(user["purchase_day"], self._day_of(ts))
                if session is not None:
                    session["cart_value"] = 0.0
            elif event_type == "email_open":
                user["last_email_open"] = ts
            if category:
                user["last_category"] = category

    def consent_withdrawn(self, unit: str) -> bool:
        """Whether the user withdrew consent (or opted out) and has not consented since."""
        with self._lock:
            return unit in self._withdrawn

    def bought_today(self, unit: str, now: float) -> bool:
        """Whether the user made a purchase on `now`'s (local) day."""
        with self._lock:
            user = self._find(unit, now)
            return user is not None and user["purchase_day"] == self._day_of(now)

    def row(self, unit: str, session_id: str | None, now: float) -> dict[str, Any]:
        """The stored part of a feature row (keys of `ROW_KEYS`) for a decision at `now`."""
        with self._lock:
            user = self._find(unit, now)
            if user is None:
                return {}
            row: dict[str, Any] = {
                "recency_seconds": None if user["last_visit"] is None else now - user["last_visit"],
                "returning": user["sessions_seen"] > 1,
                "last_category": user["last_category"],
                "price_sensitivity": user["price_sensitivity"],
                "seconds_since_email_open": None if user["last_email_open"] is None else now - user["last_email_open"],
            }
            session = self._live_session(unit, session_id, now)
            if session is not None:
                row.update(
                    pages_viewed=session["pages_viewed"],
                    cart_value=session["cart_value"],
                    device=session["device"],
                    referrer=session["referrer"],
                )
            return row

    def merge(self, anonymous_unit: str, user_unit: str, now: float) -> None:
        """Identity stitching: the anonymous visitor's state joins the customer's profile."""
        with self._lock:
            if anonymous_unit in self._withdrawn:
                self._withdrawn.add(user_unit)
            anon_sessions = {
                sid: self._sessions[(anonymous_unit, sid)] for sid in self._session_ids.get(anonymous_unit, ())
            }
            anon = self._drop(anonymous_unit)
            if anon is None:
                return
            user, _ = self._touch(user_unit, None, now)
            user["last_category"] = anon["last_category"] or user["last_category"]
            user["price_sensitivity"] = user["price_sensitivity"] or anon["price_sensitivity"]
            user["last_email_open"] = _latest(user["last_email_open"], anon["last_email_open"])
            user["purchase_day"] = _latest(user["purchase_day"], anon["purchase_day"])
            user["sessions_seen"] = max(user["sessions_seen"], anon["sessions_seen"])
            user["current_session"] = user["current_session"] or anon["current_session"]
            for session_id, session in anon_sessions.items():
                if (user_unit, session_id) not in self._sessions:
                    self._sessions[(user_unit, session_id)] = session
                    self._session_ids[user_unit] = (*self._session_ids.get(user_unit, ()), session_id)

    def erase(self, unit: str) -> None:
        """Forget everything about `unit` (right to erasure), including a consent withdrawal."""
        with self._lock:
            self._drop(unit)
            self._withdrawn.discard(unit)

    def sweep(self, now: float | None = None) -> int:
        """Drop users not seen within their time-to-live; returns how many were removed."""
        now = time.time() if now is None else now
        removed = 0
        with self._lock:
            while self._users:
                unit, user = next(iter(self._users.items()))
                if now - user["touched"] <= self.user_ttl:
                    break
                self._drop(unit)
                removed += 1
        return removed
