"""Load: the service held at a fixed decision rate while events pour in, then every
acknowledged event looked up in the warehouse.

Starts the real service (`momento serve`) on a free loopback port with a temporary lake, then
for `--seconds`, all at once:
- decisions at `--rate` per second, open loop (bench/decide.py's generator: latency counts from
  when a request was due, so a stalled server cannot hide its queueing);
- event batches at `--events` events per second (page views, clicks, add-to-cart, purchases),
  each event id remembered when its batch is acknowledged;
- the live simulator (`decisioning.simulator.live`) at `--sessions` sessions per second in its
  own process, with its decisions, exposures, events, identities and consent changes;
- `/healthz` at 50 per second, the floor: what a request that does no work gets from the
  machine at the same moments (on a shared two-core machine, most of the tail).
Then the service is stopped gracefully and the lake is read: every acknowledged event must be
there (counted by `event_id`), every answered decision logged. Prints one table; exits 1 if a
promise is broken (an error, an acknowledged event missing) and says whether the decisions'
p99 met the decision budget: in process (every logged decision's `latency_us`) and over HTTP,
beside the `/healthz` floor of the same moments.

    python bench/load.py [--seconds 60] [--rate 200] [--events 200] [--sessions 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.decide import (  # noqa: E402
    _Connection,
    _cpu_times,
    _decide_bodies,
    _open_loop,
    _request,
    _steal_share,
    run_generator,
)
from cli.processes import exit_on_sigterm, free_loopback_port, service_command, wait_until_healthy  # noqa: E402
from momento.lake.warehouse import Warehouse  # noqa: E402
from momento.settings import load_settings  # noqa: E402

EVENTS_PER_BATCH = 20
HEALTHZ_RATE = 50.0  # the floor: what a request that does nothing gets from the machine meanwhile
HEALTHZ_CONNECTIONS = 8
EVENT_TYPES = ("page_view", "page_view", "page_view", "click", "add_to_cart", "purchase")
LOOKUP_SECONDS = 30.0
# The simulator in its own process, reporting what the service acknowledged as JSON.
SIMULATOR = """
import dataclasses, json, sys
from momento.scenario import load_scenario
from decisioning.simulator.live import simulate
from momento.settings import load_settings
url, rate, seconds, seed = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
stats = simulate(url, load_scenario(load_settings().scenario), rate=rate, duration=seconds, seed=seed)
print(json.dumps({k: v for k, v in dataclasses.asdict(stats).items() if k != "started"}))
"""


class Stream(NamedTuple):
    """What one request stream did (a NamedTuple: `momento bench` loads this file as a script)."""

    name: str
    offered: float  # requests per second
    achieved: float
    latencies_ms: np.ndarray
    errors: int
    late_ms: np.ndarray | None = None  # how late the generator sent each request (open-loop streams)


class Report(NamedTuple):
    """A load run's outcome: the table's numbers and the checks."""

    seconds: float
    decide: Stream
    events: Stream
    healthz: Stream
    simulator: dict[str, int]
    events_acked: int
    events_found: int
    simulator_events_found: int
    decisions_answered: int
    decisions_logged: int
    in_process_ms: tuple[float, float, float]  # p50, p95, p99 of `latency_us` in the lake
    budget_exceeded: int
    budget_ms: float
    load_average: float
    steal: float | None  # share of CPU time the hypervisor took during the run

    @property
    def errors(self) -> int:
        return (
            self.decide.errors
            + self.events.errors
            + self.healthz.errors
            + self.simulator["errors"]
            + self.simulator["unsent"]
        )

    @property
    def http_p99_ms(self) -> float:
        return float(np.percentile(self.decide.latencies_ms, 99))

    @property
    def nothing_lost(self) -> bool:
        return (
            self.events_found == self.events_acked
            and self.simulator_events_found >= self.simulator["events"]
            and self.decisions_logged >= self.decisions_answered
        )


def _event_batches(n: int, run: str, seed: int) -> list[tuple[list[str], bytes]]:
    """`n` batches of realistic events: (event ids, request body)."""
    rng = np.random.default_rng(seed)
    batches = []
    for i in range(n):
        events = []
        for j in range(EVENTS_PER_BATCH):
            kind = EVENT_TYPES[rng.integers(0, len(EVENT_TYPES))]
            event = {
                "event_id": f"load-{run}-{i}-{j}",
                "event_type": kind,
                "channel": "web",
                "user_id": f"bench-{rng.integers(0, 20_000)}",
                "session_id": f"s{rng.integers(0, 50_000)}",
            }
            if kind in ("add_to_cart", "purchase"):
                revenue = round(float(rng.lognormal(5.3, 0.5)), 2)
                event.update(revenue=revenue, margin=round(revenue * 0.4, 2), discount_cost=0.0, quantity=1)
            events.append(event)
        batches.append(([e["event_id"] for e in events], json.dumps({"events": events}).encode()))
    return batches


async def _post_events(
    port: int, batches: list[tuple[list[str], bytes]], per_second: float
) -> tuple[np.ndarray, int, float, list[str]]:
    """Post `batches` on one keep-alive connection at `per_second` batches a second (open loop);
    return latencies (s, from due time), errors, wall time and the acknowledged event ids."""
    connection = await _Connection.open(port)
    latencies, errors, acked = [], 0, []
    await asyncio.sleep(0.2)  # the decision generator opens its connections first
    start = time.perf_counter()
    try:
        for i, (ids, body) in enumerate(batches):
            due = start + i / per_second
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            status = await connection.exchange(_request("POST", "/v1/events", port, body))
            if status is None:
                errors += 1
                continue
            latencies.append(time.perf_counter() - due)
            if status == 200:
                acked.extend(ids)
            else:
                errors += 1
    finally:
        connection.close()
    return np.array(latencies), errors, time.perf_counter() - start, acked


async def _drive(
    port: int, seconds: float, rate: float, events_per_s: float, seed: int
) -> tuple[Stream, Stream, Stream, list[str]]:
    run = uuid.uuid4().hex[:8]
    decide_requests = [_request("POST", "/v1/decide", port, body) for body in _decide_bodies(int(rate * seconds), seed)]
    healthz_requests = [_request("GET", "/healthz", port, None)] * int(HEALTHZ_RATE * seconds)
    batches_per_s = events_per_s / EVENTS_PER_BATCH
    batches = _event_batches(int(batches_per_s * seconds), run, seed)
    decide, healthz, (e_lat, e_err, e_wall, acked) = await asyncio.gather(
        _open_loop(port, decide_requests, rate),
        _open_loop(port, healthz_requests, HEALTHZ_RATE, HEALTHZ_CONNECTIONS),
        _post_events(port, batches, batches_per_s),
    )
    return (
        Stream(
            "decide",
            rate,
            decide.latencies.size / decide.wall,
            decide.latencies * 1000,
            decide.errors,
            decide.late * 1000,
        ),
        Stream(f"events ({EVENTS_PER_BATCH}/batch)", batches_per_s, len(e_lat) / e_wall, e_lat * 1000, e_err),
        Stream(
            "/healthz (floor)",
            HEALTHZ_RATE,
            healthz.latencies.size / healthz.wall,
            healthz.latencies * 1000,
            healthz.errors,
            healthz.late * 1000,
        ),
        acked,
    )


def _look_up(lake: Path, acked: list[str], since: datetime) -> tuple[int, int, int, tuple[float, float, float], int]:
    """(acknowledged events found, simulator events found, decisions logged since `since`, their
    in-process latency percentiles in ms and budget_exceeded fallbacks) from the lake."""
    warehouse = Warehouse(lake)
    try:
        found = warehouse.scalar(
            "SELECT count(DISTINCT e.event_id) FROM events e JOIN (SELECT unnest($ids) AS event_id) a USING (event_id)",
            {"ids": acked},
        )
        simulated = warehouse.scalar("SELECT count(DISTINCT event_id) FROM events WHERE starts_with(event_id, 'ev-')")
        row = warehouse.query(
            "SELECT count(*) AS n, quantile_cont(latency_us, [0.5, 0.95, 0.99]) AS q, "
            "count(*) FILTER (WHERE fallback_reason = 'budget_exceeded') AS over "
            "FROM decisions WHERE ts >= $since",
            {"since": since},
        ).row(0, named=True)
    finally:
        warehouse.close()
    q = tuple(v / 1000 for v in (row["q"] or [np.nan] * 3))
    return int(found), int(simulated), int(row["n"]), q, int(row["over"])


def run(
    seconds: float = 60.0,
    rate: float = 200.0,
    events_per_s: float = 200.0,
    sessions: float = 2.0,
    seed: int = 7,
    workdir: Path | None = None,
) -> Report:
    """One load run against a fresh service on a temporary lake (see the module docstring)."""
    settings = load_settings()
    with tempfile.TemporaryDirectory(prefix="momento-load-", dir=workdir) as tmp:
        lake, port = Path(tmp) / "lake", free_loopback_port()
        url = f"http://127.0.0.1:{port}"
        env = {key: value for key, value in os.environ.items() if not key.startswith("MOMENTO_")}
        env["MOMENTO_LAKE"] = str(lake)
        log = open(Path(tmp) / "service.log", "wb")  # noqa: SIM115 (open for the service's life)
        service = subprocess.Popen(
            service_command("127.0.0.1", port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        simulator = None
        try:
            wait_until_healthy(url, service)
            run_generator(
                _drive(port, 2.0, min(rate, 100.0), min(events_per_s, 100.0), seed + 1)
            )  # warm-up, not counted
            since, cpu_before = datetime.now(UTC), _cpu_times()
            simulator = subprocess.Popen(
                [sys.executable, "-c", SIMULATOR, url, str(sessions), str(seconds), str(seed)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            decide, events, healthz, acked = run_generator(_drive(port, seconds, rate, events_per_s, seed))
            out, _ = simulator.communicate(timeout=seconds + 60)
            simulated = json.loads(out.decode().strip().splitlines()[-1])
            steal = _steal_share(cpu_before, _cpu_times())
        finally:
            if simulator is not None and simulator.poll() is None:
                simulator.kill()
            service.send_signal(signal.SIGTERM)  # graceful: the writer flushes what it holds
            try:
                service.wait(LOOKUP_SECONDS)
            except subprocess.TimeoutExpired:
                service.kill()
            log.close()
        found, simulated_found, logged, in_process, over = _look_up(lake, acked, since)
    answered = len(decide.latencies_ms) - decide.errors + simulated["decisions"]
    return Report(
        seconds,
        decide,
        events,
        healthz,
        simulated,
        len(acked),
        found,
        simulated_found,
        answered,
        logged,
        in_process,
        over,
        settings.decision_budget_ms,
        os.getloadavg()[0],
        steal,
    )


def _row(s: Stream) -> str:
    p50, p95, p99 = np.percentile(s.latencies_ms, [50, 95, 99]) if s.latencies_ms.size else (np.nan,) * 3
    return (
        f"{s.name:<22} {s.offered:>9.1f} {s.achieved:>10.1f} {s.latencies_ms.size:>9} {s.errors:>7} "
        f"{p50:>8.2f} {p95:>8.2f} {p99:>8.2f}"
    )


def print_report(r: Report) -> None:
    sim = r.simulator
    print(
        f"load for {r.seconds:.0f} s on loopback, {os.cpu_count()} cores shared with the load generators "
        f"(load average {r.load_average:.1f} at the end); latency in ms, HTTP from the due time"
    )
    if r.steal is not None:
        print(f"CPU time taken by the hypervisor (steal) during the run: {r.steal:.1%}")
    print(
        f"{'stream':<22} {'offered/s':>9} {'achieved/s':>10} {'requests':>9} {'errors':>7} "
        f"{'p50':>8} {'p95':>8} {'p99':>8}"
    )
    print(_row(r.decide))
    print(_row(r.events))
    print(_row(r.healthz))
    print(
        f"{'simulator':<22} sessions {sim['sessions']}, decisions {sim['decisions']} (fallback {sim['fallbacks']}), "
        f"events {sim['events']}, exposures {sim['exposures']}, errors {sim['errors']}, retries {sim['retries']}, "
        f"unsent {sim['unsent']}"
    )
    p50, p95, p99 = r.in_process_ms
    print(
        f"{'in-process decide':<22} {'-':>9} {'-':>10} {r.decisions_logged:>9} {'-':>7} {p50:>8.3f} {p95:>8.3f} "
        f"{p99:>8.3f}   (latency_us of every logged decision; {r.budget_exceeded} over budget)"
    )
    print()
    print(
        f"events acknowledged / found in the warehouse (by event_id): poster {r.events_acked} / {r.events_found}, "
        f"simulator {sim['events']} / {r.simulator_events_found}"
    )
    print(f"decisions answered / logged: {r.decisions_answered} / {r.decisions_logged}")
    late = np.percentile(r.decide.late_ms, [50, 99])
    print(f"the generator's own lateness, included in the decide latency: p50 {late[0]:.2f} ms, p99 {late[1]:.2f} ms")
    verdict = {True: "met", False: "MISSED"}
    print(f"zero errors: {verdict[r.errors == 0]} ({r.errors}); nothing acknowledged lost: {verdict[r.nothing_lost]}")
    floor = float(np.percentile(r.healthz.latencies_ms, 99))
    print(
        f"decision budget {r.budget_ms:g} ms: in-process p99 {p99:.3f} ms {verdict[p99 <= r.budget_ms]}; "
        f"HTTP p99 {r.http_p99_ms:.2f} ms {verdict[r.http_p99_ms <= r.budget_ms]}, against {floor:.2f} ms for "
        f"/healthz at the same moments (decide / healthz = {r.http_p99_ms / floor:.2f})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to hold the load")
    parser.add_argument("--rate", type=float, default=200.0, help="decisions per second, offered")
    parser.add_argument("--events", type=float, default=200.0, help="events per second, offered in batches")
    parser.add_argument("--sessions", type=float, default=2.0, help="simulated sessions per second alongside")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    report = run(args.seconds, args.rate, args.events, args.sessions, args.seed)
    print_report(report)
    return 0 if report.errors == 0 and report.nothing_lost else 1


if __name__ == "__main__":
    exit_on_sigterm()  # a plain `kill` stops what the benchmark started
    sys.exit(main())
