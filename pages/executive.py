"""Executive panel: what personalisation is worth against the global holdout, in one sentence,
a few numbers and a trend. Numbers come from `metrics.executive`; this page only draws."""

from __future__ import annotations

import polars as pl
import streamlit as st

from metrics import executive
from metrics.queries import explain
from momento import formatting as fmt
from pages import analytics, charts, tables, ui
from pages.cache import scenario
from pages.explain import how_computed


def headline(ex: executive.Executive) -> None:
    """The verdict and the key numbers."""
    sentence = executive.verdict(ex, scenario().population.holdout_share)
    total = ex.revenue.total
    if total.ci_lower is not None and total.ci_lower > 0:
        st.success(sentence, icon=":material/trending_up:")
    elif total.ci_upper is not None and total.ci_upper < 0:
        st.error(sentence, icon=":material/trending_down:")
    else:
        st.info(sentence, icon=":material/balance:")
    means = ex.means
    level = fmt.percent(1 - ex.alpha, 0)
    cols = st.columns(4)
    for col, label, value in ((cols[0], "Incremental revenue", ex.revenue), (cols[1], "Incremental margin", ex.margin)):
        col.metric(
            label,
            fmt.money(value.total.estimate),
            help=f"{level} interval (always valid): {fmt.money(value.total.ci_lower)} – "
            f"{fmt.money(value.total.ci_upper)}; {fmt.money(value.per_user.estimate)} per exposed user.",
        )
    arpu = means["arpu"]
    cols[2].metric(
        "ARPU exposed",
        fmt.money(arpu["exposed"]),
        delta=_delta(arpu["exposed"], arpu["holdout"]),
        help=f"Holdout: {fmt.money(arpu['holdout'])}",
    )
    cols[3].metric(
        "Coverage",
        fmt.percent(means["coverage"]["all"]),
        help="Share of users reached who got at least one personalised decision.",
    )
    cols = st.columns(4)
    conversion = means["conversion_rate"]
    cols[0].metric(
        "Conversion exposed",
        fmt.percent(conversion["exposed"], 2),
        delta=_delta(conversion["exposed"], conversion["holdout"]),
        help=f"Holdout: {fmt.percent(conversion['holdout'], 2)}",
    )
    cols[1].metric(
        "Average order value",
        fmt.money(means["aov"]["all"]),
        help=f"Exposed {fmt.money(means['aov']['exposed'])}, holdout {fmt.money(means['aov']['holdout'])}",
    )
    cols[2].metric("NPS", fmt.number(means["nps"]["all"]), help="Promoters minus detractors, −100..100.")
    cols[3].metric(
        "Users reached",
        fmt.number(sum(ex.users.values())),
        help=f"{fmt.number(ex.users['exposed'])} exposed, {fmt.number(ex.users['holdout'])} in the global holdout",
    )


def _delta(exposed: float | None, holdout: float | None) -> str | None:
    if exposed is None or not holdout:
        return None
    return f"{fmt.percent(exposed / holdout - 1, signed=True)} vs holdout"


def groups_table(ex: executive.Executive) -> None:
    """Every headline metric for exposed users, the holdout and both."""
    rows = [
        {
            "group": g,
            "users": ex.users.get(g, sum(ex.users.values())),
            **{name: values[g] for name, values in ex.means.items()},
        }
        for g in ("exposed", "holdout", "all")
    ]
    frame = pl.DataFrame(rows, schema_overrides=dict.fromkeys(ex.means, pl.Float64))
    tables.table(
        frame,
        "executive_groups",
        {
            "group": "Group",
            "users": tables.count("Users"),
            "arpu": tables.money("ARPU"),
            "margin_per_user": tables.money("Margin / user"),
            "conversion_rate": tables.percent("Conversion", 2),
            "aov": tables.money("AOV"),
            "nps": tables.decimal("NPS", 1),
            "coverage": tables.percent("Coverage"),
        },
    )


def trend_charts(frame: pl.DataFrame, grain: str) -> None:
    """Incremental revenue per bucket (bars) with its running total, and revenue per user."""
    if not frame.height:
        ui.no_data("No revenue in this period yet, so no trend to draw.")
        return
    ui.chart(charts.incremental_revenue(frame, grain))
    ui.chart(charts.revenue_per_user(frame, grain))


@st.fragment(run_every=ui.REFRESH_SECONDS)
def live() -> None:
    """The panels, re-run every few seconds while data flows in."""
    filters = ui.filters()
    summary = None
    with ui.panel("Incremental value"):
        arguments = analytics.summary(filters)
        summary = executive.summarise(analytics.run(executive.SUMMARY, **arguments))
        analytics.source_note()
        if not summary.has_data:
            ui.no_data(
                f"No users reached by the engine for {ui.describe(filters)}. "
                "Widen the filters, or run `momento backfill` / `momento demo` to fill the lake."
            )
            summary = None
        else:
            headline(summary)
            groups_table(summary)
        how_computed(explain(executive.SUMMARY, **arguments), *analytics.source())
    if summary is None:
        return
    with ui.panel("Trend"):
        st.subheader("Trend")
        grain = st.radio(
            "Granularity",
            ["day", "hour"],
            horizontal=True,
            key="executive_grain",
            index=0 if summary.days > 3 else 1,
            format_func=str.capitalize,
        )
        trend = executive.trend(analytics.run(executive.TREND, **analytics.trend(filters, grain)), summary)
        trend_charts(trend, grain)
        how_computed(explain(executive.TREND, **analytics.trend(filters, grain)), *analytics.source())


ui.header(
    "Executive",
    "What personalisation adds against the global holdout: revenue, margin, "
    "conversion and reach, with honest intervals.",
)
live()
