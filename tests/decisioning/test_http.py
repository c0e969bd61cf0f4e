"""The service over HTTP (`decisioning.http` around `decisioning.service`). End-to-end tests
start the REAL service (`momento serve`) as a subprocess on a free loopback port with a
temporary lake; a few in-process tests cover what needs a knob the command line does not have
(a slow writer, a non-loopback bind)."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from decisioning.http import create_app
from decisioning.identity import anonymous_unit, customer_unit
from momento.codes import Code
from momento.lake.warehouse import Warehouse
from momento.settings import load_settings
from tests.support.service import DEV_KEY, decide, metric, raw_user

PERSONALISED = ("rules", "thompson", "propensity", "fixed")
OPENAPI = Path(__file__).with_name("openapi.json")
"""The service's OpenAPI document as published; `MOMENTO_UPDATE_OPENAPI=1` rewrites it."""


def _wait_for(warehouse: Warehouse, sql: str, params: dict, expected: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        warehouse.refresh(force=True)
        got = warehouse.scalar(sql, params)
        if got >= expected or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


# -- end to end: the real service ------------------------------------------------------------


@pytest.mark.e2e
def test_every_endpoint_over_http(client, service, scenario):
    assert client.get("/healthz").json()["status"] == "ok"
    openapi = client.get("/openapi.json").json()
    assert {
        "/v1/decide",
        "/v1/events",
        "/v1/exposures",
        "/v1/identify",
        "/v1/users/{user_id}",
        "/v1/experiences",
        "/healthz",
        "/metrics",
    } <= set(openapi["paths"])
    decide = openapi["paths"]["/v1/decide"]["post"]  # served lean, still documented from its models
    assert decide["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/DecideRequest")
    assert decide["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/DecideResponse")

    several = client.post(
        "/v1/decide",
        json={
            "anonymous_id": "cookie-1",
            "session_id": "s1",
            "placements": ["homepage_showcase", "product_cta"],
            "channel": "web",
            "device": "mobile",
            "consent": True,
            "referrer": "https://www.google.com/",
            "cart_value": 120.5,
        },
    )
    assert several.status_code == 200
    decisions = several.json()["decisions"]
    assert [d["placement"] for d in decisions] == ["homepage_showcase", "product_cta"]
    for d in decisions:
        assert d["reasons"] and all(r["sentence"] for r in d["reasons"])
        assert 0 < d["propensity"] <= 1 and d["arm"] and d["variant"] and d["latency_us"] >= 0

    first = decisions[0]
    events = client.post(
        "/v1/events",
        params={"wait": "durable"},
        json={
            "events": [
                {
                    "event_id": "ev-1",
                    "event_type": "page_view",
                    "anonymous_id": "cookie-1",
                    "session_id": "s1",
                    "channel": "web",
                },
                {
                    "event_id": "ev-2",
                    "event_type": "click",
                    "anonymous_id": "cookie-1",
                    "session_id": "s1",
                    "channel": "web",
                    "decision_id": first["decision_id"],
                },
                {
                    "event_id": "ev-3",
                    "event_type": "purchase",
                    "anonymous_id": "cookie-1",
                    "channel": "web",
                    "revenue": 250.0,
                    "margin": 110.0,
                    "discount_cost": 0.0,
                    "properties": {"items": 2},
                },
            ]
        },
    )
    assert events.status_code == 200 and events.json() == {"accepted": 3, "durable": True}
    exposure = client.post("/v1/exposures", json={"exposures": [{"decision_id": first["decision_id"]}]})
    assert exposure.status_code == 200 and exposure.json()["accepted"] == 1
    identify = client.post("/v1/identify", json={"anonymous_id": "cookie-1", "user_id": "customer-1"})
    assert identify.status_code == 200

    warehouse = Warehouse(service.lake)
    customer, anonymous = customer_unit("customer-1", DEV_KEY), anonymous_unit("cookie-1", DEV_KEY)
    assert _wait_for(warehouse, "SELECT count(*) FROM exposures WHERE user_id = $u", {"u": anonymous}, 1) == 1
    assert _wait_for(warehouse, "SELECT count(*) FROM identities WHERE user_id = $u", {"u": customer}, 1) == 1
    stored = warehouse.query(
        "SELECT event_type, placement, experiment_id, revenue FROM events WHERE user_id = $u ORDER BY event_id",
        {"u": anonymous},
    )
    assert stored["event_type"].to_list() == ["page_view", "click", "purchase"]
    assert stored["placement"][1] == "homepage_showcase" and stored["experiment_id"][1] == "exp_home_showcase"
    assert "cookie-1" not in warehouse.query("SELECT * FROM events").write_csv()  # raw ids never stored

    catalogue = client.get("/v1/experiences").json()["experiences"]
    assert {e["experience_id"] for e in catalogue} == {e.id for e in scenario.experiences}
    showcase = next(e for e in catalogue if e["experience_id"] == "home_showcase")
    assert showcase["active_today"] and showcase["eligible_share"] == pytest.approx(0.95 * 0.5)
    assert showcase["decisions_served"] >= 1

    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "text/plain" in metrics.headers["content-type"]
    text = metrics.text
    for name in (
        "momento_decision_duration_seconds_bucket",
        "momento_decisions_total",
        "momento_events_ingested_total",
        "momento_writer_queue_rows",
        "momento_writer_committed_rows_total",
        "momento_writer_queue_full_rejections_total",
        "momento_writer_duplicates_dropped_total",
    ):
        assert name in text, name
    assert 'momento_events_ingested_total{event_type="purchase"} 1.0' in text

    # The identified visitor is now the customer: erasing the customer erases the cookie's rows too.
    erased = client.delete("/v1/users/customer-1", params={"requested_by": "test"})
    assert erased.status_code == 200 and erased.json()["erased"] is True
    assert erased.json()["rows_deleted"]["events"] == 3 and erased.json()["rows_deleted"]["identities"] == 1
    warehouse.refresh(force=True)
    for table in ("events", "decisions", "exposures", "identities"):
        assert (
            warehouse.scalar(f"SELECT count(*) FROM {table} WHERE user_id IN ($a, $c)", {"a": anonymous, "c": customer})
            == 0
        )
    assert warehouse.scalar("SELECT count(*) FROM erasures WHERE requested_by = 'test'") >= 1


BAD_REQUESTS = [
    ("post", "/v1/decide", b"{not json", 400, "malformed_json", "body"),
    (
        "post",
        "/v1/decide",
        b'{"user_id": "u", "placement": "nowhere", "channel": "web"}',
        422,
        "unknown_placement",
        "placement",
    ),
    ("post", "/v1/decide", b'{"placement": "product_cta", "channel": "web"}', 422, "invalid_request", "user_id"),
    (
        "post",
        "/v1/decide",
        b'{"user_id": "u", "placement": "product_cta", "channel": "web", "cart_value": "lots"}',
        422,
        "invalid_request",
        "cart_value",
    ),
    (
        "post",
        "/v1/decide",
        b'{"user_id": ["u"], "placement": "product_cta", "channel": "web"}',
        422,
        "invalid_request",
        "user_id",
    ),
    (
        "post",
        "/v1/decide",
        b'{"user_id": "u", "placement": "product_cta", "channel": "fax"}',
        422,
        "invalid_request",
        "channel",
    ),
    (
        "post",
        "/v1/decide",
        b'{"user_id": "u", "placement": "product_cta", "channel": "web", "colour": 1}',
        422,
        "invalid_request",
        "colour",
    ),
    ("post", "/v1/decide", b"[]", 422, "invalid_request", None),
    ("post", "/v1/events", b'{"events": []}', 422, "invalid_request", "events"),
    (
        "post",
        "/v1/events",
        b'{"events": [{"event_type": "click", "user_id": "u", "channel": "web"}]}',
        422,
        "invalid_request",
        "events.0.event_id",
    ),
    (
        "post",
        "/v1/events",
        b'{"events": [{"event_id": "x", "event_type": "teleport", "user_id": "u", "channel": "web"}]}',
        422,
        "invalid_request",
        "events.0.event_type",
    ),
    (
        "post",
        "/v1/events",
        b'{"events": [{"event_id": "x", "event_type": "consent_change", "user_id": "u", "channel": "web"}]}',
        422,
        "invalid_request",
        "events.0.consent",
    ),
    (
        "post",
        "/v1/events",
        b'{"events": [{"event_id": "x", "event_type": "click", "user_id": "u", "channel": "web", '
        b'"ts": "0001-01-01T00:00:00Z"}]}',
        422,
        "invalid_request",
        "events.0.ts",
    ),
    (
        "post",
        "/v1/exposures",
        b'{"exposures": [{"decision_id": "never-made"}]}',
        422,
        "invalid_request",
        "exposures.0.user_id",
    ),
    ("post", "/v1/identify", b'{"anonymous_id": "a"}', 422, "invalid_request", "user_id"),
    ("get", "/v1/nothing-here", None, 404, "not_found", None),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("method", "path", "body", "status", "error", "field"), BAD_REQUESTS)
def test_bad_input_gets_a_4xx_with_a_reason(client, method, path, body, status, error, field):
    response = client.request(method, path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["error"] == error and payload["reason"] and payload["field"] == field
    assert client.get("/healthz").status_code == 200


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("path", "body"),
    [(path, body) for _, path, body, *_ in BAD_REQUESTS if path in ("/v1/events", "/v1/exposures")]
    + [("/v1/events", b"{not json")],
)
def test_ingestion_answers_alike_on_its_lean_and_its_documented_path(client, path, body):
    """A request with a query string takes FastAPI's own route; one without, the lean one."""
    headers = {"content-type": "application/json"}
    lean = client.post(path, content=body, headers=headers)
    documented = client.post(path, params={"wait": "durable"}, content=body, headers=headers)
    assert (lean.status_code, lean.json()) == (documented.status_code, documented.json())


@pytest.mark.e2e
def test_an_unknown_wait_is_refused_naming_the_parameter(client):
    event = {"event_id": "wait-1", "event_type": "click", "user_id": "u", "channel": "web"}
    response = client.post("/v1/events", params={"wait": "soon"}, json={"events": [event]})
    assert response.status_code == 422 and response.json()["field"] == "query.wait", response.text


@pytest.mark.e2e
def test_oversize_bodies_and_batches_are_refused_and_the_service_keeps_answering(client):
    huge = b'{"events": [' + b" " * 1_100_000 + b"]}"
    response = client.post("/v1/events", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"] == "body_too_large"

    def chunks():
        yield b'{"events": ['
        for _ in range(12):
            yield b" " * 100_000
        yield b"]}"

    streamed = client.post("/v1/events", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and streamed.json()["field"] == "body"
    # the refused stream ends the request quietly: nothing reaches the last-resort handler
    assert metric(client.get("/metrics").text, "momento_unexpected_errors_total", {"path": "/v1/events"}) == 0
    batch = [{"event_id": f"b{i}", "event_type": "page_view", "user_id": "u", "channel": "web"} for i in range(1_001)]
    too_many = client.post("/v1/events", json={"events": batch})
    assert too_many.status_code == 413 and too_many.json()["field"] == "events" and "1000" in too_many.json()["reason"]
    assert client.get("/healthz").json()["status"] == "ok"


@pytest.mark.e2e
def test_no_personalised_decision_without_consent_in_the_warehouse(client, service, scenario):
    refused = [raw_user(scenario, "exp_home_showcase", "treatment", f"noconsent-{i}") for i in range(8)]
    withdrawn = [raw_user(scenario, "exp_adaptive_cta", "adaptive", f"withdrew-{i}") for i in range(8)]
    for user in refused:
        for placement in ("homepage_showcase", "product_cta", "cart_cross_sell"):
            client.post(
                "/v1/decide", json={"user_id": user, "placement": placement, "channel": "web", "consent": False}
            )
    for user in withdrawn:
        assert decide(client, user, "product_cta")["policy"] == "propensity"  # personalised while consenting
        opt = client.post(
            "/v1/events",
            json={
                "events": [
                    {
                        "event_id": f"{user}-c",
                        "event_type": "consent_change",
                        "user_id": user,
                        "channel": "web",
                        "consent": False,
                    }
                ]
            },
        )
        assert opt.status_code == 200
        for placement in ("product_cta", "homepage_showcase"):
            after = decide(client, user, placement)  # the client still claims consent
            assert after["fallback_reason"] in (Code.NO_CONSENT, None) and after["policy"] == "default"
    units = [customer_unit(u, DEV_KEY) for u in refused + withdrawn]
    warehouse = Warehouse(service.lake)
    expected = len(refused) * 3 + len(withdrawn) * 3
    sql = "SELECT count(*) FROM decisions WHERE list_contains($units, user_id)"
    assert _wait_for(warehouse, sql, {"units": units}, expected) == expected
    rows = warehouse.query(
        "SELECT user_id, policy, variant, consent, fallback_reason, experience_id, ts FROM decisions "
        "WHERE list_contains($units, user_id) ORDER BY ts",
        {"units": units},
    )
    defaults = {e.id: e.default_variant for e in scenario.experiences}
    without = rows.filter(~rows["consent"])
    assert without.height == len(refused) * 3 + len(withdrawn) * 2
    assert set(without["policy"]) == {"default"}
    assert all(variant == defaults[exp] for variant, exp in zip(without["variant"], without["experience_id"]))
    assert set(without["fallback_reason"].drop_nulls()) <= {Code.NO_CONSENT.value}
    personalised = rows.filter(rows["policy"].is_in(PERSONALISED))
    assert set(personalised["user_id"]) == {customer_unit(u, DEV_KEY) for u in withdrawn}  # only before withdrawal
    assert personalised["consent"].all()


@pytest.mark.e2e
def test_frequency_cap_holds_under_concurrent_requests(client, service, scenario):
    user = raw_user(scenario, "exp_recovery_offer", "treatment", "capped")
    cap = scenario.caps["push"]
    barrier = threading.Barrier(12)
    answers: list[dict] = []
    lock = threading.Lock()

    def fire() -> None:
        with httpx.Client(base_url=service.url, timeout=30) as own:
            barrier.wait()
            for _ in range(4):
                decision = decide(own, user, "cart_recovery_offer", "push", price_sensitivity="high")
                with lock:
                    answers.append(decision)

    threads = [threading.Thread(target=fire) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 48
    personalised = [a for a in answers if a["policy"] in PERSONALISED]
    assert len(personalised) == cap
    assert sum(a["fallback_reason"] == Code.FREQUENCY_CAP for a in answers) == 48 - cap


# -- in process: knobs the command line does not expose ---------------------------------------


def test_the_openapi_document_is_the_published_one(tmp_path):
    """Every path, schema, description and their order, as served: clients are generated from it."""
    with TestClient(create_app(load_settings({"MOMENTO_LAKE": str(tmp_path / "lake")}))) as http:
        served = json.dumps(http.get("/openapi.json").json(), indent=2) + "\n"
    if os.environ.get("MOMENTO_UPDATE_OPENAPI") == "1":
        OPENAPI.write_text(served)
    assert served == OPENAPI.read_text()


EXPOSED = {"MOMENTO_API_TOKEN": "s3cret", "MOMENTO_SITE_KEY": "site-key", "MOMENTO_PSEUDONYM_KEY": "deployment-key"}
SERVER_KEY, SITE_KEY = {"Authorization": "Bearer s3cret"}, {"Authorization": "Bearer site-key"}
EVENT = {"events": [{"event_id": "t1", "event_type": "page_view", "user_id": "u", "channel": "web"}]}
DECIDE = {"user_id": "u", "placement": "product_cta", "channel": "web"}


def test_off_loopback_refusals_are_answered_with_their_status_and_headers(tmp_path):
    settings = load_settings({"MOMENTO_LAKE": str(tmp_path / "lake"), **EXPOSED})
    with TestClient(create_app(settings, host="0.0.0.0")) as http:
        refused = http.post("/v1/events", json=EVENT)
        assert refused.status_code == 401 and refused.json()["field"] == "Authorization"
        assert refused.headers["www-authenticate"] == "Bearer" and refused.json()["error"] == "unauthorized"
        assert http.post("/v1/events", json=EVENT, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.delete("/v1/users/u").status_code == 401
        assert http.post("/v1/identify", json={"anonymous_id": "a", "user_id": "u"}).status_code == 401
        assert http.post("/v1/decide", json=DECIDE).status_code == 401
        site_write = http.post("/v1/events", json=EVENT, headers=SITE_KEY)
        assert site_write.status_code == 403 and site_write.json()["error"] == "forbidden"
        assert "www-authenticate" not in site_write.headers
        assert http.post("/v1/events", json=EVENT, headers=SERVER_KEY).status_code == 200
        assert http.post("/v1/decide", json=DECIDE, headers=SITE_KEY).status_code == 200
        drill = http.post("/v1/decide", json={**DECIDE, "incidents": ["model_outage"]}, headers=SERVER_KEY)
        assert drill.status_code == 403 and drill.json()["field"] == "incidents"
        assert http.get("/v1/experiences").status_code == 200  # the catalogue needs no credential
        text = http.get("/metrics").text
    assert metric(text, "momento_rejected_requests_total", {"status": "401", "error": "unauthorized"}) == 5
    assert metric(text, "momento_rejected_requests_total", {"status": "403", "error": "forbidden"}) == 2


def test_past_its_rate_limit_a_client_gets_429_with_retry_after_counted(tmp_path):
    settings = load_settings(
        {
            "MOMENTO_LAKE": str(tmp_path / "lake"),
            "MOMENTO_RATE_LIMIT_PER_SECOND": "0.5",
            "MOMENTO_RATE_LIMIT_BURST": "3",
            **EXPOSED,
        }
    )
    with TestClient(create_app(settings, host="0.0.0.0")) as http:
        assert [http.post("/v1/decide", json=DECIDE, headers=SITE_KEY).status_code for _ in range(3)] == [200] * 3
        limited = http.post("/v1/decide", json=DECIDE, headers=SITE_KEY)
        assert limited.status_code == 429 and limited.json()["error"] == "rate_limited"
        assert limited.headers["retry-after"] == "2"  # a token every 2 s
        assert http.post("/v1/events", json=EVENT, headers=SITE_KEY).status_code == 429  # one client, every route
        assert http.post("/v1/events", json=EVENT, headers=SERVER_KEY).status_code == 200  # the back end's own bucket
        assert http.get("/healthz").status_code == 200  # operations are not limited
        text = http.get("/metrics").text
    assert metric(text, "momento_rate_limited_requests_total", {"endpoint": "decide"}) == 1
    assert metric(text, "momento_rate_limited_requests_total", {"endpoint": "events"}) == 1
    assert metric(text, "momento_rejected_requests_total", {"status": "429"}) == 2


def test_a_full_writer_queue_answers_503_with_retry_after_and_loses_nothing(tmp_path):
    lake = tmp_path / "lake"
    settings = load_settings(
        {
            "MOMENTO_LAKE": str(lake),
            "MOMENTO_QUEUE_LIMIT": "40",
            "MOMENTO_FLUSH_ROWS": "10",
            "MOMENTO_FLUSH_SECONDS": "0.05",
        }
    )
    accepted: list[str] = []
    refused = 0
    with TestClient(create_app(settings, flush_delay_seconds=1.0)) as http:
        for i in range(20):
            batch = [
                {"event_id": f"bp-{i}-{j}", "event_type": "page_view", "user_id": f"u{i}", "channel": "web"}
                for j in range(10)
            ]
            response = http.post("/v1/events", json={"events": batch})
            if response.status_code == 503:
                refused += 1
                assert response.headers["retry-after"] == "1" and response.json()["error"] == "backpressure"
            else:
                assert response.status_code == 200
                accepted += [e["event_id"] for e in batch]
        metrics = http.get("/metrics").text
    assert refused > 0 and accepted
    assert f'momento_backpressure_rejections_total{{endpoint="events"}} {float(refused)}' in metrics
    stored = Warehouse(lake).query("SELECT event_id FROM events")["event_id"].to_list()
    assert sorted(stored) == sorted(accepted)  # every accepted event is in the lake, nothing else


def test_resent_events_are_stored_once(tmp_path):
    lake = tmp_path / "lake"
    settings = load_settings({"MOMENTO_LAKE": str(lake), "MOMENTO_FLUSH_SECONDS": "0.1"})
    event = {"event_id": str(uuid.uuid4()), "event_type": "page_view", "user_id": "u", "channel": "web"}
    with TestClient(create_app(settings)) as http:
        for _ in range(3):
            assert http.post("/v1/events", json={"events": [event]}, params={"wait": "durable"}).json()["durable"]
        assert "momento_writer_duplicates_dropped_total 2.0" in http.get("/metrics").text
    assert Warehouse(lake).scalar("SELECT count(*) FROM events") == 1


def test_erasure_after_a_restart_follows_the_links_stored_in_the_lake(tmp_path):
    lake = tmp_path / "lake"
    settings = load_settings({"MOMENTO_LAKE": str(lake), "MOMENTO_FLUSH_SECONDS": "0.1"})
    with TestClient(create_app(settings)) as http:
        assert (
            http.post("/v1/identify", json={"anonymous_id": "old-cookie", "user_id": "returning-customer"}).status_code
            == 200
        )
        event = {
            "event_id": "before-login",
            "event_type": "page_view",
            "anonymous_id": "other-cookie",
            "channel": "web",
        }
        assert http.post("/v1/events", json={"events": [event]}).status_code == 200
        event = {**event, "event_id": "anonymous-visit", "anonymous_id": "old-cookie"}
        assert http.post("/v1/events", json={"events": [event]}, params={"wait": "durable"}).json()["durable"]
    with TestClient(create_app(settings)) as http:  # a new process: the in-memory links are gone
        erased = http.delete("/v1/users/returning-customer")
        assert erased.status_code == 200
        assert erased.json()["rows_deleted"] == {"events": 1, "decisions": 0, "exposures": 0, "identities": 1}
    remaining = Warehouse(lake).query("SELECT event_id FROM events")["event_id"].to_list()
    assert remaining == ["before-login"]


def test_the_service_remembers_decisions_for_the_configured_attribution_window(tmp_path):
    settings = load_settings({"MOMENTO_LAKE": str(tmp_path / "lake"), "MOMENTO_ATTRIBUTION_SECONDS": "300"})
    for given, window in ((None, 300.0), (60.0, 60.0)):
        with TestClient(create_app(settings, attribution_seconds=given)) as http:
            assert http.app.state.service.engine.attribution_seconds == window
