"""`momento analyze-lake [--engine duckdb|spark] [--master URL] [--experiment ID]`: every
experiment's per-arm sufficient statistics and analysis, reduced from the lake's raw rows on the
chosen engine (`metrics.engines.reduce`), printed as JSON."""

from __future__ import annotations

import json
from typing import TextIO

from cli.engines import EngineChoice, engine_of
from metrics.engines.reduce import metric_names, reduce_lake, report
from metrics.engines.spark import EngineUnavailable
from momento.lake.warehouse import Warehouse, WarehouseError
from momento.scenario import ScenarioError, load_scenario
from momento.settings import Settings


def run_analyze_lake(settings: Settings, choice: EngineChoice, experiment: str | None, out: TextIO, err: TextIO) -> int:
    """Print the reduction's JSON; 2 with a message for an unknown experiment, a missing engine or
    an unreadable lake."""
    try:
        scenario = load_scenario(settings.scenario)
    except ScenarioError as exc:
        print(f"momento analyze-lake: {exc}", file=err)
        return 2
    if experiment is not None and experiment not in scenario.experiment_by_id:
        print(
            f"momento analyze-lake: unknown experiment {experiment!r} (known: {', '.join(scenario.experiment_by_id)})",
            file=err,
        )
        return 2
    if not settings.lake.is_dir():
        print(f"momento analyze-lake: no lake at {settings.lake} (run `momento backfill` first)", file=err)
        return 2
    wh = Warehouse(settings.lake, min_refresh_seconds=0.0)
    try:
        wh.require(("events", "exposures", "decisions"))
        pre_days = scenario.business.pre_period_days
        reduction = reduce_lake(engine_of(choice), wh, pre_days, metric_names(scenario))
    except (EngineUnavailable, WarehouseError) as exc:
        print(f"momento analyze-lake: {exc}", file=err)
        return 2
    finally:
        wh.close()
    json.dump(report(reduction, scenario, experiment), out, indent=2, allow_nan=False)
    print(file=out)
    return 0
