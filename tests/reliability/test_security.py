"""Security and privacy, on the REAL service (subprocesses):

- it binds to loopback unless told otherwise; bound elsewhere, every write (events, exposures,
  identify, erasure) needs the bearer token and is refused without it;
- request size and batch length are bounded;
- ids are stored only as keyed hashes (HMAC with the deployment's key): the raw id is in no
  table and no file of the lake;
- no SQL is built from user text: injection-shaped ids and filters are stored and matched as
  plain data by the API and by the metrics functions, and a static check of the code base
  finds no caller value spliced into SQL text outside a reviewed allow-list;
- a consent withdrawal (or opt-out) stops personalisation on the very next decision;
- erasure removes the user from the lake (checked by query and by reading the files) and from
  the live feature store and caps (the next decision has no memory of them).
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from decisioning.identity import anonymous_unit, customer_unit
from cli.processes import free_loopback_port, wait_until_healthy
from metrics import compliance, health
from metrics.filters import Filters
from momento.lake.writer import LakeWriter
from momento.lake.schema import TABLES
from momento.lake.warehouse import Warehouse
from momento.codes import Code
from momento.settings import PROJECT_ROOT, load_settings
from tests.support.service import (
    DEV_KEY, RunningService, decide, host_address, raw_user, start_service, wait_for_count,
)

TOKEN = "reliability-token-4f9a"
KEY = "deployment-secret-key-7c2e"
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


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningService, str]]:
    """The service bound to every interface with a token, its own pseudonym key and small
    limits; with the URL to reach it through this machine's non-loopback address if it has one."""
    running = start_service(tmp_path_factory.mktemp("exposed"), host="0.0.0.0", env={
        "MOMENTO_API_TOKEN": TOKEN, "MOMENTO_PSEUDONYM_KEY": KEY,
        "MOMENTO_MAX_BODY_BYTES": str(MAX_BODY), "MOMENTO_MAX_BATCH_EVENTS": str(MAX_BATCH)})
    port = running.url.rsplit(":", 1)[1]
    try:
        yield running, f"http://{host_address() or '127.0.0.1'}:{port}"
    finally:
        running.stop()


def _event(event_id: str, user: str = "sec-user", **extra) -> dict:
    return {"event_id": event_id, "event_type": "page_view", "user_id": user, "channel": "web", **extra}


@pytest.mark.e2e
def test_binds_to_loopback_by_default(tmp_path):
    assert load_settings({}).host == "127.0.0.1"
    port = free_loopback_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MOMENTO_")}, "MOMENTO_LAKE": str(tmp_path / "lake")}
    log = tmp_path / "service.log"
    with log.open("wb") as sink:  # `momento serve` with no --host and no MOMENTO_HOST
        process = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
                                   cwd=PROJECT_ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
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
def test_off_loopback_every_write_needs_the_token(exposed):
    running, url = exposed
    good = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, timeout=30) as http:
        decide = http.post("/v1/decide", json={"user_id": "sec-user", "placement": "homepage_showcase", "channel": "web"})
        assert decide.status_code == 200  # reads need no token
        decision_id = decide.json()["decisions"][0]["decision_id"]
        writes = [
            ("POST", "/v1/events", {"events": [_event("refused-1")]}),
            ("POST", "/v1/exposures", {"exposures": [{"decision_id": decision_id}]}),
            ("POST", "/v1/identify", {"anonymous_id": "sec-cookie", "user_id": "sec-user"}),
            ("DELETE", "/v1/users/sec-user", None),
        ]
        for method, path, body in writes:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                refused = http.request(method, path, json=body, headers=headers)
                assert refused.status_code == 401, (path, headers, refused.text)
                assert refused.headers["www-authenticate"] == "Bearer" and refused.json()["error"] == "unauthorized"
        stored = http.post("/v1/events", json={"events": [_event("allowed-1")]}, headers=good,
                           params={"wait": "durable"})
        assert stored.status_code == 200 and stored.json()["durable"] is True
        for method, path, body in writes[1:]:
            assert http.request(method, path, json=body, headers=good).status_code == 200, path
    ids = Warehouse(running.lake).query("SELECT event_id FROM events")["event_id"].to_list()
    assert "refused-1" not in ids  # a refused write left nothing behind


@pytest.mark.e2e
def test_request_size_and_batch_length_are_bounded(exposed):
    _, url = exposed
    good = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, timeout=30, headers=good) as http:
        padded = _event("big-1", properties={"pad": "x" * 4000})
        oversize = http.post("/v1/events", json={"events": [padded] * 6})  # about 24 kB > 20 kB
        assert oversize.status_code == 413 and oversize.json()["error"] == "body_too_large"
        too_many = http.post("/v1/events", json={"events": [_event(f"many-{i}") for i in range(MAX_BATCH + 1)]})
        assert too_many.status_code == 413 and too_many.json()["error"] == "batch_too_large"
        exposures = [{"decision_id": f"d{i}", "user_id": "u", "placement": "p", "variant": "v", "channel": "web"}
                     for i in range(MAX_BATCH + 1)]
        assert http.post("/v1/exposures", json={"exposures": exposures}).status_code == 413
        assert http.post("/v1/events", json={"events": [_event(f"ok-{i}") for i in range(MAX_BATCH)]}).status_code == 200
        nine = http.post("/v1/decide", json={"user_id": "u", "channel": "web", "placements": ["product_cta"] * 9})
        assert nine.status_code == 422 and nine.json()["field"] == "placements"
        long_id = http.post("/v1/decide", json={"user_id": "u" * 129, "channel": "web", "placement": "product_cta"})
        assert long_id.status_code == 422 and long_id.json()["field"] == "user_id"
        assert http.get("/healthz").json()["status"] == "ok"


@pytest.mark.e2e
def test_ids_are_stored_only_as_keyed_hashes(exposed):
    running, url = exposed
    customer, cookie = "maria.silva+vip@example.com.br", "cookie-raw-0f3e9d"
    with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        anonymous = http.post("/v1/decide", json={"anonymous_id": cookie, "session_id": "sec-s1", "channel": "web",
                                                  "placement": "homepage_showcase", "consent": True})
        assert http.post("/v1/identify", json={"anonymous_id": cookie, "user_id": customer}).status_code == 200
        known = http.post("/v1/decide", json={"user_id": customer, "anonymous_id": cookie, "session_id": "sec-s1",
                                              "channel": "web", "placement": "cart_cross_sell", "consent": True})
        exposures = [{"decision_id": r.json()["decisions"][0]["decision_id"]} for r in (anonymous, known)]
        assert http.post("/v1/exposures", json={"exposures": exposures}).status_code == 200
        events = [_event("pii-1", customer), _event("pii-2", customer, anonymous_id=cookie),
                  {**_event("pii-3", customer), "event_type": "purchase", "revenue": 99.0}]
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
    "\" UNION SELECT * FROM decisions --",
    "$f_channel",
    "1; DELETE FROM decisions WHERE TRUE",
]


@pytest.mark.e2e
def test_sql_injection_shaped_input_is_only_data(client, service):
    for i, text in enumerate(HOSTILE):
        decided = client.post("/v1/decide", json={"user_id": text, "session_id": text, "placement": "homepage_showcase",
                                                  "channel": "web", "category": text, "region": text, "device": text,
                                                  "consent": True})
        assert decided.status_code == 200, decided.text
        unknown = client.post("/v1/decide", json={"user_id": "u", "placement": text, "channel": "web"})
        assert unknown.status_code == 422 and unknown.json()["error"] == "unknown_placement"
        event = {**_event(f"inj-{i}-{text}", text), "category": text, "session_id": text, "properties": {"q": text}}
        assert client.post("/v1/events", json={"events": [event]}, params={"wait": "durable"}).json()["durable"]
    bystander = {**_event("inj-bystander", "inj-bystander-user")}
    assert client.post("/v1/events", json={"events": [bystander]}, params={"wait": "durable"}).json()["durable"]
    units = [customer_unit(text, DEV_KEY) for text in HOSTILE]
    assert wait_for_count(service.lake, "SELECT count(*) FROM decisions WHERE list_contains($u, user_id)", {"u": units},
                          expected=len(HOSTILE)) == len(HOSTILE)

    warehouse = Warehouse(service.lake)
    stored = warehouse.query("SELECT event_id, user_id, category, session_id, properties FROM events "
                             "WHERE starts_with(event_id, 'inj-') AND event_id <> 'inj-bystander' ORDER BY event_id")
    assert stored["category"].to_list() == sorted(HOSTILE, key=lambda t: f"inj-{HOSTILE.index(t)}-{t}")  # verbatim
    assert set(stored["user_id"]) == set(units)
    decisions_before = warehouse.scalar("SELECT count(*) FROM decisions")
    # The metrics functions take hostile filters and search text as values.
    assert health.summary(warehouse, Filters(), 10.0).decisions > 0
    for text in HOSTILE:
        assert health.summary(warehouse, Filters(channel=text), 10.0).decisions == 0
        assert health.summary(warehouse, Filters(segment=text, journey=text), 10.0).decisions == 0
        assert health.errors_by_code(warehouse, Filters(channel=text)).is_empty()
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


# The static check: SQL text is composed only from constants and reviewed values. Every f-string
# or str.format() whose text looks like SQL, and every SQL argument of execute/query/scalar/sql/
# delete that is built in place, may interpolate a *parameter of its enclosing function* only if
# the parameter cannot hold text (annotated without `str`/`Any`/`object`: a bool, a Metric of the
# catalogue...) or is listed here with the reason it can never carry a caller's text. Module-level
# SQL (built from constants at import) needs no entry. What it cannot see: a parameter copied to
# a local first; the dynamic tests above cover behaviour.
REVIEWED: dict[tuple[str, str, str], str] = {  # all in metrics/ and momento/lake/: the service and the pages build no SQL
    ("momento/lake/warehouse.py", "_refresh_table", "name"): "a table name from momento.lake.schema.TABLES",
    ("momento/lake/warehouse.py", "_drop", "name"): "a table name from momento.lake.schema.TABLES",
    ("momento/lake/warehouse.py", "_select", "files"): "Parquet paths from the Delta log, quoted by _read",
    ("metrics/compliance.py", "parity", "dimension"): "checked against compliance.DIMENSIONS first",
    ("metrics/executive.py", "_trend_sql", "bucket"): "utc_day/utc_hour of a constant column, at import",
    ("metrics/sql/per_user.py", "_numbered", "units"): "SQL composed by experiments/executive from constants",
    ("metrics/sql/per_user.py", "_numbered", "keys"): "column names fixed by experiments/executive ('uid', ...)",
    ("metrics/sql/per_user.py", "cumulative_sql", "group"): "a column name fixed by its caller ('arm')",
    ("metrics/sql/per_user.py", "cumulative_sql", "unit_days"): "SQL composed by experiments.py from constants",
    ("metrics/sql/per_user.py", "_running", "group"): "cumulative_sql's group, passed on",
    ("metrics/sql/per_user.py", "_running", "ctes"): "SQL fragments built in cumulative_sql",
}
_SQL_WORDS = re.compile(r"\b(select|delete|insert|update|drop|create|where)\b", re.I)
_TEXT_TYPES = re.compile(r"\b(str|Any|object)\b")
_SQL_CALLS = {"execute", "executemany", "query", "scalar", "sql", "delete"}


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
    execute/query/scalar/sql/delete (then whatever it says)."""
    arguments = {id(node.args[0]) for node in ast.walk(function) if isinstance(node, ast.Call) and node.args
                 and isinstance(node.func, ast.Attribute) and node.func.attr in _SQL_CALLS}
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
        parameters = {a.arg for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                                      *filter(None, (arguments.vararg, arguments.kwarg)))
                      if a.annotation is None or _TEXT_TYPES.search(ast.unparse(a.annotation))}  # may hold text
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
    return wh.query("SELECT * FROM decisions WHERE user_id = $u", {"u": text})
"""
    found = sorted(key for key, _ in _caller_values_in_sql(source, "x.py"))
    assert found == [("x.py", "search", "table"), ("x.py", "search", "table"), ("x.py", "search", "text")]


def test_no_sql_text_is_built_from_caller_values():
    sources = [p for package in ("momento", "metrics", "decisioning", "pages", "bench", "cli")
               for p in (PROJECT_ROOT / package).rglob("*.py")] + [PROJECT_ROOT / "app.py"]
    found = [hit for path in sources
             for hit in _caller_values_in_sql(path.read_text(), path.relative_to(PROJECT_ROOT).as_posix())]
    assert len(sources) > 20
    unreviewed = [f"{where} puts parameter {key[2]!r} of {key[1]}() into SQL text" for key, where in found
                  if key not in REVIEWED]
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
    for user, event in ((withdraws, {"event_type": "consent_change", "consent": False}),
                        (opts_out, {"event_type": "opt_out"})):
        before = decide(client, user, "product_cta")
        assert before["policy"] == "propensity" and before["consent"] is True
        _post(client, {**_event(f"{user}-withdraw", user), **event})
        after = decide(client, user, "product_cta")  # the client still says consent: true
        assert after["policy"] == "default" and after["fallback_reason"] == Code.NO_CONSENT and after["consent"] is False
        decided += [before, after]
    _post(client, {**_event(f"{withdraws}-again", withdraws), "event_type": "consent_change", "consent": True})
    assert decide(client, withdraws, "product_cta")["policy"] == "propensity"  # consent given back: live again
    ids = [d["decision_id"] for d in decided]
    assert wait_for_count(service.lake, "SELECT count(*) FROM decisions WHERE list_contains($ids, decision_id)",
                          {"ids": ids}, expected=len(ids)) == len(ids)
    rows = Warehouse(service.lake).query("SELECT decision_id, consent, policy, fallback_reason FROM decisions "
                                         "WHERE list_contains($ids, decision_id)", {"ids": ids})
    logged = {r["decision_id"]: r for r in rows.iter_rows(named=True)}
    for after in decided[1::2]:
        assert logged[after["decision_id"]] == {"decision_id": after["decision_id"], "consent": False,
                                                "policy": "default", "fallback_reason": Code.NO_CONSENT}


@pytest.mark.e2e
def test_erasure_forgets_the_user_in_the_lake_and_the_feature_store(client, service, scenario):
    user = raw_user(scenario, "exp_recovery_offer", "treatment", "erase-me")
    bystander = raw_user(scenario, "exp_recovery_offer", "treatment", "erase-not-me")
    cookie = f"{user}-cookie"
    unit, cookie_unit = customer_unit(user, DEV_KEY), anonymous_unit(cookie, DEV_KEY)
    offer = {"price_sensitivity": "high", "cart_value": 180.0}
    _post(client, {"event_id": f"{user}-anon-view", "event_type": "page_view", "anonymous_id": cookie, "channel": "web"})
    assert client.post("/v1/identify", json={"anonymous_id": cookie, "user_id": user}).status_code == 200
    first = decide(client, user, "cart_recovery_offer", "email", **offer)
    assert first["policy"] == "rules" and first["variant"] == "discount_15"  # personalised: takes today's e-mail cap
    assert decide(client, user, "cart_recovery_offer", "email", **offer)["fallback_reason"] == Code.FREQUENCY_CAP
    _post(client, {**_event(f"{user}-order", user), "event_type": "purchase", "revenue": 180.0},
          _event(f"{bystander}-view", bystander))
    assert decide(client, user, "cart_recovery_offer", "email", **offer)["fallback_reason"] == Code.BOUGHT_TODAY
    assert decide(client, bystander, "cart_recovery_offer", "email", **offer)["policy"] == "rules"

    erased = client.delete(f"/v1/users/{user}", params={"requested_by": "reliability-test"})
    assert erased.status_code == 200, erased.text
    assert erased.json()["rows_deleted"] == {"events": 2, "decisions": 3, "exposures": 0, "identities": 1}

    # The lake: none of the user's rows, under the customer id or the linked cookie; others untouched.
    warehouse = Warehouse(service.lake)
    for table in ("events", "decisions", "exposures", "identities"):
        assert warehouse.scalar(f"SELECT count(*) FROM {table} WHERE user_id IN ($u, $a)",
                                {"u": unit, "a": cookie_unit}) == 0, table
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
    now = datetime.now(timezone.utc)
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        writer.append("events", [{"event_id": "residue-1", "ts": now, "received_at": now, "user_id": unit,
                                  "channel": "web", "event_type": "page_view"}])
        writer.flush()
        assert writer.erase_user(unit)["events"] == 1
    assert not _files_containing(lake, unit)
