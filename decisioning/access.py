"""Who may call what. Bound to loopback, the service trusts every process on the machine; bound
to any other address, the writes (events, exposures, identify, erasure) need
`Authorization: Bearer <MOMENTO_API_TOKEN>`, and the service does not start without a token.
"""

from __future__ import annotations

import hmac
import ipaddress

from decisioning.errors import Unauthorised
from momento.settings import Settings


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Access:
    """The credential checks of a service bound to `host`."""

    def __init__(self, settings: Settings, host: str) -> None:
        self.open = is_loopback(host)
        self._writer = f"Bearer {settings.api_token}".encode() if settings.api_token else None

    def check_writer(self, authorization: str | None) -> None:
        """Refuse a write whose `Authorization` header is not the bearer token (off loopback)."""
        if self.open:
            return
        given = (authorization or "").encode()
        if self._writer is None or not hmac.compare_digest(given, self._writer):
            raise Unauthorised("writes need 'Authorization: Bearer <MOMENTO_API_TOKEN>'", "Authorization")
