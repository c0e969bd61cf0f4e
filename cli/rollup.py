"""`momento rollup`: bring the lake's rollups up to date, once or continuously (`--follow`).

With `--follow` the job keeps up with the lake every `--interval` seconds until SIGINT or
SIGTERM, and then exits 0 at once: a run it abandons half-way leaves nothing visible (its rows
count only once it is logged), and the next run folds the same rows again.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from cli.engines import EngineChoice, engine_of
from metrics.engines.spark import EngineUnavailable
from metrics.rollup.job import RollupJob
from momento.lake.rollups import RollupLocked, RollupStore
from momento.scenario import ScenarioError, load_scenario
from momento.settings import Settings


def release_lock(settings: Settings) -> int:
    """Give back the rollup lock of the lake (object storage: see `momento.lake.rollups`)."""
    RollupStore(settings.lake).release_lock()
    print(f"momento rollup: the rollup lock of {settings.lake} is free", file=sys.stderr)
    return 0


def run_rollup(settings: Settings, follow: bool, interval: float, choice: EngineChoice = EngineChoice()) -> int:
    """Run the rollup job on `settings.lake`, folding on the chosen engine; returns the exit code."""
    logging.basicConfig(
        level=logging.INFO if follow else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        pre_days = load_scenario(settings.scenario).business.pre_period_days
    except ScenarioError as exc:
        print(f"momento rollup: {exc}", file=sys.stderr)
        return 2
    job = RollupJob(settings.lake, pre_days, engine_of(choice), memory_limit_mb=settings.rollup_memory_mb)
    if not follow:
        try:
            report = job.run_once()
        except RollupLocked as exc:
            print(f"momento rollup: {exc}", file=sys.stderr)
            return 1
        except EngineUnavailable as exc:
            print(f"momento rollup: {exc}", file=sys.stderr)
            return 2
        print(
            f"momento rollup: {report.kind} run {report.run_id}: {report.rows_folded:,} rows, "
            f"{report.users:,} users in {report.seconds:.2f} s"
        )
        return 0

    stop = threading.Event()

    def leave(signum: int, frame: object) -> None:
        # The flag first: a DuckDB query running when the signal lands turns this SystemExit into
        # its own "Query interrupted" error, which `follow` then recognises as the stop.
        stop.set()
        raise SystemExit(0)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, leave)
    print(f"momento rollup: following {settings.lake} every {interval:g} s", file=sys.stderr, flush=True)
    job.follow(interval, stop)
    return 0
