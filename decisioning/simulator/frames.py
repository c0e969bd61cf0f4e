"""numpy arrays to polars columns, for the simulation and the rows it becomes."""

from __future__ import annotations

import numpy as np
import polars as pl


def series(name: str, values: np.ndarray) -> pl.Series:
    """A polars column from a numpy array (object arrays of str/None become String columns)."""
    if values.dtype == object:
        return pl.Series(name, values.tolist(), dtype=pl.String)
    return pl.Series(name, values)
