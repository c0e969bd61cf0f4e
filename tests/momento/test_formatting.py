"""momento/formatting.py: pt-BR numbers, money, percentages and dates, the missing value, and no
"-0" or "+0" where rounding leaves nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from momento import formatting as fmt


@pytest.mark.parametrize(
    ("value", "digits", "expected"),
    [
        (1234.567, 2, "R$ 1.234,57"),
        (0.5, 2, "R$ 0,50"),
        (-1234.5, 2, "-R$ 1.234,50"),
        (1_234_567.0, 2, "R$ 1.234.567,00"),
        (182_400.4, 0, "R$ 182.400"),
        (-1_234.6, 0, "-R$ 1.235"),
        (-0.2, 0, "R$ 0"),
        (-0.004, 2, "R$ 0,00"),
        (None, 2, "—"),
        (float("nan"), 2, "—"),
    ],
)
def test_money(value, digits, expected):
    assert fmt.money(value, digits) == expected


@pytest.mark.parametrize(
    ("value", "digits", "signed", "expected"),
    [
        (1234, 0, False, "1.234"),
        (1234.56, 1, False, "1.234,6"),
        (-1234.56, 2, False, "-1.234,56"),
        (0, 0, False, "0"),
        (12, 0, True, "+12"),
        (-0.3, 0, True, "0"),
        (1_000_000, 0, False, "1.000.000"),
        (None, 0, False, "—"),
    ],
)
def test_number(value, digits, signed, expected):
    assert fmt.number(value, digits, signed=signed) == expected


@pytest.mark.parametrize(
    ("value", "digits", "signed", "expected"),
    [
        (0.1234, 1, False, "12,3%"),
        (0.1234, 2, False, "12,34%"),
        (1.0, 0, False, "100%"),
        (12.5, 1, False, "1.250,0%"),
        (0.034, 1, True, "+3,4%"),
        (-0.0451, 1, True, "-4,5%"),
        (0.00001, 1, True, "0,0%"),
        (None, 1, True, "—"),
    ],
)
def test_percent(value, digits, signed, expected):
    assert fmt.percent(value, digits, signed=signed) == expected


def test_significant_digits():
    assert [fmt.significant(v) for v in (0.012345, 2.3456e-05, 12.0, None)] == ["0,0123", "2,35e-05", "12", "—"]


def test_dates_and_durations():
    assert fmt.date(date(2026, 6, 1)) == "01/06/2026"
    assert fmt.timestamp(datetime(2026, 6, 12, 23, 5, 9, tzinfo=UTC)) == "12/06/2026 23:05:09"
    assert fmt.date(None) == fmt.timestamp(None) == "—"
    assert [fmt.duration(s) for s in (42, 420, 12_600, 180_000)] == ["42 s", "7 min", "3,5 h", "2,1 days"]
