"""The executive view: what personalisation is worth, measured against the global holdout.

The population is every user the engine reached (a first decision in the period, in the
journey picked or in any); outcomes count from that first decision. Users in the global holdout
never get a personalised answer, so (revenue per reached user outside the holdout − per holdout
user) × users outside the holdout is the revenue personalisation added, with an interval from
the statistics engine (CUPED with the pre-period as covariate). The sufficient statistics per
group and the revenue per hour come from the rollups (`metrics.rollup`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import polars as pl

from metrics import stats
from metrics.arm_stats import arm_stats, stat_names, value_of
from metrics.filters import Filters
from metrics.rollup.definitions import ALL_JOURNEYS
from metrics.rollup.read import EXAMPLE_AS_OF, Aggregates, aggregates, period_params, run_on
from metrics.sql.query import Query, Statement
from momento.formatting import money, number, percent
from momento.kpis import metric
from momento.lake.warehouse import Warehouse

HEADLINE = tuple(metric(name) for name in ("arpu", "margin_per_user", "conversion_rate", "aov", "nps", "coverage"))
GROUPS = ("exposed", "holdout")
Grain = Literal["day", "hour"]
_COLUMNS = ["users", *(c for m in HEADLINE for c in stat_names(m))]

_IN_VIEW = f"""scope = coalesce($f_journey, '{ALL_JOURNEYS}')
  AND ($f_channel IS NULL OR channel = $f_channel) AND ($f_segment IS NULL OR segment = $f_segment)
  AND ($first_day IS NULL OR cohort_day >= $first_day) AND cohort_day <= $last_day"""
"""The users reached in the filter's journey (scope '*': any) whose first decision there fell in
the period, on the channel and in the segment of that decision."""

_SUMS = ",\n       ".join(f"sum({c}) AS {c}" for c in _COLUMNS)
SUMMARY_SQL = f"""SELECT grp, {_SUMS},
       make_timestamptz(min(cohort_day) * 86400000000) AS first_ts, $as_of AS as_of
FROM executive_stats
WHERE {_IN_VIEW} AND change_day <= $last_day
GROUP BY grp
ORDER BY grp"""

_BUCKETS: dict[Grain, str] = {
    "day": "make_timestamp(hour // 24 * 24 * 3600000000)",
    "hour": "make_timestamp(hour * 3600000000)",
}
TREND_SQL: dict[Grain, str] = {
    grain: f"""SELECT grp, {bucket} AS bucket, sum(revenue) AS revenue
FROM executive_revenue
WHERE {_IN_VIEW} AND hour <= $last_hour
GROUP BY grp, bucket
ORDER BY bucket, grp"""
    for grain, bucket in _BUCKETS.items()
}


def _summary(filters: Filters, pre_days: int, as_of: datetime) -> Statement:
    return Statement(SUMMARY_SQL, {**filters.params(), **period_params(filters, as_of), "as_of": as_of})


SUMMARY = Query(
    "executive.summary",
    "Sufficient statistics of the headline metrics of the users first reached in the period, for users outside "
    "the global holdout (exposed) and in it, outcomes from each user's first decision: read from the rollups "
    "(executive_stats: increments by day of first decision and day of change).",
    _summary,
    example={"pre_days": 14, "as_of": EXAMPLE_AS_OF},
    metrics=tuple(m.name for m in HEADLINE),
    method="Incremental revenue (margin) = (mean revenue (margin) per exposed user − per holdout user) × exposed "
    "users, each mean CUPED-adjusted with the same metric over the pre-period, with an always-valid 95% "
    "interval (an asymptotic confidence sequence, valid however often the page is watched). Other "
    "headline numbers: Σ value / users per group (ratios such as AOV: Σ numerator / Σ denominator).",
    over="aggregates",
)


def _trend(filters: Filters, pre_days: int, as_of: datetime, grain: Grain) -> Statement:
    return Statement(TREND_SQL[grain], {**filters.params(), **period_params(filters, as_of)})


TREND = Query(
    "executive.trend",
    "Revenue per group (exposed, holdout) and day or hour, from each user's first decision, "
    "read from the rollups (executive_revenue: revenue by day of first decision and hour).",
    _trend,
    example={"pre_days": 14, "as_of": EXAMPLE_AS_OF, "grain": "day"},
    metrics=("arpu",),
    method="Per bucket: (revenue per exposed user − revenue per holdout user) × exposed users, without CUPED; "
    "the running total of the buckets is the unadjusted incremental revenue.",
    over="aggregates",
)


def load_summary(warehouse: Warehouse, filters: Filters, pre_days: int) -> pl.DataFrame:
    """Sufficient statistics of the headline metrics for the exposed and the holdout group, from
    the rollups plus the live tail (or raw: `metrics.rollup.read`)."""
    return summary_frame(aggregates(warehouse, pre_days), filters, pre_days)


def summary_frame(aggregates: Aggregates, filters: Filters, pre_days: int) -> pl.DataFrame:
    """`SUMMARY` over `aggregates`."""
    return run_on(aggregates, SUMMARY.statement(filters, pre_days=pre_days, as_of=aggregates.source.as_of))


def load_trend(warehouse: Warehouse, filters: Filters, pre_days: int, grain: Grain = "day") -> pl.DataFrame:
    """Revenue per group and UTC day (or hour) from each reached user's first decision on."""
    return trend_frame(aggregates(warehouse, pre_days), filters, pre_days, grain)


def trend_frame(aggregates: Aggregates, filters: Filters, pre_days: int, grain: Grain = "day") -> pl.DataFrame:
    """`TREND` over `aggregates`."""
    return run_on(aggregates, TREND.statement(filters, pre_days=pre_days, as_of=aggregates.source.as_of, grain=grain))


@dataclass(frozen=True)
class Executive:
    """The executive panel's numbers."""

    users: dict[str, int]
    """Reached users per group (exposed = outside the global holdout)."""
    means: dict[str, dict[str, float | None]]
    """Headline metric -> group -> value (and "all" for both groups together)."""
    revenue: stats.IncrementalValue
    margin: stats.IncrementalValue
    first_ts: datetime | None
    as_of: datetime | None
    alpha: float

    @property
    def has_data(self) -> bool:
        return sum(self.users.values()) > 0

    @property
    def days(self) -> float:
        """Length of the measured period in days."""
        if self.first_ts is None or self.as_of is None:
            return 0.0
        return max((self.as_of - self.first_ts).total_seconds() / 86400.0, 0.0)


def _row(frame: pl.DataFrame, group: str) -> dict[str, Any]:
    rows = frame.filter(pl.col("grp") == group)
    if rows.height:
        return rows.row(0, named=True)
    return dict.fromkeys(frame.columns, 0) | {"first_ts": None, "as_of": None}


def _sum_rows(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {k: (a.get(k) or 0) + (b.get(k) or 0) for k in a if "__" in k}


def summarise(frame: pl.DataFrame, alpha: float = 0.05, method: stats.Method = "sequential") -> Executive:
    """Incremental revenue and margin with intervals, and every headline metric per group."""
    rows = {g: _row(frame, g) for g in GROUPS}
    rows_all = _sum_rows(rows["exposed"], rows["holdout"])
    means: dict[str, dict[str, float | None]] = {}
    for m in HEADLINE:
        means[m.name] = {g: value_of(arm_stats(rows[g], m, g)) for g in GROUPS}
        means[m.name]["all"] = value_of(arm_stats(rows_all, m, "all"))
    users = {g: int(rows[g].get("users") or 0) for g in GROUPS}

    def incremental(name: str) -> stats.IncrementalValue:
        m = metric(name)
        exposed, holdout = arm_stats(rows["exposed"], m, "exposed"), arm_stats(rows["holdout"], m, "holdout")
        return stats.incremental_value(exposed, holdout, users["exposed"], alpha, method)

    starts = [r["first_ts"] for r in rows.values() if r.get("first_ts") is not None]
    ends = [r["as_of"] for r in rows.values() if r.get("as_of") is not None]
    return Executive(
        users,
        means,
        incremental("arpu"),
        incremental("margin_per_user"),
        min(starts) if starts else None,
        max(ends) if ends else None,
        alpha,
    )


def trend(frame: pl.DataFrame, executive: Executive) -> pl.DataFrame:
    """Per bucket: revenue per exposed and per holdout user, and the revenue personalisation
    added in that bucket ((per exposed user − per holdout user) × exposed users); the buckets
    add up to the total estimate without CUPED."""
    n_exposed, n_holdout = executive.users["exposed"], executive.users["holdout"]
    columns: dict[str, pl.DataType | type[pl.DataType]] = {
        "bucket": pl.Datetime("us"),
        "revenue_per_exposed": pl.Float64,
        "revenue_per_holdout": pl.Float64,
        "incremental_revenue": pl.Float64,
        "cumulative_incremental": pl.Float64,
    }
    schema = pl.Schema(columns)
    if not frame.height or not n_exposed or not n_holdout:
        return pl.DataFrame(schema=schema)
    wide = (
        frame.pivot(on="grp", index="bucket", values="revenue")
        .sort("bucket")
        .with_columns(pl.col("bucket").cast(pl.Datetime))
    )
    for g in GROUPS:
        if g not in wide.columns:
            wide = wide.with_columns(pl.lit(0.0).alias(g))
    out = wide.select(
        "bucket",
        (pl.col("exposed").fill_null(0) / n_exposed).alias("revenue_per_exposed"),
        (pl.col("holdout").fill_null(0) / n_holdout).alias("revenue_per_holdout"),
    ).with_columns(
        ((pl.col("revenue_per_exposed") - pl.col("revenue_per_holdout")) * n_exposed).alias("incremental_revenue")
    )
    return out.with_columns(pl.col("incremental_revenue").cum_sum().alias("cumulative_incremental")).cast(schema)


def verdict(executive: Executive, holdout_share: float) -> str:
    """One plain-words sentence on whether personalisation pays, honest about uncertainty."""
    total = executive.revenue.total
    period = f"over the last {_days(executive.days)}"
    holdout = f"the {percent(holdout_share, 0)} holdout"
    if not executive.has_data:
        return "No users reached by the engine in this period yet: nothing to measure."
    if executive.revenue.status != "ok" or total.ci_lower is None or total.ci_upper is None:
        users = executive.users
        return (
            f"Not enough data {period} to compare with {holdout} yet "
            f"({number(users['exposed'])} exposed and {number(users['holdout'])} holdout users)."
        )
    level = f"{percent(1 - executive.alpha, 0)} CI"
    estimate = f"{money(total.estimate, 0)} ({level} {money(total.ci_lower, 0)} – {money(total.ci_upper, 0)})"
    if total.ci_lower > 0:
        return f"Personalisation added {estimate} {period} against {holdout}: it pays."
    if total.ci_upper < 0:
        return f"Personalisation cost {estimate} {period} against {holdout}: it does not pay; investigate."
    return (
        f"Personalisation's effect on revenue {period} is {estimate} against {holdout}: "
        "not yet distinguishable from zero."
    )


def _days(days: float) -> str:
    if days < 2:
        hours = max(1, math.ceil(days * 24))
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{round(days)} days"
