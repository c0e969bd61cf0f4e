"""The DuckDB session of the rollups: relations made from SQL and from Arrow rows, read back as
Arrow, and no relation name that is not a plain identifier reaches SQL text."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from metrics.rollup.session import DuckSession


def test_relations_from_sql_and_rows_read_back_as_arrow():
    session = DuckSession(duckdb.connect())
    session.register("rows", pa.table({"x": [1, 2, 3]}))
    session.create("doubled", "SELECT x * $k AS y FROM rows", {"k": 2, "unused": 1})
    session.create("later", "SELECT sum(y) AS total FROM doubled", view=True)
    assert session.arrow("SELECT total FROM later").to_pylist() == [{"total": 12}]


@pytest.mark.parametrize("name", ["a; DROP TABLE x", "Rows", "1st", "x y", ""])
def test_a_name_that_is_not_a_plain_identifier_is_refused(name):
    session = DuckSession(duckdb.connect())
    with pytest.raises(ValueError, match="not a relation name"):
        session.create(name, "SELECT 1")
    with pytest.raises(ValueError, match="not a relation name"):
        session.register(name, pa.table({"x": [1]}))
