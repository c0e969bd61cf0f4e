"""SQL text composed from the catalogue's own constants (never from user text, which is always
a bound parameter): quoting a list of literals."""

from __future__ import annotations

from collections.abc import Sequence


def sql_list(values: Sequence[str]) -> str:
    """A SQL list of string literals, for the catalogue's own constants (never user text)."""
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)
