"""The aggregates a cockpit process serves: the newest finished fold, renewed in the background.

Folding the live tail (`metrics.rollup.read.aggregates`) costs about a second at 10M events and
grows with the rollups' per-user state, while the lake's snapshot moves every second under live
traffic. Folded on the request path, every refresh of every session would wait for a fold of its
own snapshot. `LiveAggregates` instead keeps the newest finished result and renews it in one
background thread, at most once per `period`, and only while someone reads (an idle cockpit
folds nothing). A refresh then answers from memory at once; what it shows is exact as of its
`Source.as_of`, at most about `period` plus one fold behind the lake.

The fold runs on a warehouse of its own, refreshed only between folds, so the rows it reads are
one snapshot: the shared warehouse of the panels may move on during a fold without mixing a new
rollup run into an older tail.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from metrics.rollup.read import MAX_TAIL_ROWS, Aggregates, aggregates
from momento.lake.warehouse import Warehouse

log = logging.getLogger(__name__)


class LiveAggregates:
    """The newest aggregates of the lake at `lake`, renewed in the background (module docstring)."""

    def __init__(
        self,
        lake: Path,
        pre_days: int,
        period: float,
        *,
        max_tail_rows: int = MAX_TAIL_ROWS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wh = Warehouse(lake, min_refresh_seconds=0.0)
        self._pre_days = pre_days
        self._period = period
        self._max_tail_rows = max_tail_rows
        self._clock = clock
        self._value: Aggregates | None = None
        self._versions: dict[str, int | None] = {}
        self._folded_at = 0.0
        self._lock = threading.Lock()
        """Held while the value is read or swapped."""
        self._folding = threading.Lock()
        """Held by whoever folds (one fold at a time: they share the warehouse)."""
        self.last_error: str = ""
        """Why the newest background renewal failed ("" when it did not): the value is older."""

    def latest(self) -> Aggregates:
        """The newest finished aggregates; the first call folds them itself (and raises what the
        fold raises), later ones start a renewal in the background when `period` has passed."""
        with self._lock:
            value, due = self._value, self._clock() - self._folded_at >= self._period
        if value is None:
            with self._folding:
                if self._value is None:  # nobody folded while we waited
                    self._renew()
            assert self._value is not None
            return self._value
        if due and self._folding.acquire(blocking=False):
            threading.Thread(target=self._renew_in_background, name="momento-live-aggregates", daemon=True).start()
        return value

    def _renew_in_background(self) -> None:
        """`_renew` holding `_folding` (acquired by the caller): failures keep the older value."""
        try:
            self._renew()
            self.last_error = ""
        except Exception as exc:
            log.exception("renewing the live aggregates failed; the previous ones are served")
            self.last_error = str(exc)
            with self._lock:
                self._folded_at = self._clock()  # tried again after a period, not on every read
        finally:
            self._folding.release()

    def _renew(self) -> None:
        """Move the private warehouse to the lake's newest snapshot and fold it, unless it has not
        moved since the last fold."""
        versions = self._wh.refresh(force=True)
        if self._value is not None and versions == self._versions:
            with self._lock:
                self._folded_at = self._clock()
            return
        value = aggregates(self._wh, self._pre_days, self._max_tail_rows)
        with self._lock:
            self._value, self._versions, self._folded_at = value, versions, self._clock()

    def close(self) -> None:
        with self._folding:
            self._wh.close()
