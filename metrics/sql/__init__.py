"""Helpers for SQL composed from code (never from user text): UTC calendar
buckets and the user key (quoting the catalogue's constants is `momento.sql.sql_list`). (`Warehouse.query` binds exactly the parameters a query uses.)

The rollups' SQL, written from the KPI catalogue, is in `metrics.rollup.definitions`.
"""

from __future__ import annotations

_DAY_US, _HOUR_US = 86_400_000_000, 3_600_000_000


def utc_day(expr: str) -> str:
    """SQL for the UTC calendar day of a TIMESTAMPTZ (independent of the session's time zone):
    integer arithmetic on the epoch, several times cheaper per row than `timezone()`."""
    return f"(DATE '1970-01-01' + CAST(epoch_us({expr}) // {_DAY_US} AS INTEGER))"


def utc_hour(expr: str) -> str:
    """SQL for the UTC hour (naive timestamp) of a TIMESTAMPTZ, by epoch arithmetic."""
    return f"make_timestamp(epoch_us({expr}) // {_HOUR_US} * {_HOUR_US})"
