"""Ingest throughput: rows/s of batch appends to the lake, next to the ceiling.

For batches of 1k, 10k and 100k event rows, the time to validate, append and commit each
batch through `LakeWriter` (one Delta commit per batch), against inserting the same Arrow
batches straight into an in-memory DuckDB table. Medians over repeats; the ratio says how
much of the ceiling the lake keeps. Target: >= 100k rows/s sustained at 10k-row batches.

    python bench/ingest.py [--rows-per-size N] [--repeats R]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from momento.lake.schema import EVENTS, to_table
from momento.lake.writer import LakeWriter

EVENT_TYPES = np.array(["page_view", "click", "add_to_cart", "purchase"])


def events(start: int, rows: int, rng: np.random.Generator) -> pa.Table:
    """`rows` realistic event rows (unique ids from `start`)."""
    now = datetime.now(UTC)
    ts = pa.array(
        [now - timedelta(seconds=int(s)) for s in rng.integers(0, 86_400, rows)], pa.timestamp("us", tz="UTC")
    )
    kinds = EVENT_TYPES[rng.integers(0, len(EVENT_TYPES), rows)]
    purchase = kinds == "purchase"
    revenue = np.where(purchase, rng.lognormal(5.3, 0.5, rows), np.nan)
    return to_table(
        "events",
        pa.table(
            {
                "event_id": pa.array([f"ev-{i:012d}" for i in range(start, start + rows)]),
                "ts": ts,
                "received_at": ts,
                "user_id": pa.array([f"{u:032x}" for u in rng.integers(0, 200_000, rows)]),
                "session_id": pa.array([f"s-{s}" for s in rng.integers(0, 500_000, rows)]),
                "channel": pa.array(np.where(rng.random(rows) < 0.7, "web", "app")),
                "event_type": pa.array(kinds),
                "placement": pa.array(np.where(rng.random(rows) < 0.5, "homepage_showcase", None)),
                "revenue": pa.array(revenue, from_pandas=True),
                "margin": pa.array(revenue * 0.45, from_pandas=True),
                "device": pa.array(np.where(rng.random(rows) < 0.62, "mobile", "desktop")),
                "segment": pa.array(np.where(rng.random(rows) < 0.55, "returning", "new")),
            }
        ),
    )


def lake_rate(batches: list[pa.Table]) -> float:
    """Rows/s committing each batch as one Delta commit through the writer."""
    with tempfile.TemporaryDirectory() as lake:
        writer = LakeWriter(Path(lake), background=False, compact_every_seconds=None, queue_limit=10**9)
        started = time.perf_counter()
        for batch in batches:
            writer.append("events", batch)
            writer.flush()
        elapsed = time.perf_counter() - started
        writer.close()
    return sum(b.num_rows for b in batches) / elapsed


def duckdb_rate(batches: list[pa.Table]) -> float:
    """Rows/s inserting the same batches into an in-memory DuckDB table: the ceiling."""
    con = duckdb.connect()
    con.from_arrow(EVENTS.empty_table()).create("events")
    started = time.perf_counter()
    for batch in batches:  # noqa: B007 (DuckDB reads the local `batch` by its name)
        con.execute("INSERT INTO events SELECT * FROM batch")
    elapsed = time.perf_counter() - started
    con.close()
    return sum(b.num_rows for b in batches) / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows-per-size", type=int, default=300_000, help="rows written per batch size and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(1)
    print(f"{'batch rows':>10} {'batches':>8} {'lake rows/s':>13} {'duckdb rows/s':>14} {'lake/ceiling':>13}")
    for size in (1_000, 10_000, 100_000):
        count = max(1, args.rows_per_size // size)
        batches = [events(i * size, size, rng) for i in range(count)]
        lake = statistics.median(lake_rate(batches) for _ in range(args.repeats))
        ceiling = statistics.median(duckdb_rate(batches) for _ in range(args.repeats))
        print(f"{size:>10,} {count:>8} {lake:>13,.0f} {ceiling:>14,.0f} {lake / ceiling:>13.3f}")
    print(f"(medians of {args.repeats} repeats; one Delta commit per batch; target >= 100,000 rows/s at 10k)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
