"""Governance: consent, frequency, fairness across segments, the audit trail and erasures."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from metrics import compliance as gov
from metrics.filters import Filters
from momento.codes import Code, sentence
from pages import ui

ui.header("Governance", "Consent and opt-outs, frequency saturation, parity across segments, the audit trail.")
FILTERS = ui.filters()


def consent(f: Filters) -> None:
    st.subheader("Consent and opt-outs")
    c = ui.cached(gov.consent, f)
    if c.decisions == 0 and c.withdrawn_users == 0 and c.opted_out_users == 0:
        ui.no_data(f"No decisions or events for {ui.describe(f)}.")
        return
    row = st.columns(4)
    row[0].metric("Consent rate", ui.percent(c.consent_rate), help=f"{c.consented:,} of {c.decisions:,} decisions "
                  "were for a visitor who consented to personalisation.")
    row[1].metric("Consent withdrawals", ui.percent(c.withdrawal_rate, 2),
                  help=f"{c.withdrawn_users:,} users withdrew consent; the engine decided for {c.decided_users:,} users.")
    row[2].metric("Opt-out rate", ui.percent(c.opt_out_rate, 2),
                  help=f"{c.opted_out_users:,} of {c.messaged_users:,} users reached by e-mail or push opted out.")
    row[3].metric("Users reached by messages", ui.number(c.messaged_users))
    daily = ui.cached(gov.consent_daily, f)
    if daily.height:
        rate = alt.Chart(daily).mark_line(point=True).encode(
            alt.X("day:T", title="Day (UTC)", axis=alt.Axis(format="%d %b", labelAngle=0)),
            alt.Y("consent_rate:Q", title="Consent rate", axis=alt.Axis(format="%"), scale=alt.Scale(zero=False)),
            tooltip=[alt.Tooltip("day:T", format="%d %b %Y"), alt.Tooltip("consent_rate:Q", format=".1%"),
                     alt.Tooltip("decisions:Q", format=",")])
        counts = daily.unpivot(index="day", on=["withdrawals", "opt_outs"], variable_name="event", value_name="count")
        bars = alt.Chart(counts).mark_bar().encode(
            alt.X("day:T", title="Day (UTC)", axis=alt.Axis(format="%d %b", labelAngle=0)),
            alt.Y("count:Q", title="Events", axis=alt.Axis(tickMinStep=1)), alt.Color("event:N", title=None),
            xOffset="event:N",
            tooltip=[alt.Tooltip("day:T", format="%d %b %Y"), "event:N", alt.Tooltip("count:Q", format=",")])
        left, right = st.columns(2)
        with left:
            ui.chart(rate.properties(height=220, title="Consent rate of decisions by day"))
        with right:
            ui.chart(bars.properties(height=220, title="Consent withdrawals and opt-outs by day"))


def saturation(f: Filters) -> None:
    st.subheader("Frequency saturation")
    dist = ui.cached(gov.saturation, f)
    if dist.is_empty():
        ui.no_data(f"No exposures for {ui.describe(f)}.")
        return
    caps = dict(ui.scenario().caps)
    shown = dist.with_columns(pl.col("exposures").clip(upper_bound=gov.SATURATION_CAP)).group_by(
        "channel", "exposures").agg(pl.col("user_days").sum())
    ui.chart(alt.Chart(shown).mark_bar().encode(
        alt.X("exposures:O", title=f"Exposures per user per day ({gov.SATURATION_CAP} means {gov.SATURATION_CAP} or more)",
              axis=alt.Axis(labelAngle=0)),
        alt.Y("user_days:Q", title="User-days (log scale)", scale=alt.Scale(type="symlog")),
        alt.Color("channel:N", title="Channel"), alt.XOffset("channel:N"),
        tooltip=["channel:N", alt.Tooltip("exposures:O", title="Exposures per day"),
                 alt.Tooltip("user_days:Q", title="User-days", format=",")],
    ).properties(height=240))
    ui.table(gov.saturation_summary(dist, caps), "frequency_saturation", {
        "channel": "Channel", "user_days": st.column_config.NumberColumn("User-days", format="localized"),
        "mean": st.column_config.NumberColumn("Mean", format="%.2f"),
        "median": st.column_config.NumberColumn("Median", format="%.0f"),
        "p95": st.column_config.NumberColumn("p95", format="%.0f"),
        "max": st.column_config.NumberColumn("Max"),
        "cap": st.column_config.NumberColumn("Daily cap", help="Personalised decisions per user, channel and day."),
        "over_cap": st.column_config.NumberColumn("User-days over cap", format="percent"),
    })


def parity(f: Filters) -> None:
    st.subheader("Personalisation and offer parity")
    st.caption("What the engine chose for each group. A disparity is flagged when a chi-square test finds the "
               "groups differ (p < 0.01) and the lowest group's rate is under four fifths of the highest's.")
    dimension = st.segmented_control("Across", gov.DIMENSIONS, default="segment", key="parity_dimension") or "segment"
    sc = ui.scenario()
    offers = tuple(sorted(v for e in sc.experiences for v in e.discount))
    offer_placements = tuple(sorted(e.placement for e in sc.experiences if e.discount))
    p = ui.cached(gov.parity, f, dimension, offers, offer_placements, slow=True)
    if p.groups.is_empty():
        ui.no_data(f"No decisions for {ui.describe(f)}.")
        return
    left, right = st.columns(2)
    for column, test, rate, title in ((left, p.personalisation, "personalised_rate", "Personalised share of decisions"),
                                      (right, p.offers, "offer_rate", "Discount-offer share (offer placements)")):
        with column:
            bars = alt.Chart(p.groups).mark_bar().encode(
                alt.X(f"{rate}:Q", title=title, axis=alt.Axis(format="%")),
                alt.Y("grp:N", title=dimension.replace("_", " ").capitalize()),
                tooltip=[alt.Tooltip("grp:N", title=dimension), alt.Tooltip(f"{rate}:Q", format=".1%"),
                         alt.Tooltip("decisions:Q", format=",")])
            ui.chart(bars.properties(height=alt.Step(28)))
            (st.error if test.disparity else st.success if test.disparity is False else st.info)(
                f"{title}: {test.verdict}"
                + ("" if test.chi2 is None else f" (χ² = {test.chi2:,.1f}, {test.dof} df, Cramér's V = {test.cramers_v:.3f})"))
    ui.table(p.groups, f"parity_by_{dimension}", {
        "grp": dimension.capitalize(), "decisions": st.column_config.NumberColumn("Decisions", format="localized"),
        "personalised": st.column_config.NumberColumn("Personalised", format="localized"),
        "personalised_rate": st.column_config.NumberColumn("Personalised share", format="percent"),
        "offer_eligible": st.column_config.NumberColumn("On offer placements", format="localized"),
        "offered": st.column_config.NumberColumn("Offered a discount", format="localized"),
        "offer_rate": st.column_config.NumberColumn("Offer share", format="percent"),
    })


@st.fragment(run_every=ui.REFRESH_SECONDS)
def live(f: Filters) -> None:
    """The panels that move with traffic, redrawn every few seconds."""
    with ui.panel("Consent"):
        consent(f)
    with ui.panel("Frequency saturation"):
        saturation(f)
    with ui.panel("Parity"):
        parity(f)


def audit(f: Filters) -> None:
    st.subheader("Audit trail")
    st.caption("Every decision with the reasons it was made. Ids match by prefix; the global filters apply.")
    with st.form("audit_search"):
        a, b, c, d = st.columns([3, 3, 3, 1])
        decision_id = a.text_input("Decision id", key="audit_decision", placeholder="e.g. 3f2a…")
        user_id = b.text_input("Pseudonymised user id", key="audit_user", placeholder="32 hex characters")
        reason = c.selectbox("Reason code", [code.value for code in Code], index=None, key="audit_reason",
                             placeholder="Any reason", format_func=lambda code: f"{code} — {sentence(code)}")
        limit = d.number_input("Rows", min_value=1, max_value=10_000, value=200, step=100, key="audit_limit")
        st.form_submit_button("Search", icon=":material/search:")
    query = gov.AuditQuery(decision_id=decision_id, user_id=user_id, reason=reason, limit=int(limit))
    found = ui.cached(gov.audit, f, query)
    if found.is_empty():
        ui.no_data(f"No decision matches this search for {ui.describe(f)}.")
        return
    st.caption(f"{found.height:,} newest matching decisions")
    ui.table(found, "audit_trail", {
        "ts": st.column_config.DatetimeColumn("Time (UTC)", format="D MMM YYYY HH:mm:ss"),
        "decision_id": "Decision", "user_id": "User (pseudonymised)",
        "propensity": st.column_config.NumberColumn("Propensity", format="%.3f"),
        "latency_us": st.column_config.NumberColumn("Latency (µs)", format="localized"),
        "reasons": st.column_config.ListColumn("Reason codes"),
        "explanation": st.column_config.TextColumn("Why", width="large"),
    }, column_order=["ts", "decision_id", "user_id", "placement", "arm", "variant", "policy", "explanation",
                     "reasons", "fallback", "fallback_reason", "status", "error_code", "consent", "channel",
                     "segment", "device", "region", "journey", "experiment_id", "model_version", "propensity",
                     "latency_us"])


def erasures() -> None:
    st.subheader("Erasure log")
    log = ui.cached(gov.erasures)
    if log.is_empty():
        ui.no_data("No erasure has been requested.")
        return
    ui.table(log, "erasure_log", {
        "ts": st.column_config.DatetimeColumn("Time (UTC)", format="D MMM YYYY HH:mm:ss"),
        "erasure_id": "Erasure", "subject_hash": "Subject (SHA-256 of the pseudonymised id)",
        "rows_deleted": st.column_config.NumberColumn("Rows deleted", format="localized"),
        "tables": st.column_config.ListColumn("Tables"), "requested_by": "Requested by",
    })


live(FILTERS)
with ui.panel("Audit trail"):
    audit(FILTERS)
with ui.panel("Erasure log"):
    erasures()
