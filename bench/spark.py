"""Benchmark: the rollup job's rebuild of a lake on DuckDB and on Spark local[2].

The same job (`metrics.rollup.job.RollupJob`), the same SQL, two engines: DuckDB embedded, and
Apache Spark in local mode on two cores (`metrics.engines.spark`). Each repeat drops the rollups
and rebuilds them from every raw row; the table shows raw rows folded per second on each engine
(medians of `--repeats`) and their ratio. Spark's JVM start is paid once, before the timed runs,
and shown on its own line.

The lake is built under /tmp (`--events`, default 10M; `--quick`: 1M) unless `--lake` names one
(copied first, so the original is left untouched).

    python bench/spark.py --quick
    python bench/spark.py                        # 10M events: the issue's figure
    python bench/spark.py --lake /tmp/lake10m --repeats 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from cli.processes import exit_on_sigterm  # noqa: E402

EVENTS_PER_USER = 19.3
"""Events one user produces over 28 days with the bundled scenario (bench/backfill.py measured)."""


def _size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def _build(events: int, into: Path) -> None:
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


def _rebuilds(lake: Path, engine: object, repeats: int) -> list[tuple[float, int]]:
    """(seconds, raw rows folded) of `repeats` rebuilds from nothing on `engine`."""
    from metrics.rollup.job import RollupJob
    from momento.scenario import load_scenario

    pre_days = load_scenario(ROOT / "data" / "scenario.toml").business.pre_period_days
    runs = []
    for _ in range(repeats):
        shutil.rmtree(lake / "rollups", ignore_errors=True)
        started = time.perf_counter()
        report = RollupJob(lake, pre_days, engine).run_once()  # type: ignore[arg-type]
        runs.append((time.perf_counter() - started, report.rows_folded))
        print(f"  {getattr(engine, 'master', 'duckdb')}: {runs[-1][0]:.1f} s", file=sys.stderr)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/spark.py", description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="10M", help="size of the lake to build (ignored with --lake)")
    parser.add_argument("--quick", action="store_true", help="a 1M-event lake")
    parser.add_argument("--lake", type=Path, default=None, help="an existing lake (copied, left untouched)")
    parser.add_argument("--repeats", type=int, default=3, help="rebuilds per engine (the table shows medians)")
    parser.add_argument("--master", default="local[2]", help="the Spark master")
    parser.add_argument("--driver-memory", default="4g", help="spark.driver.memory (local mode: the whole JVM)")
    args = parser.parse_args(argv)

    from metrics.engines.spark import SparkEngine
    from metrics.rollup.session import duckdb_engine

    with tempfile.TemporaryDirectory(prefix="momento-bench-spark-", dir="/tmp") as tmp:
        lake = Path(tmp) / "lake"
        if args.lake is not None:
            shutil.copytree(args.lake, lake)
        else:
            _build(_size("1M" if args.quick else args.events), lake)
        duck = _rebuilds(lake, duckdb_engine, args.repeats)
        engine = SparkEngine(args.master, {"spark.driver.memory": args.driver_memory})
        started = time.perf_counter()
        engine.spark()
        jvm = time.perf_counter() - started
        spark = _rebuilds(lake, engine, args.repeats)
        engine.spark().stop()
    rows = duck[0][1]
    print(f"{'engine':<22} {'rows':>11} {'median s':>9} {'rows/s':>10}   runs (s)")
    print("-" * 72)
    rates = {}
    for name, runs in (("duckdb", duck), (f"spark {args.master}", spark)):
        median = statistics.median(s for s, _ in runs)
        rates[name] = rows / median
        print(
            f"{name:<22} {rows:>11,} {median:>9.1f} {rates[name]:>10,.0f}   " + ", ".join(f"{s:.1f}" for s, _ in runs)
        )
    print(f"{'spark JVM start':<22} {'':>11} {jvm:>9.1f}")
    print(
        f"duckdb / spark: {rates['duckdb'] / rates[f'spark {args.master}']:.1f}x "
        f"(2 cores shared with other work: timings are noisy)"
    )
    return 0


if __name__ == "__main__":
    exit_on_sigterm()  # a plain `kill` stops what the benchmark started
    sys.exit(main())
