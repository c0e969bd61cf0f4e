"""Results renewed in the background: a redraw never waits for a slow query once it has a result.

Under live traffic the lake's snapshot moves every few seconds, and some results take seconds to
compute (the fold of the live tail behind every analytics panel, the scans of the governance and
model-health panels). Computed on the request path, every refresh of every session would wait
for them. `Renewing` keeps, per key, the newest result and the lake version it was computed at:
a request for a newer version gets that result at once while one background thread per key
computes the newer one, which the next redraws show. Only the first request of a key waits.
What a panel shows is therefore exact as of its own stated time, at most one computation behind.

Pure Python (no Streamlit): the cockpit keeps one per process (`pages.cache`).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

_PROVISIONAL = object()
"""The version of a result served before its full computation (`quick`): renewed at once."""


@dataclass
class _Entry:
    version: Hashable
    value: Any
    error: str = ""
    """Why the newest renewal failed ("" if it did not): the value is older than it should be."""


class Renewing:
    """The newest result per key, renewed in the background (see the module docstring)."""

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._renewing: set[Hashable] = set()
        self._lock = threading.Lock()

    def get(
        self, key: Hashable, version: Hashable, compute: Callable[[], T], *, quick: Callable[[], T] | None = None
    ) -> T:
        """`compute()`'s result for `version` when there is one; else the newest older result
        while `compute()` runs in the background. The first request of `key` waits for
        `quick()` (a faster, provisional result, renewed at once) or else `compute()`; it raises
        what they raise. A failed renewal keeps the older result (see `error`)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                if entry.version == version:
                    return entry.value
                start = key not in self._renewing
                if start:
                    self._renewing.add(key)
        if entry is None:
            value = (quick or compute)()
            self._store(key, _PROVISIONAL if quick else version, value)
            return value
        if start:
            # Not a daemon (said explicitly: Streamlit's script threads are, and a thread inherits
            # it): an exiting process waits for the renewal to end rather than killing it inside a
            # DuckDB query, which aborts the interpreter.
            threading.Thread(
                target=self._renew, args=(key, version, compute), name=f"momento-renew-{key!r:.40}", daemon=False
            ).start()
        return entry.value

    def error(self, key: Hashable) -> str:
        """Why the newest renewal of `key` failed ("" if it did not, or nothing is kept)."""
        with self._lock:
            entry = self._entries.get(key)
            return entry.error if entry else ""

    def _renew(self, key: Hashable, version: Hashable, compute: Callable[[], Any]) -> None:
        try:
            value = compute()
        except Exception as exc:
            log.exception("renewing %r failed; the previous result is served", key)
            with self._lock:
                self._renewing.discard(key)
                if key in self._entries:
                    self._entries[key].error = str(exc) or type(exc).__name__
            return
        self._store(key, version, value)

    def _store(self, key: Hashable, version: Hashable, value: Any) -> None:
        with self._lock:
            self._renewing.discard(key)
            self._entries[key] = _Entry(version, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
