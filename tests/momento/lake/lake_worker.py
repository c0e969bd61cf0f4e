"""A separate process that writes to or reads from a lake, for the lake's concurrency tests.

python tests/momento/lake/lake_worker.py write LAKE BATCHES ROWS [COMPACT_EVERY_S]
    appends BATCHES batches of ROWS events, printing "committed <total>" after each commit.
python tests/momento/lake/lake_worker.py read LAKE SECONDS
    queries the event count in a loop, printing "count <n>" or "error <message>".
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402

from momento.lake.warehouse import Warehouse  # noqa: E402
from momento.lake.writer import LakeWriter  # noqa: E402


def event_batch(start: int, rows: int) -> pa.Table:
    """`rows` valid events with ids start..start+rows-1."""
    now = datetime.now(UTC)
    ids = [f"ev-{i:09d}" for i in range(start, start + rows)]
    return pa.table(
        {
            "event_id": ids,
            "ts": pa.array([now] * rows, pa.timestamp("us", tz="UTC")),
            "received_at": pa.array([now] * rows, pa.timestamp("us", tz="UTC")),
            "user_id": [f"{i % 97:032x}" for i in range(start, start + rows)],
            "channel": ["web"] * rows,
            "event_type": ["page_view"] * rows,
            "revenue": [1.0] * rows,
        }
    )


def write(lake: Path, batches: int, rows: int, compact_every: int | None) -> None:
    """Commit `batches` of `rows` events, compacting after every `compact_every` batches: counted in batches,
    not seconds, so a fast machine compacts as often as a slow one."""
    writer = LakeWriter(lake, background=False, compact_every_seconds=None, vacuum_retention_hours=0)
    total = 0
    for b in range(batches):
        writer.append("events", event_batch(b * rows, rows))
        writer.flush()
        total += rows
        print(f"committed {total}", flush=True)
        if compact_every and (b + 1) % compact_every == 0:
            writer.compact()
            print("compacted", flush=True)
    writer.close()


def read(lake: Path, seconds: float) -> None:
    warehouse = Warehouse(lake, min_refresh_seconds=0)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            print(f"count {warehouse.scalar('SELECT count(*) FROM events')}", flush=True)
        except Exception as exc:  # the test counts every error, whatever its type
            print(f"error {type(exc).__name__}: {exc}".replace("\n", " "), flush=True)


if __name__ == "__main__":
    mode, lake = sys.argv[1], Path(sys.argv[2])
    if mode == "write":
        write(lake, int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]) if len(sys.argv) > 5 else None)
    else:
        read(lake, float(sys.argv[3]))
