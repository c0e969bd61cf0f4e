"""What the analytics pages (Executive, Journeys, Experiments) share: their queries, cached until
the lake changes, and the lift charts.

A cached result is keyed on the filters and on the lake's table versions (`snapshot()`), so a
quiet lake is never queried twice, and new data is picked up on the next refresh.
"""

from __future__ import annotations

from dataclasses import replace

import altair as alt
import polars as pl
import streamlit as st

from metrics import executive, experiments, journeys
from metrics.filters import Filters
from pages import ui

Snapshot = tuple[tuple[str, int | None], ...]
_CACHE = dict(ttl=600, show_spinner=False, max_entries=64)


def snapshot() -> Snapshot:
    """The lake's table versions now (the warehouse re-reads them at most once a second)."""
    return tuple(sorted(ui.warehouse().refresh().items()))


@st.cache_data(**_CACHE)
def experiment_stats(filters: Filters, pre_days: int, names: tuple[str, ...], lake: Snapshot,
                     experiment_id: str | None = None) -> pl.DataFrame:
    return experiments.load_stats(ui.warehouse(), filters, pre_days, names, experiment_id)


@st.cache_data(**_CACHE)
def experiment_days(filters: Filters, experiment_id: str, metric: str, pre_days: int, lake: Snapshot) -> pl.DataFrame:
    return experiments.load_cumulative(ui.warehouse(), filters, experiment_id, metric, pre_days)


@st.cache_data(**_CACHE)
def executive_summary(filters: Filters, pre_days: int, lake: Snapshot) -> pl.DataFrame:
    return executive.load_summary(ui.warehouse(), filters, pre_days)


@st.cache_data(**_CACHE)
def executive_trend(filters: Filters, grain: executive.Grain, lake: Snapshot) -> pl.DataFrame:
    return executive.load_trend(ui.warehouse(), filters, ui.scenario().business.pre_period_days, grain)


@st.cache_data(**_CACHE)
def journey_funnel(filters: Filters, lake: Snapshot) -> pl.DataFrame:
    return journeys.load_funnel(ui.warehouse(), filters)


def stats_for(filters: Filters) -> pl.DataFrame:
    """Every experiment's sufficient statistics for the scenario's metrics (the journey filter
    picks experiments, not users, so it is not part of the query)."""
    sc = ui.scenario()
    return experiment_stats(replace(filters, journey=None), sc.business.pre_period_days,
                            experiments.scenario_metrics(sc), snapshot())


def revenue_for(filters: Filters, experiment_id: str) -> pl.DataFrame:
    """One experiment's revenue per exposed user statistics (what the Journeys page shows of it:
    one experiment and one metric cost a fraction of `stats_for`)."""
    return experiment_stats(replace(filters, journey=None), ui.scenario().business.pre_period_days,
                            (journeys.REVENUE_METRIC,), snapshot(), experiment_id)


def days_for(filters: Filters, experiment_id: str, metric: str) -> pl.DataFrame:
    """One experiment's statistics of one metric as of each day."""
    return experiment_days(replace(filters, journey=None), experiment_id, metric,
                           ui.scenario().business.pre_period_days, snapshot())

VERDICT_COLORS = alt.Scale(domain=["better", "worse", "no difference yet", "not enough data", "see guardrails"],
                           range=["#2a9d5c", "#d1495b", "#4c78a8", "#9d9d9d", "#b279a2"])


def _readable(lower: pl.Series, upper: pl.Series) -> alt.Scale:
    """A lift scale that keeps the later, informative intervals readable: the first days'
    intervals are very wide, so the domain covers the last half of the bounds (clamped)."""
    half = len(lower) // 2
    low, high = lower[half:].min(), upper[half:].max()
    if low is None or high is None:
        return alt.Scale()
    pad = max((high - low) * 0.25, 0.02)
    return alt.Scale(domain=[min(low - pad, 0.0), max(high + pad, 0.0)], clamp=True)


def lift_over_time(frame: pl.DataFrame, title: str, truth: pl.DataFrame | None = None) -> alt.LayerChart:
    """Cumulative relative lift per variant (line) with its always-valid interval (band), a zero
    rule, and the true effect (dashed) when the simulator's ground truth is known."""
    rows = frame.drop_nulls("lift").sort("day")
    axis = alt.Axis(format="+.0%", title="Relative lift vs control")
    scale = _readable(rows["lift_lower"], rows["lift_upper"])
    base = alt.Chart(rows).encode(
        x=alt.X("day:T", title="Day (UTC)", axis=alt.Axis(format="%d %b", labelAngle=0)),
        color=alt.Color("variant:N", title="Variant"),
        tooltip=[alt.Tooltip("day:T", title="Day", format="%Y-%m-%d"), alt.Tooltip("variant:N", title="Variant"),
                 alt.Tooltip("lift:Q", title="Lift", format="+.2%"),
                 alt.Tooltip("lift_lower:Q", title="Lower", format="+.2%"),
                 alt.Tooltip("lift_upper:Q", title="Upper", format="+.2%"),
                 alt.Tooltip("n_control:Q", title="Control users", format=","),
                 alt.Tooltip("n_variant:Q", title="Variant users", format=",")],
    )
    layers = [
        base.mark_area(opacity=0.18).encode(y=alt.Y("lift_lower:Q", axis=axis, scale=scale), y2="lift_upper:Q"),
        base.mark_line(point=True).encode(y=alt.Y("lift:Q", axis=axis, scale=scale)),
        base.mark_rule(strokeDash=[2, 2]).encode(y=alt.datum(0), color=alt.value("gray")),
    ]
    if truth is not None and truth.height:
        layers.append(alt.Chart(truth).mark_rule(strokeDash=[6, 4]).encode(
            y=alt.Y("truth:Q", scale=scale), color=alt.Color("variant:N"),
            tooltip=[alt.Tooltip("variant:N"), alt.Tooltip("truth:Q", title="True effect", format="+.2%")]))
    return alt.layer(*layers).properties(title=title, height=280)


def lift_intervals(frame: pl.DataFrame, title: str) -> alt.LayerChart:
    """Relative lift of each metric × variant with its interval, coloured by verdict, and the true
    effect as a black cross when a `truth` column is present."""
    rows = frame.drop_nulls("lift").with_columns(row=pl.col("label") + " · " + pl.col("variant"))
    tooltip = [alt.Tooltip("label:N", title="Metric"), alt.Tooltip("variant:N", title="Variant"),
               alt.Tooltip("lift:Q", title="Lift", format="+.2%"),
               alt.Tooltip("lift_lower:Q", title="Lower", format="+.2%"),
               alt.Tooltip("lift_upper:Q", title="Upper", format="+.2%"),
               alt.Tooltip("p_adjusted:Q", title="Adjusted p", format=".3f"),
               alt.Tooltip("verdict:N", title="Verdict")]
    axis = alt.Axis(format="+.0%", title="Relative lift vs control, with its interval")
    base = alt.Chart(rows).encode(y=alt.Y("row:N", sort=None, title=None, axis=alt.Axis(labelLimit=320)),
                                  tooltip=tooltip)
    color = alt.Color("verdict:N", title="Verdict", scale=VERDICT_COLORS)
    layers = [
        base.mark_rule(strokeWidth=4).encode(x=alt.X("lift_lower:Q", axis=axis), x2="lift_upper:Q", color=color),
        base.mark_point(filled=True, size=80).encode(x="lift:Q", color=color),
        base.mark_rule(strokeDash=[2, 2]).encode(x=alt.datum(0), color=alt.value("gray")),
    ]
    if "truth" in rows.columns and rows["truth"].drop_nulls().len():
        layers.append(base.mark_point(shape="cross", size=140, filled=True, color="black").encode(
            x="truth:Q", tooltip=[alt.Tooltip("row:N", title="Metric"),
                                  alt.Tooltip("truth:Q", title="True effect", format="+.2%")]))
    return alt.layer(*layers).properties(title=title, height=alt.Step(34))
