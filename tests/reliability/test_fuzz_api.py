"""Property-based fuzzing of every endpoint, generated from the service's own OpenAPI schema.

Schemathesis reads `/openapi.json` from the REAL service (a subprocess) and Hypothesis draws
requests for each operation from it: schema-valid ones (`positive`) and schema-breaking ones
(`negative`: wrong types, missing fields, values out of range, unknown fields). Each is sent
over HTTP with a timeout. The service must never answer 5xx (bad input is a 4xx, a model
failure is a default decision, a full queue would be 503 and none fills up here), must answer
every request within the timeout (no hang), must give every 4xx the documented error body,
and must still answer `/healthz` afterwards.

Schemathesis' own pytest integration (`schemathesis.pytest.from_fixture`) fails on pytest 9
(it reads `Function._nodeid`), so the strategies are driven with Hypothesis' `@given` here.
"""

from __future__ import annotations

import importlib.util
from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from momento.settings import PROJECT_ROOT
from tests.support.service import metric

MAX_EXAMPLES = 25
"""Per operation and mode (17 pairs): keeps the whole run near 15 s on 2 busy cores."""
REQUEST_TIMEOUT = 10.0
WITH_INPUT = [
    ("POST", "/v1/decide"),
    ("POST", "/v1/events"),
    ("POST", "/v1/exposures"),
    ("POST", "/v1/identify"),
    ("DELETE", "/v1/users/{user_id}"),
    ("POST", "/v1/experiments/{experiment_id}/arms/{arm}/pause"),
    ("POST", "/v1/experiments/{experiment_id}/arms/{arm}/resume"),
]
WITHOUT_INPUT = [("GET", "/v1/experiences"), ("GET", "/healthz"), ("GET", "/metrics")]  # nothing to get wrong
OPERATIONS = WITH_INPUT + WITHOUT_INPUT
CASES = [(method, path, GenerationMode.POSITIVE) for method, path in OPERATIONS] + [
    (method, path, GenerationMode.NEGATIVE) for method, path in WITH_INPUT
]

pytestmark = pytest.mark.e2e

SENT: Counter[tuple[str, str, str, int]] = Counter()  # (method, path, mode, status) -> requests


@pytest.fixture(scope="module")
def api_schema(service):
    return schemathesis.openapi.from_url(f"{service.url}/openapi.json")


def test_the_fuzzed_operations_are_every_operation_in_the_schema(api_schema):
    published = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert published == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m}-{p}-{g}" for m, p, g in CASES])
def test_no_request_gets_a_5xx_or_hangs(api_schema, service, method, path, mode):
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case) -> None:
        response = case.call(base_url=service.url, timeout=REQUEST_TIMEOUT)  # a hang fails with a timeout
        SENT[(method, path, str(mode), response.status_code)] += 1
        assert response.status_code < 500, f"{method} {path} -> {response.status_code}: {response.text[:500]}"
        if response.status_code >= 400:
            body = response.json()
            assert body["error"] and body["reason"], body

    check()


def test_decisions_for_known_placements_are_well_formed(api_schema, service, scenario):
    """Schema-valid contexts mostly name unknown placements (any string is schema-valid): here
    the placement names are drawn from the catalogue so the engine itself is fuzzed."""
    operation = api_schema["/v1/decide"]["POST"]
    known = st.sampled_from(sorted(scenario.experience_by_placement))
    variants = {e.placement: set(e.variants) for e in scenario.experiences}

    @given(case=operation.as_strategy(), one=known, several=st.lists(known, min_size=1, max_size=8))
    @settings(max_examples=2 * MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case, one, several) -> None:
        if isinstance(case.body, dict):
            case.body.update({"placement": one} if "placement" in case.body else {})
            case.body.update({"placements": several} if "placements" in case.body else {})
        response = case.call(base_url=service.url, timeout=REQUEST_TIMEOUT)
        SENT[("POST", "/v1/decide", "known-placements", response.status_code)] += 1
        assert response.status_code in (200, 422), response.text[:500]
        for decision in response.json().get("decisions", []):
            assert decision["variant"] in variants[decision["placement"]]
            assert 0 < decision["propensity"] <= 1 and decision["reasons"]
            assert decision["fallback"] == (decision["fallback_reason"] is not None)

    check()


def _fuzz_script():
    spec = importlib.util.spec_from_file_location("bench_fuzz", PROJECT_ROOT / "bench" / "fuzz.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_identify_then_decide_then_erase_chains_never_fail(service):
    """The stateful links of `bench/fuzz.py` (which runs >= 10,000 requests): a generated link,
    a generated decision for its anonymous id (so through the link), the customer's erasure."""
    run = _fuzz_script().Fuzz(service.url, examples=MAX_EXAMPLES)
    run.chains()
    assert not run.failures, run.failures[:5]
    chained = {operation for (operation, mode, status), n in run.tally.items() if mode == "chain" and status == 200}
    assert chained == {"POST /v1/identify", "POST /v1/decide", "DELETE /v1/users/{user_id}"}
    for (operation, mode, status), n in run.tally.items():
        SENT[(*operation.split(" ", 1), mode, status)] += n


def test_the_service_still_answers_after_fuzzing(service):
    if not SENT:
        pytest.skip("meaningful after the fuzzing tests of this module")
    statuses = Counter()
    for (_, _, _, status), n in SENT.items():
        statuses[status] += n
    print(
        f"\nfuzzing: {sum(SENT.values())} requests over {len({k[:2] for k in SENT})} operations, "
        f"statuses {dict(sorted(statuses.items()))}"
    )
    assert {key[:2] for key in SENT} == set(OPERATIONS)
    assert not [status for status in statuses if status >= 500]
    health = httpx.get(f"{service.url}/healthz", timeout=REQUEST_TIMEOUT)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    metrics = httpx.get(f"{service.url}/metrics", timeout=REQUEST_TIMEOUT).text
    assert metric(metrics, "momento_unexpected_errors_total") == 0  # the last-resort handler never ran
