"""Tables as the cockpit shows them: every number and date written the pt-BR way
(`momento.formatting`, like the tiles and sentences) while the cells keep their values, so a
column still sorts as numbers, and the CSV download holds exactly the numbers shown.

Streamlit's column formats are printf patterns, which cannot group thousands the pt-BR way, so the
text of each cell comes from a pandas Styler's display values (Streamlit shows them for number,
text and date cells whose column sets no format of its own). A column is described by one of the
constructors below; a plain string is just its label (numbers and dates still get pt-BR text),
None hides it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import polars as pl
import streamlit as st

from momento import formatting as fmt

Width = Literal["small", "medium", "large"]

STYLED_CELLS = 20_000
"""A Styler costs about 25 µs a cell to build, so a bigger table (the audit trail's larger searches)
gets the same pt-BR text as string columns instead: read the same, but sort as text."""


@dataclass(frozen=True)
class Column:
    """A column's label, how its values read, and its help text and width."""

    label: str
    text: Callable[[Any], str] | None = None
    help: str | None = None
    width: Width | None = None


def count(label: str, help: str | None = None) -> Column:
    """Whole numbers: 1.234."""
    return Column(label, fmt.number, help)


def decimal(label: str, digits: int, help: str | None = None) -> Column:
    """Numbers with `digits` decimals: 0,1234."""
    return Column(label, partial(fmt.number, digits=digits), help)


def money(label: str, help: str | None = None) -> Column:
    """R$ 1.234,56."""
    return Column(label, fmt.money, help)


def percent(label: str, digits: int = 1, help: str | None = None, *, signed: bool = False) -> Column:
    """A share as 12,3% (`signed`: a change, +12,3%)."""
    return Column(label, partial(fmt.percent, digits=digits, signed=signed), help)


def timestamp(label: str) -> Column:
    """01/06/2026 14:03:05."""
    return Column(label, fmt.timestamp)


def text(label: str, width: Width = "large") -> Column:
    """Long text (a reason, an explanation)."""
    return Column(label, width=width)


Spec = str | Column | Mapping[str, Any] | None
"""A column: its label, a `Column`, a Streamlit column config (checkbox, list), or None (hidden)."""


def _default(dtype: pl.DataType) -> Callable[[Any], str] | None:
    """How a column without a `Column` reads: pt-BR numbers and dates, anything else as is."""
    if dtype.is_integer():
        return fmt.number
    if dtype.is_float():
        return partial(fmt.number, digits=2)
    if isinstance(dtype, pl.Datetime):
        return fmt.timestamp
    if isinstance(dtype, pl.Date):
        return fmt.date
    return None


def table(frame: pl.DataFrame, name: str, columns: Mapping[str, Spec] | None = None, **kwargs: Any) -> None:
    """`frame` as a table with a CSV download of exactly what it holds (`kwargs` go to st.dataframe)."""
    specs = dict(columns or {})
    config: dict[str, Any] = {}
    texts: dict[str, Callable[[Any], str]] = {}
    for column, dtype in frame.schema.items():
        spec = specs.get(column, column)
        if isinstance(spec, Column):
            config[column] = st.column_config.Column(spec.label, help=spec.help, width=spec.width)
        else:
            config[column] = spec
        reads = spec.text if isinstance(spec, Column) and spec.text is not None else _default(dtype)
        if reads is not None:
            texts[column] = reads
    if frame.height * frame.width <= STYLED_CELLS:
        shown: Any = frame.to_pandas().style.format(texts, na_rep=fmt.MISSING)
    else:
        shown = frame.with_columns(pl.col(c).map_elements(text, return_dtype=pl.String) for c, text in texts.items())
    st.dataframe(shown, hide_index=True, column_config=config, placeholder=fmt.MISSING, **kwargs)
    st.download_button(
        "Download CSV",
        csv(frame),
        file_name=f"{name}.csv",
        mime="text/csv",
        key=f"csv_{name}",
        icon=":material/download:",
    )


def csv(frame: pl.DataFrame) -> str:
    """The table as CSV: the values themselves (numbers as numbers), lists joined by spaces."""
    return frame.with_columns(
        pl.col(c).cast(pl.List(pl.String)).list.join(" ") for c, t in frame.schema.items() if isinstance(t, pl.List)
    ).write_csv()
