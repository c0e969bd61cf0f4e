"""Benchmark: one evaluation of the monitors (`momento watch`) on a backfilled lake.

Builds a lake in a temporary directory (the bundled scenario over 28 days, `--users`; `--quick`:
2,500 users), optionally brings its rollups up to date (as `momento demo`'s rollup job keeps them),
then times `--repeats` evaluations of the bundled monitors (data/monitors.toml): read the numbers,
judge every rule. Prints the median and the range; the lake is removed at the end.

    python bench/watch.py --quick
    python bench/watch.py                 # the demo's 60,000 users (1.2M events)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from decisioning.simulator.backfill import backfill  # noqa: E402
from metrics.monitors.evaluate import evaluate  # noqa: E402
from metrics.monitors.inputs import read_numbers  # noqa: E402
from metrics.monitors.rules import load_monitors  # noqa: E402
from metrics.rollup.job import RollupJob  # noqa: E402
from momento.lake.warehouse import Warehouse  # noqa: E402
from momento.scenario import load_scenario  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/watch.py", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=None, help="users to backfill (default: the scenario's)")
    parser.add_argument("--quick", action="store_true", help="2,500 users")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-rollups", dest="rollups", action="store_false", help="evaluate from raw rows")
    args = parser.parse_args(argv)
    scenario = load_scenario(ROOT / "data" / "scenario.toml")
    monitors = load_monitors(ROOT / "data" / "monitors.toml")
    folder = Path(tempfile.mkdtemp(prefix="momento-bench-watch-"))
    try:
        lake = folder / "lake"
        backfill(lake, scenario, days=28, users=2_500 if args.quick else args.users, seed=7, progress=False)
        if args.rollups:
            RollupJob(lake, scenario.business.pre_period_days).run_once()
        warehouse = Warehouse(lake, min_refresh_seconds=0.0)
        seconds = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            warehouse.refresh(force=True)
            numbers = read_numbers(warehouse, scenario, monitors)
            findings = [f for rule in monitors.rules for f in evaluate(rule, numbers)]
            seconds.append(time.perf_counter() - started)
        warehouse.close()
        print(f"| lake | rollups | rules | findings | evaluation (median of {args.repeats}) | range |")
        print("|---|---|---|---|---|---|")
        print(
            f"| {2_500 if args.quick else args.users or scenario.population.users:,} users, 28 days | "
            f"{'yes' if args.rollups else 'no'} | {len(monitors.rules)} | {len(findings)} | "
            f"{statistics.median(seconds):.2f} s | {min(seconds):.2f} to {max(seconds):.2f} s |"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
