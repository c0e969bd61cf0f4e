"""What the service refuses to do, and why: the errors `decisioning.service` raises.

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


class InvalidInput(ServiceError):
    """A value the service cannot use, found past the request schema's own checks."""


class NoSuchPlacement(ServiceError):
    """The request names a placement the scenario does not have."""


class BatchTooLarge(ServiceError):
    """A batch holds more items than one request may."""


class BodyTooLarge(ServiceError):
    """A request body is longer than the service reads."""


class Unauthorised(ServiceError):
    """The request needs a credential it does not carry, or carries a wrong one."""


class Backpressure(ServiceError):
    """The lake writer's queue is full: the service takes no more work for a moment."""

    retry_after = 1.0
