"""Engine health: is the decisioning engine answering, fast, correctly, and is its data on time?"""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from metrics import health
from metrics import model_quality as mq
from metrics.filters import Filters
from pages import ui

ui.header("Engine health", "Live status, latency against the budget, errors and fallbacks, the writer, the models.")
FILTERS = ui.filters()
BUDGET_MS = ui.settings().decision_budget_ms


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} ms"


def service_panel() -> None:
    """The live probe and the writer's back-pressure from the service's /metrics."""
    url = ui.settings().service_url
    up, sentence = ui.service_status(url)
    left, mid, right = st.columns(3)
    left.metric("API status", "up" if up else "down", help=sentence)
    if not up:
        st.warning(f"The decisioning service is not answering ({sentence}). The lake's numbers below still "
                   "show what it logged; live back-pressure needs the service.")
        return
    text = ui.service_metrics(url)
    try:
        pressure = health.backpressure(text) if text else None
    except ValueError:
        pressure = None
    if pressure is None or pressure.queue_depth is None:
        st.info("The service does not report its writer queue at /metrics.")
        return
    fill = ui.percent(pressure.fill) if pressure.fill is not None else "no bound reported"
    mid.metric("Writer queue", f"{pressure.queue_depth:,.0f} rows", help=f"{fill} of the queue bound")
    right.metric("Refused: queue full", ui.number(pressure.refused_requests),
                 help="Requests the service answered 503 + Retry-After because the writer's queue was full "
                      f"(appends the writer itself refused: {ui.number(pressure.queue_full_rejections)}).")


def kpis(s: health.Summary) -> None:
    lag = health.writer_lag(ui.newest_event())
    now = ui.cached(health.throughput_now)
    row = st.columns(4)
    row[0].metric("Decisions", ui.number(s.decisions))
    row[1].metric("Latency p50", _ms(s.p50_ms))
    row[2].metric("Latency p95", _ms(s.p95_ms))
    row[3].metric("Latency p99", _ms(s.p99_ms), help=f"Decision budget: {BUDGET_MS:g} ms")
    row = st.columns(4)
    row[0].metric("Error rate", ui.percent(s.error_rate, 2))
    row[1].metric("Fallback rate", ui.percent(s.fallback_rate, 2))
    row[2].metric("Writer lag", "—" if lag is None else ui.age(lag),
                  help="Now minus the newest event's arrival in the lake.")
    row[3].metric("Events/s now", f"{now.events_per_s:,.1f}",
                  help=f"Events that reached the lake in the last {now.window_s:.0f} s; "
                       f"decisions/s: {now.decisions_per_s:,.1f}")


def slo(f: Filters, s: health.Summary) -> None:
    st.subheader(f"Latency SLO: {s.slo_target:.0%} of decisions within {BUDGET_MS:g} ms")
    left, right = st.columns([1, 2])
    with left:
        st.metric("Within budget", ui.percent(s.attainment, 2),
                  delta=None if s.attainment is None else f"{(s.attainment - s.slo_target) * 100:+.2f} pts vs target")
        st.metric("Error budget left", ui.percent(s.budget_remaining),
                  help="1 − burn rate over the filtered period: below 0 the SLO is missed.")
    with right:
        burns = ui.cached(health.burn_rates, f, BUDGET_MS)
        ui.table(burns, "slo_burn_rates", {
            "window": "Window (ending at the newest decision)",
            "decisions": st.column_config.NumberColumn("Decisions", format="localized"),
            "within_budget": None,
            "attainment": st.column_config.NumberColumn("Within budget", format="percent"),
            "burn_rate": st.column_config.NumberColumn("Burn rate", format="%.2f×",
                                                       help="1× spends the error budget exactly; 14× over 1 h pages."),
        })


def over_time(f: Filters, s: health.Summary) -> None:
    bucket = health.bucket_seconds(s.first_ts, s.last_ts)
    series = ui.cached(health.latency_over_time, f, bucket, BUDGET_MS)
    events = ui.cached(health.events_over_time, f, bucket)
    st.subheader("Latency percentiles")
    long = series.unpivot(index="bucket", on=["p50_ms", "p95_ms", "p99_ms"], variable_name="percentile",
                          value_name="ms").with_columns(pl.col("percentile").str.replace("_ms", ""))
    lines = alt.Chart(long).mark_line(point=False).encode(
        ui.time_axis(bucket_s=bucket), alt.Y("ms:Q", title="Decision latency (ms)"),
        alt.Color("percentile:N", title="Percentile", sort=["p50", "p95", "p99"]),
        tooltip=[alt.Tooltip("bucket:T", title="From", format="%d %b %H:%M"), "percentile:N",
                 alt.Tooltip("ms:Q", format=".2f")],
    )
    budget = alt.Chart(pl.DataFrame({"ms": [BUDGET_MS]})).mark_rule(strokeDash=[6, 4], color="#d62728").encode(
        y="ms:Q", tooltip=[alt.Tooltip("ms:Q", title="Budget (ms)")])
    ui.chart((lines + budget).properties(height=280))

    left, right = st.columns(2)
    with left:
        st.subheader("Throughput")
        rates = pl.concat([
            events.select("bucket", pl.lit("events").alias("stream"), pl.col("events_per_s").alias("per_s")),
            series.select("bucket", pl.lit("decisions").alias("stream"),
                          (pl.col("decisions") / float(bucket)).alias("per_s")),
        ])
        ui.chart(alt.Chart(rates).mark_line().encode(
            ui.time_axis(bucket_s=bucket), alt.Y("per_s:Q", title="Per second"), alt.Color("stream:N", title=None),
            tooltip=[alt.Tooltip("bucket:T", title="From", format="%d %b %H:%M"), "stream:N",
                     alt.Tooltip("per_s:Q", title="per second", format=",.2f")],
        ).properties(height=240))
    with right:
        st.subheader("Errors and fallbacks")
        rates = series.select("bucket", pl.col("error_rate").alias("errors"),
                              pl.col("fallback_rate").alias("fallbacks")).unpivot(index="bucket", variable_name="rate")
        ui.chart(alt.Chart(rates).mark_line().encode(
            ui.time_axis(bucket_s=bucket), alt.Y("value:Q", title="Share of decisions", axis=alt.Axis(format="%")),
            alt.Color("rate:N", title=None),
            tooltip=[alt.Tooltip("bucket:T", title="From", format="%d %b %H:%M"), "rate:N",
                     alt.Tooltip("value:Q", format=".2%")],
        ).properties(height=240))


def _breakdown_chart(frame: pl.DataFrame) -> alt.Chart:
    return alt.Chart(frame).mark_bar().encode(
        alt.X("rate:Q", title="Share of all decisions", axis=alt.Axis(format="%")),
        alt.Y("code:N", title=None, sort="-x"),
        alt.Color("failure:N", title="Engine failure", scale=alt.Scale(domain=[True, False],
                                                                        range=["#d62728", "#7f7f7f"])),
        tooltip=["code:N", "meaning:N", alt.Tooltip("decisions:Q", format=","), alt.Tooltip("rate:Q", format=".2%")],
    ).properties(height=alt.Step(26))


def breakdowns(f: Filters) -> None:
    columns = {
        "code": "Code", "decisions": st.column_config.NumberColumn("Decisions", format="localized"),
        "rate": st.column_config.NumberColumn("Share of decisions", format="percent"),
        "meaning": "Meaning", "failure": st.column_config.CheckboxColumn("Engine failure"),
    }
    left, right = st.columns(2)
    for column, fn, title, empty in (
        (left, health.errors_by_code, "Errors by code", "No decision errored"),
        (right, health.fallbacks_by_reason, "Fallbacks by reason", "No decision fell back to the default"),
    ):
        with column:
            frame = ui.cached(fn, f)
            st.subheader(title)
            if frame.is_empty():
                ui.no_data(f"{empty} ({ui.describe(f)}).")
                continue
            ui.chart(_breakdown_chart(frame))
            ui.table(frame, fn.__name__, columns)


def models(f: Filters) -> None:
    st.subheader("Models in use")
    frame = ui.cached(health.model_versions, f)
    ui.table(frame, "model_versions", {
        "policy": "Policy", "model": "Model", "latest_version": "Serving last",
        "versions": st.column_config.NumberColumn("Versions", format="localized",
                                                  help="online updates of the model that served decisions"),
        "decisions": st.column_config.NumberColumn("Decisions", format="localized"),
        "share": st.column_config.NumberColumn("Share of the policy", format="percent"),
        "first_seen": st.column_config.DatetimeColumn("First seen", format="D MMM HH:mm"),
        "last_seen": st.column_config.DatetimeColumn("Last seen", format="D MMM HH:mm"),
    })


@st.fragment(run_every=ui.REFRESH_SECONDS)
def live(f: Filters) -> None:
    """Everything that moves with traffic, redrawn every few seconds."""
    with ui.panel("Service"):
        service_panel()
    s = None
    with ui.panel("Engine health"):
        s = ui.cached(health.summary, f, BUDGET_MS)
        if s.decisions == 0:
            ui.no_data(f"No decisions in the lake for {ui.describe(f)}: nothing to measure yet.")
        else:
            kpis(s)
    if s is None or s.decisions == 0:
        return
    with ui.panel("SLO"):
        slo(f, s)
    with ui.panel("Over time"):
        over_time(f, s)
    with ui.panel("Errors and fallbacks"):
        breakdowns(f)
    with ui.panel("Model versions"):
        models(f)


def _reliability(cal: mq.Calibration) -> alt.LayerChart:
    top = float(max(cal.bins["ci_upper"].max(), cal.bins["mean_score"].max()))
    diagonal = alt.Chart(pl.DataFrame({"x": [0.0, top], "y": [0.0, top]})).mark_line(
        strokeDash=[4, 4], color="#7f7f7f").encode(x="x:Q", y="y:Q")
    base = alt.Chart(cal.bins).encode(alt.X("mean_score:Q", title="Predicted probability (bin mean)",
                                            axis=alt.Axis(format="%")))
    bars = base.mark_errorbar().encode(alt.Y("ci_lower:Q", title="Observed rate", axis=alt.Axis(format="%")),
                                       alt.Y2("ci_upper:Q"))
    points = base.mark_circle(size=70).encode(
        alt.Y("observed_rate:Q"),
        tooltip=[alt.Tooltip("bin:Q", title="Decile"), alt.Tooltip("n:Q", format=","),
                 alt.Tooltip("mean_score:Q", title="Predicted", format=".2%"),
                 alt.Tooltip("observed_rate:Q", title="Observed", format=".2%")])
    return (diagonal + bars + points).properties(height=280, title="Reliability (perfect calibration on the dashes)")


@st.fragment(run_every=ui.SLOW_REFRESH_SECONDS)
def model_quality(f: Filters) -> None:
    """The propensity model on the outcomes that followed its decisions (heavier: refreshed slowly)."""
    st.header("Model quality")
    outcome = st.segmented_control("Outcome", list(mq.OUTCOMES), default="conversion", key="mq_outcome") or "conversion"
    with ui.panel("Model quality"):
        q = ui.cached(mq.quality, f, outcome=outcome, slow=True)
        if q.decisions == 0:
            ui.no_data(f"No mature propensity-model decisions for {ui.describe(f)} (decisions count once "
                       "their outcome window of 30 min has passed).")
            return
        row = st.columns(4)
        row[0].metric("Scored decisions", ui.number(q.decisions), help=f"{q.outcomes:,} led to a {outcome}")
        row[1].metric("AUC", "—" if q.auc is None else f"{q.auc:.3f}",
                      help=f"P(a decision followed by a {outcome} was scored above one that was not); "
                           "0.5 is chance, 1 is perfect ranking.")
        row[2].metric("Brier score", "—" if q.calibration.brier is None else f"{q.calibration.brier:.4f}",
                      help=f"Base-rate reference: {q.calibration.brier_reference or 0:.4f}")
        row[3].metric("Brier skill", ui.percent(q.calibration.brier_skill),
                      help="Improvement over always predicting the base rate.")
        left, right = st.columns(2)
        with left:
            ui.chart(_reliability(q.calibration))
        with right:
            st.subheader("Model-driven vs rule-driven decisions")
            lift = ui.cached(mq.lift_vs_rules, f, outcome=outcome, slow=True)
            if lift.is_empty():
                ui.no_data("No placement has both model-driven and rule-driven decisions yet.")
                return
            ui.table(lift, "model_vs_rules", {
                "placement": "Placement",
                "model_decisions": st.column_config.NumberColumn("Model decisions", format="localized"),
                "model_rate": st.column_config.NumberColumn(f"Model {outcome} rate", format="percent"),
                "rules_decisions": st.column_config.NumberColumn("Rule decisions", format="localized"),
                "rules_rate": st.column_config.NumberColumn(f"Rules {outcome} rate", format="percent"),
                "lift": st.column_config.NumberColumn("Lift", format="percent"),
                "ci_lower": st.column_config.NumberColumn("Lift low", format="percent"),
                "ci_upper": st.column_config.NumberColumn("Lift high", format="percent"),
                "p_value": st.column_config.NumberColumn("p-value", format="%.3g"),
                "status": "Status",
            })


live(FILTERS)
model_quality(FILTERS)
