"""`LeanRoute`: a FastAPI route served without FastAPI's per-request machinery, for the hot paths.

FastAPI's request handler solves the endpoint's dependencies, parses the body, then validates
it, and validates the response again: on `/v1/decide` that cost nearly as much CPU as the
decision itself, and a third of a 20-event batch's (measured in process; `bench/service_cpu.py`
compares both paths). A lean route keeps everything FastAPI derives from the endpoint's
signature (the OpenAPI document, `response_model`), and answers a request in one pydantic pass:
its guards check the request, the JSON body is parsed and validated at once, and the endpoint's
`Response` goes out as it is. A request with a query string takes FastAPI's own handler, so its
parameters are validated exactly as documented. Errors raised go to the app's exception
handlers like any route's.

Registered by the public API FastAPI documents for custom routes: a subclass of `APIRoute` that
overrides `get_route_handler()`, given as `route_class_override` to `APIRouter.add_api_route`.
The endpoint must be `async` and return a `Response`; its parameters are the body (a pydantic
model), guards (`Depends` on an `async` function of the `Request` alone, whose result is passed
on) and query parameters with defaults (used as they are on the lean path).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast, get_type_hints

from fastapi import params
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

Guard = Callable[[Request], Awaitable[Any]]


class LeanRoute(APIRoute):
    """A route answered in one pydantic pass (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        documented = super().get_route_handler()
        endpoint = self.endpoint
        body_name, body_model, guards = _lean_signature(endpoint)

        async def handler(request: Request) -> Response:
            if request.scope["query_string"]:
                return await documented(request)
            arguments = {name: await guard(request) for name, guard in guards}
            try:
                raw = await request.body()
            except ClientDisconnect:
                return Response(status_code=400)  # nobody listens: the client left, or the body limit answered 413
            try:
                arguments[body_name] = body_model.model_validate_json(raw)
            except ValidationError as exc:
                raise RequestValidationError(exc.errors()) from None
            response: Response = await endpoint(**arguments)
            return response

        return handler


def _lean_signature(endpoint: Callable[..., Any]) -> tuple[str, type[BaseModel], list[tuple[str, Guard]]]:
    """(body parameter, its model, [(guard parameter, guard)]) of a lean endpoint; TypeError for
    an endpoint a lean route cannot serve, so a wrong one fails when the app is built."""
    name = getattr(endpoint, "__qualname__", repr(endpoint))
    if not inspect.iscoroutinefunction(endpoint):
        raise TypeError(f"a lean route's endpoint must be async: {name}")
    hints = get_type_hints(endpoint)
    bodies, guards = [], []
    for parameter in inspect.signature(endpoint).parameters.values():
        hint = hints.get(parameter.name)
        if isinstance(parameter.default, params.Depends):
            guard = parameter.default.dependency
            if guard is None or not (
                inspect.iscoroutinefunction(guard) and len(inspect.signature(guard).parameters) == 1
            ):
                raise TypeError(f"{name}: the guard of {parameter.name!r} must be an async function of the request")
            guards.append((parameter.name, cast(Guard, guard)))
        elif inspect.isclass(hint) and issubclass(hint, BaseModel):
            bodies.append((parameter.name, hint))
        elif parameter.default is inspect.Parameter.empty:
            raise TypeError(f"{name}: {parameter.name!r} is neither the body, a guard nor has a default")
    if len(bodies) != 1:
        raise TypeError(f"{name}: a lean route's endpoint takes exactly one body model")
    ((body_name, body_model),) = bodies
    return body_name, body_model, guards
