"""Fixtures for the command line's tests: the decisioning suite's `launch` (a real service of
the test's own, stopped when the test ends)."""

from __future__ import annotations

import sys

from momento.settings import PROJECT_ROOT

if str(PROJECT_ROOT) not in sys.path:  # `tests.*` modules are imported from the project root
    sys.path.insert(0, str(PROJECT_ROOT))

from tests.decisioning.conftest import launch  # noqa: F401  (a fixture, reused)
