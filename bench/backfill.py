"""Benchmark: backfill throughput, events per second into a fresh lake, and peak memory.

The bundled scenario's 28 days (14 pre-campaign, 14 campaign, every scheduled incident) with as
many users as it takes to write about 1M, 10M or 100M events (streamed in shards of
`SHARD_USERS` customers), one fresh temp lake per run, deleted afterwards unless `--keep` names a
directory to leave it in (`<dir>/<size>`, as bench/pages.py reuses them). Each run is its own
subprocess, so its peak memory is its own. The table shows, per size, the median over
`--repeats` runs: wall seconds, the process's CPU seconds, events/s, all rows/s, the time of
each phase, the peak resident memory, and whether the targets (>= 200k events/s, peak < 4 GB)
hold. The machine's load average is printed: on a shared machine the wall time includes
waiting for a CPU, the CPU seconds do not.

    python bench/backfill.py --quick    # 1M events only (about 10 s)
    python bench/backfill.py            # 1M and 10M events (about 2 minutes)
    python bench/backfill.py --sizes 100M --keep /tmp/momento-lakes   # the 100M lake (about 10 minutes)
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
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from cli.processes import exit_on_sigterm  # noqa: E402

EVENTS_PER_USER = 19.3
"""Events one user produces over the 28 days with the bundled scenario (measured), to size runs."""
DAYS = 28
TARGET_RATE = 200_000
"""Events per second (100M events in under 10 minutes)."""
TARGET_PEAK_MB = 4_096
END = datetime(2026, 6, 12, 21, tzinfo=UTC)


def _size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def _one(users: int, seed: int, keep: Path | None) -> dict:
    """One backfill in this process (a fresh lake: in a temp directory, or `keep`); what it
    wrote and how fast."""
    from decisioning.simulator.backfill import backfill
    from momento.scenario import load_scenario

    scenario = load_scenario(ROOT / "data" / "scenario.toml")
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = before.ru_utime + before.ru_stime
    if keep is not None:
        shutil.rmtree(keep, ignore_errors=True)
        result = backfill(keep, scenario, days=DAYS, users=users, seed=seed, progress=False, end=END)
    else:
        with tempfile.TemporaryDirectory(prefix="momento-bench-backfill-") as tmp:
            result = backfill(Path(tmp) / "lake", scenario, days=DAYS, users=users, seed=seed, progress=False, end=END)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "users": users,
        "events": result.events,
        "rows": sum(result.rows.values()),
        "seconds": result.seconds,
        "phases": result.phases,
        "peak_mb": usage.ru_maxrss / 1024,
        "cpu": usage.ru_utime + usage.ru_stime - cpu_before,
        "shards": result.shards,
    }


def _run(users: int, seed: int, keep: Path | None) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--one", str(users), "--seed", str(seed), *(["--into", str(keep)] if keep else [])],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"backfill of {users} users failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def _table(results: dict[str, list[dict]]) -> str:
    header = (
        f"{'size':>5} {'users':>9} {'shards':>6} {'events':>12} {'all rows':>12} {'seconds':>8} {'cpu s':>7} "
        f"{'events/s':>10} {'rows/s':>10} {'plan':>6} {'sim':>6} {'write':>6} {'truth':>6} {'peak MB':>8}"
        "  targets"
    )
    lines = [header, "-" * len(header)]
    for label, runs in results.items():
        seconds, events = _median(runs, "seconds"), _median(runs, "events")
        phases = {name: statistics.median(run["phases"][name] for run in runs) for name in runs[0]["phases"]}
        peak = _median(runs, "peak_mb")
        target = (
            f"rate {'met' if events / seconds >= TARGET_RATE else 'MISSED'}, "
            f"memory {'met' if peak < TARGET_PEAK_MB else 'MISSED'}"
        )
        lines.append(
            f"{label:>5} {runs[0]['users']:>9,} {runs[0]['shards']:>6} {events:>12,.0f} "
            f"{_median(runs, 'rows'):>12,.0f} "
            f"{seconds:>8.1f} "
            f"{_median(runs, 'cpu'):>7.1f} "
            f"{events / seconds:>10,.0f} {_median(runs, 'rows') / seconds:>10,.0f} {phases['plan']:>6.1f} "
            f"{phases['simulate']:>6.1f} {phases['write']:>6.1f} {phases['truth']:>6.1f} "
            f"{peak:>8,.0f}  {target}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/backfill.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="run 1M events only (default: 1M and 10M)")
    parser.add_argument("--sizes", nargs="+", default=None, help="event counts to run, e.g. 1M 10M 100M")
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="leave each size's lake in this directory (<dir>/<size>), replacing one there",
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs per size (the table shows medians)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # internal: one run, JSON out
    parser.add_argument("--into", type=Path, default=None, help=argparse.SUPPRESS)  # internal: the kept lake
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(_one(args.one, args.seed, args.into)))
        return 0
    sizes = args.sizes or (["1M"] if args.quick else ["1M", "10M"])
    results: dict[str, list[dict]] = {}
    for label in sizes:
        users = max(1, round(_size(label) / EVENTS_PER_USER))
        results[label] = []
        for repeat in range(args.repeats):
            print(f"backfill {label} events ({users:,} users), run {repeat + 1}/{args.repeats} ...", file=sys.stderr)
            keep = args.keep / label if args.keep else None
            results[label].append(_run(users, args.seed + repeat, keep))
    print(_table(results))
    print(
        f"load average (1, 5, 15 min) at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
        f"on {os.cpu_count()} cores. Wall times include waiting for the CPU when other work runs; "
        "'cpu s' is the backfill's own CPU time (user + system, both threads)."
    )
    return 0


if __name__ == "__main__":
    exit_on_sigterm()  # a plain `kill` stops what the benchmark started
    sys.exit(main())
