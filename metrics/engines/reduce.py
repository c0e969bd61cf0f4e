"""The experiment reduction on any engine: every raw row of the lake's snapshot to each
experiment's per-arm sufficient statistics (`momento analyze-lake`).

The reduction is the rollups' own procedure from nothing (`metrics.rollup.fold`, no prior state,
increments only) followed by the Experiments page's query (`metrics.experiments.STATS`) over the
`experiment_stats` it produced, both run on the engine's session: DuckDB's, or Spark's with the
same texts transpiled. It reads the lake and writes nothing, so it does not depend on the rollups
being up to date; the statistics engine (`metrics.experiments.analyse`) then runs here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from metrics.experiments import STATS, analyse, arm_rows, roles, scenario_metrics
from metrics.filters import Filters
from metrics.rollup import definitions as defs
from metrics.rollup.fold import Batch, fold
from metrics.rollup.session import Engine
from momento.lake.warehouse import Warehouse
from momento.scenario import Scenario

_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Reduction:
    """The STATS rows of every experiment, and the analysis time (just after the newest event)."""

    stats: pl.DataFrame
    as_of: datetime


def reduce_lake(engine: Engine, wh: Warehouse, pre_days: int, metric_names: tuple[str, ...]) -> Reduction:
    """STATS (`metric_names`, every experiment, no filter) over every raw row, on `engine`."""
    batch = Batch("SELECT * FROM events", "SELECT * FROM exposures", "SELECT * FROM decisions", {}, _FAR_FUTURE)
    with engine(wh) as session:
        folded = fold(session, batch, pre_days, prior=False, existing=frozenset(), keep_state=False)
        newest = session.arrow("SELECT max(ts) AS newest FROM in_events").column(0)[0].as_py()
        as_of = newest + timedelta(microseconds=1) if newest is not None else datetime.now(UTC)
        session.register(defs.EXPERIMENT_STATS.name, folded.increments[defs.EXPERIMENT_STATS.name])
        statement = STATS.statement(Filters(), pre_days=pre_days, metric_names=metric_names, as_of=as_of)
        frame = pl.from_arrow(session.arrow(statement.sql, statement.params))
    assert isinstance(frame, pl.DataFrame)
    # DuckDB sums BIGINT counts into a 128-bit integer (Arrow decimal), Spark into BIGINT: as BIGINT.
    return Reduction(frame.with_columns(pl.col(pl.Decimal).cast(pl.Int64)), as_of)


def report(reduction: Reduction, scenario: Scenario, experiment_id: str | None = None) -> list[dict[str, Any]]:
    """Per experiment (or only `experiment_id`): its per-arm sufficient statistics and the analysis
    (per metric and variant: lift, interval, p-values, verdict; the recommendation), JSON-ready."""
    chosen = [x for x in scenario.experiments if experiment_id in (None, x.id)]
    out = []
    for experiment in chosen:
        rows = reduction.stats.filter(pl.col("experiment_id") == experiment.id)
        per_arm = arm_rows(rows, experiment)[()]
        used = (*roles(experiment), "exposed")
        columns = [c for c in reduction.stats.columns if "__" in c and c.split("__")[0] in used]
        analysis = analyse(rows, experiment)
        out.append(
            {
                "experiment": experiment.id,
                "as_of": reduction.as_of.isoformat(),
                "arms": {arm.name: {c: per_arm[arm.name].get(c, 0) for c in columns} for arm in experiment.arms},
                "results": [{k: _finite(v) for k, v in row.items()} for row in analysis.results.to_dicts()],
                "recommendation": analysis.recommendation.to_dict(),
            }
        )
    return out


def _finite(value: Any) -> Any:
    """None for a non-finite float (JSON has no NaN), the value otherwise."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def metric_names(scenario: Scenario) -> tuple[str, ...]:
    """The metrics the scenario's experiments use (what the reduction computes)."""
    return scenario_metrics(scenario)
