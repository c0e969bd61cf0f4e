"""Checks shared by the rollup tests: what the cockpit reads (rollups plus the live tail) equals
a full scan of the raw rows."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pytest

from cli.analyze_lake import run_analyze_lake
from cli.engines import EngineChoice
from metrics.rollup import definitions as defs
from metrics.rollup.read import Aggregates, aggregates
from momento.lake.warehouse import Warehouse
from momento.settings import load_settings


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


def analyze_lake(
    lake: str, engine: str, monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str] | None = None
) -> list[dict]:
    """`momento analyze-lake` on `lake` (a path or URI; `env`: the store's variables) with
    `engine`, as JSON: one entry per experiment."""
    for key, value in {**(env or {}), "MOMENTO_LAKE": lake}.items():
        monkeypatch.setenv(key, value)
    out, err = io.StringIO(), io.StringIO()
    assert run_analyze_lake(load_settings(), EngineChoice(engine), None, out, err) == 0, err.getvalue()
    return json.loads(out.getvalue())


def assert_same_arm_statistics(expected: list[dict], got: list[dict], relative: float) -> None:
    """Two `analyze_lake` outputs hold the same experiments as of the same time, with the same
    arms and sufficient statistics: counts exactly, sums to `relative`."""
    for d, s in zip(expected, got, strict=True):
        assert s["as_of"] == d["as_of"]
        assert s["arms"].keys() == d["arms"].keys()
        for arm, stats in d["arms"].items():
            assert s["arms"][arm].keys() == stats.keys()
            for column, value in stats.items():
                if column.endswith("__n") or column == "exposed__users":
                    assert s["arms"][arm][column] == value, (d["experiment"], arm, column)
                else:
                    assert s["arms"][arm][column] == pytest.approx(value, rel=relative, abs=relative), (
                        d["experiment"],
                        arm,
                        column,
                    )
