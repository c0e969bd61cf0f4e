"""Per-client rate limits: a token bucket for each client, in bounded memory.

A client may make `burst` requests at once and `per_second` a second after that. Buckets are
kept for the `clients` most recently seen; the one seen longest ago is dropped to make room,
and a dropped client starts again with a full bucket (what an idle client would have anyway:
only a caller spreading its requests over more addresses than `clients` gains by it).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimiter:
    """Token buckets per client (a string: its credential's name or its address)."""

    def __init__(
        self, per_second: float, burst: int, clients: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if per_second <= 0 or burst < 1 or clients < 1:
            raise ValueError("per_second must be positive, burst and clients at least 1")
        self.per_second, self.burst, self.clients, self.clock = per_second, float(burst), clients, clock
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # client -> [tokens, when counted]

    def wait(self, client: str) -> float:
        """Take a token for a request of `client`: 0.0 if it may go ahead, else the seconds
        until it may (no token taken)."""
        now = self.clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self.clients:
                self._buckets.popitem(last=False)
            self._buckets[client] = [self.burst - 1.0, now]
            return 0.0
        self._buckets.move_to_end(client)
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.per_second)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.per_second

    def __len__(self) -> int:
        return len(self._buckets)
