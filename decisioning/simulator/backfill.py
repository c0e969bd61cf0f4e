"""Backfill: N days of history written straight into the lake, vectorised, streamed by shard.

`simulation.Simulation` plays the days hour by hour with the service's own decision flow;
`rows.assemble` turns the result into the lake's rows, which are validated by
`momento.lake.schema.to_table` and appended to the Delta tables in large batches (a commit per
table, events in chunks); the ground truth is written next to the lake (`truth.py`). A
progress bar shows the hours simulated and the rows written.

Memory is bounded by streaming the customers in shards of at most `SHARD_USERS`: each shard is
simulated over the whole calendar, written, and reduced to its ground-truth tally (counts and
sums over its customers, `truth.tally`) before the next one starts; the tallies add up to the
whole population's truth, exactly. Customers are independent in the behaviour model, except
through the bandit policies, which learn within a shard (each shard is one deployment of the
policies; the truth is exact either way: it is computed from what each shard's policies served).
A backfill of at most `SHARD_USERS` customers is one shard: the one-shot run of before. The
tables' logs are checkpointed at the end, as the service's maintenance does (`Writer.compact`).

The backfill writes to the lake directly: run it when no service is writing to that lake.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from deltalake import write_deltalake
from tqdm import tqdm

from decisioning.simulator import rows as rows_mod
from decisioning.simulator import truth as truth_mod
from decisioning.simulator.simulation import Simulation
from momento.lake import ground_truth
from momento.lake.schema import TABLES, to_table
from momento.lake.writer import LoadClock, ensure_table, stamp_loaded
from momento.scenario import Scenario, load_scenario
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
    """Seconds per phase, summed over the shards: plan (population, sessions, assignment),
    simulate (the hourly loop), write (assemble, validate, append), truth."""
    shards: int = 1

    @property
    def events(self) -> int:
        return self.rows.get("events", 0)


def write_tables(lake: Path, frames: dict[str, Iterator[pl.DataFrame]], progress: bool) -> dict[str, int]:
    """Validate each frame with the lake's schema (`to_table`) and append it to its Delta table,
    one commit per frame, on a writer thread so the next frame is assembled meanwhile (both
    Arrow's casts and the Delta writer release the GIL). Every table exists afterwards."""
    written = dict.fromkeys(TABLES, 0)
    tables = {name: ensure_table(lake, name) for name in TABLES}
    clock = LoadClock(lake)
    with (
        tqdm(
            desc="writing lake", unit="row", unit_scale=True, disable=not progress, file=sys.stderr, leave=False
        ) as bar,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="lake-write") as pool,
    ):
        pending: Future[None] | None = None

        def append(name: str, frame: pl.DataFrame | None) -> None:
            data = to_table(name, frame.to_arrow(compat_level=pl.CompatLevel.newest()) if frame is not None else [])
            data = stamp_loaded(data, clock.next())
            write_deltalake(tables[name], data, mode="append")
            written[name] += data.num_rows
            bar.update(data.num_rows)

        def submit(name: str, frame: pl.DataFrame | None) -> None:
            nonlocal pending
            if pending is not None:
                pending.result()  # one frame in flight: memory stays bounded
            pending = pool.submit(append, name, frame)

        for name in TABLES:
            empty = True
            for frame in frames.get(name, ()):
                submit(name, frame)
                empty = False
            if empty:  # the table still exists, so readers see its columns
                submit(name, None)
        if pending is not None:
            pending.result()
    return written


SHARD_USERS = 100_000
"""Customers simulated at once (about 1.9M events over 28 days with the bundled scenario, under
2 GB of memory): a backfill of more streams them in shards of this size."""


def backfill(
    lake: Path,
    scenario: Scenario,
    days: int,
    users: int | None = None,
    seed: int = 7,
    progress: bool = True,
    end: datetime | None = None,
    *,
    pseudonym_key: str = Settings.pseudonym_key,
    incidents: bool = True,
    shard_users: int = SHARD_USERS,
) -> BackfillResult:
    """Simulate `days` days of `users` customers ending at `end` (default now) into `lake`, in
    shards of at most `shard_users` customers (see the module docstring).

    Also writes the ground truth to `momento.lake.ground_truth.truth_path(lake)`. `incidents=False` leaves out the
    scenario's incident schedule (clean data for checking estimates against truth).
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if users is not None and users < 1:
        raise ValueError(f"users must be at least 1, got {users}")
    if shard_users < 1:
        raise ValueError(f"shard_users must be at least 1, got {shard_users}")
    clock = _Clock()
    end = (end or datetime.now(UTC)).astimezone(UTC)
    users = users or scenario.population.users
    firsts = range(0, users, shard_users)
    written = dict.fromkeys(TABLES, 0)
    total: dict[str, Any] | None = None
    sim: Simulation | None = None
    for shard, first in enumerate(firsts):
        sim = None  # the previous shard is freed before the next one is drawn
        sim = Simulation(
            scenario,
            days,
            min(shard_users, users - first),
            seed,
            int(end.timestamp() * 1_000_000),
            pseudonym_key,
            incidents,
            first_user=first,
            shard=shard,
        )
        if progress:
            print(
                f"backfill: {sim.sessions:,} sessions of {sim.population.size:,} users over {days} days"
                + (f" (shard {shard + 1} of {len(firsts)})" if len(firsts) > 1 else ""),
                file=sys.stderr,
            )
        clock.lap("plan")
        sim.run(progress)
        clock.lap("simulate")
        for name, count in write_tables(Path(lake), rows_mod.assemble(sim), progress).items():
            written[name] += count
        clock.lap("write")
        tally = truth_mod.tally(sim)
        total = tally if total is None else truth_mod.add(total, tally)
        clock.lap("truth")
    assert sim is not None and total is not None  # users >= 1: one shard at least
    for name in TABLES:
        # Readers open a Delta table by replaying its log from the newest checkpoint: without one,
        # every commit of every shard (65 at 100M events), which made opening the lake scale with it.
        ensure_table(Path(lake), name).create_checkpoint()
    clock.lap("write")
    path = ground_truth.write(Path(lake), truth_mod.document(sim, total))
    clock.lap("truth")
    return BackfillResult(
        Path(lake),
        path,
        datetime.fromtimestamp(sim.start_us / 1e6, UTC),
        end,
        users,
        total["sessions"],
        written,
        sum(clock.laps.values()),
        clock.laps,
        len(firsts),
    )


class _Clock:
    """Seconds spent in each named phase (summed when a phase comes round again)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self._last
        self._last = now


def run_backfill(settings: Settings, days: int, users: int | None, seed: int) -> int:
    """`momento backfill`: fill `settings.lake` and print what was written."""
    try:
        scenario = load_scenario(settings.scenario)
        result = backfill(settings.lake.path, scenario, days, users, seed, pseudonym_key=settings.pseudonym_key)
    except (ValueError, OSError) as exc:
        print(f"momento backfill: {exc}", file=sys.stderr)
        return 2
    rows = ", ".join(f"{count:,} {name}" for name, count in result.rows.items() if count)
    print(
        f"backfilled {days} days of {result.users:,} users ({result.sessions:,} sessions) into {result.lake}: "
        f"{rows} in {result.seconds:.1f} s ({result.events / max(result.seconds, 1e-9):,.0f} events/s); "
        f"ground truth in {result.truth_path}"
    )
    return 0
