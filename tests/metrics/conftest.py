"""Options of the metrics tests: `--update-golden` rewrites the golden SQL files
(tests/metrics/golden_sql/) from the code instead of checking them."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/metrics/golden_sql/*.sql from the queries' current SQL",
    )
