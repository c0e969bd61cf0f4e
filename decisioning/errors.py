"""What the service refuses to do, and why: the errors `decisioning.service` and
`decisioning.access` raise.

They know nothing of HTTP. Each says why in a sentence for a person, names the field concerned
when there is one, and says when a retry may succeed; `decisioning.http` maps each kind to a
status code and an `{"error", "reason", "field"}` body, in one place.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A request the service will not carry out. Nothing it asked for was stored."""

    retry_after: float | None = None
    """Seconds after which the same request may succeed (None: re-sending it cannot help)."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.field = reason, field


class InvalidInputError(ServiceError):
    """A value the service cannot use, found past the request schema's own checks."""


class UnknownPlacementError(ServiceError):
    """The request names a placement the scenario does not have."""


class BatchTooLargeError(ServiceError):
    """A batch holds more items than one request may."""


class BodyTooLargeError(ServiceError):
    """A request body is longer than the service reads."""


class UnauthorisedError(ServiceError):
    """The request needs a credential it does not carry, or carries a wrong one."""


class BackpressureError(ServiceError):
    """The lake writer's queue is full: the service takes no more work for a moment."""

    retry_after = 1.0


class ForbiddenError(ServiceError):
    """The caller is known, but may not do this (a site key asking to write, a drill off loopback)."""


class RateLimitedError(ServiceError):
    """The client sent more requests than its rate limit allows."""

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
