"""Crash: SIGKILL the REAL service in the middle of load, restart it on the same lake.

The durability promise under test (docs/reliability.md): an answer to `POST /v1/events` means
the batch is validated and buffered; `?wait=durable` answers `durable: true` only once the batch
is committed to the Delta log, and because the writer commits in append order, every batch
acknowledged before that one is committed too (the flush boundary). So after a SIGKILL:
- the lake is readable (Delta commits are atomic: a half-written flush is invisible);
- nothing acknowledged before the last durable acknowledgement is missing;
- a client that re-sends everything it ever tried gets every event stored exactly once
  (the restarted writer remembers the lake's recent keys and drops the duplicates).
What a SIGKILL may lose, and the test reports: plain acknowledgements after the last flush
(at most `flush_seconds` of them) and the decisions answered in that window.
"""

from __future__ import annotations

import itertools
import threading
import time

import httpx
import pytest

from momento.lake.warehouse import Warehouse
from tests.support.service import metric

LOAD_SECONDS = 3.0
DURABLE_EVERY = 4  # every 4th batch asks for ?wait=durable


@pytest.mark.e2e
def test_sigkill_mid_load_loses_nothing_durable_and_resends_count_once(launch, tmp_path):
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
    first = launch(tmp_path / "first", env={"MOMENTO_FLUSH_SECONDS": "0.5", "MOMENTO_RATE_LIMIT_PER_SECOND": "0"})
    lake = first.lake
    batches: list[list[dict]] = []  # every batch the client tried, in order
    acked: list[int] = []  # indices of acknowledged batches, in order
    durable: list[int] = []  # indices acknowledged with durable: true
    decisions: list[tuple[float, str]] = []  # (answered at, decision_id)
    unexpected: list[str] = []  # any answer but a success, while the service was up

    def post_events() -> None:
        with httpx.Client(base_url=first.url, timeout=10) as http:
            for i in itertools.count():
                batch = [
                    {
                        "event_id": f"crash-{i}-{j}",
                        "event_type": "page_view",
                        "user_id": f"crash-user-{j}",
                        "channel": "web",
                    }
                    for j in range(25)
                ]
                batches.append(batch)
                wait = i % DURABLE_EVERY == DURABLE_EVERY - 1
                try:
                    response = http.post(
                        "/v1/events", json={"events": batch}, params={"wait": "durable"} if wait else None
                    )
                except httpx.HTTPError:
                    return  # the service is gone
                if response.status_code != 200:
                    unexpected.append(response.text)
                    return
                acked.append(i)
                if response.json()["durable"]:
                    durable.append(i)

    def decide() -> None:
        with httpx.Client(base_url=first.url, timeout=10) as http:
            for i in itertools.count():
                try:
                    response = http.post(
                        "/v1/decide",
                        json={
                            "user_id": f"crash-user-{i % 50}",
                            "channel": "web",
                            "placement": "homepage_showcase",
                            "consent": True,
                        },
                    )
                except httpx.HTTPError:
                    return
                if response.status_code != 200:
                    unexpected.append(response.text)
                    return
                decisions.append((time.monotonic(), response.json()["decisions"][0]["decision_id"]))

    threads = [threading.Thread(target=post_events), threading.Thread(target=decide)]
    for thread in threads:
        thread.start()
    time.sleep(LOAD_SECONDS)
    deadline = time.monotonic() + 30
    while len(durable) < 3 and time.monotonic() < deadline:  # a busy machine: some flush boundaries crossed
        time.sleep(0.1)
    assert len(durable) >= 3 and not unexpected, unexpected
    first.process.kill()  # SIGKILL: no shutdown flush, no goodbye
    killed_at = time.monotonic()
    first.process.wait()
    for thread in threads:
        thread.join(timeout=30)
    assert not unexpected

    # The lake is readable as it was left.
    warehouse = Warehouse(lake)
    stored = set(warehouse.query("SELECT event_id FROM events")["event_id"].to_list())
    stored_decisions = set(warehouse.query("SELECT decision_id FROM decisions")["decision_id"].to_list())
    warehouse.close()
    boundary = durable[-1]
    before_boundary = [event["event_id"] for i in acked if i <= boundary for event in batches[i]]
    assert before_boundary and set(before_boundary) <= stored  # nothing acknowledged before it is missing
    lost_acked = [
        event["event_id"] for i in acked if i > boundary for event in batches[i] if event["event_id"] not in stored
    ]
    lost_decisions = [(at, d) for at, d in decisions if d not in stored_decisions]
    print(
        f"\nSIGKILL after {len(batches)} batches ({len(acked)} acknowledged, {len(durable)} durable); "
        f"acknowledged after the last durable one and lost: {len(lost_acked)} events; decisions lost: "
        f"{len(lost_decisions)} of {len(decisions)}"
        + (
            f", answered at most {killed_at - min(at for at, _ in lost_decisions):.2f} s before the kill"
            if lost_decisions
            else ""
        )
    )

    # Restart on the same lake; the client re-sends everything it ever tried.
    second = launch(tmp_path / "second", env={"MOMENTO_LAKE": str(lake), "MOMENTO_RATE_LIMIT_PER_SECOND": "0"})
    with httpx.Client(base_url=second.url, timeout=30) as http:
        for batch in batches:
            response = http.post("/v1/events", json={"events": batch}, params={"wait": "durable"})
            assert response.status_code == 200 and response.json()["durable"] is True, response.text
        dropped = metric(http.get("/metrics").text, "momento_writer_duplicates_dropped_total")
    sent = {event["event_id"] for batch in batches for event in batch}
    warehouse = Warehouse(lake)
    counts = warehouse.query("SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM events").row(0, named=True)
    warehouse.close()
    assert counts == {"n": len(sent), "ids": len(sent)}  # every event once, no duplicates
    assert dropped == len(stored & sent)  # the survivors of the crash were recognised as re-sends
