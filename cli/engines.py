"""`--engine duckdb|spark` and `--master URL`: where the rollup job and the reduction run."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # the engines import the lake's readers: only the commands that fold load them
    from metrics.rollup.session import Engine


@dataclass(frozen=True)
class EngineChoice:
    """The engine named on the command line."""

    name: Literal["duckdb", "spark"] = "duckdb"
    master: str = "local[2]"


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--engine` and `--master` to a command."""
    parser.add_argument(
        "--engine",
        choices=("duckdb", "spark"),
        default="duckdb",
        help="where the SQL runs: the embedded DuckDB, or Apache Spark (pip install momento[spark])",
    )
    parser.add_argument(
        "--master",
        default="local[2]",
        help="Spark master with --engine spark: local[N], spark://host:7077, yarn, k8s://...",
    )


def choice_of(args: argparse.Namespace) -> EngineChoice:
    """The engine the parsed arguments name."""
    return EngineChoice(args.engine, args.master)


def engine_of(choice: EngineChoice) -> Engine:
    """The engine itself (Spark starts on first use)."""
    from metrics.engines.spark import SparkEngine
    from metrics.rollup.session import duckdb_engine

    return SparkEngine(choice.master) if choice.name == "spark" else duckdb_engine
