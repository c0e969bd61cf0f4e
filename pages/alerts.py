"""Alerts: what the monitors (`momento watch`, rules in data/monitors.toml) found, the arms paused
and their audit, and the service's last minutes as the rules read them. Numbers from
`metrics.monitors`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import polars as pl
import streamlit as st

from metrics.filters import Filters
from metrics.monitors import history, inputs
from metrics.monitors.evaluate import Numbers, evaluate
from metrics.monitors.rules import ModelHealth, MonitorsError, default_path, load_monitors
from metrics.queries import explain
from momento import formatting as fmt
from pages import tables, ui
from pages.cache import cached, scenario, settings
from pages.explain import how_computed

RECENT_WINDOW_S = 300
"""The service panel's window: the last five minutes, as the error and fallback rules read them."""

ui.header("Alerts", "What the monitors found, the arms paused by a guardrail or a person, and why.")


def open_alerts() -> None:
    st.subheader("Open alerts")
    found = cached(history.open_alerts)
    if found.is_empty():
        st.success("No alert is open.", icon=":material/check_circle:")
    else:
        for row in found.iter_rows(named=True):
            action = f" · action: **{row['action']}**" if row["action"] else ""
            st.error(
                f"**{row['rule']}** · {row['subject']} — {row['summary']}{action} "
                f"(since {fmt.timestamp(row['since'])} UTC)",
                icon=":material/notifications_active:",
            )
    how_computed(explain(history.OPEN, Filters()))


def paused() -> None:
    st.subheader("Paused arms")
    states = cached(inputs.pause_states)
    now_paused = states.filter(pl.col("action") == "pause")
    if now_paused.is_empty():
        st.caption("No arm is paused: every experiment serves its configured arms.")
    else:
        tables.table(
            now_paused.drop("action"),
            "paused_arms",
            {
                "experiment_id": "Experiment",
                "arm": "Arm",
                "actor": "Paused by",
                "rule": "Rule",
                "reason": tables.text("Why"),
                "ts": tables.timestamp("Since (UTC)"),
            },
        )
    how_computed(explain(inputs.PAUSES, Filters()))
    audit = cached(history.pause_audit)
    if not audit.is_empty():
        st.markdown("**Audit** — every pause and resume")
        tables.table(
            audit,
            "pause_audit",
            {
                "ts": tables.timestamp("Time (UTC)"),
                "experiment_id": "Experiment",
                "arm": "Arm",
                "action": "Change",
                "actor": "By",
                "rule": "Rule",
                "reason": tables.text("Why"),
                "evidence": tables.text("Evidence"),
            },
        )
    how_computed(explain(history.AUDIT, Filters(), limit=200))


def recent_changes() -> None:
    st.subheader("Alert history")
    found = cached(history.changes)
    if found.is_empty():
        ui.no_data(
            "No alert has fired yet. `momento watch` (started by `momento demo`) evaluates the monitors "
            "every few seconds."
        )
    else:
        tables.table(
            found.drop("alert_id"),
            "alert_history",
            {
                "ts": tables.timestamp("Time (UTC)"),
                "rule": "Rule",
                "kind": "Kind",
                "subject": "Subject",
                "state": "State",
                "summary": tables.text("What"),
                "action": "Action",
                "evidence": tables.text("Evidence"),
            },
        )
    how_computed(explain(history.CHANGES, Filters(), limit=200))


def service() -> None:
    st.subheader(f"Service, last {RECENT_WINDOW_S // 60} minutes")
    now = datetime.now(UTC).replace(microsecond=0)
    budget = scenario().governance.decision_budget_ms
    arguments: dict[str, Any] = {"windows": (RECENT_WINDOW_S,), "now": now, "budget_ms": budget}
    frame = cached(inputs.service_windows, **arguments)
    row = frame.row(0, named=True) if frame.height else None
    if not row or not row["decisions"]:
        ui.no_data("No decision in the last five minutes.")
    else:
        n = row["decisions"]
        cols = st.columns(5)
        cols[0].metric("Decisions", fmt.number(n))
        cols[1].metric("Within the latency budget", fmt.percent(row["within_budget"] / n, 2))
        cols[2].metric("Errors", fmt.percent(row["errors"] / n, 2))
        cols[3].metric("Engine-failure fallbacks", fmt.percent(row["failure_fallbacks"] / n, 2))
        cols[4].metric(
            "Personalised without consent",
            fmt.number(row["consent_violations"]),
            help="Must stay 0: the consent_violation rule alerts on any.",
        )
    how_computed(explain(inputs.WINDOWS, Filters(), **arguments))


def model_health() -> None:
    st.subheader("Model health")
    path = default_path(settings().scenario)
    try:
        rules = [r for r in load_monitors(path).rules if isinstance(r, ModelHealth)]
    except MonitorsError as exc:
        st.error(f"The monitors file cannot be used: {exc}")
        return
    if not rules:
        st.caption(f"No model_health rule in {path.name}: the propensity model is not watched.")
        return
    now = datetime.now(UTC).replace(microsecond=0)
    for rule in rules:
        recent, reference = cached(inputs.model_windows, rule, now)
        findings = evaluate(rule, Numbers(now, models={rule.name: (recent, reference)}))
        verdict = (
            findings[0].summary
            if findings
            else (
                f"Not judged yet: each window needs {rule.min_decisions:,} mature decisions and {rule.min_outcomes} "
                f"{rule.outcome}s."
            )
        )
        (st.warning if findings and findings[0].firing else st.caption)(f"**{rule.name}** — {verdict}")
        cols = iter(st.columns(4))
        for label, window in (("recent", recent), ("reference", reference)):
            next(cols).metric(
                f"AUC, {label}",
                "—" if window.auc is None else fmt.number(window.auc, 3),
                help=f"{fmt.number(window.decisions)} mature decisions, {fmt.number(window.outcomes)} {rule.outcome}s",
            )
            next(cols).metric(
                f"Calibration gap, {label}",
                fmt.number(window.calibration_gap, 3) if window.decisions else "—",
                help="Mean score minus the observed rate: 0 is calibrated in the large.",
            )
        how_computed(explain(inputs.MODEL_WINDOWS, Filters(), rule=rule, now=now))


@st.fragment(run_every=ui.REFRESH_SECONDS)
def live() -> None:
    for name, draw in (
        ("Open alerts", open_alerts),
        ("Paused arms", paused),
        ("Service", service),
        ("Model health", model_health),
        ("Alert history", recent_changes),
    ):
        with ui.panel(name):
            draw()


live()
