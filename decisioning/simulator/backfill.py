"""Backfill: N days of history written straight into the lake, vectorised.

`simulation.Simulation` plays the days hour by hour with the service's own decision flow;
`rows.assemble` turns the result into the lake's rows, which are validated by
`momento.lake.schema.to_table` and appended to the Delta tables in large batches (a commit per
table, events in chunks); the ground truth is written next to the lake (`truth.py`). A
progress bar shows the hours simulated and the rows written.

The backfill writes to the lake directly: run it when no service is writing to that lake.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
from deltalake import write_deltalake
from tqdm import tqdm

from momento.scenario import Scenario, load_scenario
from decisioning.simulator import rows as rows_mod
from decisioning.simulator import truth as truth_mod
from momento.lake import ground_truth
from decisioning.simulator.simulation import Simulation
from momento.lake.writer import table_path
from momento.lake.schema import TABLES, to_table
from momento.settings import Settings


@dataclass(frozen=True)
class BackfillResult:
    """What a backfill wrote."""

    lake: Path
    truth_path: Path
    start: datetime
    end: datetime
    users: int
    sessions: int
    rows: dict[str, int]
    seconds: float
    phases: dict[str, float]
    """Seconds per phase: plan (population, sessions, assignment), simulate (the hourly
    loop), write (assemble, validate, append), truth."""

    @property
    def events(self) -> int:
        return self.rows.get("events", 0)


def write_tables(lake: Path, tables: dict[str, Iterator[pl.DataFrame]], progress: bool) -> dict[str, int]:
    """Validate each frame with the lake's schema (`to_table`) and append it to its Delta table,
    one commit per frame, on a writer thread so the next frame is assembled meanwhile (both
    Arrow's casts and the Delta writer release the GIL). Every table exists afterwards."""
    written = {name: 0 for name in TABLES}
    with tqdm(desc="writing lake", unit="row", unit_scale=True, disable=not progress, file=sys.stderr,
              leave=False) as bar, ThreadPoolExecutor(max_workers=1, thread_name_prefix="lake-write") as pool:
        pending: Future | None = None

        def append(name: str, frame: pl.DataFrame | None) -> None:
            data = to_table(name, frame.to_arrow(compat_level=pl.CompatLevel.newest()) if frame is not None else [])
            path = table_path(lake, name)
            path.mkdir(parents=True, exist_ok=True)
            write_deltalake(str(path), data, mode="append", schema_mode="merge")  # a lake from before a new column
            written[name] += data.num_rows
            bar.update(data.num_rows)

        def submit(name: str, frame: pl.DataFrame | None) -> None:
            nonlocal pending
            if pending is not None:
                pending.result()  # one frame in flight: memory stays bounded
            pending = pool.submit(append, name, frame)

        for name in TABLES:
            empty = True
            for frame in tables.get(name, ()):
                submit(name, frame)
                empty = False
            if empty:  # the table still exists, so readers see its columns
                submit(name, None)
        if pending is not None:
            pending.result()
    return written


def backfill(lake: Path, scenario: Scenario, days: int, users: int | None = None, seed: int = 7,
             progress: bool = True, end: datetime | None = None, *, pseudonym_key: str = Settings.pseudonym_key,
             incidents: bool = True) -> BackfillResult:
    """Simulate `days` days of `users` customers ending at `end` (default now) into `lake`.

    Also writes the ground truth to `momento.lake.ground_truth.truth_path(lake)`. `incidents=False` leaves out the
    scenario's incident schedule (clean data for checking estimates against truth).
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if users is not None and users < 1:
        raise ValueError(f"users must be at least 1, got {users}")
    clock = _Clock()
    end = (end or datetime.now(timezone.utc)).astimezone(timezone.utc)
    sim = Simulation(scenario, days, users or scenario.population.users, seed, int(end.timestamp() * 1_000_000),
                     pseudonym_key, incidents)
    if progress:
        print(f"backfill: {sim.sessions:,} sessions of {sim.population.size:,} users over {days} days", file=sys.stderr)
    clock.lap("plan")
    sim.run(progress)
    clock.lap("simulate")
    written = write_tables(Path(lake), rows_mod.assemble(sim), progress)
    clock.lap("write")
    path = ground_truth.write(Path(lake), truth_mod.ground_truth(sim))
    clock.lap("truth")
    return BackfillResult(Path(lake), path, datetime.fromtimestamp(sim.start_us / 1e6, timezone.utc), end,
                          sim.population.size, sim.sessions, written, sum(clock.laps.values()), clock.laps)


class _Clock:
    """Seconds spent in each named phase."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now


def run_backfill(settings: Settings, days: int, users: int | None, seed: int) -> int:
    """`momento backfill`: fill `settings.lake` and print what was written."""
    try:
        scenario = load_scenario(settings.scenario)
        result = backfill(settings.lake, scenario, days, users, seed, pseudonym_key=settings.pseudonym_key)
    except (ValueError, OSError) as exc:
        print(f"momento backfill: {exc}", file=sys.stderr)
        return 2
    rows = ", ".join(f"{count:,} {name}" for name, count in result.rows.items() if count)
    print(f"backfilled {days} days of {result.users:,} users ({result.sessions:,} sessions) into {result.lake}: "
          f"{rows} in {result.seconds:.1f} s ({result.events / max(result.seconds, 1e-9):,.0f} events/s); "
          f"ground truth in {result.truth_path}")
    return 0
