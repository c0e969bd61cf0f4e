"""metrics/sql/query.py: the SQL people read is the SQL that runs. On the small lake, every
panel query gives the same rows run as written, formatted (`pretty`: what the golden files and
the cockpit show) and with its values written in (`display`: the cockpit's "How this is
computed"), with no filter and with filters; displaying folds away the filters that bind nothing."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from metrics.filters import Filters
from metrics.queries import QUERIES
from metrics.rollup.job import RollupJob
from metrics.rollup.read import aggregates, run_on
from metrics.sql.query import Query, Statement, display, parameters, pretty
from momento.lake.warehouse import Warehouse

FILTERS = {
    "none": Filters(),
    "some": Filters(
        start=date(2026, 5, 25), end=date(2026, 6, 12), channel="web", segment="returning", journey="browse"
    ),
}


@pytest.fixture(scope="module")
def warehouse(small_lake: Path, tmp_path_factory: pytest.TempPathFactory):
    """The small lake with its rollups (the rollups' own reads are panel queries too)."""
    lake = tmp_path_factory.mktemp("with-rollups") / "lake"
    shutil.copytree(small_lake, lake)
    RollupJob(lake, 14).run_once()
    wh = Warehouse(lake)
    yield wh
    wh.close()


def _run(warehouse: Warehouse, query: Query, statement: Statement) -> pl.DataFrame:
    if query.over == "aggregates":
        return run_on(aggregates(warehouse, 14), statement)
    return warehouse.query(*statement)


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    keys = [c for c, t in frame.schema.items() if not isinstance(t, pl.List | pl.Array | pl.Struct)]
    return frame.sort(keys, nulls_last=True) if keys else frame


@pytest.mark.parametrize("filters", list(FILTERS))
@pytest.mark.parametrize("name", sorted(QUERIES))
def test_formatted_and_displayed_sql_give_the_same_rows(warehouse, name, filters):
    query = QUERIES[name]
    statement = query.statement(FILTERS[filters], **query.example)
    ran = _sorted(_run(warehouse, query, statement))
    for shown in (Statement(pretty(statement.sql), statement.params), Statement(display(statement), {})):
        assert_frame_equal(_sorted(_run(warehouse, query, shown)), ran, check_exact=False, rel_tol=1e-9)


def test_display_writes_the_values_in_and_folds_the_unset_filters():
    sql = (
        "SELECT count(*) FROM decisions d WHERE ($f_channel IS NULL OR d.channel = $f_channel) "
        "AND ($f_segment IS NULL OR d.segment = $f_segment) AND d.latency_us <= $budget_us AND d.ts >= $since"
    )
    shown = display(
        Statement(
            sql,
            {
                "f_channel": "app",
                "f_segment": None,
                "budget_us": 10_000.0,
                "since": Filters(start=date(2026, 6, 1)).start_ts,
                "unused": 1,
            },
        )
    )
    assert "$" not in shown
    assert "d.channel = 'app'" in shown
    assert "segment" not in shown
    assert "d.latency_us <= 10000.0" in shown
    assert "d.ts >= CAST('2026-06-01 00:00:00+00:00' AS TIMESTAMPTZ)" in shown
    assert "IS NULL" not in shown
    assert display(Statement("SELECT 1 FROM t WHERE ($x IS NULL OR t.a = $x)", {"x": None})).split() == [
        "SELECT",
        "1",
        "FROM",
        "t",
    ]


def test_parameters_and_pretty_keep_the_placeholders():
    sql = "select a from t where b = $first and c in (select d from u where e = $second or f = $first)"
    assert parameters(sql) == ("first", "second")
    assert pretty(sql).count("$first") == 2
    assert pretty(sql).startswith("SELECT\n  a\nFROM t\nWHERE")
