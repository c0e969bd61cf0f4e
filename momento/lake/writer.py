"""The lake's only writer: validated batches buffered in memory and appended to Delta tables.

Why buffered: one Delta commit costs ~30 ms, so writing per request caps the service at a few
dozen rows a second; batches of 1k-10k rows reach hundreds of thousands. A background thread
flushes when `flush_rows` rows are buffered or the oldest row is `flush_seconds` old, and on a
schedule compacts small files, checkpoints the log and vacuums files no snapshot younger than
the retention still needs (so no reader loses a file it is reading).

Durability: `append` returns a sequence number; the rows are durable once `committed_seq`
reaches it (`wait_committed`). A SIGKILL loses at most what was appended after the last
commit; Delta's atomic commits mean the lake is readable whatever the moment of the kill.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake

from momento.lake.location import Lake, Location, lake_location
from momento.lake.schema import LOADED_AT, PRIMARY_KEYS, TABLES, USER_TABLES, BatchError, schema_of, to_table

log = logging.getLogger(__name__)

_HEX = frozenset("0123456789abcdef")


class QueueFull(RuntimeError):
    """The writer holds `queue_limit` rows already: the caller should retry later."""


def table_path(root: Lake, table: str) -> Location:
    """Where the Delta table `table` lives under the lake root."""
    schema_of(table)
    return lake_location(root) / table


def open_table(root: Lake, table: str) -> DeltaTable | None:
    """The Delta table, or None while nothing has been written to it."""
    path = table_path(root, table)
    return path.delta() if path.is_delta() else None


_STATS_COLUMNS = ("ts", "received_at", LOADED_AT)


def ensure_table(root: Lake, table: str) -> DeltaTable:
    """The Delta table, created when missing and brought up to the code's schema when it is older
    (columns added since are appended as nullable: old rows read them as null)."""
    schema = schema_of(table)
    # Per-file statistics live in the Delta log, which erasure cannot rewrite: keep them only
    # for the time columns (what pruning needs), never for ids a person could be found by.
    stats = ",".join(name for name in _STATS_COLUMNS if name in schema.names)
    existing = open_table(root, table)
    if existing is None:
        configuration = {"delta.dataSkippingStatsColumns": stats}
        return table_path(root, table).create_delta(schema, name=table, configuration=configuration)
    present = set(pa.schema(existing.schema().to_arrow()).names)
    missing = [field for field in schema if field.name not in present]
    if missing:
        existing.alter.add_columns([_delta_field(field) for field in missing])
        existing.alter.set_table_properties({"delta.dataSkippingStatsColumns": stats}, raise_if_not_exists=False)
    return existing


def _delta_field(field: pa.Field) -> Any:
    """A nullable Delta field for an Arrow one (deltalake converts types through a schema)."""
    from deltalake import Schema

    return Schema.from_arrow(pa.schema([field.with_nullable(True)])).fields[0]


class LoadClock:
    """The `loaded_at` of each commit: the wall clock, but strictly after the previous commit's
    (and after the newest already in the lake), so a watermark on it never skips a commit."""

    def __init__(self, root: Lake) -> None:
        self._last = _newest_loaded(root)

    def next(self) -> datetime:
        now = datetime.now(UTC)
        self._last = now if self._last is None or now > self._last else self._last + timedelta(microseconds=1)
        return self._last


def _newest_loaded(root: Lake) -> datetime | None:
    newest: datetime | None = None
    for name in TABLES:
        table = open_table(root, name)
        if table is None or LOADED_AT not in pa.schema(table.schema().to_arrow()).names:
            continue
        actions = pa.table(table.get_add_actions(flatten=True))
        column = f"max.{LOADED_AT}"
        if column in actions.column_names:
            value = pc.max(actions.column(column)).as_py()
        else:  # written before the column had statistics
            value = pc.max(table.to_pyarrow_dataset().to_table(columns=[LOADED_AT]).column(LOADED_AT)).as_py()
        if value is not None and (newest is None or value > newest):
            newest = value
    return newest


def stamp_loaded(data: pa.Table, at: datetime) -> pa.Table:
    """`data` with `loaded_at` set to `at` on every row (one commit, one load time)."""
    index = data.schema.get_field_index(LOADED_AT)
    return data.set_column(
        index, data.schema.field(index), pa.array([at] * data.num_rows, data.schema.field(index).type)
    )


def _storage_reason(error: Exception) -> str:
    """A short reason for a failed write: the OS's words for a full or read-only disk
    (deltalake wraps them in its own errors), else the error's first line."""
    text = str(error)
    for reason in ("No space left on device", "Read-only file system", "Disk quota exceeded", "Permission denied"):
        if reason in text:
            return reason
    return f"{type(error).__name__}: {text.splitlines()[0][:200] if text else ''}"


class RecentKeys:
    """Primary keys committed or buffered recently, so a re-sent fact is stored once.

    Bounded by count: the oldest keys are forgotten first, a generation (1/20 of `capacity`)
    at a time, so between 95% and 100% of `capacity` are remembered. Keys are kept as 8-byte
    digests in sorted numpy arrays, about 9 bytes a key (2 million keys: ~25 MB, where an
    ordered dict of digests took ~400 MB): the sealed generations, and the one being filled,
    which takes the newest keys a batch (`BATCH`) at a time. Only that batch is a set of Python
    ints (~100 bytes a key): were the whole generation filled as a set, it would grow by ~10 MB
    (100,000 keys) before being sealed, for as long as a generation takes to fill (at the
    demo's rate, longer than the soak: it read as the service's memory growing).
    """

    GENERATIONS = 20
    BATCH = 4_096

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._generation = max(capacity // self.GENERATIONS, 1)
        self._batch = min(self.BATCH, self._generation)
        self._newest: set[int] = set()
        self._filling = np.empty(0, dtype=np.uint64)  # sorted digests of the generation being filled
        self._older: deque[np.ndarray] = deque()  # sorted digests, the oldest generation first
        self._older_count = 0

    def __len__(self) -> int:
        return len(self._newest) + len(self._filling) + self._older_count

    @staticmethod
    def _digest(key: str) -> int:
        return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")

    def _in_arrays(self, digests: np.ndarray) -> np.ndarray:
        found = np.zeros(len(digests), dtype=bool)
        for generation in (*self._older, self._filling):
            if len(generation):
                at = np.minimum(np.searchsorted(generation, digests), len(generation) - 1)
                found |= generation[at] == digests
        return found

    def _settle(self) -> None:
        """The newest batch goes into the generation being filled; a full generation is sealed,
        and the oldest go past the capacity."""
        batch = np.fromiter(self._newest, dtype=np.uint64, count=len(self._newest))
        self._filling = np.union1d(self._filling, batch)
        self._newest = set()
        if len(self._filling) >= self._generation:
            self._older.append(self._filling)
            self._older_count += len(self._filling)
            self._filling = np.empty(0, dtype=np.uint64)
        while len(self) > self._capacity:
            self._older_count -= len(self._older.popleft())

    def add_new(self, keys: list[str]) -> list[bool]:
        """Remember `keys`; return for each whether it was new (also within this list)."""
        digests = [self._digest(key) for key in keys]
        known = self._in_arrays(np.array(digests, dtype=np.uint64))
        added: set[int] = set()
        fresh = []
        for digest, old in zip(digests, known.tolist(), strict=True):
            if old or digest in self._newest or digest in added:
                fresh.append(False)
                continue
            added.add(digest)
            self._newest.add(digest)
            fresh.append(True)
            if len(self._newest) >= self._batch:
                self._settle()
        return fresh


@dataclass
class WriterStats:
    """What the writer has done, for /metrics and the health page."""

    queued_rows: int = 0
    committed_rows: int = 0
    commits: int = 0
    duplicates_dropped: int = 0
    rejected_batches: int = 0
    queue_full_rejections: int = 0
    flush_errors: int = 0
    compactions: int = 0
    last_flush_at: float | None = None
    last_compaction_at: float | None = None
    last_flush_seconds: float = 0.0
    write_error: str | None = None  # why the last flush failed, until one succeeds (a full or read-only disk)


class LakeWriter:
    """Appends validated batches to the lake's Delta tables (see the module docstring)."""

    def __init__(
        self,
        root: Lake,
        *,
        flush_rows: int = 10_000,
        flush_seconds: float = 1.0,
        queue_limit: int = 200_000,
        compact_every_seconds: float | None = 60.0,
        vacuum_retention_hours: float = 1.0,
        dedupe_capacity: int = 2_000_000,
        flush_delay_seconds: float = 0.0,
        background: bool = True,
    ) -> None:
        self.root = lake_location(root)
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.queue_limit = queue_limit
        self.compact_every_seconds = compact_every_seconds
        self.vacuum_retention_hours = vacuum_retention_hours
        # Fault injection for tests and incident drills: sleep this long inside every flush.
        self.flush_delay_seconds = flush_delay_seconds
        self.stats = WriterStats()
        self._buffers: dict[str, list[pa.Table]] = {name: [] for name in TABLES}
        self._oldest: float | None = None
        self._seq = 0
        self._committed_seq = 0
        self._lock = threading.Lock()  # guards buffers and counters
        self._io_lock = threading.Lock()  # one Delta operation at a time
        self._wake = threading.Condition(self._lock)
        self._committed = threading.Condition()
        self._closed = False
        self.root.check()
        self.root.make_dirs()
        self._tables = {name: ensure_table(self.root, name) for name in TABLES}
        self._clock = LoadClock(self.root)
        self._recent = {name: RecentKeys(dedupe_capacity) for name in PRIMARY_KEYS}
        self._seed_recent_keys(dedupe_capacity)
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="lake-writer", daemon=True)
            self._thread.start()

    # -- appending --------------------------------------------------------------------------

    def append(self, table: str, rows: Any) -> int:
        """Validate and buffer `rows` for `table`; return the sequence number to wait on.

        Raises `BatchError` (nothing buffered) for a bad batch and `QueueFull` when the buffer
        is at its bound. Rows whose primary key was seen recently are dropped as duplicates.
        """
        try:
            batch = to_table(table, rows)
        except BatchError:
            with self._lock:
                self.stats.rejected_batches += 1
            raise
        with self._lock:
            if self._closed:
                raise RuntimeError("the writer is closed")
            if self.stats.queued_rows + batch.num_rows > self.queue_limit:
                self.stats.queue_full_rejections += 1
                raise QueueFull(f"writer queue holds {self.stats.queued_rows} rows (limit {self.queue_limit})")
            key = PRIMARY_KEYS.get(table)
            if key is not None:
                fresh = self._recent[table].add_new(batch.column(key).to_pylist())
                kept = sum(fresh)
                if kept < batch.num_rows:
                    self.stats.duplicates_dropped += batch.num_rows - kept
                    batch = batch.filter(pa.array(fresh, pa.bool_()))
            self._seq += 1
            if not batch.num_rows and not self.stats.queued_rows:
                # Nothing new and nothing pending: this append is as committed as it gets.
                self._mark_committed(self._seq)
            if batch.num_rows:
                self._buffers[table].append(batch)
                self.stats.queued_rows += batch.num_rows
                if self._oldest is None:
                    self._oldest = time.monotonic()
                if self.stats.queued_rows >= self.flush_rows:
                    self._wake.notify()
            return self._seq

    @property
    def committed_seq(self) -> int:
        """Every append with a sequence number up to this one is committed to the lake."""
        return self._committed_seq

    def wait_committed(self, seq: int, timeout: float | None = None) -> bool:
        """Block until the append numbered `seq` is committed; False on timeout."""
        with self._committed:
            return self._committed.wait_for(lambda: self._committed_seq >= seq, timeout)

    # -- flushing ---------------------------------------------------------------------------

    def flush(self) -> int:
        """Commit everything buffered now; return the committed sequence number."""
        with self._io_lock:
            with self._lock:
                buffers = {name: parts for name, parts in self._buffers.items() if parts}
                self._buffers = {name: [] for name in TABLES}
                seq = self._seq
                self._oldest = None
            if not buffers:
                self._mark_committed(seq)
                return seq
            started = time.perf_counter()
            if self.flush_delay_seconds:
                time.sleep(self.flush_delay_seconds)
            written = 0
            try:
                for name, parts in buffers.items():
                    data = stamp_loaded(pa.concat_tables(parts), self._clock.next())
                    write_deltalake(self._tables[name], data, mode="append")
                    written += data.num_rows
                    buffers[name] = []
            except Exception as exc:
                self._count_written(written, started)
                self._requeue({name: parts for name, parts in buffers.items() if parts}, exc)
                raise
            self._count_written(written, started)
            self.stats.write_error = None
            self._mark_committed(seq)
            return seq

    def _count_written(self, rows: int, started: float) -> None:
        with self._lock:
            self.stats.queued_rows -= rows
            self.stats.committed_rows += rows
            self.stats.commits += 1
            self.stats.last_flush_at = time.time()
            self.stats.last_flush_seconds = time.perf_counter() - started

    def _requeue(self, buffers: dict[str, list[pa.Table]], error: Exception) -> None:
        with self._lock:
            self.stats.flush_errors += 1
            self.stats.write_error = _storage_reason(error)
            for name, parts in buffers.items():
                self._buffers[name][:0] = parts
            if self._oldest is None and buffers:
                self._oldest = time.monotonic()

    def _mark_committed(self, seq: int) -> None:
        with self._committed:
            self._committed_seq = max(self._committed_seq, seq)
            self._committed.notify_all()

    def _flush_due(self) -> bool:
        return self.stats.queued_rows >= self.flush_rows or (
            self._oldest is not None and time.monotonic() - self._oldest >= self.flush_seconds
        )

    def _run(self) -> None:
        next_compaction = time.monotonic() + (self.compact_every_seconds or 0)
        while True:
            with self._lock:
                if not self._closed and not self._flush_due():
                    self._wake.wait(timeout=min(0.05, self.flush_seconds))
                closed = self._closed
                due = self._flush_due() or closed
            if due:
                try:
                    self.flush()
                except Exception:
                    log.exception("flush failed; the rows stay buffered and are retried")
                    time.sleep(0.5)
            if closed:
                return
            if self.compact_every_seconds and time.monotonic() >= next_compaction:
                next_compaction = time.monotonic() + self.compact_every_seconds
                try:
                    self.compact()
                except Exception:
                    log.exception("compaction failed; retried at the next interval")

    # -- maintenance ------------------------------------------------------------------------

    def compact(self) -> dict[str, dict[str, Any]]:
        """Merge small files, checkpoint and trim the log, and vacuum files past retention."""
        report: dict[str, dict[str, Any]] = {}
        with self._io_lock:
            for name, table in self._tables.items():
                table.update_incremental()
                metrics = table.optimize.compact(target_size=128 * 1024 * 1024)
                table.create_checkpoint()
                table.cleanup_metadata()
                removed = table.vacuum(
                    retention_hours=int(self.vacuum_retention_hours),
                    dry_run=False,
                    enforce_retention_duration=False,
                )
                report[name] = {
                    "files_removed": metrics.get("numFilesRemoved", 0),
                    "files_added": metrics.get("numFilesAdded", 0),
                    "vacuumed": len(removed),
                }
        with self._lock:
            self.stats.compactions += 1
            self.stats.last_compaction_at = time.time()
        return report

    def erase_user(self, user_id: str, requested_by: str | None = None) -> dict[str, int]:
        """Right to erasure: delete every row of `user_id` (a pseudonymised hex id) in every
        table, vacuum the removed files at once, and record the erasure in `erasures`."""
        if not user_id or not set(user_id) <= _HEX:
            raise BatchError("erasures", "user_id", "expected a pseudonymised (hexadecimal) user id")
        self.flush()
        # The Delta log keeps each delete's predicate for good: name the subject by the same
        # one-way hash the erasure log records, never by the id itself.
        subject_hash = hashlib.sha256(user_id.encode()).hexdigest()
        deleted: dict[str, int] = {}
        with self._io_lock:
            for name in USER_TABLES:
                table = self._tables[name]
                table.update_incremental()
                result = table.delete(f"encode(sha256(user_id), 'hex') = '{subject_hash}'")
                deleted[name] = int(result.get("num_deleted_rows", 0))
                table.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False)
        record = {
            "erasure_id": str(uuid.uuid4()),
            "ts": datetime.now(UTC),
            "subject_hash": subject_hash,
            "rows_deleted": sum(deleted.values()),
            "tables": [name for name, count in deleted.items() if count],
            "requested_by": requested_by,
        }
        self.append("erasures", [record])
        self.flush()
        return deleted

    def _seed_recent_keys(self, capacity: int) -> None:
        """Load the newest primary keys from the lake so re-sends after a restart count once."""
        for name, key in PRIMARY_KEYS.items():
            table = self._tables[name]
            if not table.file_uris():
                continue
            dataset = table.to_pyarrow_dataset()
            time_col = "received_at" if "received_at" in TABLES[name].names else "ts"
            horizon = datetime.now(UTC) - timedelta(hours=6)
            keys = dataset.to_table(
                columns=[key], filter=pc.field(time_col) >= pa.scalar(horizon, TABLES[name].field(time_col).type)
            )
            self._recent[name].add_new(keys.column(key).to_pylist()[-capacity:])

    def close(self) -> None:
        """Flush what is buffered and stop the background thread."""
        with self._lock:
            self._closed = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()
        else:
            self.flush()

    def __enter__(self) -> LakeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
