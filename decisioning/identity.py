"""Identity: the stored (pseudonymised) ids, the decision unit, and anonymous -> customer links.

A customer id is stored as `pseudonymise(raw)`; an anonymous id as `pseudonymise("anon:" + raw)`
so the two can never collide. The unit of assignment and analysis is the customer's stored id,
or the anonymous visitor's stored id while no customer is known. `/v1/identify` links them:
from then on the anonymous visitor is treated as the customer (one profile), and erasing the
customer also erases the anonymous visitor's rows.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from decisioning.privacy import pseudonymise


def compact_unit(unit: str) -> bytes | str:
    """`unit` as the in-memory stores key it: a pseudonym (32 lowercase hex digits) as its 16
    bytes (49 bytes of memory instead of 81), any other text as itself. Exact: two units are
    different keys whenever they are different texts."""
    try:
        packed = bytes.fromhex(unit)
    except ValueError:
        return unit
    return packed if packed and packed.hex() == unit else unit


def expand_unit(key: bytes | str) -> str:
    """The unit a `compact_unit` key stands for."""
    return key.hex() if isinstance(key, bytes) else key


def customer_unit(raw_user_id: str, key: str) -> str:
    """The stored form of a customer id."""
    return pseudonymise(raw_user_id, key)


def anonymous_unit(raw_anonymous_id: str, key: str) -> str:
    """The stored form of an anonymous id (also its unit while it is not linked)."""
    return pseudonymise("anon:" + raw_anonymous_id, key)


class IdentityMap:
    """Anonymous unit -> customer unit links, most recent `capacity` kept, thread-safe.

    Both sides are kept as `compact_unit` keys: ~200 bytes a link instead of ~260."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.capacity = capacity
        self._links: OrderedDict[bytes | str, bytes | str] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._links)

    def link(self, anonymous: str, customer: str) -> None:
        key = compact_unit(anonymous)
        with self._lock:
            self._links[key] = compact_unit(customer)
            self._links.move_to_end(key)
            if len(self._links) > self.capacity:
                self._links.popitem(last=False)

    def resolve(self, anonymous: str) -> str | None:
        """The customer an anonymous unit was linked to, if any."""
        customer = self._links.get(compact_unit(anonymous))
        return None if customer is None else expand_unit(customer)

    def unit(self, customer: str | None, anonymous: str | None) -> str:
        """The decision unit: the customer, else the anonymous visitor's customer, else itself."""
        if customer is not None:
            return customer
        if anonymous is None:
            raise ValueError("a user_id or an anonymous_id is required")
        return self.resolve(anonymous) or anonymous

    def forget(self, customer: str) -> list[str]:
        """Drop every link to `customer`; return the anonymous units that were linked."""
        key = compact_unit(customer)
        with self._lock:
            linked = [anonymous for anonymous, target in self._links.items() if target == key]
            for anonymous in linked:
                del self._links[anonymous]
            return [expand_unit(anonymous) for anonymous in linked]
