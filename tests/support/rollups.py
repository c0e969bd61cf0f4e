"""Checks shared by the rollup tests: what the cockpit reads (rollups plus the live tail) equals
a full scan of the raw rows."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from metrics.rollup import definitions as defs
from metrics.rollup.read import Aggregates, aggregates
from momento.lake.warehouse import Warehouse


def assert_same(served: Aggregates, scanned: Aggregates) -> None:
    """Every aggregate row equal: counts exactly, sums to 1e-9 relative. Rows add up, so a row one
    side lacks counts as zeros (a retracted bucket may keep a row of rounding residue)."""
    for aggregate in defs.AGGREGATES:
        keys = [c.name for c in aggregate.keys]
        both = served[aggregate.name].join(
            scanned[aggregate.name], on=keys, how="full", suffix="_raw", coalesce=True, nulls_equal=True
        )
        assert both.height >= scanned[aggregate.name].height
        for column in aggregate.values:
            x, y = both[column.name].fill_null(0), both[f"{column.name}_raw"].fill_null(0)
            if column.type == pa.int64():
                assert (x == y).all(), f"{aggregate.name}.{column.name}: counts differ"
                continue
            worst = ((x - y).abs() / y.abs().clip(lower_bound=1.0)).max()
            assert (worst is None and not both.height) or (worst is not None and worst <= 1e-9), (
                f"{aggregate.name}.{column.name} differs by {worst}"
            )


def check(
    lake: Path, pre_days: int, expect_mode: str | None = "rollups", max_tail_rows: int | None = None
) -> Aggregates:
    """Read the lake as the cockpit does and as a full scan; assert they agree (and, unless
    `expect_mode` is None, that the cockpit read it that way); return the former."""
    wh = Warehouse(lake, min_refresh_seconds=0.0)
    try:
        limit = {} if max_tail_rows is None else {"max_tail_rows": max_tail_rows}
        served = aggregates(wh, pre_days, **limit)
        assert expect_mode is None or served.source.mode == expect_mode, served.source.reason
        scanned = aggregates(wh, pre_days, max_tail_rows=-1)
        assert scanned.source.mode == "raw"
        assert served.source.as_of == scanned.source.as_of
        assert_same(served, scanned)
        return served
    finally:
        wh.close()
