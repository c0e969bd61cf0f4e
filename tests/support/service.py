"""Helpers for tests that drive the REAL service: start it (the decisioning suite's
`start_service`, reused), ask it for a decision, read its Prometheus counters, wait for rows to
reach the lake, and find a raw customer id that lands in a given experiment arm or a non-loopback address of this
machine.

A plain module (not a conftest) so that any test directory can import it with
`--import-mode=importlib`: `from tests.support.service import ...` (the project root must be on
`sys.path`; `tests/reliability/conftest.py` puts it there).
"""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from decisioning.assignment import assign_arm, in_holdout
from decisioning.identity import customer_unit
from momento.lake.warehouse import Warehouse
from momento.scenario import Scenario
from tests.decisioning.conftest import RunningService, start_service

__all__ = [
    "DEV_KEY",
    "RunningService",
    "decide",
    "host_address",
    "metric",
    "raw_user",
    "start_service",
    "wait_for_count",
]

DEV_KEY = "momento-dev-key"
"""The service's pseudonym key when `MOMENTO_PSEUDONYM_KEY` is not set (as in these tests)."""


def decide(client: httpx.Client, user: str | None, placement: str, channel: str = "web", **extra) -> dict:
    """The one decision for `placement` (200 asserted): a consenting visitor in session "s",
    `user` as the customer id (None: identified by what `extra` holds, e.g. `anonymous_id`)."""
    who = {"user_id": user} if user is not None else {}
    response = client.post(
        "/v1/decide",
        json={**who, "placement": placement, "channel": channel, "consent": True, "session_id": "s", **extra},
    )
    assert response.status_code == 200, response.text  # no error ever reaches the client
    (decision,) = response.json()["decisions"]
    return decision


def metric(text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """The sum of the samples called `name` (e.g. `momento_fallbacks_total`) whose labels
    include `labels`, in Prometheus exposition `text`; 0.0 when there is none."""
    wanted = dict(labels or {})
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and wanted.items() <= sample.labels.items():
                total += sample.value
    return total


def wait_for_count(
    lake: Path, sql: str, params: Mapping[str, object] | None = None, *, expected: int, timeout: float = 20.0
) -> int:
    """Poll `sql` (a count) on a fresh snapshot of `lake` until it reaches `expected` or
    `timeout` passes; returns the last count (so the caller's assertion shows it)."""
    warehouse = Warehouse(lake)
    try:
        deadline = time.monotonic() + timeout
        while True:
            warehouse.refresh(force=True)
            got = int(warehouse.scalar(sql, dict(params or {})))
            if got >= expected or time.monotonic() > deadline:
                return got
            time.sleep(0.2)
    finally:
        warehouse.close()


def raw_user(scenario: Scenario, experiment_id: str, arm: str, prefix: str, key: str = DEV_KEY) -> str:
    """The first raw customer id `prefix-N` outside the holdout and assigned to `arm`."""
    experiment = scenario.experiment_by_id[experiment_id]
    for i in itertools.count():
        raw = f"{prefix}-{i}"
        unit = customer_unit(raw, key)
        if not in_holdout(unit, scenario.population) and assign_arm(unit, experiment) == arm:
            return raw


def host_address() -> str | None:
    """An IPv4 address of this machine that is not loopback (None when it has none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("203.0.113.1", 9))  # no packet is sent: this only picks the route
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address
