"""The service's own cost per request, in process: the whole ASGI app (middleware, routing,
guards, validation, the service, the answer) driven without a socket, so the numbers are the
service's CPU and nothing of the network, the HTTP parser or a load generator.

Per request kind, the wall time and the CPU time of each request on the lean route (how clients call it), on
FastAPI's documented route (the same request with a query string, which the lean route hands
to FastAPI) and `/healthz` (the framework's floor): `decide` for one placement, and a batch of
20 events. Every kind runs `--repeats` times, interleaved; the table gives the median over
runs of each run's wall p50/p99 and mean CPU, with the range of the CPU means.

    python bench/service_cpu.py [--requests 4000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.decide import _decide_bodies  # noqa: E402
from bench.load import _event_batches  # noqa: E402
from decisioning.http import create_app  # noqa: E402
from momento.settings import load_settings  # noqa: E402

UNLIMITED = 1e9
"""The rate limit here: checked on every request as in service, never reached by a loop that
sends as fast as it can."""
DOCUMENTED = b"via=documented"
"""A query parameter no route reads: the lean routes hand a request with a query string to FastAPI."""


async def _call(app: Any, method: str, path: str, query: bytes, body: bytes) -> int:
    """One request through the ASGI app; its status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def _time(app: Any, method: str, path: str, query: bytes, bodies: list[bytes]) -> np.ndarray:
    """(wall, CPU of this thread) milliseconds per request, every answer checked to be a 200. The
    thread's CPU leaves out the time it waited for the interpreter lock held by the lake writer."""
    times = np.empty((len(bodies), 2))
    for i, body in enumerate(bodies):
        wall, cpu = time.perf_counter(), time.thread_time()
        status = await _call(app, method, path, query, body)
        times[i] = time.perf_counter() - wall, time.thread_time() - cpu
        if status != 200:
            raise RuntimeError(f"{path}?{query.decode()} answered {status}")
    return times * 1000


async def _run(requests: int, repeats: int, seed: int) -> dict[str, list[np.ndarray]]:
    with tempfile.TemporaryDirectory(prefix="momento-bench-cpu-") as workdir:
        app = create_app(
            load_settings(
                {"MOMENTO_LAKE": str(Path(workdir) / "lake"), "MOMENTO_RATE_LIMIT_PER_SECOND": str(UNLIMITED)}
            )
        )
        async with app.router.lifespan_context(app):
            decide = _decide_bodies(requests, seed)
            batches = requests // 10
            kinds: dict[str, Callable[[int], Any]] = {
                "/healthz (floor)": lambda r: _time(app, "GET", "/healthz", b"", [b""] * requests),
                "decide, lean": lambda r: _time(app, "POST", "/v1/decide", b"", decide),
                "decide, documented": lambda r: _time(app, "POST", "/v1/decide", DOCUMENTED, decide),
                "20 events, lean": lambda r: _time(app, "POST", "/v1/events", b"", _events(batches, f"l{r}", seed)),
                "20 events, documented": lambda r: _time(
                    app, "POST", "/v1/events", DOCUMENTED, _events(batches, f"d{r}", seed)
                ),
            }
            for kind in kinds.values():  # warm-up, not reported
                await kind(-1)
            runs: dict[str, list[np.ndarray]] = {name: [] for name in kinds}
            for repeat in range(repeats):
                for name, kind in kinds.items():
                    runs[name].append(await kind(repeat))
    return runs


def _events(n: int, run: str, seed: int) -> list[bytes]:
    """`n` bodies of 20 events with ids of their own run (a re-sent id is dropped: less work)."""
    return [body for _, body in _event_batches(n, run, seed)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000, help="requests of each kind per run")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs (medians are reported)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    runs = asyncio.run(_run(args.requests, args.repeats, args.seed))
    print(
        f"the service's ASGI app in process (no socket), {os.cpu_count()} cores shared with other work; "
        f"{args.requests} decisions / {args.requests // 10} event batches per run; median of {args.repeats} runs; ms"
    )
    print(f"{'request':<24} {'wall p50':>9} {'wall p99':>9} {'CPU mean':>9} {'CPU range':>13}")
    for name, times in runs.items():
        per_run = np.array([[np.percentile(t[:, 0], 50), np.percentile(t[:, 0], 99), t[:, 1].mean()] for t in times])
        p50, p99, cpu = np.median(per_run, axis=0)
        spread = f"{per_run[:, 2].min():.3f}-{per_run[:, 2].max():.3f}"
        print(f"{name:<24} {p50:>9.3f} {p99:>9.3f} {cpu:>9.3f} {spread:>13}")
    for kind in ("decide", "20 events"):
        lean = np.median([t[:, 1].mean() for t in runs[f"{kind}, lean"]])
        documented = np.median([t[:, 1].mean() for t in runs[f"{kind}, documented"]])
        print(f"{kind}: CPU lean / documented = {lean / documented:.2f} ({documented - lean:.3f} ms saved a request)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
