"""The one Spark session of the test session (local[2]): the JVM starts once, on first use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from metrics.engines.spark import SparkEngine


@pytest.fixture(scope="session")
def spark_engine() -> Iterator[SparkEngine]:
    """The Spark engine every Spark test folds on (its session is shared: getOrCreate)."""
    engine = SparkEngine("local[2]")
    engine.spark()
    yield engine
    engine.spark().stop()
