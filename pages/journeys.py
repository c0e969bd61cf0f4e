"""Journeys panel (tactical): per journey, the path from eligible traffic to conversion, the
revenue per exposed user, and the uplift against control over time."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from metrics import experiments, journeys
from metrics.filters import Filters
from pages import analytics, ui

MONEY = "R$ %.2f"


def overview_table(funnel: pl.DataFrame) -> None:
    ui.table(journeys.overview(funnel, ui.scenario()), "journeys_overview", column_config={
        "journey": None, "name": "Journey", "experience": "Experience",
        "traffic": st.column_config.NumberColumn("Traffic", format="%d", help="Decisions requested"),
        "eligible": st.column_config.NumberColumn("Eligible", format="%d"),
        "eligible_share": st.column_config.NumberColumn("Eligible share", format="percent"),
        "personalised": st.column_config.NumberColumn("Served by model", format="%d"),
        "exposed": st.column_config.NumberColumn("Exposed", format="%d"),
        "clicked": st.column_config.NumberColumn("Clicked", format="%d"),
        "converted": st.column_config.NumberColumn("Converted", format="%d"),
        "ctr": st.column_config.NumberColumn("CTR", format="percent"),
    })


def waterfall(view: journeys.Journey) -> None:
    st.caption("From every decision requested to the conversions it led to; each stage is a subset of "
               "the eligible traffic, and the three ways of serving it add up to it.")
    frame = view.waterfall
    chart = alt.Chart(frame).mark_bar().encode(
        y=alt.Y("label:N", sort=list(frame["label"]), title=None, axis=alt.Axis(labelLimit=260)),
        x=alt.X("decisions:Q", title="Decisions", axis=alt.Axis(format=",d")),
        color=alt.Color("kind:N", title="Stage", scale=alt.Scale(domain=["eligibility", "serving", "outcome"],
                                                                 range=["#4c78a8", "#72b7b2", "#54a24b"])),
        tooltip=[alt.Tooltip("label:N", title="Stage"), alt.Tooltip("decisions:Q", title="Decisions", format=","),
                 alt.Tooltip("share:Q", title="Share of traffic", format=".1%")],
    ).properties(title=f"{view.name}: eligibility to conversion", height=34 * frame.height)
    labels = chart.mark_text(align="left", dx=4).encode(text=alt.Text("share:Q", format=".1%"), color=alt.value("gray"))
    ui.chart(chart + labels)
    ui.table(view.serving, f"serving_{view.id}", column_config={
        "serving": None, "label": "Served as",
        "decisions": st.column_config.NumberColumn("Decisions", format="%d"),
        "exposed": st.column_config.NumberColumn("Exposed", format="%d"),
        "clicked": st.column_config.NumberColumn("Clicked", format="%d"),
        "converted": st.column_config.NumberColumn("Converted", format="%d"),
        "ctr": st.column_config.NumberColumn("CTR", format="percent"),
        "conversion": st.column_config.NumberColumn("Conversion / exposure", format="percent"),
    })


def revenue(view: journeys.Journey, filters: Filters) -> None:
    experiment = view.experiment
    if experiment is None:
        ui.no_data("No experiment runs on this journey's experience, so there is no control to compare with.")
        return
    frame = analytics.revenue_for(filters, experiment.id)
    per_arm = journeys.revenue_per_exposed_user(frame, experiment)
    if not per_arm.filter(pl.col("arm") == "all arms")["users"].sum():
        ui.no_data(f"No user was exposed to {view.placement} for {ui.describe(filters)}.")
        return
    left, right = st.columns([2, 3])
    with left:
        st.markdown("**Revenue per exposed user**")
        ui.table(per_arm, f"revenue_{view.id}", column_config={
            "arm": "Arm", "users": st.column_config.NumberColumn("Exposed users", format="%d"),
            "revenue": st.column_config.NumberColumn("Revenue", format=MONEY),
            "revenue_per_user": st.column_config.NumberColumn("Revenue / user", format=MONEY),
        })
    with right:
        primary = experiment.primary_metric
        daily = analytics.days_for(filters, experiment.id, primary)
        lift = experiments.cumulative_lift(daily, experiment, primary)
        if not lift.drop_nulls("lift").height:
            ui.no_data("Not enough exposed users in both arms yet to draw the uplift over time.")
            return
        label = experiments.METRICS[primary].label
        ui.chart(analytics.lift_over_time(lift, f"Uplift vs control over time: {label} (cumulative)"))


@st.fragment(run_every=ui.REFRESH_SECONDS)
def live() -> None:
    filters = ui.filters()
    view = None
    with ui.panel("Journeys"):
        funnel = analytics.journey_funnel(filters, analytics.snapshot())
        if not funnel.height:
            ui.no_data(f"No decisions for {ui.describe(filters)}. Widen the filters, or run "
                       "`momento backfill` / `momento demo` to fill the lake.")
            return
        st.subheader("Eligible traffic per experience")
        overview_table(funnel)
        sc = ui.scenario()
        names = {j.id: j.name for j in sc.journeys}
        options = [filters.journey] if filters.journey else list(names)
        chosen = st.segmented_control("Journey", options, default=options[0], format_func=names.get,
                                      key="journey_view") or options[0]
        view = journeys.journey(funnel, sc, chosen)
        st.subheader(f"{view.name} · {view.experience}")
        if not view.traffic:
            ui.no_data(f"No decisions for the {view.name} journey for {ui.describe(filters)}.")
            return
        waterfall(view)
    if view is not None:
        with ui.panel("Revenue and uplift"):
            revenue(view, filters)


ui.header("Journeys", "Each journey from eligible traffic to conversion, its revenue per exposed user "
                      "and its uplift against control.")
live()
