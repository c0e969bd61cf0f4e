"""Fixtures for the reliability and security proofs: the REAL service as a subprocess.

The decisioning suite's fixtures are reused (`scenario`, `launch`: a service of the test's own,
stopped when the test ends; `client`: an httpx client on `service`). `service` here is one
loopback service shared by the whole reliability suite (starting one costs several seconds on
a busy 2-core machine): tests on it use their own ids and compare counters before and after,
so they do not depend on each other. Tests that need another configuration (a slow writer, a
crash, a non-loopback bind) start their own with `launch`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from momento.settings import PROJECT_ROOT

if str(PROJECT_ROOT) not in sys.path:  # `tests.*` modules are imported from the project root
    sys.path.insert(0, str(PROJECT_ROOT))

from tests.decisioning.conftest import client, launch, scenario  # noqa: F401  (fixtures, reused)
from tests.support.service import RunningService, start_service


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """The real service on a free loopback port with its own temporary lake."""
    running = start_service(tmp_path_factory.mktemp("reliability-service"))
    try:
        yield running
    finally:
        running.stop()
