"""Sufficient statistics of a metric in an aggregated row, as the statistics engine takes them.

Aggregates name each metric's sums `<metric>__<field>` (`stat_names`): the fields of
`metrics.stats.ArmStats` that the metric's type needs. `arm_stats` reads one row back into
`ArmStats`; `value_of` gives the metric's value from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from metrics.stats import ArmStats
from momento.kpis import Metric


def stat_fields(m: Metric) -> tuple[str, ...]:
    """The sufficient statistics of `m` (as `ArmStats` names them): n, Σx, Σx², and for a ratio
    the denominator's sums and the cross sum, for CUPED the covariate's and the cross sum."""
    if m.type == "ratio":
        return ("n", "sum", "sum_squares", "denominator_sum", "denominator_sum_squares", "sum_product")
    if m.cuped:
        return ("n", "sum", "sum_squares", "pre_sum", "pre_sum_squares", "sum_product")
    return ("n", "sum", "sum_squares")


def stat_names(m: Metric) -> list[str]:
    """The `<metric>__<field>` columns holding `m`'s statistics (all additive sums)."""
    return [f"{m.name}__{f}" for f in stat_fields(m)]


def arm_stats(
    row: Mapping[str, Any], m: Metric, name: str, *, cuped: bool = True, expected_share: float | None = None
) -> ArmStats:
    """`ArmStats` of metric `m` from one aggregated row; `cuped=False` drops the covariate so
    the comparison is unadjusted."""
    values = {f.split("__", 1)[1]: row.get(f) for f in stat_names(m)}
    if not cuped and m.cuped:
        for key in ("pre_sum", "pre_sum_squares", "sum_product"):
            del values[key]
    n = int(values.pop("n") or 0)
    return ArmStats(name, n, **{k: float(v or 0.0) for k, v in values.items()}, expected_share=expected_share)


def value_of(a: ArmStats) -> float | None:
    """The metric's value from its statistics: Σ/n (share or mean), or Σ/Σ for a ratio."""
    denominator = a.denominator_sum if a.denominator_sum is not None else a.n
    return a.sum / denominator if denominator else None
