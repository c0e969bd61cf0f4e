"""Governance before any personalised answer: consent, caps, eligibility, brand rules.

Each check is a pure numpy function that broadcasts over arrays (the backfill, n = 100k) or
scalars (the service, n = 1) and returns, per decision, the `Code` that forces the default or
None. `first_block` combines checks in priority order. `eligible_variants` masks variants a
decision may not show (no discount to a customer who bought today) without forcing the
default. The one stateful piece is `FrequencyCaps`, whose check-and-increment is atomic, so a
cap holds even when many requests for the same user arrive at once.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, cast
from zoneinfo import ZoneInfo

import numpy as np

from decisioning.identity import compact_unit
from momento.codes import Channel, Code
from momento.scenario import Experience, Governance, Placement

NO_CAP = np.iinfo(np.int64).max


def _bools(values: Any) -> np.ndarray:
    return np.array(values, dtype=bool, ndmin=1)


def _labels(values: Any) -> list[Any]:
    return [values] if values is None or isinstance(values, str) else list(values)


def _block(condition: np.ndarray, code: Code) -> np.ndarray:
    out = np.empty(condition.shape, dtype=object)
    out[condition] = code
    return out


def consent_block(consent: Any) -> np.ndarray:
    """NO_CONSENT where the visitor has not consented to personalisation."""
    return _block(~_bools(consent), Code.NO_CONSENT)


def channel_block(placement: Placement, channel: Any) -> np.ndarray:
    """CHANNEL_NOT_SERVED where the placement is not served on the request's channel."""
    served = placement.channels
    return _block(np.array([c not in served for c in _labels(channel)]), Code.CHANNEL_NOT_SERVED)


def cap_limits(caps: Mapping[str, int], channel: Any) -> np.ndarray:
    """Each decision's daily cap for its channel (no cap for a channel the scenario omits)."""
    return np.array([caps.get(c, NO_CAP) for c in _labels(channel)], dtype=np.int64)


def cap_block(used_today: Any, limit: Any) -> np.ndarray:
    """FREQUENCY_CAP where the user already had `limit` personalised decisions today on the
    channel (`used_today` counts the decisions before this one)."""
    return _block(np.atleast_1d(np.asarray(used_today) >= np.asarray(limit)), Code.FREQUENCY_CAP)


def stock_block(in_stock: Any, governance: Governance) -> np.ndarray:
    """OUT_OF_STOCK where the item the placement would promote is out of stock."""
    out_of_stock = ~_bools(in_stock) & governance.exclude_out_of_stock
    return _block(out_of_stock, Code.OUT_OF_STOCK)


def _discounted(experience: Experience) -> np.ndarray:
    return np.array([experience.discount.get(v, 0.0) > 0 for v in experience.variants])


def eligible_variants(experience: Experience, bought_today: Any, governance: Governance | None = None) -> np.ndarray:
    """(n, k) mask of the variants each decision may show: no discount variant to a customer
    who bought today (when the governance says so). The default is always eligible."""
    bought = _bools(bought_today)
    rule_on = governance is None or governance.no_discount_if_bought_today
    excluded = (bought & rule_on)[:, None] & _discounted(experience)[None, :]
    return cast(np.ndarray, ~excluded)


def bought_today_block(experience: Experience, bought_today: Any, governance: Governance | None = None) -> np.ndarray:
    """BOUGHT_TODAY where excluding discounts leaves only the default to show."""
    eligible = eligible_variants(experience, bought_today, governance)
    default = experience.variants.index(experience.default_variant)
    others = np.delete(eligible, default, axis=1)
    # a 2-d array's any(axis=1) is an array (numpy's stubs allow a scalar)
    nothing_left = cast(np.ndarray, ~others.any(axis=1)) if others.shape[1] else np.zeros(eligible.shape[0], dtype=bool)
    return _block(nothing_left, Code.BOUGHT_TODAY)


def first_block(*blocks: np.ndarray) -> np.ndarray:
    """Per decision, the first non-None code among `blocks` (given in priority order)."""
    out = blocks[-1]
    for block in reversed(blocks[:-1]):
        out = np.where(block.astype(bool), block, out)  # a code is a non-empty string, None is falsy
    return out


@lru_cache(maxsize=65_536)
def _offset_seconds(hour: int, tz: str) -> int:
    offset = datetime.fromtimestamp(hour * 3600, tz=UTC).astimezone(ZoneInfo(tz)).utcoffset()
    assert offset is not None  # an aware datetime has one
    return int(offset.total_seconds())


def local_day(epoch_seconds: Any, tz: str) -> np.ndarray:
    """The local calendar day (days since 1970-01-01 in `tz`) of UTC epoch seconds."""
    seconds = np.atleast_1d(np.asarray(epoch_seconds, dtype=np.float64))
    return cast(np.ndarray, np.floor((seconds + _offsets(seconds, tz)) / 86_400).astype(np.int64))


def local_hour(epoch_seconds: Any, tz: str) -> np.ndarray:
    """The local hour of day (0..24, fractional) in `tz` of UTC epoch seconds."""
    seconds = np.atleast_1d(np.asarray(epoch_seconds, dtype=np.float64))
    return cast(np.ndarray, np.mod(seconds + _offsets(seconds, tz), 86_400) / 3600)


def local_clock(epoch_seconds: float, tz: str) -> tuple[int, float]:
    """(`local_day`, `local_hour`) of one instant, without array overhead (the service's path)."""
    local = epoch_seconds + _offset_seconds(int(epoch_seconds // 3600), tz)
    return int(local // 86_400), (local % 86_400) / 3600


def _offsets(seconds: np.ndarray, tz: str) -> np.ndarray:
    hours = np.floor(seconds / 3600).astype(np.int64)
    if hours.size == 1:
        return np.array([_offset_seconds(int(hours[0]), tz)])
    unique, inverse = np.unique(hours, return_inverse=True)
    return np.array([_offset_seconds(int(h), tz) for h in unique])[inverse.reshape(-1)]


class FrequencyCaps:
    """Personalised decisions per user, channel and local day, with atomic check-and-take.

    Only today's and yesterday's counters are kept (a cap is per day); `erase` forgets a user.
    A counter is one dict entry keyed by the user's compact id and the channel's code (18
    bytes for a pseudonym): ~110 bytes a user-channel instead of ~250 with a tuple of texts.
    """

    def __init__(self, caps: Mapping[Channel, int]) -> None:
        self.caps: dict[str, int] = dict(caps.items())
        self._days: dict[int, dict[bytes | tuple[str, str], int]] = {}
        self._channels: dict[str, bytes] = {}  # channel -> its code
        self._lock = threading.Lock()

    def _key(self, unit: str, channel: str) -> bytes | tuple[str, str]:
        """The counter's key (call under the lock: it may give `channel` a code)."""
        code = self._channels.get(channel)
        if code is None:
            code = self._channels[channel] = len(self._channels).to_bytes(2, "big")
        packed = compact_unit(unit)
        return packed + code if isinstance(packed, bytes) else (packed, channel)

    def try_take(self, unit: str, channel: str, day: int) -> bool:
        """Count one personalised decision if the cap allows it; False (nothing counted) if not."""
        limit = self.caps.get(channel, NO_CAP)
        with self._lock:
            counts = self._days.get(day)
            if counts is None:
                counts = self._days[day] = {}
                for old in [d for d in self._days if d < day - 1]:
                    del self._days[old]
            key = self._key(unit, channel)
            used = counts.get(key, 0)
            if cap_block(used, limit)[0] is not None:
                return False
            counts[key] = used + 1
            return True

    def used(self, unit: str, channel: str, day: int) -> int:
        with self._lock:
            return self._days.get(day, {}).get(self._key(unit, channel), 0)

    def erase(self, unit: str) -> None:
        with self._lock:
            keys = [self._key(unit, channel) for channel in self._channels]
            for counts in self._days.values():
                for key in keys:
                    counts.pop(key, None)
