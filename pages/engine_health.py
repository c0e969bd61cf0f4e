"""Engine health: is the decisioning engine answering, fast, correctly, and is its data on time?"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import streamlit as st

from metrics import health
from metrics import model_quality as mq
from metrics.filters import Filters
from metrics.queries import explain
from momento import formatting as fmt
from pages import analytics, charts, tables, ui
from pages.cache import cached, periodic, settings
from pages.explain import how_computed

ui.header("Engine health", "Live status, latency against the budget, errors and fallbacks, the writer, the models.")
FILTERS = ui.filters()
BUDGET_MS = settings().decision_budget_ms
WINDOW_S = 60.0  # the window of "now" for throughput
# Model quality: how old a decision must be for its outcome to count, and how many are scored.
MATURITY_MINUTES, SCORED_LIMIT = 30.0, 200_000


def _ms(value: float | None) -> str:
    return f"{fmt.number(value, 2)} ms" if value is not None else fmt.MISSING


def service_panel() -> None:
    """The live probe and the writer's back-pressure from the service's /metrics."""
    url = settings().service_url
    up, sentence = ui.service_status(url)
    left, mid, right = st.columns(3)
    left.metric("API status", "up" if up else "down", help=sentence)
    if not up:
        st.warning(
            f"The decisioning service is not answering ({sentence}). The lake's numbers below still "
            "show what it logged; live back-pressure needs the service."
        )
        return
    text = ui.service_metrics(url)
    try:
        pressure = health.backpressure(text) if text else None
    except ValueError:
        pressure = None
    if pressure is None or pressure.queue_depth is None:
        st.info("The service does not report its writer queue at /metrics.")
        return
    fill = fmt.percent(pressure.fill) if pressure.fill is not None else "no bound reported"
    mid.metric("Writer queue", f"{fmt.number(pressure.queue_depth)} rows", help=f"{fill} of the queue bound")
    right.metric(
        "Refused: queue full",
        fmt.number(pressure.refused_requests),
        help="Requests the service answered 503 + Retry-After because the writer's queue was full "
        f"(appends the writer itself refused: {fmt.number(pressure.queue_full_rejections)}).",
    )


def kpis(s: health.Summary) -> None:
    lag = health.writer_lag(ui.newest_event())
    now = health.throughput_at(cached(health.arrivals, WINDOW_S), datetime.now(UTC), WINDOW_S)
    row = st.columns(4)
    row[0].metric("Decisions", fmt.number(s.decisions))
    row[1].metric("Latency p50", _ms(s.p50_ms))
    row[2].metric("Latency p95", _ms(s.p95_ms))
    row[3].metric("Latency p99", _ms(s.p99_ms), help=f"Decision budget: {fmt.significant(BUDGET_MS)} ms")
    row = st.columns(4)
    row[0].metric("Error rate", fmt.percent(s.error_rate, 2))
    row[1].metric("Fallback rate", fmt.percent(s.fallback_rate, 2))
    row[2].metric("Writer lag", fmt.duration(lag), help="Now minus the newest event's arrival in the lake.")
    row[3].metric(
        "Events/s now",
        fmt.number(now.events_per_s, 1),
        help=f"Events that reached the lake in the last {fmt.number(now.window_s)} s; "
        f"decisions/s: {fmt.number(now.decisions_per_s, 1)}",
    )


def slo(f: Filters, s: health.Summary) -> None:
    st.subheader(f"Latency SLO: {fmt.percent(s.slo_target, 0)} of decisions within {fmt.significant(BUDGET_MS)} ms")
    left, right = st.columns([1, 2])
    with left:
        st.metric(
            "Within budget",
            fmt.percent(s.attainment, 2),
            delta=None
            if s.attainment is None
            else f"{fmt.number((s.attainment - s.slo_target) * 100, 2, signed=True)} pts vs target",
        )
        st.metric(
            "Error budget left",
            fmt.percent(s.budget_remaining),
            help="1 − burn rate over the filtered period: below 0 the SLO is missed.",
        )
    with right:
        burns = health.burn_rates(analytics.aggregates(), f, BUDGET_MS)
        tables.table(
            burns,
            "slo_burn_rates",
            {
                "window": "Window (ending at the newest decision)",
                "decisions": tables.count("Decisions"),
                "within_budget": None,
                "attainment": tables.percent("Within budget", 2),
                "burn_rate": tables.Column(
                    "Burn rate",
                    lambda v: f"{fmt.number(v, 2)}×",
                    help="1× spends the error budget exactly; 14× over 1 h pages.",
                ),
            },
        )
        how_computed(explain(health.BURN, f, budget_ms=BUDGET_MS), *analytics.source())


def over_time(f: Filters, s: health.Summary) -> None:
    bucket = health.bucket_seconds(s.first_ts, s.last_ts)
    aggregates = analytics.aggregates()
    series = health.latency_over_time(aggregates, f, bucket, BUDGET_MS)
    events = health.events_over_time(aggregates, f, bucket)
    st.subheader("Latency percentiles")
    ui.chart(charts.latency(series, bucket, BUDGET_MS))
    how_computed(explain(health.OVER_TIME, f, bucket_s=bucket, budget_ms=BUDGET_MS), *analytics.source())

    left, right = st.columns(2)
    with left:
        st.subheader("Throughput")
        ui.chart(charts.throughput(series, events, bucket))
        how_computed(explain(health.EVENTS_OVER_TIME, f, bucket_s=bucket), *analytics.source())
    with right:
        st.subheader("Errors and fallbacks")
        ui.chart(charts.error_rates(series, bucket))


def breakdowns(f: Filters) -> None:
    columns: dict[str, tables.Spec] = {
        "code": "Code",
        "decisions": tables.count("Decisions"),
        "rate": tables.percent("Share of decisions", 2),
        "meaning": "Meaning",
        "failure": st.column_config.CheckboxColumn("Engine failure"),
    }
    left, right = st.columns(2)
    for column, fn, query, title, empty in (
        (left, health.errors_by_code, health.ERRORS, "Errors by code", "No decision errored"),
        (
            right,
            health.fallbacks_by_reason,
            health.FALLBACKS,
            "Fallbacks by reason",
            "No decision fell back to the default",
        ),
    ):
        with column:
            frame = fn(analytics.aggregates(), f)
            st.subheader(title)
            if frame.is_empty():
                ui.no_data(f"{empty} ({ui.describe(f)}).")
            else:
                ui.chart(charts.breakdown(frame))
                tables.table(frame, fn.__name__, columns)
            how_computed(explain(query, f), *analytics.source())


def models(f: Filters) -> None:
    st.subheader("Models in use")
    frame = periodic(health.model_versions, f)
    tables.table(
        frame,
        "model_versions",
        {
            "policy": "Policy",
            "model": "Model",
            "latest_version": "Serving last",
            "versions": tables.count("Versions", help="online updates of the model that served decisions"),
            "decisions": tables.count("Decisions"),
            "share": tables.percent("Share of the policy"),
            "first_seen": tables.timestamp("First seen"),
            "last_seen": tables.timestamp("Last seen"),
        },
    )
    how_computed(explain(health.MODELS, f))


@st.fragment(run_every=ui.REFRESH_SECONDS)
def live(f: Filters) -> None:
    """Everything that moves with traffic, redrawn every few seconds."""
    with ui.panel("Service"):
        service_panel()
    s = None
    with ui.panel("Engine health"):
        s = health.summary(analytics.aggregates(), f, BUDGET_MS)
        analytics.source_note()
        if s.decisions == 0:
            ui.no_data(f"No decisions in the lake for {ui.describe(f)}: nothing to measure yet.")
        else:
            kpis(s)
        newest = cached(health.bounds)  # the bounds the two queries ran with
        how_computed(
            explain(health.SUMMARY, f, budget_ms=BUDGET_MS),
            explain(health.ARRIVALS, Filters(), None, window_s=WINDOW_S, **newest),
            explain(health.NEWEST, Filters(), None, **newest),
            *analytics.source(),
        )
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


@st.fragment(run_every=ui.REFRESH_SECONDS)
def model_quality(f: Filters) -> None:
    """The propensity model on the outcomes that followed its decisions (scans renewed `periodic`ally)."""
    st.header("Model quality")
    outcome = st.segmented_control("Outcome", list(mq.OUTCOMES), default="conversion", key="mq_outcome") or "conversion"
    with ui.panel("Model quality"):
        scores: dict[str, Any] = {"outcome": outcome, "maturity_minutes": MATURITY_MINUTES, "limit": SCORED_LIMIT}
        q = periodic(mq.quality, f, **scores)
        if q.decisions == 0:
            ui.no_data(
                f"No mature propensity-model decisions for {ui.describe(f)} (decisions count once "
                "their outcome window of 30 min has passed)."
            )
            how_computed(explain(mq.SCORES, f, **scores))
            return
        row = st.columns(4)
        row[0].metric("Scored decisions", fmt.number(q.decisions), help=f"{fmt.number(q.outcomes)} led to a {outcome}")
        row[1].metric(
            "AUC",
            fmt.number(q.auc, 3),
            help=f"P(a decision followed by a {outcome} was scored above one that was not); "
            "0.5 is chance, 1 is perfect ranking.",
        )
        row[2].metric(
            "Brier score",
            fmt.number(q.calibration.brier, 4),
            help=f"Base-rate reference: {fmt.number(q.calibration.brier_reference or 0, 4)}",
        )
        row[3].metric(
            "Brier skill",
            fmt.percent(q.calibration.brier_skill),
            help="Improvement over always predicting the base rate.",
        )
        left, right = st.columns(2)
        with left:
            ui.chart(charts.reliability(q.calibration))
            how_computed(explain(mq.SCORES, f, **scores))
        with right:
            st.subheader("Model-driven vs rule-driven decisions")
            lift = periodic(mq.lift_vs_rules, f, outcome=outcome, maturity_minutes=MATURITY_MINUTES)
            if lift.is_empty():
                ui.no_data("No placement has both model-driven and rule-driven decisions yet.")
            else:
                tables.table(
                    lift,
                    "model_vs_rules",
                    {
                        "placement": "Placement",
                        "model_decisions": tables.count("Model decisions"),
                        "model_rate": tables.percent(f"Model {outcome} rate", 2),
                        "rules_decisions": tables.count("Rule decisions"),
                        "rules_rate": tables.percent(f"Rules {outcome} rate", 2),
                        "lift": tables.percent("Lift", signed=True),
                        "ci_lower": tables.percent("Lift low", signed=True),
                        "ci_upper": tables.percent("Lift high", signed=True),
                        "p_value": tables.Column("p-value", fmt.significant),
                        "status": "Status",
                    },
                )
            how_computed(explain(mq.LIFT, f, outcome=outcome, maturity_minutes=MATURITY_MINUTES))


live(FILTERS)
model_quality(FILTERS)
