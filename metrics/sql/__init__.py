"""Helpers for SQL composed from code (never from user text): quoting the catalogue's own
constants and UTC calendar buckets. (`Warehouse.query` binds exactly the parameters a query uses.)

`metrics.sql.per_user` writes the per-user and sufficient-statistics SQL from the KPI catalogue.
"""

from __future__ import annotations

from collections.abc import Sequence


def sql_list(values: Sequence[str]) -> str:
    """A SQL list of string literals, for the catalogue's own constants (never user text)."""
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)


def utc_day(expr: str) -> str:
    """SQL for the UTC calendar day of a TIMESTAMPTZ (independent of the session's time zone)."""
    return f"CAST(timezone('UTC', {expr}) AS DATE)"


def utc_hour(expr: str) -> str:
    """SQL for the UTC hour (naive timestamp) of a TIMESTAMPTZ."""
    return f"date_trunc('hour', timezone('UTC', {expr}))"
