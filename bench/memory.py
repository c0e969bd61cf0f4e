"""Service memory per customer: RSS and decide latency while N distinct customers are decided for.

A child process builds the real service (`decisioning.service.Service`: engine, feature store,
frequency caps, identity map, decision log and the lake writer on a temporary lake under /tmp),
starts it as `momento serve` does (recovery, then the heap frozen out of the garbage
collector), and then decides for `--customers` distinct customers, one after the other, the way
a busy day would: each customer gets one decision on a rotating placement with a session, a
device, a category, a cart and consent, and every fifth arrives first as an anonymous visitor
and is then identified (a link in the identity map and a profile merge in the feature store).
Every 100,000 customers the child reports its resident memory (VmRSS, after a collection) and
the p50/p99 of `Service.decide` over that block. The parent prints the table and the growth
per 100k customers (the slope from the first block to the last).

The child decides in process rather than over HTTP: the HTTP layer keeps no state per customer,
and a million round trips would take the shared machine most of an hour.

    python bench/memory.py [--customers 1000000] [--quick]   # --quick: 100,000 customers
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cli.processes import exit_on_sigterm  # noqa: E402
from decisioning.api_models import DecideRequest, IdentifyRequest  # noqa: E402
from decisioning.engine import Faults  # noqa: E402
from decisioning.service import Service  # noqa: E402
from momento.settings import load_settings  # noqa: E402

BLOCK = 100_000
MILLION = 1_000_000
TARGET_MB_PER_MILLION = 1024.0
PLACEMENTS = (
    ("homepage_showcase", "web"),
    ("cart_cross_sell", "app"),
    ("cart_recovery_offer", "email"),
    ("product_cta", "web"),
)
DEVICES = ("mobile", "desktop", "tablet")
CATEGORIES = ("dresses", "shoes", "bags", "jeans", "tops", "accessories", "lingerie", "kids")


def rss_mb() -> float:
    """This process's resident set size in MB (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def child(customers: int, lake: Path) -> None:
    """Build the service, decide for `customers` customers, print one JSON line per block."""
    settings = load_settings({**os.environ, "MOMENTO_LAKE": str(lake)})
    service = Service(
        settings,
        None,
        None,
        faults=Faults(),
        incidents=(),
        flush_delay_seconds=None,
        seed=7,
        attribution_seconds=30 * 60.0,
    )
    service.start()
    gc.collect()
    gc.freeze()
    print(json.dumps({"customers": 0, "rss_mb": rss_mb()}), flush=True)
    rng = np.random.default_rng(7)
    carts = rng.integers(0, 600, customers)
    timings = np.empty(BLOCK)
    try:
        for start in range(0, customers, BLOCK):
            n = min(BLOCK, customers - start)
            for j in range(n):
                i = start + j
                placement, channel = PLACEMENTS[i % len(PLACEMENTS)]
                who = {"anonymous_id": f"cookie-{i}"} if i % 5 == 0 else {"user_id": f"customer-{i}"}
                body = DecideRequest.model_validate(
                    {
                        **who,
                        "session_id": f"session-{i}",
                        "placement": placement,
                        "channel": channel,
                        "consent": True,
                        "device": DEVICES[i % 3],
                        "category": CATEGORIES[i % len(CATEGORIES)],
                        "cart_value": float(carts[i]),
                        "referrer": "https://www.google.com/",
                    }
                )
                began = time.perf_counter()
                service.decide(body)
                timings[j] = time.perf_counter() - began
                if i % 5 == 0:
                    service.identify(IdentifyRequest(anonymous_id=f"cookie-{i}", user_id=f"customer-{i}"))
            gc.collect()
            p50, p99 = np.percentile(timings[:n] * 1000, [50, 99])
            print(
                json.dumps(
                    {
                        "customers": start + n,
                        "rss_mb": rss_mb(),
                        "p50_ms": p50,
                        "p99_ms": p99,
                        "store_users": len(service.engine.store),
                        "links": len(service.identities),
                    }
                ),
                flush=True,
            )
    finally:
        service.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=MILLION, help="distinct customers to decide for")
    parser.add_argument("--quick", action="store_true", help="100,000 customers")
    parser.add_argument("--child-lake", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    customers = BLOCK if args.quick else args.customers
    if customers < 1:
        parser.error("--customers must be at least 1")
    if args.child_lake is not None:
        child(customers, args.child_lake)
        return 0
    with tempfile.TemporaryDirectory(prefix="momento-memory-") as tmp:
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--customers",
            str(customers),
            "--child-lake",
            str(Path(tmp) / "lake"),
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        rows = []
        print(
            f"{'customers':>10} {'RSS MB':>8} {'decide p50 ms':>14} {'decide p99 ms':>14} "
            f"{'store users':>12} {'links':>8}"
        )
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT) as process:
            assert process.stdout is not None
            for line in process.stdout:
                row = json.loads(line)
                rows.append(row)
                print(
                    f"{row['customers']:>10,} {row['rss_mb']:>8.0f} {row.get('p50_ms', float('nan')):>14.3f} "
                    f"{row.get('p99_ms', float('nan')):>14.3f} {row.get('store_users', 0):>12,} "
                    f"{row.get('links', 0):>8,}",
                    flush=True,
                )
        if process.returncode != 0 or len(rows) <= 1:
            print(f"the child failed (exit code {process.returncode})", file=sys.stderr)
            return 1
    first, last = rows[1], rows[-1]
    per_block = (last["rss_mb"] - first["rss_mb"]) / max((last["customers"] - first["customers"]) / BLOCK, 1)
    print(
        f"\nstart {rows[0]['rss_mb']:.0f} MB; {per_block:.1f} MB per 100k customers after the first block "
        f"({per_block * 1024 * 1024 / BLOCK / 1024:.2f} KB per customer); "
        f"{last['customers']:,} customers: {last['rss_mb']:.0f} MB"
    )
    if last["customers"] >= MILLION:
        verdict = "met" if last["rss_mb"] < TARGET_MB_PER_MILLION else "MISSED"
        print(f"target: 1M customers < {TARGET_MB_PER_MILLION:.0f} MB RSS -> {verdict}")
    return 0


if __name__ == "__main__":
    exit_on_sigterm()  # a plain `kill` stops what the benchmark started
    sys.exit(main())
