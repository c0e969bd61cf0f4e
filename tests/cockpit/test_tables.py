"""pages/tables.py in Streamlit's AppTest: cells read the pt-BR way (momento.formatting) while the
table keeps the numbers, so columns sort as numbers and the CSV holds exactly the values."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pandas as pd
import polars as pl
import pyarrow as pa
from streamlit.testing.v1 import AppTest

from pages import tables


def _table() -> None:
    from datetime import UTC, datetime

    import polars as pl

    from pages import tables

    frame = pl.DataFrame(
        {
            "users": [1234, None],
            "revenue": [1234.5, -2.0],
            "share": [0.1234, None],
            "lift": [0.034, -0.05],
            "p": [0.01234, 0.5],
            "ts": [datetime(2026, 6, 12, 23, 5, 9, tzinfo=UTC)] * 2,
            "plain": [1234567.891, 2.0],
            "name": ["a", "b"],
        }
    )
    tables.table(
        frame,
        "t",
        {
            "users": tables.count("Users"),
            "revenue": tables.money("Revenue"),
            "share": tables.percent("Share"),
            "lift": tables.percent("Lift", signed=True),
            "p": tables.decimal("p", 3),
            "ts": tables.timestamp("When"),
        },
    )


def _display(at: AppTest) -> pd.DataFrame:
    """The text the browser shows in each cell (the Styler's display values)."""
    return pa.ipc.open_stream(at.dataframe[0].proto.arrow_data.styler.display_values).read_all().to_pandas()


def test_cells_read_pt_br_and_keep_their_numbers():
    at = AppTest.from_function(_table).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = _display(at)
    assert shown["users"].tolist() == ["1.234", "—"]
    assert shown["revenue"].tolist() == ["R$ 1.234,50", "-R$ 2,00"]
    assert shown["share"].tolist() == ["12,3%", "—"]
    assert shown["lift"].tolist() == ["+3,4%", "-5,0%"]
    assert shown["p"].tolist() == ["0,012", "0,500"]
    assert shown["ts"].tolist() == ["12/06/2026 23:05:09"] * 2
    assert shown["plain"].tolist() == ["1.234.567,89", "2,00"]  # a number with no column spec: pt-BR too
    assert shown["name"].tolist() == ["a", "b"]
    assert at.dataframe[0].value["revenue"].tolist() == [1234.5, -2.0]  # values stay numbers: they sort as such
    assert [b.label for b in at.get("download_button")] == ["Download CSV"]


def _big_table() -> None:
    import polars as pl

    from pages import tables

    tables.table(
        pl.DataFrame({"users": list(range(1_000, 1_001 + tables.STYLED_CELLS))}),
        "big",
        {"users": tables.count("Users")},
    )


def test_a_table_too_big_to_style_reads_the_same():
    at = AppTest.from_function(_big_table, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.dataframe[0].value["users"].tolist()[:2] == ["1.000", "1.001"]


def test_the_csv_holds_the_values():
    frame = pl.DataFrame(
        {
            "revenue": [1234.5, -2.0],
            "ts": [datetime(2026, 6, 12, tzinfo=UTC)] * 2,
            "reasons": [["no_consent", "holdout"], []],
        }
    )
    back = pl.read_csv(io.StringIO(tables.csv(frame)))
    assert back["revenue"].to_list() == [1234.5, -2.0]
    assert back["reasons"].to_list() == ["no_consent holdout", ""]
    assert back["ts"].str.starts_with("2026-06-12T00:00:00").all()
