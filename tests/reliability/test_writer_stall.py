"""Writer stalls: with every lake flush slowed down (`MOMENTO_FLUSH_DELAY_SECONDS`) and a small
queue bound (`MOMENTO_QUEUE_LIMIT`), the REAL service keeps answering decisions quickly, refuses
events with 503 + Retry-After once the queue is full (never holding more than the bound, never
dropping a row it acknowledged), shows the back-pressure in `/metrics` as the cockpit's health
page reads it, and stores everything once the writer catches up.
"""

from __future__ import annotations

import itertools
import threading
import time

import httpx
import numpy as np
import pytest

from metrics import health
from tests.support.service import metric, wait_for_count

QUEUE_LIMIT = 2_000
FLUSH_DELAY_SECONDS = 1.5
STALL_SECONDS = 6.0
BATCH = 100


@pytest.mark.e2e
def test_a_slow_writer_never_stops_decisions_and_never_loses_an_event(launch, tmp_path):
    running = launch(
        tmp_path, env={"MOMENTO_FLUSH_DELAY_SECONDS": str(FLUSH_DELAY_SECONDS), "MOMENTO_QUEUE_LIMIT": str(QUEUE_LIMIT)}
    )
    stop = threading.Event()
    accepted: list[str] = []
    refusals: list[httpx.Response] = []
    unexpected: list[str] = []

    def post_events() -> None:
        """A well-behaved client: posts batches back to back and re-sends a refused batch
        after the Retry-After the service asked for, until it is accepted."""
        with httpx.Client(base_url=running.url, timeout=30) as http:
            for i in itertools.count():
                if stop.is_set():
                    return
                batch = [
                    {
                        "event_id": f"stall-{i}-{j}",
                        "event_type": "page_view",
                        "user_id": f"stall-user-{j}",
                        "channel": "web",
                    }
                    for j in range(BATCH)
                ]
                while (response := http.post("/v1/events", json={"events": batch})).status_code == 503:
                    refusals.append(response)
                    time.sleep(float(response.headers["retry-after"]))
                if response.status_code != 200:
                    unexpected.append(response.text)
                    return
                accepted.extend(event["event_id"] for event in batch)

    poster = threading.Thread(target=post_events)
    poster.start()
    http_ms, decision_ids, depth = [], [], []
    with httpx.Client(base_url=running.url, timeout=30) as http:
        started = time.monotonic()
        for i in itertools.count():
            if time.monotonic() - started > STALL_SECONDS:
                break
            sent = time.perf_counter()
            response = http.post(
                "/v1/decide",
                json={
                    "user_id": f"stall-decider-{i}",
                    "placement": "homepage_showcase",
                    "channel": "web",
                    "consent": True,
                },
            )
            http_ms.append((time.perf_counter() - sent) * 1000)
            assert response.status_code == 200, response.text  # decisions are never refused
            decision_ids.append(response.json()["decisions"][0]["decision_id"])
            if i % 10 == 0:
                text = http.get("/metrics").text
                depth.append(
                    metric(text, "momento_writer_queue_rows") + metric(text, "momento_decision_log_pending_rows")
                )
            time.sleep(0.02)
        stop.set()
        poster.join(timeout=60)
        assert not poster.is_alive() and not unexpected
        text = http.get("/metrics").text

    print(
        f"\nwriter stalled {FLUSH_DELAY_SECONDS} s per flush: {len(http_ms)} decisions, HTTP p50 "
        f"{np.percentile(http_ms, 50):.1f} ms p99 {np.percentile(http_ms, 99):.1f} ms; {len(refusals)} event "
        f"batches refused (503), queue depth max {max(depth):.0f} of {QUEUE_LIMIT}"
    )
    assert np.percentile(http_ms, 50) < 50  # a decision never waits for the writer (a flush takes 1.5 s+)
    assert refusals and {r.headers["retry-after"] for r in refusals} == {"1"}
    assert {r.json()["error"] for r in refusals} == {"backpressure"}
    assert max(depth) <= QUEUE_LIMIT and max(depth) > QUEUE_LIMIT / 2  # the bound was reached, and held

    assert metric(text, "momento_backpressure_rejections_total", {"endpoint": "events"}) == len(refusals)
    assert metric(text, "momento_backpressure_rejections_total", {"endpoint": "decide"}) == 0
    pressure = health.backpressure(text)  # what the cockpit's engine-health page shows
    assert pressure.queue_limit == QUEUE_LIMIT and pressure.refused_requests == len(refusals)

    # Once the writer catches up, every acknowledged event and every decision is stored, once.
    assert wait_for_count(
        running.lake, "SELECT count(DISTINCT event_id) FROM events", expected=len(accepted), timeout=30
    ) == len(accepted)
    assert wait_for_count(running.lake, "SELECT count(*) FROM events", expected=len(accepted)) == len(accepted)
    assert wait_for_count(
        running.lake,
        "SELECT count(*) FROM decisions WHERE list_contains($ids, decision_id)",
        {"ids": decision_ids},
        expected=len(decision_ids),
        timeout=30,
    ) == len(decision_ids)
