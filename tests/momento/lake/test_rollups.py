"""momento/lake/rollups.py: the rollup store writes Parquet in row groups of `ROW_GROUP_ROWS`,
appends and replacements alike (the small row groups are what lets a lookup skip most of a table)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from momento.lake.rollups import ROW_GROUP_ROWS, RollupStore


def _row_groups(store: RollupStore, name: str) -> list[list[int]]:
    table = store.table(name)
    assert table is not None
    sizes = []
    for file in table.file_uris():
        metadata = pq.ParquetFile(file).metadata
        sizes.append([metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)])
    return sizes


def test_appends_and_replacements_write_row_groups_of_row_group_rows(tmp_path):
    store = RollupStore(tmp_path / "lake")
    rows = pa.table({"user_id": [f"u{i:06d}" for i in range(3 * ROW_GROUP_ROWS + 5)]})
    store.append("rollup_example", rows, rows.schema)
    assert _row_groups(store, "rollup_example") == [[ROW_GROUP_ROWS] * 3 + [5]]
    store.replace("rollup_example", rows.slice(0, ROW_GROUP_ROWS + 1), rows.schema)
    assert _row_groups(store, "rollup_example") == [[ROW_GROUP_ROWS, 1]]


def test_the_delta_log_keeps_no_column_statistics(tmp_path):
    """Erasure rewrites files but cannot rewrite the log: no user id may be written there."""
    store = RollupStore(tmp_path / "lake")
    rows = pa.table({"user_id": ["someone", "someone else"], "hour": [1, 2]})
    store.append("rollup_example", rows, rows.schema)
    log = "".join(
        path.read_text() for path in (tmp_path / "lake" / "rollups" / "rollup_example" / "_delta_log").glob("*.json")
    )
    assert "someone" not in log
    assert '\\"numRecords\\":2' in log
