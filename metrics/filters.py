"""The cockpit's global filters, turned into bound SQL parameters.

Every KPI query takes a `Filters` and adds `filters.where(alias)` to its WHERE clause with
`filters.params()` as bound parameters: the text of the SQL never contains a user's value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any


@dataclass(frozen=True)
class Filters:
    """Date range (inclusive, UTC days), channel, segment and journey; None means all."""

    start: date | None = None
    end: date | None = None
    channel: str | None = None
    segment: str | None = None
    journey: str | None = None

    @property
    def start_ts(self) -> datetime | None:
        return datetime.combine(self.start, time.min, UTC) if self.start else None

    @property
    def end_ts(self) -> datetime | None:
        """Exclusive upper bound: midnight after `end`."""
        return datetime.combine(self.end + timedelta(days=1), time.min, UTC) if self.end else None

    def params(self) -> dict[str, Any]:
        """Bound parameters for `where` (always all five, so one SQL text serves every filter)."""
        return {
            "f_start": self.start_ts,
            "f_end": self.end_ts,
            "f_channel": self.channel,
            "f_segment": self.segment,
            "f_journey": self.journey,
        }

    @staticmethod
    def where(
        alias: str, *, ts: bool = True, channel: bool = True, segment: bool = False, journey: bool = False
    ) -> str:
        """A SQL predicate over the columns of `alias` that exist, using the bound parameters.

        A NULL parameter disables its clause, so the same prepared text serves all filters."""
        clauses = []
        if ts:
            clauses.append(f"($f_start IS NULL OR {alias}.ts >= $f_start) AND ($f_end IS NULL OR {alias}.ts < $f_end)")
        if channel:
            clauses.append(f"($f_channel IS NULL OR {alias}.channel = $f_channel)")
        if segment:
            clauses.append(f"($f_segment IS NULL OR {alias}.segment = $f_segment)")
        if journey:
            clauses.append(f"($f_journey IS NULL OR {alias}.journey = $f_journey)")
        return " AND ".join(clauses) or "TRUE"
