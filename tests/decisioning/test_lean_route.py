"""`decisioning.lean_route`: an endpoint a lean route cannot serve is refused when the app is
built, not on its first request. (That a lean route answers exactly as FastAPI's own handler
does is checked over HTTP in test_http.py.)"""

from __future__ import annotations

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.responses import Response

from decisioning.lean_route import LeanRoute


class Body(BaseModel):
    n: int


async def guard(request: Request) -> str:
    return request.headers.get("x-who", "nobody")


def _app(endpoint) -> FastAPI:
    app = FastAPI()
    app.router.add_api_route("/x", endpoint, methods=["POST"], route_class_override=LeanRoute)
    return app


def test_the_body_guards_and_defaults_reach_the_endpoint_on_both_paths():
    async def endpoint(body: Body, who: str = Depends(guard), scale: int = 2) -> Response:
        return Response(f"{who}:{body.n * scale}")

    with TestClient(_app(endpoint)) as http:
        assert http.post("/x", json={"n": 3}, headers={"x-who": "ana"}).text == "ana:6"  # lean
        assert http.post("/x", params={"scale": 5}, json={"n": 3}).text == "nobody:15"  # documented
        assert http.post("/x", json={"n": "three"}).status_code == 422


async def _sync_guard_endpoint(body: Body, who: str = Depends(lambda request: "x")) -> Response:
    return Response()


async def _two_bodies(a: Body, b: Body) -> Response:
    return Response()


async def _unexplained(body: Body, other: int) -> Response:
    return Response()


def _not_async(body: Body) -> Response:
    return Response()


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        (_not_async, "must be async"),
        (_two_bodies, "exactly one body"),
        (_unexplained, "'other'"),
        (_sync_guard_endpoint, "async function of the request"),
    ],
)
def test_an_endpoint_it_cannot_serve_fails_when_the_app_is_built(endpoint, message):
    with pytest.raises(TypeError, match=message):
        _app(endpoint)
