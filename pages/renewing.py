"""Results renewed in the background: a redraw never waits for a slow query once it has a result.

Under live traffic the lake's snapshot moves every few seconds, and some results take seconds to
compute (the fold of the live tail behind every analytics panel, the scans of the governance and
model-health panels). Computed on the request path, every refresh of every session would wait
for them. `Renewing` keeps, per key, the newest result and the lake version it was computed at:
a request for a newer version gets that result at once while one background thread per key
computes the newer one, which the next redraws show. What a panel shows is therefore exact as
of its own stated time, at most one computation behind.

Only the first request of a key waits, and it may wait only so long (`wait`): past that it gets
`Pending` while the computation goes on in the background (every first request of the key
meanwhile shares it), so a page draws its quick panels at once and the slow ones on a later
redraw. A result may also be kept for a while however the lake moves (`every`), so a scan that
costs seconds is not run again for every snapshot, and longer the longer it took (`share`): a
scan of a history that has grown to cost 12 s is renewed every 2 minutes rather than keeping a
core busy.

Pure Python (no Streamlit): the cockpit keeps one per process (`pages.cache`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from momento.pacing import pause

log = logging.getLogger(__name__)
T = TypeVar("T")

_PROVISIONAL = object()
"""The version of a result served before its full computation (`quick`): renewed at once."""


class Pending(Exception):
    """The first result of a key is still being computed in the background."""


@dataclass
class _Entry:
    version: Hashable
    value: Any
    at: float
    """When it was stored (the clock's seconds)."""
    cost: float = 0.0
    """How long computing it took (the clock's seconds)."""
    error: str = ""
    """Why the newest renewal failed ("" if it did not): the value is older than it should be."""


@dataclass
class _First:
    """A first computation running in the background, shared by the requests that wait for it."""

    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None


class Renewing:
    """The newest result per key, renewed in the background (see the module docstring)."""

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._renewing: set[Hashable] = set()
        self._first: dict[Hashable, _First] = {}
        self._lock = threading.Lock()

    def get(
        self,
        key: Hashable,
        version: Hashable,
        compute: Callable[[], T],
        *,
        quick: Callable[[], T] | None = None,
        wait: float | None = None,
        every: float = 0.0,
        share: float = 1.0,
        gate: threading.Semaphore | None = None,
    ) -> T:
        """`compute()`'s result for `version` when there is one (or one stored less than `every`
        seconds ago); else the newest older result while `compute()` runs in the background.

        The first request of `key` computes `quick()` (a faster, provisional result, renewed at
        once) or else `compute()`, and raises what it raises: on the request's thread when `wait`
        is None; else in the background, waiting at most `wait` seconds and raising `Pending`
        past them (a later request gets the result, or raises its error once). A failed renewal
        keeps the older result (see `error`). A result is also kept, whatever the version, as
        long as renewing it would take more than `share` of the time since it was computed.
        `gate`: computations that hold it run one at a time (its waits are not counted in the
        time they took)."""
        first = None
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                kept_for = pause(entry.cost, every, share)
                if entry.version == version or (
                    entry.version is not _PROVISIONAL and self._clock() - entry.at < kept_for
                ):
                    return entry.value
                start = key not in self._renewing
                if start:
                    self._renewing.add(key)
            elif wait is not None and (first := self._first.get(key)) is None:
                first = self._first[key] = _First()
                self._start(
                    self._compute_first, key, first, version if quick is None else _PROVISIONAL, quick or compute, gate
                )
        if entry is not None:
            if start:
                self._start(self._renew, key, version, compute, gate)
            return entry.value
        if first is None:
            value, cost = self._timed(quick or compute, gate)
            self._store(key, _PROVISIONAL if quick else version, value, cost)
            return value
        if not first.done.wait(wait):
            raise Pending(key)
        with self._lock:
            if self._first.get(key) is first:
                del self._first[key]
        if first.error is not None:
            raise first.error
        return first.value

    def newest(self, key: Hashable) -> Any:
        """The newest result kept for `key`, whatever its version (None: none yet)."""
        with self._lock:
            entry = self._entries.get(key)
            return entry.value if entry is not None else None

    def error(self, key: Hashable) -> str:
        """Why the newest renewal of `key` failed ("" if it did not, or nothing is kept)."""
        with self._lock:
            entry = self._entries.get(key)
            return entry.error if entry else ""

    @staticmethod
    def _start(target: Callable[..., None], key: Hashable, *args: Any) -> None:
        # Not a daemon (said explicitly: Streamlit's script threads are, and a thread inherits
        # it): an exiting process waits for the computation to end rather than killing it inside
        # a DuckDB query, which aborts the interpreter.
        threading.Thread(target=target, args=(key, *args), name=f"momento-renew-{key!r:.40}", daemon=False).start()

    def _timed(self, compute: Callable[[], T], gate: threading.Semaphore | None) -> tuple[T, float]:
        """`compute()` and the seconds it took, once it holds `gate`."""
        with gate or contextlib.nullcontext():
            began = self._clock()
            return compute(), self._clock() - began

    def _compute_first(
        self,
        key: Hashable,
        first: _First,
        version: Hashable,
        compute: Callable[[], Any],
        gate: threading.Semaphore | None,
    ) -> None:
        try:
            first.value, cost = self._timed(compute, gate)
        except Exception as exc:
            log.exception("computing %r failed", key)
            first.error = exc  # kept until a request raises it
        else:
            self._store(key, version, first.value, cost)
            with self._lock:
                if self._first.get(key) is first:
                    del self._first[key]
        finally:
            first.done.set()

    def _renew(
        self, key: Hashable, version: Hashable, compute: Callable[[], Any], gate: threading.Semaphore | None
    ) -> None:
        try:
            value, cost = self._timed(compute, gate)
        except Exception as exc:
            log.exception("renewing %r failed; the previous result is served", key)
            with self._lock:
                self._renewing.discard(key)
                if key in self._entries:
                    self._entries[key].error = str(exc) or type(exc).__name__
            return
        self._store(key, version, value, cost)

    def _store(self, key: Hashable, version: Hashable, value: Any, cost: float) -> None:
        with self._lock:
            self._renewing.discard(key)
            self._entries[key] = _Entry(version, value, self._clock(), cost)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
