"""Helpers for SQL composed from code (never from user text): quoting the catalogue's own
constants, UTC calendar buckets, and binding exactly the parameters a query uses.

`metrics.sql.per_user` writes the per-user and sufficient-statistics SQL from the KPI catalogue.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any


def sql_list(values: Sequence[str]) -> str:
    """A SQL list of string literals, for the catalogue's own constants (never user text)."""
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)


def utc_day(expr: str) -> str:
    """SQL for the UTC calendar day of a TIMESTAMPTZ (independent of the session's time zone)."""
    return f"CAST(timezone('UTC', {expr}) AS DATE)"


def utc_hour(expr: str) -> str:
    """SQL for the UTC hour (naive timestamp) of a TIMESTAMPTZ."""
    return f"date_trunc('hour', timezone('UTC', {expr}))"


def bind(sql: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of `params` that `sql` uses (DuckDB refuses unused named parameters)."""
    return {k: v for k, v in params.items() if re.search(rf"\${re.escape(k)}\b", sql)}
