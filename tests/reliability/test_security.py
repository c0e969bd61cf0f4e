"""Security and privacy, on the REAL service (subprocesses) and the REAL cockpit:

- it binds to loopback unless told otherwise; bound elsewhere, every state-changing route needs
  a credential: decide the site key (or the server key), every write (events, exposures,
  identify, erasure) the server key, and a refused request stores nothing;
- off loopback, fault injection needs MOMENTO_ALLOW_DRILLS=1 and the server key;
- every client has a rate limit, answered with 429 + Retry-After and counted;
- request size and batch length are bounded;
- ids are stored only as keyed hashes (HMAC with the deployment's key): the raw id is in no
  table and no file of the lake;
- no SQL is built from user text: injection-shaped ids and filters are stored and matched as
  plain data by the API and by the metrics functions, and a static check of the code base
  finds no caller value spliced into SQL text outside a reviewed allow-list;
- a consent withdrawal (or opt-out) stops personalisation on the very next decision;
- erasure removes the user from the lake (checked by query and by reading the files) and from
  the live feature store and caps (the next decision has no memory of them);
- the audit trail returns at most 10,000 rows however many are asked for (its CSV is what it shows);
- the cockpit binds to loopback by default; off loopback it renders nothing for a viewer its
  reverse proxy did not sign in (user header plus the shared secret), in AppTest and in a browser.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import streamlit as st
from playwright.sync_api import expect, sync_playwright
from streamlit.testing.v1 import AppTest

from cli.processes import cockpit_command, free_loopback_port, wait_until_healthy
from decisioning.identity import anonymous_unit, customer_unit
from metrics import compliance, health
from metrics.filters import Filters
from metrics.rollup.read import aggregates
from momento.codes import Code
from momento.lake.schema import TABLES
from momento.lake.warehouse import Warehouse
from momento.lake.writer import LakeWriter
from momento.settings import PROJECT_ROOT, load_settings
from pages.ui import PROXY_SECRET_HEADER, PROXY_USER_HEADER
from tests.support.service import (
    DEV_KEY,
    RunningService,
    decide,
    host_address,
    metric,
    raw_user,
    start_service,
    wait_for_count,
)

TOKEN = "reliability-token-4f9a"
SITE_KEY = "reliability-site-key-91d0"
KEY = "deployment-secret-key-7c2e"
SECRETS = {"MOMENTO_API_TOKEN": TOKEN, "MOMENTO_SITE_KEY": SITE_KEY, "MOMENTO_PSEUDONYM_KEY": KEY}
SERVER_HEADERS, SITE_HEADERS = {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": f"Bearer {SITE_KEY}"}
MAX_BODY = 20_000
MAX_BATCH = 10
PERSONALISED = ("rules", "thompson", "propensity", "fixed")


def _dump(lake: Path) -> str:
    """Every row of every table of the lake as JSON lines (what a query can ever return)."""
    warehouse = Warehouse(lake)
    try:
        return "\n".join(warehouse.query(f"SELECT * FROM {table}").write_ndjson() for table in TABLES)
    finally:
        warehouse.close()


def _files_containing(lake: Path, needle: str) -> list[str]:
    return [str(p.relative_to(lake)) for p in lake.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


# -- bound off loopback: the token, the limits, the keyed hash --------------------------------


def _outside(running: RunningService) -> str:
    """The URL that reaches `running` through this machine's non-loopback address if it has one."""
    return f"http://{host_address() or '127.0.0.1'}:{running.url.rsplit(':', 1)[1]}"


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningService, str]]:
    """The service bound to every interface with its secrets and small limits; with the URL to
    reach it through this machine's non-loopback address if it has one."""
    running = start_service(
        tmp_path_factory.mktemp("exposed"),
        host="0.0.0.0",
        env={**SECRETS, "MOMENTO_MAX_BODY_BYTES": str(MAX_BODY), "MOMENTO_MAX_BATCH_EVENTS": str(MAX_BATCH)},
    )
    try:
        yield running, _outside(running)
    finally:
        running.stop()


def _event(event_id: str, user: str = "sec-user", **extra) -> dict:
    return {"event_id": event_id, "event_type": "page_view", "user_id": user, "channel": "web", **extra}


@pytest.mark.e2e
def test_binds_to_loopback_by_default(tmp_path):
    assert load_settings({}).host == "127.0.0.1"
    port = free_loopback_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MOMENTO_")},
        "MOMENTO_LAKE": str(tmp_path / "lake"),
    }
    log = tmp_path / "service.log"
    with log.open("wb") as sink:  # `momento serve` with no --host and no MOMENTO_HOST
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    running = RunningService(process, f"http://127.0.0.1:{port}", tmp_path / "lake", log)
    try:
        wait_until_healthy(running.url, process)
        assert "listening on http://127.0.0.1:" in log.read_text()
        outside = host_address()
        if outside is not None:
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://{outside}:{port}/healthz", timeout=5)
    finally:
        running.stop()


@pytest.mark.e2e
def test_off_loopback_every_state_changing_route_needs_its_credential(exposed):
    running, url = exposed
    with httpx.Client(base_url=url, timeout=30) as http:
        decide = {"user_id": "sec-decider", "placement": "homepage_showcase", "channel": "web"}
        decided = http.post("/v1/decide", json=decide, headers=SITE_HEADERS)
        assert decided.status_code == 200  # the site key may ask for decisions...
        assert http.post("/v1/decide", json=decide, headers=SERVER_HEADERS).status_code == 200  # ...and the server key
        decision_id = decided.json()["decisions"][0]["decision_id"]
        writes = [
            ("POST", "/v1/events", {"events": [_event("refused-1")]}),
            ("POST", "/v1/exposures", {"exposures": [{"decision_id": decision_id}]}),
            ("POST", "/v1/identify", {"anonymous_id": "sec-cookie", "user_id": "sec-user"}),
            ("DELETE", "/v1/users/sec-user", None),
        ]
        for method, path, body in [("POST", "/v1/decide", decide), *writes]:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                refused = http.request(method, path, json=body, headers=headers)
                assert refused.status_code == 401, (path, headers, refused.text)
                assert refused.headers["www-authenticate"] == "Bearer" and refused.json()["error"] == "unauthorized"
        for method, path, body in writes:  # the site key may sit in a web page: it writes nothing
            refused = http.request(method, path, json=body, headers=SITE_HEADERS)
            assert refused.status_code == 403 and refused.json()["field"] == "Authorization", (path, refused.text)
        stored = http.post(
            "/v1/events", json={"events": [_event("allowed-1")]}, headers=SERVER_HEADERS, params={"wait": "durable"}
        )
        assert stored.status_code == 200 and stored.json()["durable"] is True
        for method, path, body in writes[1:]:
            assert http.request(method, path, json=body, headers=SERVER_HEADERS).status_code == 200, path
        assert http.get("/v1/experiences").status_code == 200  # the catalogue changes nothing: no credential
    ids = Warehouse(running.lake).query("SELECT event_id FROM events")["event_id"].to_list()
    assert "refused-1" not in ids  # a refused write left nothing behind
    assert (
        wait_for_count(
            running.lake,
            "SELECT count(*) FROM decisions WHERE user_id = $u",
            {"u": customer_unit("sec-decider", KEY)},
            expected=2,
        )
        == 2
    )  # only the two admitted


@pytest.mark.e2e
def test_off_loopback_drills_need_the_switch_and_the_server_key(exposed, launch, tmp_path, scenario):
    user = raw_user(scenario, "exp_adaptive_cta", "adaptive", "drill", key=KEY)  # the propensity model decides
    drill = {
        "user_id": user,
        "placement": "product_cta",
        "channel": "web",
        "consent": True,
        "incidents": ["model_outage"],
    }
    _, url = exposed  # drills not switched on
    with httpx.Client(base_url=url, timeout=30) as http:
        for headers in (SERVER_HEADERS, SITE_HEADERS):
            refused = http.post("/v1/decide", json=drill, headers=headers)
            assert refused.status_code == 403 and refused.json()["field"] == "incidents", refused.text
            assert "MOMENTO_ALLOW_DRILLS" in refused.json()["reason"]
    drills = launch(tmp_path, host="0.0.0.0", env={**SECRETS, "MOMENTO_ALLOW_DRILLS": "1"})
    with httpx.Client(base_url=_outside(drills), timeout=30) as http:
        site = http.post("/v1/decide", json=drill, headers=SITE_HEADERS)
        assert site.status_code == 403 and "server key" in site.json()["reason"]
        (served,) = http.post("/v1/decide", json=drill, headers=SERVER_HEADERS).json()["decisions"]
        assert served["fallback_reason"] == Code.MODEL_UNAVAILABLE  # the drill ran
        assert http.post("/v1/decide", json={**drill, "incidents": []}, headers=SITE_HEADERS).status_code == 200


@pytest.mark.e2e
def test_a_client_past_its_rate_limit_gets_429_with_retry_after(launch, tmp_path):
    running = launch(
        tmp_path, host="0.0.0.0", env={**SECRETS, "MOMENTO_RATE_LIMIT_PER_SECOND": "1", "MOMENTO_RATE_LIMIT_BURST": "5"}
    )
    decide = {"user_id": "busy-user", "placement": "product_cta", "channel": "web"}
    with httpx.Client(base_url=_outside(running), timeout=30) as http:
        answers = [http.post("/v1/decide", json=decide, headers=SITE_HEADERS) for _ in range(12)]
        statuses = [a.status_code for a in answers]
        assert statuses[:5] == [200] * 5 and 429 in statuses and set(statuses) <= {200, 429}
        limited = next(a for a in answers if a.status_code == 429)
        assert limited.json()["error"] == "rate_limited" and int(limited.headers["retry-after"]) >= 1
        assert http.post("/v1/events", json={"events": [_event("busy-1")]}, headers=SERVER_HEADERS).status_code == 200
        assert http.get("/healthz").status_code == 200  # operations are never limited
        text = http.get("/metrics").text
    assert metric(text, "momento_rate_limited_requests_total", {"endpoint": "decide"}) == statuses.count(429)


@pytest.mark.e2e
def test_request_size_and_batch_length_are_bounded(exposed):
    _, url = exposed
    with httpx.Client(base_url=url, timeout=30, headers=SERVER_HEADERS) as http:
        padded = _event("big-1", properties={"pad": "x" * 4000})
        oversize = http.post("/v1/events", json={"events": [padded] * 6})  # about 24 kB > 20 kB
        assert oversize.status_code == 413 and oversize.json()["error"] == "body_too_large"
        too_many = http.post("/v1/events", json={"events": [_event(f"many-{i}") for i in range(MAX_BATCH + 1)]})
        assert too_many.status_code == 413 and too_many.json()["error"] == "batch_too_large"
        exposures = [
            {"decision_id": f"d{i}", "user_id": "u", "placement": "p", "variant": "v", "channel": "web"}
            for i in range(MAX_BATCH + 1)
        ]
        assert http.post("/v1/exposures", json={"exposures": exposures}).status_code == 413
        assert (
            http.post("/v1/events", json={"events": [_event(f"ok-{i}") for i in range(MAX_BATCH)]}).status_code == 200
        )
        nine = http.post("/v1/decide", json={"user_id": "u", "channel": "web", "placements": ["product_cta"] * 9})
        assert nine.status_code == 422 and nine.json()["field"] == "placements"
        long_id = http.post("/v1/decide", json={"user_id": "u" * 129, "channel": "web", "placement": "product_cta"})
        assert long_id.status_code == 422 and long_id.json()["field"] == "user_id"
        assert http.get("/healthz").json()["status"] == "ok"


@pytest.mark.e2e
def test_ids_are_stored_only_as_keyed_hashes(exposed):
    running, url = exposed
    customer, cookie = "maria.silva+vip@example.com.br", "cookie-raw-0f3e9d"
    with httpx.Client(base_url=url, timeout=30, headers=SERVER_HEADERS) as http:
        anonymous = http.post(
            "/v1/decide",
            json={
                "anonymous_id": cookie,
                "session_id": "sec-s1",
                "channel": "web",
                "placement": "homepage_showcase",
                "consent": True,
            },
        )
        assert http.post("/v1/identify", json={"anonymous_id": cookie, "user_id": customer}).status_code == 200
        known = http.post(
            "/v1/decide",
            json={
                "user_id": customer,
                "anonymous_id": cookie,
                "session_id": "sec-s1",
                "channel": "web",
                "placement": "cart_cross_sell",
                "consent": True,
            },
        )
        exposures = [{"decision_id": r.json()["decisions"][0]["decision_id"]} for r in (anonymous, known)]
        assert http.post("/v1/exposures", json={"exposures": exposures}).status_code == 200
        events = [
            _event("pii-1", customer),
            _event("pii-2", customer, anonymous_id=cookie),
            {**_event("pii-3", customer), "event_type": "purchase", "revenue": 99.0},
        ]
        assert http.post("/v1/events", json={"events": events}, params={"wait": "durable"}).json()["durable"]
    assert wait_for_count(running.lake, "SELECT count(*) FROM decisions WHERE session_id = 'sec-s1'", expected=2) == 2
    assert wait_for_count(running.lake, "SELECT count(*) FROM exposures WHERE session_id = 'sec-s1'", expected=2) == 2
    rows = _dump(running.lake)
    for raw in (customer, cookie, "maria.silva"):
        assert raw not in rows
        assert not _files_containing(running.lake, raw)  # not in any Parquet file or Delta log entry
    assert customer_unit(customer, KEY) in rows and anonymous_unit(cookie, KEY) in rows  # the keyed hash is
    assert customer_unit(customer, DEV_KEY) not in rows  # keyed by the deployment's secret, not a default
    assert hashlib.sha256(customer.encode()).hexdigest()[:32] not in rows  # and not a plain (guessable) hash


# -- SQL injection ----------------------------------------------------------------------------

HOSTILE = [
    "' OR '1'='1",
    "x'); DROP TABLE events; --",
    '" UNION SELECT * FROM decisions --',
    "$f_channel",
    "1; DELETE FROM decisions WHERE TRUE",
]


@pytest.mark.e2e
def test_sql_injection_shaped_input_is_only_data(client, service):
    for i, text in enumerate(HOSTILE):
        decided = client.post(
            "/v1/decide",
            json={
                "user_id": text,
                "session_id": text,
                "placement": "homepage_showcase",
                "channel": "web",
                "category": text,
                "region": text,
                "device": text,
                "consent": True,
            },
        )
        assert decided.status_code == 200, decided.text
        unknown = client.post("/v1/decide", json={"user_id": "u", "placement": text, "channel": "web"})
        assert unknown.status_code == 422 and unknown.json()["error"] == "unknown_placement"
        event = {**_event(f"inj-{i}-{text}", text), "category": text, "session_id": text, "properties": {"q": text}}
        assert client.post("/v1/events", json={"events": [event]}, params={"wait": "durable"}).json()["durable"]
    bystander = {**_event("inj-bystander", "inj-bystander-user")}
    assert client.post("/v1/events", json={"events": [bystander]}, params={"wait": "durable"}).json()["durable"]
    units = [customer_unit(text, DEV_KEY) for text in HOSTILE]
    assert wait_for_count(
        service.lake,
        "SELECT count(*) FROM decisions WHERE list_contains($u, user_id)",
        {"u": units},
        expected=len(HOSTILE),
    ) == len(HOSTILE)

    warehouse = Warehouse(service.lake)
    stored = warehouse.query(
        "SELECT event_id, user_id, category, session_id, properties FROM events "
        "WHERE starts_with(event_id, 'inj-') AND event_id <> 'inj-bystander' ORDER BY event_id"
    )
    assert stored["category"].to_list() == sorted(HOSTILE, key=lambda t: f"inj-{HOSTILE.index(t)}-{t}")  # verbatim
    assert set(stored["user_id"]) == set(units)
    decisions_before = warehouse.scalar("SELECT count(*) FROM decisions")
    # The metrics functions take hostile filters and search text as values.
    served = aggregates(warehouse, pre_days=14)
    assert health.summary(served, Filters(), 10.0).decisions > 0
    for text in HOSTILE:
        assert health.summary(served, Filters(channel=text), 10.0).decisions == 0
        assert health.summary(served, Filters(segment=text, journey=text), 10.0).decisions == 0
        assert health.errors_by_code(served, Filters(channel=text)).is_empty()
        assert compliance.audit(warehouse, Filters(), compliance.AuditQuery(user_id=text)).is_empty()
        found = compliance.audit(warehouse, Filters(), compliance.AuditQuery(user_id=customer_unit(text, DEV_KEY)))
        assert found.height == 1 and found["user_id"].to_list() == [customer_unit(text, DEV_KEY)]
        assert compliance.audit(warehouse, Filters(), compliance.AuditQuery(reason=text, decision_id=text)).is_empty()
    warehouse.refresh(force=True)
    assert warehouse.scalar("SELECT count(*) FROM decisions") >= decisions_before  # nothing was dropped or deleted
    warehouse.close()

    # Erasing a hostile id erases that user only.
    for text in HOSTILE:
        erased = client.delete(f"/v1/users/{quote(text, safe='')}")
        assert erased.status_code == 200, erased.text
        assert erased.json()["rows_deleted"]["events"] == 1 and erased.json()["rows_deleted"]["decisions"] == 1
    warehouse = Warehouse(service.lake)
    assert warehouse.scalar("SELECT count(*) FROM events WHERE event_id = 'inj-bystander'") == 1
    assert warehouse.scalar("SELECT count(*) FROM events WHERE list_contains($u, user_id)", {"u": units}) == 0
    warehouse.close()


def test_the_audit_trail_returns_at_most_ten_thousand_rows(small_lake):
    """The cockpit's audit search (and its CSV, which is exactly what it shows) cannot be asked
    for the whole decision log: the row count is bound as a parameter, capped at 10,000."""
    warehouse = Warehouse(small_lake)
    try:
        assert warehouse.scalar("SELECT count(*) FROM decisions") > 10_000
        for asked in (10_001, 10**9):
            assert compliance.audit(warehouse, Filters(), compliance.AuditQuery(limit=asked)).height == 10_000
        assert compliance.audit(warehouse, Filters(), compliance.AuditQuery(limit=0)).height == 1
    finally:
        warehouse.close()


# The static check: SQL text is composed only from constants and reviewed values. Every f-string
# or str.format() whose text looks like SQL, and every SQL argument of execute/query/scalar/sql/
# delete that is built in place, may interpolate a *parameter of its enclosing function* only if
# the parameter cannot hold text (annotated without `str`/`Any`/`object`: a bool, a Metric of the
# catalogue...) or is listed here with the reason it can never carry a caller's text. Module-level
# SQL (built from constants at import) needs no entry. What it cannot see: a parameter copied to
# a local first; the dynamic tests above cover behaviour.
REVIEWED: dict[
    tuple[str, str, str], str
] = {  # all in metrics/ and momento/lake/: the service and the pages build no SQL
    ("momento/lake/warehouse.py", "_refresh_table", "name"): "a table name from TABLES or a rollup directory name "
    "that rollup_tables checked (rollup_[a-z0-9_]+)",
    ("momento/lake/warehouse.py", "_drop", "name"): "a table name from momento.lake.schema.TABLES",
    ("metrics/compliance.py", "_parity", "dimension"): "checked against compliance.DIMENSIONS first",
    (
        "metrics/rollup/state.py",
        "merged_sql",
        "rows",
    ): "a relation the rollup code names (a table, or SQL of constants)",
    ("metrics/rollup/definitions.py", "_sum", "measure"): "a key of the catalogue's MEASURES",
    ("metrics/rollup/definitions.py", "part", "source"): "'units u', a constant of _family_sql",
    ("metrics/rollup/definitions.py", "part", "join"): "join clauses written in _family_sql from constants",
    ("metrics/rollup/definitions.py", "part", "day"): "a day expression written in _family_sql from constants",
    ("momento/lake/warehouse.py", "_select", "files"): "Parquet paths from the Delta log, quoted by _read",
    ("metrics/rollup/session.py", "create", "name"): "checked by relation_name (a plain identifier) in place",
    ("metrics/rollup/session.py", "register", "name"): "checked by relation_name (a plain identifier) in place",
    ("metrics/rollup/session.py", "create", "sql"): "SQL the fold writes from the rollup definitions (a session "
    "runs statements; callers bind values as parameters)",
}
_SQL_WORDS = re.compile(r"\b(select|delete|insert|update|drop|create|where)\b", re.I)
_TEXT_TYPES = re.compile(r"\b(str|Any|object)\b")
_SQL_CALLS = {"execute", "executemany", "query", "scalar", "sql", "delete", "Statement"}


def _template(node: ast.AST) -> tuple[str, list[ast.expr]] | None:
    """(literal text, interpolated expressions) of a string built in place, else None."""
    if isinstance(node, ast.JoinedStr):
        text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
        return text, [v.value for v in node.values if isinstance(v, ast.FormattedValue)]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        base = node.func.value
        text = base.value if isinstance(base, ast.Constant) and isinstance(base.value, str) else ast.unparse(base)
        return text, [*node.args, *(k.value for k in node.keywords)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        parts = [node.left, node.right]
        text = " ".join(p.value for p in parts if isinstance(p, ast.Constant) and isinstance(p.value, str))
        return (text, [p for p in parts if not isinstance(p, ast.Constant)]) if text else None
    return None


def _sql_templates(function: ast.AST) -> Iterator[tuple[ast.AST, list[ast.expr]]]:
    """Each string built in place that is SQL: it reads like SQL, or it is the SQL argument of
    execute/query/scalar/sql/delete or of a `Statement` (then whatever it says)."""
    arguments = {
        id(node.args[0])
        for node in ast.walk(function)
        if isinstance(node, ast.Call)
        and node.args
        and (node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)) in _SQL_CALLS
    }
    for node in ast.walk(function):
        built = _template(node)
        if built is not None and (id(node) in arguments or _SQL_WORDS.search(built[0])):
            yield node, built[1]


def _caller_values_in_sql(source: str, module: str) -> Iterator[tuple[tuple[str, str, str], str]]:
    """((module, function, parameter), where) for each parameter spliced into SQL text."""
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        arguments = function.args
        parameters = {
            a.arg
            for a in (
                *arguments.posonlyargs,
                *arguments.args,
                *arguments.kwonlyargs,
                *filter(None, (arguments.vararg, arguments.kwarg)),
            )
            if a.annotation is None or _TEXT_TYPES.search(ast.unparse(a.annotation))
        }  # may hold text
        for node, values in _sql_templates(function):
            for value in values:
                for name in sorted({n.id for n in ast.walk(value) if isinstance(n, ast.Name)} & parameters):
                    yield (module, function.name, name), f"{module}:{node.lineno} {ast.unparse(value)}"


def test_the_static_check_sees_a_caller_value_in_sql():
    source = """
def search(wh, text, table, flag: bool, n: int):
    wh.query(f"SELECT * FROM decisions WHERE user_id = '{text}'")
    wh.execute("DELETE FROM events WHERE id = " + table)
    sql = "SELECT count(*) FROM {t}".format(t=table)
    wh.query(f"SELECT * FROM t WHERE {flag} LIMIT {n}")
    Statement(TEMPLATE.format(t=table), {})
    return wh.query("SELECT * FROM decisions WHERE user_id = $u", {"u": text})
"""
    found = sorted(key for key, _ in _caller_values_in_sql(source, "x.py"))
    assert found == [("x.py", "search", "table")] * 3 + [("x.py", "search", "text")]


def test_no_sql_text_is_built_from_caller_values():
    sources = [
        p
        for package in ("momento", "metrics", "decisioning", "pages", "bench", "cli")
        for p in (PROJECT_ROOT / package).rglob("*.py")
    ] + [PROJECT_ROOT / "app.py"]
    found = [
        hit
        for path in sources
        for hit in _caller_values_in_sql(path.read_text(), path.relative_to(PROJECT_ROOT).as_posix())
    ]
    assert len(sources) > 20
    unreviewed = [
        f"{where} puts parameter {key[2]!r} of {key[1]}() into SQL text" for key, where in found if key not in REVIEWED
    ]
    assert not unreviewed, "\n".join(unreviewed)
    assert {key for key, _ in found} == set(REVIEWED), "stale allow-list entries"


# -- consent and erasure ----------------------------------------------------------------------


def _post(client: httpx.Client, *events: dict) -> None:
    response = client.post("/v1/events", json={"events": list(events)})  # a plain acknowledgement: no waiting
    assert response.status_code == 200, response.text


@pytest.mark.e2e
def test_consent_withdrawal_stops_personalisation_on_the_next_decision(client, service, scenario):
    withdraws, opts_out = (raw_user(scenario, "exp_adaptive_cta", "adaptive", f"consent-{k}") for k in ("w", "o"))
    decided = []
    for user, event in (
        (withdraws, {"event_type": "consent_change", "consent": False}),
        (opts_out, {"event_type": "opt_out"}),
    ):
        before = decide(client, user, "product_cta")
        assert before["policy"] == "propensity" and before["consent"] is True
        _post(client, {**_event(f"{user}-withdraw", user), **event})
        after = decide(client, user, "product_cta")  # the client still says consent: true
        assert (
            after["policy"] == "default" and after["fallback_reason"] == Code.NO_CONSENT and after["consent"] is False
        )
        decided += [before, after]
    _post(client, {**_event(f"{withdraws}-again", withdraws), "event_type": "consent_change", "consent": True})
    assert decide(client, withdraws, "product_cta")["policy"] == "propensity"  # consent given back: live again
    ids = [d["decision_id"] for d in decided]
    assert wait_for_count(
        service.lake,
        "SELECT count(*) FROM decisions WHERE list_contains($ids, decision_id)",
        {"ids": ids},
        expected=len(ids),
    ) == len(ids)
    rows = Warehouse(service.lake).query(
        "SELECT decision_id, consent, policy, fallback_reason FROM decisions WHERE list_contains($ids, decision_id)",
        {"ids": ids},
    )
    logged = {r["decision_id"]: r for r in rows.iter_rows(named=True)}
    for after in decided[1::2]:
        assert logged[after["decision_id"]] == {
            "decision_id": after["decision_id"],
            "consent": False,
            "policy": "default",
            "fallback_reason": Code.NO_CONSENT,
        }


@pytest.mark.e2e
def test_erasure_forgets_the_user_in_the_lake_and_the_feature_store(client, service, scenario):
    user = raw_user(scenario, "exp_recovery_offer", "treatment", "erase-me")
    bystander = raw_user(scenario, "exp_recovery_offer", "treatment", "erase-not-me")
    cookie = f"{user}-cookie"
    unit, cookie_unit = customer_unit(user, DEV_KEY), anonymous_unit(cookie, DEV_KEY)
    offer = {"price_sensitivity": "high", "cart_value": 180.0}
    _post(
        client, {"event_id": f"{user}-anon-view", "event_type": "page_view", "anonymous_id": cookie, "channel": "web"}
    )
    assert client.post("/v1/identify", json={"anonymous_id": cookie, "user_id": user}).status_code == 200
    first = decide(client, user, "cart_recovery_offer", "email", **offer)
    assert first["policy"] == "rules" and first["variant"] == "discount_15"  # personalised: takes today's e-mail cap
    assert decide(client, user, "cart_recovery_offer", "email", **offer)["fallback_reason"] == Code.FREQUENCY_CAP
    _post(
        client,
        {**_event(f"{user}-order", user), "event_type": "purchase", "revenue": 180.0},
        _event(f"{bystander}-view", bystander),
    )
    assert decide(client, user, "cart_recovery_offer", "email", **offer)["fallback_reason"] == Code.BOUGHT_TODAY
    assert decide(client, bystander, "cart_recovery_offer", "email", **offer)["policy"] == "rules"

    erased = client.delete(f"/v1/users/{user}", params={"requested_by": "reliability-test"})
    assert erased.status_code == 200, erased.text
    assert erased.json()["rows_deleted"] == {"events": 2, "decisions": 3, "exposures": 0, "identities": 1}

    # The lake: none of the user's rows, under the customer id or the linked cookie; others untouched.
    warehouse = Warehouse(service.lake)
    for table in ("events", "decisions", "exposures", "identities"):
        assert (
            warehouse.scalar(f"SELECT count(*) FROM {table} WHERE user_id IN ($u, $a)", {"u": unit, "a": cookie_unit})
            == 0
        ), table
    assert warehouse.scalar("SELECT count(*) FROM events WHERE anonymous_id = $a", {"a": cookie_unit}) == 0
    assert warehouse.scalar("SELECT count(*) FROM events WHERE event_id = $e", {"e": f"{bystander}-view"}) == 1
    logged = compliance.erasures(warehouse)
    assert hashlib.sha256(unit.encode()).hexdigest() in logged["subject_hash"].to_list()
    warehouse.close()
    assert not [f for f in _files_containing(service.lake, unit) if "_delta_log" not in f]  # no data file holds it

    # The live store: the next decision knows nothing of the purchase or of today's cap.
    again = decide(client, user, "cart_recovery_offer", "email", **offer)
    assert again["policy"] == "rules" and again["variant"] == "discount_15" and not again["fallback"]


def test_erasure_leaves_the_pseudonymised_id_in_no_file_of_the_lake(tmp_path):
    lake, unit = tmp_path / "lake", customer_unit("log-residue", DEV_KEY)
    now = datetime.now(UTC)
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        writer.append(
            "events",
            [
                {
                    "event_id": "residue-1",
                    "ts": now,
                    "received_at": now,
                    "user_id": unit,
                    "channel": "web",
                    "event_type": "page_view",
                }
            ],
        )
        writer.flush()
        assert writer.erase_user(unit)["events"] == 1
    assert not _files_containing(lake, unit)


# -- the cockpit's login gate -----------------------------------------------------------------

PROXY_SECRET = "proxy-secret-5b1e"
CHROMIUM = "/usr/bin/chromium"


def _cockpit_app(monkeypatch: pytest.MonkeyPatch, lake: Path, **env: str) -> AppTest:
    """A finished AppTest run of the whole cockpit on `lake` with these settings (caches emptied:
    they would carry another test's settings)."""
    monkeypatch.setenv("MOMENTO_LAKE", str(lake))
    monkeypatch.setenv("MOMENTO_SERVICE_URL", f"http://127.0.0.1:{free_loopback_port()}")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    st.cache_data.clear()
    st.cache_resource.clear()
    try:
        return AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=90).run()
    finally:
        st.cache_data.clear()
        st.cache_resource.clear()


def test_the_cockpit_binds_to_loopback_by_default():
    command = cockpit_command(load_settings({}).cockpit_host, 8501)
    assert command[command.index("--server.address") + 1] == "127.0.0.1"
    assert 'address = "127.0.0.1"' in (PROJECT_ROOT / ".streamlit" / "config.toml").read_text()  # `streamlit run`


@pytest.mark.parametrize("secret", [PROXY_SECRET, ""], ids=["secret-set", "no-secret"])
def test_off_loopback_the_cockpit_renders_nothing_without_a_login(monkeypatch, small_lake, secret):
    at = _cockpit_app(monkeypatch, small_lake, MOMENTO_COCKPIT_HOST="0.0.0.0", MOMENTO_COCKPIT_PROXY_SECRET=secret)
    assert not at.exception, [e.value for e in at.exception]
    assert "Sign in" in at.error[0].value
    assert [t.value for t in at.title] == ["Momento"]  # no page ran: no panel, no number
    assert not at.sidebar.selectbox and not at.metric and not at.get("vega_lite_chart")


def test_on_loopback_the_cockpit_needs_no_login(monkeypatch, small_lake):
    at = _cockpit_app(monkeypatch, small_lake)
    assert not at.exception and not at.error
    assert at.title[0].value.startswith("Executive")


@pytest.fixture(scope="module")
def exposed_cockpit(small_lake: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`momento cockpit` bound to every interface with the proxy secret; its URL through this
    machine's own address when it has one."""
    port = free_loopback_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MOMENTO_")},
        "MOMENTO_LAKE": str(small_lake),
        "MOMENTO_COCKPIT_HOST": "0.0.0.0",
        "MOMENTO_COCKPIT_PROXY_SECRET": PROXY_SECRET,
        "MOMENTO_SERVICE_URL": f"http://127.0.0.1:{free_loopback_port()}",
    }
    log = tmp_path_factory.mktemp("cockpit") / "cockpit.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "cockpit", "--port", str(port)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://{host_address() or '127.0.0.1'}:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("headers", "signed_in"),
    [
        ({}, False),
        ({PROXY_USER_HEADER: "ana@retailer.example"}, False),  # a user header anyone could send
        ({PROXY_USER_HEADER: "ana@retailer.example", PROXY_SECRET_HEADER: "guess"}, False),
        ({PROXY_USER_HEADER: "ana@retailer.example", PROXY_SECRET_HEADER: PROXY_SECRET}, True),  # the proxy's
    ],
    ids=["no-headers", "user-only", "wrong-secret", "signed-in"],
)
def test_off_loopback_the_cockpit_opens_only_for_the_proxys_user_over_http(exposed_cockpit, headers, signed_in):
    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: `make chromium` installs Debian's"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            tab = browser.new_context(extra_http_headers=headers).new_page()
            tab.goto(exposed_cockpit)
            if signed_in:
                expect(tab.get_by_text("Signed in as ana@retailer.example")).to_be_visible(timeout=60_000)
                expect(tab.locator("h1").filter(has_text="Executive")).to_be_visible(timeout=60_000)
            else:
                expect(tab.get_by_text("Sign in through your company")).to_be_visible(timeout=60_000)
                assert tab.locator('[data-testid="stMetric"]').count() == 0
                assert tab.locator("h1").filter(has_text="Executive").count() == 0
        finally:
            browser.close()
