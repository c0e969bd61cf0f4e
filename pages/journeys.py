"""Journeys panel (tactical): per journey, the path from eligible traffic to conversion, the
revenue per exposed user, and the uplift against control over time."""

from __future__ import annotations

import polars as pl
import streamlit as st

from metrics import experiments, journeys
from metrics.filters import Filters
from metrics.queries import explain
from momento.kpis import METRICS
from pages import analytics, charts, tables, ui
from pages.cache import scenario
from pages.explain import how_computed


def overview_table(funnel: pl.DataFrame) -> None:
    tables.table(
        journeys.overview(funnel, scenario()),
        "journeys_overview",
        {
            "journey": None,
            "name": "Journey",
            "experience": "Experience",
            "traffic": tables.count("Traffic", help="Decisions requested"),
            "eligible": tables.count("Eligible"),
            "eligible_share": tables.percent("Eligible share"),
            "personalised": tables.count("Served by model"),
            "exposed": tables.count("Exposed"),
            "clicked": tables.count("Clicked"),
            "converted": tables.count("Converted"),
            "ctr": tables.percent("CTR"),
        },
    )


def waterfall(view: journeys.Journey) -> None:
    st.caption(
        "From every decision requested to the conversions it led to; each stage is a subset of "
        "the eligible traffic, and the three ways of serving it add up to it."
    )
    ui.chart(charts.waterfall(view.waterfall, f"{view.name}: eligibility to conversion"))
    tables.table(
        view.serving,
        f"serving_{view.id}",
        {
            "serving": None,
            "label": "Served as",
            "decisions": tables.count("Decisions"),
            "exposed": tables.count("Exposed"),
            "clicked": tables.count("Clicked"),
            "converted": tables.count("Converted"),
            "ctr": tables.percent("CTR"),
            "conversion": tables.percent("Conversion / exposure"),
        },
    )


def revenue(view: journeys.Journey, filters: Filters) -> None:
    experiment = view.experiment
    if experiment is None:
        ui.no_data("No experiment runs on this journey's experience, so there is no control to compare with.")
        return
    arguments = analytics.revenue(filters, experiment.id)
    per_arm = journeys.revenue_per_exposed_user(analytics.run(experiments.STATS, **arguments), experiment)
    if not per_arm.filter(pl.col("arm") == "all arms")["users"].sum():
        ui.no_data(f"No user was exposed to {view.placement} for {ui.describe(filters)}.")
        return
    left, right = st.columns([2, 3])
    with left:
        st.markdown("**Revenue per exposed user**")
        tables.table(
            per_arm,
            f"revenue_{view.id}",
            {
                "arm": "Arm",
                "users": tables.count("Exposed users"),
                "revenue": tables.money("Revenue"),
                "revenue_per_user": tables.money("Revenue / user"),
            },
        )
        how_computed(explain(experiments.STATS, **arguments), *analytics.source())
    with right:
        primary = experiment.primary_metric
        daily = analytics.days(filters, experiment.id, primary)
        lift = experiments.cumulative_lift(analytics.run(experiments.CUMULATIVE, **daily), experiment, primary)
        if not lift.drop_nulls("lift").height:
            ui.no_data("Not enough exposed users in both arms yet to draw the uplift over time.")
        else:
            title = f"Uplift vs control over time: {METRICS[primary].label} (cumulative)"
            ui.chart(charts.lift_over_time(lift, title))
        how_computed(explain(experiments.CUMULATIVE, metrics=(primary,), **daily), *analytics.source())


@st.fragment(run_every=ui.REFRESH_SECONDS)
def live() -> None:
    filters = ui.filters()
    view = None
    with ui.panel("Journeys"):
        funnel = journeys.funnel_frame(analytics.aggregates(), filters)
        analytics.source_note()
        if not funnel.height:
            ui.no_data(
                f"No decisions for {ui.describe(filters)}. Widen the filters, or run "
                "`momento backfill` / `momento demo` to fill the lake."
            )
            how_computed(explain(journeys.FUNNEL, filters), *analytics.source())
            return
        st.subheader("Eligible traffic per experience")
        overview_table(funnel)
        sc = scenario()
        names = {j.id: j.name for j in sc.journeys}
        options = [filters.journey] if filters.journey else list(names)
        chosen = (
            st.segmented_control(
                "Journey",
                options,
                default=options[0],
                format_func=lambda journey: names.get(journey, journey),
                key="journey_view",
            )
            or options[0]
        )
        view = journeys.journey(funnel, sc, chosen)
        st.subheader(f"{view.name} · {view.experience}")
        if not view.traffic:
            ui.no_data(f"No decisions for the {view.name} journey for {ui.describe(filters)}.")
            view = None
        else:
            waterfall(view)
        how_computed(explain(journeys.FUNNEL, filters), *analytics.source())
    if view is not None:
        with ui.panel("Revenue and uplift"):
            revenue(view, filters)


ui.header(
    "Journeys",
    "Each journey from eligible traffic to conversion, its revenue per exposed user and its uplift against control.",
)
live()
