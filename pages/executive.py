"""Executive panel: what personalisation is worth against the global holdout, in one sentence,
a few numbers and a trend. Numbers come from `metrics.executive`; this page only draws."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from metrics import executive
from pages import analytics, ui

MONEY = "R$ %.2f"


def headline(ex: executive.Executive) -> None:
    """The verdict and the key numbers."""
    sentence = executive.verdict(ex, ui.scenario().population.holdout_share)
    total = ex.revenue.total
    if total.ci_lower is not None and total.ci_lower > 0:
        st.success(sentence, icon=":material/trending_up:")
    elif total.ci_upper is not None and total.ci_upper < 0:
        st.error(sentence, icon=":material/trending_down:")
    else:
        st.info(sentence, icon=":material/balance:")
    means = ex.means
    level = f"{1 - ex.alpha:.0%}"
    cols = st.columns(4)
    for col, label, value in ((cols[0], "Incremental revenue", ex.revenue), (cols[1], "Incremental margin", ex.margin)):
        col.metric(label, ui.money(value.total.estimate),
                   help=f"{level} interval (always valid): {ui.money(value.total.ci_lower)} – "
                        f"{ui.money(value.total.ci_upper)}; {ui.money(value.per_user.estimate)} per exposed user.")
    arpu = means["arpu"]
    cols[2].metric("ARPU exposed", ui.money(arpu["exposed"]),
                   delta=_delta(arpu["exposed"], arpu["holdout"]), help=f"Holdout: {ui.money(arpu['holdout'])}")
    cols[3].metric("Coverage", ui.percent(means["coverage"]["all"]),
                   help="Share of users reached who got at least one personalised decision.")
    cols = st.columns(4)
    conversion = means["conversion_rate"]
    cols[0].metric("Conversion exposed", ui.percent(conversion["exposed"], 2),
                   delta=_delta(conversion["exposed"], conversion["holdout"]),
                   help=f"Holdout: {ui.percent(conversion['holdout'], 2)}")
    cols[1].metric("Average order value", ui.money(means["aov"]["all"]),
                   help=f"Exposed {ui.money(means['aov']['exposed'])}, holdout {ui.money(means['aov']['holdout'])}")
    nps = means["nps"]["all"]
    cols[2].metric("NPS", "—" if nps is None else f"{nps:.0f}", help="Promoters minus detractors, −100..100.")
    cols[3].metric("Users reached", f"{sum(ex.users.values()):,}",
                   help=f"{ex.users['exposed']:,} exposed, {ex.users['holdout']:,} in the global holdout")


def _delta(exposed: float | None, holdout: float | None) -> str | None:
    if exposed is None or not holdout:
        return None
    return f"{exposed / holdout - 1:+.1%} vs holdout"


def groups_table(ex: executive.Executive) -> None:
    """Every headline metric for exposed users, the holdout and both."""
    rows = [{"group": g, "users": ex.users.get(g, sum(ex.users.values())),
             **{name: values[g] for name, values in ex.means.items()}} for g in ("exposed", "holdout", "all")]
    frame = pl.DataFrame(rows, schema_overrides={name: pl.Float64 for name in ex.means})
    ui.table(frame, "executive_groups", column_config={
        "group": "Group", "users": st.column_config.NumberColumn("Users", format="%d"),
        "arpu": st.column_config.NumberColumn("ARPU", format=MONEY),
        "margin_per_user": st.column_config.NumberColumn("Margin / user", format=MONEY),
        "conversion_rate": st.column_config.NumberColumn("Conversion", format="percent"),
        "aov": st.column_config.NumberColumn("AOV", format=MONEY),
        "nps": st.column_config.NumberColumn("NPS", format="%.1f"),
        "coverage": st.column_config.NumberColumn("Coverage", format="percent"),
    })


def trend_charts(frame: pl.DataFrame, grain: str) -> None:
    """Incremental revenue per bucket (bars) with its running total, and revenue per user."""
    if not frame.height:
        ui.no_data("No revenue in this period yet, so no trend to draw.")
        return
    axis = ui.time_axis("bucket", f"{grain.capitalize()} (UTC)")
    money_axis = alt.Axis(format=",.0f")
    tooltip = [alt.Tooltip("bucket:T", title=grain.capitalize(), format="%Y-%m-%d %H:%M"),
               alt.Tooltip("incremental_revenue:Q", title="Added (R$)", format=",.0f"),
               alt.Tooltip("cumulative_incremental:Q", title="Running total (R$)", format=",.0f")]
    bars = alt.Chart(frame).mark_bar(opacity=0.6).encode(
        x=axis, y=alt.Y("incremental_revenue:Q", title="Revenue added (R$)", axis=money_axis), tooltip=tooltip)
    line = alt.Chart(frame).mark_line(point=alt.OverlayMarkDef(color="#e4572e"), color="#e4572e").encode(
        x=axis, y=alt.Y("cumulative_incremental:Q", title="Running total (R$)", axis=money_axis), tooltip=tooltip)
    ui.chart(alt.layer(bars, line).resolve_scale(y="independent").properties(
        title="Revenue added by personalisation vs the holdout", height=280))
    per_user = frame.unpivot(index="bucket", on=["revenue_per_exposed", "revenue_per_holdout"],
                             variable_name="group", value_name="revenue_per_user").with_columns(
        pl.col("group").replace({"revenue_per_exposed": "Exposed", "revenue_per_holdout": "Holdout"}))
    ui.chart(alt.Chart(per_user).mark_line(point=True).encode(
        x=axis, y=alt.Y("revenue_per_user:Q", title="Revenue per user (R$)", axis=alt.Axis(format=",.2f")),
        color=alt.Color("group:N", title="Group"),
        tooltip=[alt.Tooltip("bucket:T", title=grain.capitalize(), format="%Y-%m-%d %H:%M"), "group:N",
                 alt.Tooltip("revenue_per_user:Q", title="Revenue per user (R$)", format=",.2f")],
    ).properties(title="Revenue per user, exposed vs holdout", height=240))


@st.fragment(run_every=ui.REFRESH_SECONDS)
def live() -> None:
    """The panels, re-run every few seconds while data flows in."""
    filters = ui.filters()
    summary = None
    with ui.panel("Incremental value"):
        frame = analytics.executive_summary(filters, ui.scenario().business.pre_period_days, analytics.snapshot())
        summary = executive.summarise(frame)
        if not summary.has_data:
            ui.no_data(f"No users reached by the engine for {ui.describe(filters)}. "
                       "Widen the filters, or run `momento backfill` / `momento demo` to fill the lake.")
            summary = None
        else:
            headline(summary)
            groups_table(summary)
    if summary is None:
        return
    with ui.panel("Trend"):
        st.subheader("Trend")
        grain = st.radio("Granularity", ["day", "hour"], horizontal=True, key="executive_grain",
                         index=0 if summary.days > 3 else 1, format_func=str.capitalize)
        trend = executive.trend(analytics.executive_trend(filters, grain, analytics.snapshot()), summary)
        trend_charts(trend, grain)


ui.header("Executive", "What personalisation adds against the global holdout: revenue, margin, "
                       "conversion and reach, with honest intervals.")
live()
