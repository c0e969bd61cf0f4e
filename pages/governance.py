"""Governance: consent, frequency, fairness across segments, the audit trail and erasures.
Numbers come from `metrics.compliance`."""

from __future__ import annotations

from typing import Any

import polars as pl
import streamlit as st

from metrics import compliance, ope_lake
from metrics.filters import Filters
from metrics.queries import explain
from momento import formatting as fmt
from momento.codes import Code, sentence
from pages import analytics, charts, tables, ui
from pages.cache import cached, periodic, scenario
from pages.explain import how_computed

ui.header("Governance", "Consent and opt-outs, frequency saturation, parity across segments, the audit trail.")
FILTERS = ui.filters()


def consent(f: Filters) -> None:
    st.subheader("Consent and opt-outs")
    c = periodic(compliance.consent, f)
    if c.decisions == 0 and c.withdrawn_users == 0 and c.opted_out_users == 0:
        ui.no_data(f"No decisions or events for {ui.describe(f)}.")
        how_computed(explain(compliance.CONSENT, f))
        return
    row = st.columns(4)
    row[0].metric(
        "Consent rate",
        fmt.percent(c.consent_rate),
        help=f"{fmt.number(c.consented)} of {fmt.number(c.decisions)} decisions were for a visitor who "
        "consented to personalisation.",
    )
    row[1].metric(
        "Consent withdrawals",
        fmt.percent(c.withdrawal_rate, 2),
        help=f"{fmt.number(c.withdrawn_users)} users withdrew consent; the engine decided for "
        f"{fmt.number(c.decided_users)} users.",
    )
    row[2].metric(
        "Opt-out rate",
        fmt.percent(c.opt_out_rate, 2),
        help=f"{fmt.number(c.opted_out_users)} of {fmt.number(c.messaged_users)} users reached by e-mail "
        "or push opted out.",
    )
    row[3].metric("Users reached by messages", fmt.number(c.messaged_users))
    how_computed(explain(compliance.CONSENT, f))
    daily = compliance.consent_daily(analytics.aggregates(), f)
    if daily.height:
        left, right = st.columns(2)
        with left:
            ui.chart(charts.consent_rate(daily))
        with right:
            ui.chart(charts.withdrawals(daily))
        how_computed(explain(compliance.CONSENT_DAILY, f), *analytics.source())


def saturation(f: Filters) -> None:
    st.subheader("Frequency saturation")
    dist = periodic(compliance.saturation, f)
    if dist.is_empty():
        ui.no_data(f"No exposures for {ui.describe(f)}.")
        how_computed(explain(compliance.SATURATION, f))
        return
    caps: dict[str, int] = dict(scenario().caps.items())
    top = compliance.SATURATION_CAP
    shown = (
        dist.with_columns(pl.col("exposures").clip(upper_bound=top))
        .group_by("channel", "exposures")
        .agg(pl.col("user_days").sum())
    )
    ui.chart(charts.saturation(shown, top))
    tables.table(
        compliance.saturation_summary(dist, caps),
        "frequency_saturation",
        {
            "channel": "Channel",
            "user_days": tables.count("User-days"),
            "mean": tables.decimal("Mean", 2),
            "median": tables.count("Median"),
            "p95": tables.count("p95"),
            "max": tables.count("Max"),
            "cap": tables.count("Daily cap", help="Personalised decisions per user, channel and day."),
            "over_cap": tables.percent("User-days over cap"),
        },
    )
    how_computed(explain(compliance.SATURATION, f))


@st.fragment(run_every=ui.REFRESH_SECONDS)
def parity(f: Filters) -> None:
    """What the engine chose for each group (a scan renewed `periodic`ally)."""
    st.subheader("Personalisation and offer parity")
    st.caption(
        "What the engine chose for each group. A disparity is flagged when a chi-square test finds the "
        "groups differ (p < 0.01) and the lowest group's rate is under four fifths of the highest's."
    )
    dimension = (
        st.segmented_control("Across", compliance.DIMENSIONS, default="segment", key="parity_dimension") or "segment"
    )
    with ui.panel("Parity"):
        sc = scenario()
        arguments: dict[str, Any] = {
            "dimension": dimension,
            "offer_variants": sc.offer_variants,
            "offer_placements": sc.offer_placements,
        }
        p = periodic(compliance.parity, f, **arguments)
        if p.groups.is_empty():
            ui.no_data(f"No decisions for {ui.describe(f)}.")
            how_computed(explain(compliance.PARITY, f, **arguments))
            return
        left, right = st.columns(2)
        for column, test, rate, title in (
            (left, p.personalisation, "personalised_rate", "Personalised share of decisions"),
            (right, p.offers, "offer_rate", "Discount-offer share (offer placements)"),
        ):
            with column:
                ui.chart(charts.parity(p.groups, rate, title, dimension))
                statistic = (
                    ""
                    if test.chi2 is None
                    else (
                        f" (χ² = {fmt.number(test.chi2, 1)}, {test.dof} df, "
                        f"Cramér's V = {fmt.number(test.cramers_v, 3)})"
                    )
                )
                (st.error if test.disparity else st.success if test.disparity is False else st.info)(
                    f"{title}: {test.verdict}{statistic}"
                )
        tables.table(
            p.groups,
            f"parity_by_{dimension}",
            {
                "grp": dimension.capitalize(),
                "decisions": tables.count("Decisions"),
                "personalised": tables.count("Personalised"),
                "personalised_rate": tables.percent("Personalised share"),
                "offer_eligible": tables.count("On offer placements"),
                "offered": tables.count("Offered a discount"),
                "offer_rate": tables.percent("Offer share"),
            },
        )
        how_computed(explain(compliance.PARITY, f, **arguments))


@st.fragment(run_every=ui.REFRESH_SECONDS)
def live(f: Filters) -> None:
    """The panels that move with traffic, redrawn every few seconds."""
    with ui.panel("Consent"):
        consent(f)
    with ui.panel("Frequency saturation"):
        saturation(f)


def audit(f: Filters) -> None:
    st.subheader("Audit trail")
    st.caption("Every decision with the reasons it was made. Ids match by prefix; the global filters apply.")
    with st.form("audit_search"):
        a, b, c, d = st.columns([3, 3, 3, 1])
        decision_id = a.text_input("Decision id", key="audit_decision", placeholder="e.g. 3f2a…")
        user_id = b.text_input("Pseudonymised user id", key="audit_user", placeholder="32 hex characters")
        reason = c.selectbox(
            "Reason code",
            [code.value for code in Code],
            index=None,
            key="audit_reason",
            placeholder="Any reason",
            format_func=lambda code: f"{code} — {sentence(code)}",
        )
        limit = d.number_input("Rows", min_value=1, max_value=10_000, value=200, step=100, key="audit_limit")
        st.form_submit_button("Search", icon=":material/search:")
    search = compliance.AuditQuery(decision_id=decision_id, user_id=user_id, reason=reason, limit=int(limit))
    found = cached(compliance.audit, f, search)
    if found.is_empty():
        ui.no_data(f"No decision matches this search for {ui.describe(f)}.")
    else:
        st.caption(f"{fmt.number(found.height)} newest matching decisions")
        tables.table(
            found,
            "audit_trail",
            {
                "ts": tables.timestamp("Time (UTC)"),
                "decision_id": "Decision",
                "user_id": "User (pseudonymised)",
                "propensity": tables.decimal("Propensity", 3),
                "latency_us": tables.count("Latency (µs)"),
                "reasons": st.column_config.ListColumn("Reason codes"),
                "explanation": tables.text("Why"),
            },
            column_order=[
                "ts",
                "decision_id",
                "user_id",
                "placement",
                "arm",
                "variant",
                "policy",
                "explanation",
                "reasons",
                "fallback",
                "fallback_reason",
                "status",
                "error_code",
                "consent",
                "channel",
                "segment",
                "device",
                "region",
                "journey",
                "experiment_id",
                "model_version",
                "propensity",
                "latency_us",
            ],
        )
    how_computed(explain(compliance.AUDIT, f, search=search))


@st.fragment(run_every=ui.REFRESH_SECONDS)
def propensities(f: Filters) -> None:
    """The logged propensities' integrity (a scan renewed `periodic`ally)."""
    with ui.panel("Propensity integrity"):
        propensity_counts(f)


def propensity_counts(f: Filters) -> None:
    st.subheader("Propensity integrity")
    st.caption("The probabilities logged with every policy's decision, which the Policy lab's estimates rest on.")
    experiences = tuple((e.id, tuple(e.variants)) for e in scenario().experiences)
    counts = periodic(ope_lake.integrity_by_experience, f, experiences)
    if counts.is_empty():
        ui.no_data(f"No decision chosen by a policy for {ui.describe(f)}.")
    else:
        floor = fmt.percent(counts["floor"][0], 0)
        tables.table(
            counts.drop("floor"),
            "propensity_integrity",
            {
                "experience_id": "Experience",
                "rows": tables.count("Decisions"),
                "problems": tables.count("Untrustworthy", help="Left out of the Policy lab's estimates"),
                "not_summing_to_one": tables.count("Not summing to 1"),
                "chosen_zero": tables.count("Chosen with p = 0"),
                "mismatched": tables.count("Propensity ≠ distribution"),
                "malformed": tables.count("Malformed"),
                "below_floor": tables.count(f"Below {floor}"),
                "unknown": tables.count("No distribution logged"),
            },
        )
    how_computed(explain(ope_lake.INTEGRITY, f, experiences=experiences))


def erasures() -> None:
    st.subheader("Erasure log")
    log = cached(compliance.erasures)
    if log.is_empty():
        ui.no_data("No erasure has been requested.")
    else:
        tables.table(
            log,
            "erasure_log",
            {
                "ts": tables.timestamp("Time (UTC)"),
                "erasure_id": "Erasure",
                "subject_hash": "Subject (SHA-256 of the pseudonymised id)",
                "rows_deleted": tables.count("Rows deleted"),
                "tables": st.column_config.ListColumn("Tables"),
                "requested_by": "Requested by",
            },
        )
    how_computed(explain(compliance.ERASURES, Filters()))


live(FILTERS)
parity(FILTERS)
propensities(FILTERS)
with ui.panel("Audit trail"):
    audit(FILTERS)
with ui.panel("Erasure log"):
    erasures()
