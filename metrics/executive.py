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
from metrics.filters import Filters
from metrics.arm_stats import arm_stats, stat_names, value_of
from metrics.rollup.definitions import ALL_JOURNEYS, HOUR_US
from metrics.rollup.read import EPOCH, Aggregates, Period, aggregates, period
from momento.kpis import metric
from momento.lake.warehouse import Warehouse

HEADLINE = tuple(metric(name) for name in ("arpu", "margin_per_user", "conversion_rate", "aov", "nps", "coverage"))
GROUPS = ("exposed", "holdout")
Grain = Literal["day", "hour"]
_COLUMNS = ["users", *(c for m in HEADLINE for c in stat_names(m))]


def _scoped(frame: pl.DataFrame, filters: Filters, window: Period, time_key: str) -> pl.DataFrame:
    """Rows of the users reached in the filter's journey (all journeys: scope '*') whose first
    decision there fell in the period, on its channel and segment; `time_key` up to its end."""
    keep = (pl.col("scope") == (filters.journey or ALL_JOURNEYS)) & (pl.col("cohort_day") <= window.last)
    if window.first is not None:
        keep &= pl.col("cohort_day") >= window.first
    for column, value in (("channel", filters.channel), ("segment", filters.segment)):
        if value is not None:
            keep &= pl.col(column) == value
    if time_key == "change_day":
        keep &= pl.col("change_day") <= window.last
    else:
        keep &= pl.col("hour") * HOUR_US < int((window.as_of - EPOCH).total_seconds() * 1_000_000)
    return frame.filter(keep)


def summary_frame(aggregates: Aggregates, filters: Filters) -> pl.DataFrame:
    """Sufficient statistics of the headline metrics for the exposed and the holdout group, with
    `users`, `first_ts` (midnight of the first day a unit entered) and `as_of`."""
    window = period(filters.start_ts, filters.end_ts, aggregates.source)
    rows = _scoped(aggregates["executive_stats"], filters, window, "change_day")
    return (rows.group_by("grp").agg(pl.col(_COLUMNS).sum(), pl.col("cohort_day").min().alias("first_day"))
            .with_columns(pl.col("first_day").cast(pl.Date).cast(pl.Datetime("us", "UTC")).alias("first_ts"),
                          pl.lit(window.as_of).alias("as_of"))
            .select("grp", "users", "first_ts", "as_of", *_COLUMNS[1:]).sort("grp"))


def load_summary(warehouse: Warehouse, filters: Filters, pre_days: int) -> pl.DataFrame:
    """`summary_frame` of the lake now (rollups plus the live tail, or raw)."""
    return summary_frame(aggregates(warehouse, pre_days), filters)


def trend_frame(aggregates: Aggregates, filters: Filters, grain: Grain = "day") -> pl.DataFrame:
    """Revenue per group and UTC day (or hour) from each reached user's first decision on."""
    window = period(filters.start_ts, filters.end_ts, aggregates.source)
    rows = _scoped(aggregates["executive_revenue"], filters, window, "hour")
    hours = pl.col("hour") if grain == "hour" else pl.col("hour") // 24 * 24
    bucket = (hours * HOUR_US).cast(pl.Datetime("us")).alias("bucket")
    return (rows.group_by("grp", bucket).agg(pl.col("revenue").sum())
            .select("grp", "bucket", "revenue").sort("bucket", "grp"))


def load_trend(warehouse: Warehouse, filters: Filters, pre_days: int, grain: Grain = "day") -> pl.DataFrame:
    """`trend_frame` of the lake now."""
    return trend_frame(aggregates(warehouse, pre_days), filters, grain)


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
    return {c: 0 for c in frame.columns} | {"first_ts": None, "as_of": None}


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
    return Executive(users, means, incremental("arpu"), incremental("margin_per_user"),
                     min(starts) if starts else None, max(ends) if ends else None, alpha)


def trend(frame: pl.DataFrame, executive: Executive) -> pl.DataFrame:
    """Per bucket: revenue per exposed and per holdout user, and the revenue personalisation
    added in that bucket ((per exposed user − per holdout user) × exposed users); the buckets
    add up to the total estimate without CUPED."""
    n_exposed, n_holdout = executive.users["exposed"], executive.users["holdout"]
    schema = {"bucket": pl.Datetime, "revenue_per_exposed": pl.Float64, "revenue_per_holdout": pl.Float64,
              "incremental_revenue": pl.Float64, "cumulative_incremental": pl.Float64}
    if not frame.height or not n_exposed or not n_holdout:
        return pl.DataFrame(schema=schema)
    wide = (frame.pivot(on="grp", index="bucket", values="revenue").sort("bucket")
            .with_columns(pl.col("bucket").cast(pl.Datetime)))
    for g in GROUPS:
        if g not in wide.columns:
            wide = wide.with_columns(pl.lit(0.0).alias(g))
    out = wide.select(
        "bucket",
        (pl.col("exposed").fill_null(0) / n_exposed).alias("revenue_per_exposed"),
        (pl.col("holdout").fill_null(0) / n_holdout).alias("revenue_per_holdout"),
    ).with_columns(
        ((pl.col("revenue_per_exposed") - pl.col("revenue_per_holdout")) * n_exposed).alias("incremental_revenue"))
    return out.with_columns(pl.col("incremental_revenue").cum_sum().alias("cumulative_incremental")).cast(schema)


def brl(value: float) -> str:
    """Money rounded to whole reais, Brazilian grouping: R$ 182.400 (−R$ 1.200 for losses)."""
    text = f"{abs(value):,.0f}".replace(",", ".")
    return f"{'−' if value < 0 and round(abs(value)) else ''}R$ {text}"


def verdict(executive: Executive, holdout_share: float) -> str:
    """One plain-words sentence on whether personalisation pays, honest about uncertainty."""
    total = executive.revenue.total
    period = f"over the last {_days(executive.days)}"
    holdout = f"the {holdout_share:.0%} holdout"
    if not executive.has_data:
        return "No users reached by the engine in this period yet: nothing to measure."
    if executive.revenue.status != "ok" or total.ci_lower is None or total.ci_upper is None:
        return (f"Not enough data {period} to compare with {holdout} yet "
                f"({executive.users['exposed']:,} exposed and {executive.users['holdout']:,} holdout users).")
    level = f"{1 - executive.alpha:.0%} CI"
    estimate = f"{brl(total.estimate)} ({level} {brl(total.ci_lower)} – {brl(total.ci_upper)})"
    if total.ci_lower > 0:
        return f"Personalisation added {estimate} {period} against {holdout}: it pays."
    if total.ci_upper < 0:
        return f"Personalisation cost {estimate} {period} against {holdout}: it does not pay; investigate."
    return (f"Personalisation's effect on revenue {period} is {estimate} against {holdout}: "
            "not yet distinguishable from zero.")


def _days(days: float) -> str:
    if days < 2:
        hours = max(1, math.ceil(days * 24))
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{round(days)} days"
