"""Benchmark: the rollup job — catching up with a lake, and folding in a minute of live traffic.

1. Catch-up: the rollups of a backfilled lake built from nothing (`momento rollup` on a lake
   without rollups), in a subprocess of its own: seconds, raw rows folded per second, events
   per second, peak memory.
2. Live: one minute of the demo's traffic (the real service, driven by the live simulator at
   the demo's rate of 5 sessions/s), then one run of the job folding it in, the job kept
   between runs as `momento rollup --follow` keeps it: seconds per run, rows folded. Repeated
   `--repeats` times; medians.
3. Compaction, on the one thread a following job compacts on, after those minutes: a merge of
   the runs since the state was last written whole (what `--follow` does every few minutes),
   then, after one more live minute (a compaction with no run since the last does nothing), a
   whole rewrite (what it does once the newer rows reach a quarter of the base's).

The lake is built in a temporary directory (`--events`, default 1M) unless `--lake` names one
(it is copied first, so the original is left untouched).

    python bench/rollup.py                       # a 1M-event lake, 3 live minutes
    python bench/rollup.py --events 10M          # the issue's catch-up figure (~3 min to build)
    python bench/rollup.py --lake /tmp/lake10m --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from cli.processes import exit_on_sigterm  # noqa: E402

EVENTS_PER_USER = 19.3
"""Events one user produces over 28 days with the bundled scenario (bench/backfill.py measured)."""
DEMO_RATE = 5.0
LIVE_SECONDS = 60.0
TARGET_LIVE = 1.0
"""A minute of live traffic at the demo's rate is folded in under a second."""


def _size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def _catch_up(lake: Path) -> dict:
    """One rebuild in this process; what it folded and how fast."""
    from metrics.rollup.job import RollupJob
    from momento.scenario import load_scenario
    from momento.settings import load_settings

    pre_days = load_scenario(ROOT / "data" / "scenario.toml").business.pre_period_days
    shutil.rmtree(lake / "rollups", ignore_errors=True)
    started = time.perf_counter()
    report = RollupJob(lake, pre_days, memory_limit_mb=load_settings().rollup_memory_mb).run_once()
    seconds = time.perf_counter() - started
    from momento.lake.warehouse import Warehouse

    wh = Warehouse(lake)
    events = wh.scalar("SELECT count(*) FROM events")
    wh.close()
    return {
        "seconds": seconds,
        "rows": report.rows_folded,
        "events": events,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _subprocess(flag: str, lake: Path, *extra: str) -> Any:
    done = subprocess.run(
        [sys.executable, __file__, flag, str(lake), *extra], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{flag} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _live_minutes(lake: Path, repeats: int) -> dict[str, Any]:
    """`repeats` times: a minute of the demo's traffic through the real service, then one timed
    run of the job folding it in, as `momento rollup --follow` runs it (one job kept between
    runs; its first run, untimed, folds what was pending); then the two compactions, timed."""
    from metrics.rollup.job import COMPACTION_THREADS, RollupJob
    from momento.scenario import load_scenario
    from momento.settings import load_settings

    pre_days = load_scenario(ROOT / "data" / "scenario.toml").business.pre_period_days
    job = RollupJob(lake, pre_days, memory_limit_mb=load_settings().rollup_memory_mb)
    job.run()
    runs = []
    try:
        for _ in range(repeats):
            _one_live_minute(lake)
            started = time.perf_counter()
            report = job.run()
            runs.append(
                {
                    "seconds": time.perf_counter() - started,
                    "rows": report.rows_folded,
                    "users": report.users,
                    "kind": report.kind,
                }
            )
            print(f"live minute: {runs[-1]}", file=sys.stderr, flush=True)
        compactions = {}
        for whole_share in (job.whole_share, 0.0):
            if compactions:
                _one_live_minute(lake)
                job.run()
            job.whole_share = whole_share
            started = time.perf_counter()
            with job.store.lock():
                kind = job.compact(threads=COMPACTION_THREADS)
            compactions[kind] = time.perf_counter() - started
            print(f"compaction: {kind} in {compactions[kind]:.1f} s", file=sys.stderr, flush=True)
    finally:
        job.close()
    return {"runs": runs, "compactions": compactions}


def _one_live_minute(lake: Path) -> None:
    """A minute of the demo's traffic through the real service, written to `lake`."""
    from cli.processes import free_loopback_port, service_command, wait_until_healthy

    port = free_loopback_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MOMENTO_LAKE": str(lake), "MOMENTO_SERVICE_URL": url}
    with open(lake.parent / "service.log", "a") as log:
        service = subprocess.Popen(service_command("127.0.0.1", port), cwd=ROOT, env=env, stdout=log, stderr=log)
        try:
            wait_until_healthy(url, service)
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "cli.main",
                    "simulate",
                    "--url",
                    url,
                    "--rate",
                    str(DEMO_RATE),
                    "--duration",
                    str(LIVE_SECONDS),
                ],
                cwd=ROOT,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        finally:
            service.terminate()  # it flushes its writer and may be compacting: give it time
            service.wait(timeout=300)


def _build(events: int, into: Path) -> Path:
    users = max(1, round(events / EVENTS_PER_USER))
    print(f"building a {events:,}-event lake ({users:,} users, 28 days) in {into} ...", file=sys.stderr)
    env = {**os.environ, "MOMENTO_LAKE": str(into)}
    subprocess.run(
        [sys.executable, "-m", "cli.main", "backfill", "--days", "28", "--users", str(users)],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return into


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/rollup.py", description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="1M", help="size of the lake to build (ignored with --lake)")
    parser.add_argument("--lake", type=Path, default=None, help="an existing lake (copied, left untouched)")
    parser.add_argument("--repeats", type=int, default=3, help="live minutes to fold (the table shows medians)")
    parser.add_argument("--catch-up", dest="catch_up", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--live", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.catch_up is not None:
        print(json.dumps(_catch_up(args.catch_up)))
        return 0
    if args.live is not None:
        print(json.dumps(_live_minutes(args.live, args.repeats)))
        return 0
    with tempfile.TemporaryDirectory(prefix="momento-bench-rollup-") as tmp:
        lake = Path(tmp) / "lake"
        if args.lake is not None:
            shutil.copytree(args.lake, lake)
        else:
            _build(_size(args.events), lake)
        catch_up = _subprocess("--catch-up", lake)
        print(f"catch-up: {catch_up}", file=sys.stderr, flush=True)
        measured = _subprocess("--live", lake, "--repeats", str(args.repeats))
    live, compactions = measured["runs"], measured["compactions"]
    seconds = statistics.median(run["seconds"] for run in live)
    each = ", ".join(f"{run['seconds']:.2f}" for run in live)
    print(f"{'phase':<34} {'seconds':>8} {'rows':>11} {'rows/s':>10} {'events/s':>10} {'peak MB':>8}")
    print("-" * 86)
    print(
        f"{'catch-up (rebuild from nothing)':<34} {catch_up['seconds']:>8.1f} {catch_up['rows']:>11,} "
        f"{catch_up['rows'] / catch_up['seconds']:>10,.0f} {catch_up['events'] / catch_up['seconds']:>10,.0f} "
        f"{catch_up['peak_mb']:>8,.0f}"
    )
    print(
        f"{'one live minute (median of ' + str(len(live)) + ')':<34} {seconds:>8.2f} "
        f"{statistics.median(run['rows'] for run in live):>11,.0f}   target < {TARGET_LIVE:.0f} s: "
        f"{'met' if seconds < TARGET_LIVE else 'MISSED'} (runs: {each})"
    )
    for kind, what in (("merge", "merge of newer runs"), ("compact", "whole rewrite")):
        print(f"{'compaction, ' + what:<34} {compactions[kind]:>8.2f}")
    print(
        f"lake: {catch_up['events']:,} events; load average at the end: "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores"
    )
    return 0


if __name__ == "__main__":
    exit_on_sigterm()  # a plain `kill` stops what the benchmark started
    sys.exit(main())
