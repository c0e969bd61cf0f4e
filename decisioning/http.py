"""The service over HTTP: `create_app` builds the FastAPI app (the routes, the request body limit,
the credential checks) around a `decisioning.service.Service`, and maps every refusal to a status
and an `{"error", "reason", "field"}` body in one place (`refusal`). The hot routes (decide,
events, exposures) are `decisioning.lean_route.LeanRoute`s.
"""

from __future__ import annotations

import gc
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from pydantic_core import to_json
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from decisioning.access import Access, Caller, Role
from decisioning.api_models import (
    Accepted,
    DecideRequest,
    DecideResponse,
    DecisionOut,
    Erased,
    ErrorBody,
    EventsRequest,
    ExposuresRequest,
    Health,
    IdentifyRequest,
)
from decisioning.engine import Decision, Faults
from decisioning.errors import (
    BackpressureError,
    BatchTooLargeError,
    BodyTooLargeError,
    ForbiddenError,
    InvalidInputError,
    RateLimitedError,
    ServiceError,
    UnauthorisedError,
    UnknownPlacementError,
)
from decisioning.lean_route import LeanRoute
from decisioning.pauses import PauseRequest, PauseState
from decisioning.service import Service
from momento.codes import Code, sentence
from momento.lake.writer import LakeWriter
from momento.scenario import Scenario
from momento.settings import Settings

log = logging.getLogger(__name__)

DESCRIPTION = """The decisioning service over HTTP (FastAPI on uvicorn, one worker).

Endpoints: `POST /v1/decide`, `POST /v1/events[?wait=durable]`, `POST /v1/exposures`,
`POST /v1/identify`, `DELETE /v1/users/{user_id}`, `POST /v1/experiments/{id}/arms/{arm}/pause|resume`,
`GET /v1/experiences`, `GET /healthz`,
`GET /metrics` (Prometheus), `GET /openapi.json`.

Guarantees:
- no request gets a traceback: bad input is a 4xx with `{"error", "reason", "field"}`, a model
  failure is the default decision with its reason code, and a full writer queue is a 503 with
  `Retry-After` (counted in `/metrics`), never a silently dropped row; ingestion is refused
  first (once the queue is fuller than `1 - DECISION_RESERVE` of its bound), so decisions keep
  flowing while a slow writer pushes back on bulk writes;
- bodies over `max_body_bytes` get 413, batches over `max_batch_events` get 413;
- every `/v1/` request counts against its client's rate limit (the server key, else the
  address): past it, 429 with `Retry-After` (counted in `/metrics`);
- bound off loopback, the service refuses to start without `MOMENTO_API_TOKEN` (the server
  key), `MOMENTO_SITE_KEY` and its own `MOMENTO_PSEUDONYM_KEY`; decisions then need
  `Authorization: Bearer <site key>` (or the server key), and the writes (events, exposures,
  identify, erasure, arm pause and resume) `Authorization: Bearer <server key>` (a site key there
  gets 403).

Fault injection (incident drills): the decide request's `incidents` list (`latency_spike`,
`model_outage`, `error_burst`; see `decisioning.engine`), or `incidents=` on `create_app` for
every request; off loopback, only with `MOMENTO_ALLOW_DRILLS=1` and the server key (else 403).
A slow writer is `flush_delay_seconds=` on `create_app` (or `MOMENTO_FLUSH_DELAY_SECONDS`);
`MOMENTO_INCIDENTS=a,b` switches incidents on for every request.
"""
"""The OpenAPI document's description of the service."""
RETRY_AFTER_SECONDS = "1"
INLINE_BATCH_ITEMS = 50
"""The most events or exposures a batch may hold to be stored on the event loop (~3 ms of work)."""
WaitFor = Annotated[Literal["durable"] | None, Query()]
"""An ingestion request's `?wait=`: `durable` answers once the rows are committed to the lake."""
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 413, 422, 429, 503)
}
_REFUSALS: dict[type[ServiceError], tuple[int, str]] = {
    InvalidInputError: (422, "invalid_request"),
    UnknownPlacementError: (422, "unknown_placement"),
    BatchTooLargeError: (413, "batch_too_large"),
    BodyTooLargeError: (413, "body_too_large"),
    UnauthorisedError: (401, "unauthorized"),
    ForbiddenError: (403, "forbidden"),
    RateLimitedError: (429, "rate_limited"),
    BackpressureError: (503, "backpressure"),
}
"""Each kind of refusal's status code and error name (the `error` of the body)."""


def _error(
    status: int, error: str, reason: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "reason": reason, "field": field}, status_code=status, headers=headers)


def _status_and_error(exc: ServiceError) -> tuple[int, str]:
    return next(_REFUSALS[kind] for kind in type(exc).__mro__ if kind in _REFUSALS)


def refusal(exc: ServiceError) -> JSONResponse:
    """The answer to a refusal: its status, `{"error", "reason", "field"}`, and `Retry-After` when
    a retry may succeed (`WWW-Authenticate` when a credential is missing)."""
    status, error = _status_and_error(exc)
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    if isinstance(exc, UnauthorisedError):
        headers["WWW-Authenticate"] = "Bearer"
    return _error(status, error, exc.reason, exc.field, headers or None)


class _BodyLimit:
    """ASGI middleware: refuse bodies over `limit` bytes with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._too_large(scope, receive, send)
            return
        seen, refused = 0, False

        async def counted() -> Message:
            # Past the limit: answer 413 ourselves and tell the app the client went away.
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                refused = True
                await self._too_large(scope, receive, send)
                return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counted, guarded)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await refusal(BodyTooLargeError(f"the body may hold at most {self.limit} bytes", "body"))(scope, receive, send)


_FIELD_PREFIX = re.compile(r"^(?:Value error, )?(\w+): (.*)$", re.S)


def _validation_error(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return _error(400, "malformed_json", "the body is not valid JSON", "body")
    first = errors[0]
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    message = str(first.get("msg", "invalid value"))
    named = _FIELD_PREFIX.match(message)
    if named and first.get("type") == "value_error":
        loc.append(named.group(1))
        message = named.group(2)
    field = ".".join(loc) or None
    if first.get("type") == "extra_forbidden":
        message = "unknown field"
    elif first.get("type") == "missing":
        message = "required field is missing"
    return _error(422, "invalid_request", f"{field}: {message}" if field else message, field)


_REASONS = {code.value: {"code": code.value, "sentence": sentence(code)} for code in Code}
_PUBLIC_FIELDS = tuple(DecisionOut.model_fields)


def _decision_out(d: Decision) -> dict[str, Any]:
    """The public view of a decision (the `DecisionOut` schema), built without a model round
    trip: the decide path is the hot one."""
    row = d.__dict__
    out = {name: row[name] for name in _PUBLIC_FIELDS if name != "reasons"}
    out["reasons"] = [_REASONS[code] for code in d.reasons]
    return out


def _authorization(scope: Scope) -> str | None:
    """The request's `Authorization` header, read without building a headers object."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bytes(value).decode("latin-1")
    return None


def _address(scope: Scope) -> str:
    """The client's address (behind a trusted proxy, uvicorn has put the forwarded one there)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _json(model: BaseModel) -> Response:
    return Response(model.model_dump_json(), media_type="application/json")


def create_app(
    settings: Settings,
    writer: LakeWriter | None = None,
    scenario: Scenario | None = None,
    *,
    host: str | None = None,
    faults: Faults = Faults(),
    incidents: Collection[str] = (),
    flush_delay_seconds: float | None = None,
    seed: int | None = None,
    attribution_seconds: float | None = None,
    freeze_heap: bool = False,
) -> FastAPI:
    """The service as an ASGI app. Without `writer` it opens its own on `settings.lake` and
    closes it at shutdown; `host` (default `settings.host`) decides which credentials requests
    need (`decisioning.access`; off loopback without the service's secrets: InsecureSettingsError).
    `freeze_heap`: once started, move everything alive (modules, the scenario, the models) out
    of the garbage collector's reach: a full collection of that heap pauses serving for
    100-180 ms (measured), and the frozen objects are never scanned again (for a process that
    serves only this app: `decisioning.runner`)."""
    access = Access(settings, host or settings.host)  # first: a service off loopback without its secrets stops here
    service = Service(
        settings,
        writer,
        scenario,
        faults=faults,
        incidents=incidents,
        flush_delay_seconds=flush_delay_seconds,
        seed=seed,
        attribution_seconds=settings.attribution_seconds if attribution_seconds is None else attribution_seconds,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start()
        if freeze_heap:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            await run_in_threadpool(service.stop)

    app = FastAPI(
        title="Momento decisioning service",
        version="1.0",
        lifespan=lifespan,
        description=DESCRIPTION,
        responses=_ERROR_RESPONSES,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.service = service
    app.add_middleware(_BodyLimit, limit=settings.max_body_bytes)

    @app.exception_handler(ServiceError)
    async def _refused(request: Request, exc: ServiceError) -> JSONResponse:
        status, error = _status_and_error(exc)
        service.telemetry.rejections.labels(str(status), error).inc()
        return refusal(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        response = _validation_error(exc)
        service.telemetry.rejections.labels(str(response.status_code), "invalid_request").inc()
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        service.telemetry.rejections.labels(str(exc.status_code), error).inc()
        return _error(exc.status_code, error, str(exc.detail), None, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        service.telemetry.unexpected.labels(request.url.path).inc()
        return _error(
            503,
            "unavailable",
            "the service could not complete this request; retry shortly",
            None,
            {"Retry-After": RETRY_AFTER_SECONDS},
        )

    def guard(needs: Role, endpoint: str) -> Callable[[Request], Awaitable[Caller]]:
        """The check before `endpoint`: the caller's credential gives it `needs`, and its client
        is within its rate limit (a refusal counted per endpoint)."""

        async def admitted(request: Request) -> Caller:  # async: a sync dependency costs a worker-thread hop
            try:
                return access.admit(_authorization(request.scope), _address(request.scope), needs)
            except RateLimitedError:
                service.telemetry.rate_limited.labels(endpoint).inc()
                raise

        return admitted

    async def ingest(
        handler: Callable[[Any, str | None], Accepted], body: Any, items: int, wait: str | None
    ) -> Accepted:
        """A small batch is stored on the event loop: a worker thread would hold the interpreter
        lock for as long while decisions wait for it in 5 ms switches. A large one (~60 us an
        event), and `?wait=durable` (which waits for the flush), go to a worker thread, so the
        loop keeps answering decisions meanwhile."""
        if wait or items > INLINE_BATCH_ITEMS:
            return await run_in_threadpool(handler, body, wait)
        return handler(body, wait)

    site_caller = Depends(guard(Role.SITE, "decide"))

    async def decide(body: DecideRequest, caller: Caller = site_caller) -> Response:
        """The action for each placement, under governance; a failure serves the default."""
        access.check_drills(caller, body.incidents)
        if service.incidents or body.incidents:
            decisions = await run_in_threadpool(service.decide, body)  # injected delays must not block the loop
        else:
            decisions = service.decide(body)
        return Response(to_json({"decisions": [_decision_out(d) for d in decisions]}), media_type="application/json")

    events_caller = Depends(guard(Role.SERVER, "events"))

    async def events(body: EventsRequest, wait: WaitFor = None, _: Caller = events_caller) -> Response:
        """A batch of behavioural events; `?wait=durable` answers once they are committed."""
        return _json(await ingest(service.events, body, len(body.events), wait))

    exposures_caller = Depends(guard(Role.SERVER, "exposures"))

    async def exposures(body: ExposuresRequest, wait: WaitFor = None, _: Caller = exposures_caller) -> Response:
        """What users actually saw (fields left out come from the decision)."""
        return _json(await ingest(service.exposures, body, len(body.exposures), wait))

    for path, endpoint, response_model, tag in (
        ("/v1/decide", decide, DecideResponse, "decisions"),
        ("/v1/events", events, Accepted, "ingestion"),
        ("/v1/exposures", exposures, Accepted, "ingestion"),
    ):
        app.router.add_api_route(
            path, endpoint, methods=["POST"], response_model=response_model, tags=[tag], route_class_override=LeanRoute
        )

    @app.post(
        "/v1/identify",
        response_model=Accepted,
        tags=["ingestion"],
        dependencies=[Depends(guard(Role.SERVER, "identify"))],
    )
    def identify(body: IdentifyRequest) -> Accepted:
        """Link an anonymous id to a customer id (one profile from now on)."""
        return service.identify(body)

    @app.delete(
        "/v1/users/{user_id}",
        response_model=Erased,
        tags=["privacy"],
        dependencies=[Depends(guard(Role.SERVER, "erase"))],
    )
    def erase(user_id: str, requested_by: str | None = Query(default=None, max_length=128)) -> Erased:
        """Right to erasure: live features, caps, links and every lake row of the customer."""
        return service.erase(user_id, requested_by)

    def pause_route(pause: bool) -> Callable[..., PauseState]:
        pause_caller = Depends(guard(Role.SERVER, "pause"))

        def change(
            experiment_id: str, arm: str, body: PauseRequest | None = None, caller: Caller = pause_caller
        ) -> PauseState:
            return service.set_pause(experiment_id, arm, pause, body or PauseRequest(), caller.client)

        change.__doc__ = (
            "Pause an arm: its units are served as the control arm (reason `paused_by_guardrail`), "
            "audited in `arm_pauses`, kept across restarts."
            if pause
            else "Resume a paused arm: its units get their own arm again (audited)."
        )
        return change

    for action, pause in (("pause", True), ("resume", False)):
        app.add_api_route(
            f"/v1/experiments/{{experiment_id}}/arms/{{arm}}/{action}",
            pause_route(pause),
            methods=["POST"],
            response_model=PauseState,
            tags=["safeguards"],
            name=f"{action}_arm",
        )

    @app.get("/v1/experiences", tags=["catalogue"], dependencies=[Depends(guard(Role.ANONYMOUS, "experiences"))])
    def experiences() -> dict[str, Any]:
        """The catalogue: experiences, their experiments' status, allocation and eligible share."""
        return service.experiences()

    @app.get("/healthz", response_model=Health, tags=["operations"])
    async def healthz() -> Health:
        return service.health()

    @app.get("/metrics", tags=["operations"])
    async def metrics() -> Response:
        body, content_type = service.telemetry.exposition()
        return Response(body, media_type=content_type)

    return app
