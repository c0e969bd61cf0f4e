"""Numbers, money and dates as people read them, in Brazilian Portuguese (pt-BR) conventions.

The business is Brazilian and its money is the real, so every figure the cockpit or a sentence
shows is written one way: a comma before the decimals, a dot between thousands, "R$ " before
money, day/month/year dates. Tiles, tables, charts (through `DECIMAL`, `THOUSANDS`, `CURRENCY`)
and the metrics' sentences all format here. A missing value (None, NaN) reads "—". Pure text,
no locale of the machine involved.
"""

from __future__ import annotations

import datetime as dt
import math

DECIMAL, THOUSANDS, CURRENCY = ",", ".", "R$"
MISSING = "—"
_MINUTE, _HOUR, _DAY = 60, 3600, 86400
_PT_BR = str.maketrans(",.", THOUSANDS + DECIMAL)
"""Python's grouping (1,234.5) to pt-BR's (1.234,5)."""


def _digits(value: float, digits: int, signed: bool) -> str:
    """`value` with `digits` decimals and grouped thousands; a sign only when what is written is
    not zero (never "-0" or "+0,00")."""
    text = f"{abs(value):,.{digits}f}".translate(_PT_BR)
    if not any(c in "123456789" for c in text):
        return text
    if value < 0:
        return "-" + text
    return "+" + text if signed else text


def number(value: float | None, digits: int = 0, *, signed: bool = False) -> str:
    """1.234 or 1.234,5 (`signed`: +1.234 for a change)."""
    if value is None or math.isnan(value):
        return MISSING
    return _digits(value, digits, signed)


def significant(value: float | None, digits: int = 3) -> str:
    """`digits` significant digits, for p-values and test statistics: 0,0123 or 2,3e-05."""
    if value is None or math.isnan(value):
        return MISSING
    return f"{value:.{digits}g}".replace(".", DECIMAL)


def money(value: float | None, digits: int = 2) -> str:
    """R$ 1.234,56; a loss -R$ 1.234,56; `digits=0` rounds to whole reais (R$ 182.400)."""
    if value is None or math.isnan(value):
        return MISSING
    text = _digits(value, digits, signed=False)
    return f"-{CURRENCY} {text[1:]}" if text.startswith("-") else f"{CURRENCY} {text}"


def percent(value: float | None, digits: int = 1, *, signed: bool = False) -> str:
    """A share as a percentage: 0.1234 -> 12,3% (`signed`: +12,3% for a lift or a change)."""
    if value is None or math.isnan(value):
        return MISSING
    return _digits(value * 100, digits, signed) + "%"


def date(value: dt.date | None) -> str:
    """01/06/2026."""
    return MISSING if value is None else f"{value:%d/%m/%Y}"


def timestamp(value: dt.datetime | None) -> str:
    """01/06/2026 14:03:05, in the time zone `value` carries (the cockpit's are UTC)."""
    return MISSING if value is None else f"{value:%d/%m/%Y %H:%M:%S}"


def duration(seconds: float | None) -> str:
    """A duration in the largest sensible unit: 42 s, 7 min, 3,5 h, 2,0 days."""
    if seconds is None or math.isnan(seconds):
        return MISSING
    if seconds < 1.5 * _MINUTE:
        return f"{number(seconds)} s"
    if seconds < 1.5 * _HOUR:
        return f"{number(seconds / _MINUTE)} min"
    if seconds < 2 * _DAY:
        return f"{number(seconds / _HOUR, 1)} h"
    return f"{number(seconds / _DAY, 1)} days"
