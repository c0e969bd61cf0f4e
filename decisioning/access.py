"""Who may call what, and how often.

Bound to loopback, the service trusts every process on the machine (the demo, the tests). Bound
to any other address it refuses to start without its secrets (`insecure_settings`), and then:
- `POST /v1/decide` needs a credential: the *site key* (`MOMENTO_SITE_KEY`), a lower-privilege
  key that may only ask for decisions and so may sit in a web page or an app, or the server key;
- the writes (events, exposures, identify, erasure) need the *server key* (`MOMENTO_API_TOKEN`),
  which never leaves the retailer's back end; the site key is refused there with 403;
- a decide request's `incidents` (fault injection) need `MOMENTO_ALLOW_DRILLS=1` and the server
  key, else 403.
Both keys travel the same way: `Authorization: Bearer <key>`.

Every `/v1/` request also counts against its client's rate limit (`decisioning.ratelimit`): the
client is the server key when it carries one (the back end, however many machines it runs on),
else its address. A site key does not name the client: it is shared by every visitor's browser,
so counting against it would let anyone who read it out of a page use up everyone's budget.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from decisioning.errors import ForbiddenError, RateLimitedError, UnauthorisedError
from decisioning.ratelimit import RateLimiter
from momento.settings import DEV_PSEUDONYM_KEY, Settings, SettingsError, is_loopback

SERVER_CLIENT = "server key"
"""The rate limit client of every request carrying the server key."""


class Role(IntEnum):
    """What a caller's credential lets it do (each role may do what the ones below may)."""

    ANONYMOUS = 0
    SITE = 1
    SERVER = 2


class InsecureSettingsError(SettingsError):
    """A service off loopback without its secrets: what is missing, one sentence each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request: its role, the client its rate limit counts against, and whether it
    carried a credential this service does not know."""

    role: Role
    client: str
    unknown_credential: bool = False


def insecure_settings(settings: Settings, host: str) -> list[str]:
    """What keeps a service bound to `host` from starting: one sentence per missing secret
    (nothing on loopback)."""
    if is_loopback(host):
        return []
    problems = []
    if not settings.api_token:
        problems.append(
            "MOMENTO_API_TOKEN (the server key) is not set: off loopback, ingestion, identify and erasure need it"
        )
    if not settings.site_key:
        problems.append("MOMENTO_SITE_KEY is not set: off loopback, decisions need it (or the server key)")
    elif settings.site_key == settings.api_token:
        problems.append(
            "MOMENTO_SITE_KEY equals MOMENTO_API_TOKEN: the site key may sit in a web page, the server key must not"
        )
    if settings.pseudonym_key == DEV_PSEUDONYM_KEY:
        problems.append(
            "MOMENTO_PSEUDONYM_KEY is not set: the development key is public, and ids hashed with a "
            "known key can be guessed back (set a long random secret, e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    return problems


class Access:
    """The credential checks and rate limits of a service bound to `host`; InsecureSettingsError for a
    service off loopback without its secrets."""

    def __init__(self, settings: Settings, host: str) -> None:
        problems = insecure_settings(settings, host)
        if problems:
            raise InsecureSettingsError(problems)
        self.open = is_loopback(host)
        self.allow_drills = settings.allow_drills
        self._server = _bearer(settings.api_token)
        self._site = _bearer(settings.site_key)
        self.limiter = (
            RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst, settings.rate_limit_clients)
            if settings.rate_limit_per_second > 0
            else None
        )

    def identify(self, authorization: str | None, address: str) -> Caller:
        """The caller of a request with this `Authorization` header from this address."""
        given = (authorization or "").encode()
        if self._server is not None and hmac.compare_digest(given, self._server):
            return Caller(Role.SERVER, SERVER_CLIENT)
        if self.open:
            return Caller(Role.SERVER, address)
        if self._site is not None and hmac.compare_digest(given, self._site):
            return Caller(Role.SITE, address)
        return Caller(Role.ANONYMOUS, address, unknown_credential=bool(given))

    def admit(self, authorization: str | None, address: str, needs: Role) -> Caller:
        """The caller, if it may make this request now: RateLimitedError past its client's limit,
        UnauthorisedError without the credential `needs` (or with one unknown here), ForbiddenError with a
        site key where the server key is needed."""
        caller = self.identify(authorization, address)
        if self.limiter is not None and (wait := self.limiter.wait(caller.client)):
            raise RateLimitedError(
                f"too many requests from this client; at most {self.limiter.per_second:g} a second "
                f"(bursts of {self.limiter.burst:g})",
                wait,
            )
        if caller.role >= needs:
            return caller
        if caller.role is Role.SITE:
            raise ForbiddenError(
                "the site key may only ask for decisions; this needs the server key (MOMENTO_API_TOKEN)",
                "Authorization",
            )
        wanted = (
            "'Authorization: Bearer <MOMENTO_API_TOKEN>'"
            if needs is Role.SERVER
            else "'Authorization: Bearer <MOMENTO_SITE_KEY>' (or the server key)"
        )
        if caller.unknown_credential:
            raise UnauthorisedError(
                f"the credential is not one this service knows; this needs {wanted}", "Authorization"
            )
        raise UnauthorisedError(f"this needs {wanted}", "Authorization")

    def check_drills(self, caller: Caller, incidents: Sequence[str]) -> None:
        """Refuse fault injection off loopback unless drills are allowed and the server key sent it."""
        if not incidents or self.open:
            return
        if not self.allow_drills:
            raise ForbiddenError("incident drills are switched off on this service (MOMENTO_ALLOW_DRILLS)", "incidents")
        if caller.role < Role.SERVER:
            raise ForbiddenError("incident drills need the server key (MOMENTO_API_TOKEN)", "incidents")


def _bearer(key: str | None) -> bytes | None:
    return f"Bearer {key}".encode() if key else None
