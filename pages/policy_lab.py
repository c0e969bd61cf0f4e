"""Policy lab: what another policy would have earned on an adaptive experience's logged traffic
(off-policy evaluation), with intervals, diagnostics and a verdict against the logging policy.
Numbers come from `metrics.ope_lab`; the integrity of the logged propensities is shown first."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from metrics.filters import Filters
from metrics.ope_candidates import CONTEXT_FREE, PolicyShape
from metrics.ope_data import PropensityIntegrity
from metrics.ope_lab import Lab, run_lab
from metrics.ope_lake import DEFAULT_WINDOW_HOURS, IMPORTED, LOG, REWARDS, imported_campaigns
from metrics.queries import explain
from momento import formatting as fmt
from momento.policy_maths import SINGLE_PREFIX
from pages import charts, tables, ui
from pages.cache import periodic, scenario
from pages.explain import how_computed


def integrity(check: PropensityIntegrity) -> None:
    """The propensity integrity check over every decision read."""
    row = st.columns(4)
    row[0].metric("Decisions read", fmt.number(check.rows))
    row[1].metric(
        "Untrustworthy propensities",
        fmt.number(check.problems),
        help=f"Left out of the evaluation: {fmt.number(check.not_summing_to_one)} distributions not summing "
        f"to 1, {fmt.number(check.chosen_zero)} chosen variants with probability 0, "
        f"{fmt.number(check.mismatched)} propensities differing from their distribution, "
        f"{fmt.number(check.malformed)} malformed.",
    )
    row[2].metric(
        f"Probabilities below {fmt.percent(check.floor, 0)}",
        fmt.number(check.below_floor),
        help="Decisions whose distribution gives some variant a positive probability under the floor: "
        "a choice of it weighs heavily in the estimates.",
    )
    row[3].metric(
        "Without a logged distribution",
        fmt.number(check.unknown),
        help="Logged before distributions were, or imported from a log that has only the chosen "
        "propensity: the support check cannot read them.",
    )
    if check.problems:
        st.warning(
            f"{fmt.number(check.problems)} decisions carry propensities that cannot be trusted and are left "
            "out of every estimate below."
        )


def results(lab: Lab) -> None:
    reward = REWARDS[lab.reward]
    value = fmt.percent if reward.rate else fmt.money
    log, on_policy = lab.loaded.log, lab.on_policy
    assert log is not None and on_policy is not None
    st.markdown(f"**{lab.sentence()}**")
    row = st.columns(3)
    row[0].metric(
        f"{log.policy[:1].upper()}{log.policy[1:]} (logging policy)",
        value(on_policy.estimate),
        help=f"The on-policy value: the mean {reward.label} per decision, 95% interval "
        f"{value(on_policy.ci_lower)} – {value(on_policy.ci_upper)}.",
    )
    row[1].metric("Logged decisions evaluated", fmt.number(log.n))
    row[2].metric(
        "Outcome model R² (cross-fitted)",
        fmt.number(lab.r_squared, 3) if lab.r_squared is not None else "—",
        help="What the outcome model explains of the reward: what it buys the doubly robust "
        "estimator. None below 50 decisions (DR and DM are then not computed).",
    )
    table = lab.table
    ui.chart(
        charts.policy_values(
            table,
            on_policy.estimate or 0.0,
            f"Candidates vs {log.policy}: {reward.label}",
            ".1%" if reward.rate else ",.2f",
        )
    )
    shown = tables.percent if reward.rate else tables.money
    tables.table(
        table,
        "policy_lab",
        {
            "candidate": "Candidate",
            "estimator": "Estimator",
            "value": shown("Value"),
            "ci_lower": shown("Lower"),
            "ci_upper": shown("Upper"),
            "logging_value": shown("Logging policy", help="On the same decisions"),
            "difference": None,
            "verdict": "Verdict",
            "decisions": tables.count("Decisions"),
            "ips": shown("IPS"),
            "snips": shown("SNIPS"),
            "dm": shown("DM"),
            "dr": shown("DR"),
            "ess": tables.count("Effective decisions", help="(Σw)² / Σw² of the importance weights"),
            "max_weight": tables.decimal("Largest weight", 1),
            "mean_weight": tables.decimal("Mean weight", 3),
            "unsupported_share": tables.percent(
                "Unsupported mass", help="Share of the candidate's choices on variants the logging policy gave under 1%"
            ),
            "reason": tables.text("Why"),
        },
    )
    for name, why in lab.skipped:
        st.info(f"{name}: {why}")


@dataclass(frozen=True)
class Subject:
    """What the lab can evaluate: a scenario experience, or a campaign imported from another system."""

    id: str
    name: str
    shape: PolicyShape
    kinds: tuple[str, ...]
    default: tuple[str, ...]


def subjects(filters: Filters) -> dict[str, Subject]:
    out = {
        e.id: Subject(
            e.id,
            e.name,
            PolicyShape(tuple(e.variants), e.default_variant, tuple(e.discount.items())),
            e.candidate_kinds,
            e.lab_candidates,
        )
        for e in scenario().experiences
    }
    for campaign, variants in periodic(imported_campaigns, filters).items():
        kinds = (*CONTEXT_FREE, *(f"{SINGLE_PREFIX}{v}" for v in variants))
        out.setdefault(
            campaign, Subject(campaign, f"{campaign} (imported)", PolicyShape(variants, variants[0]), kinds, kinds)
        )
    return out


@st.fragment(run_every=ui.REFRESH_SECONDS)
def live() -> None:
    filters: Filters = ui.filters()
    with ui.panel("Policy lab"):
        options = subjects(filters)
        left, middle, right = st.columns([3, 2, 3])
        chosen = left.selectbox(
            "Adaptive experience", list(options), format_func=lambda i: options[i].name, key="lab_experience"
        )
        reward = middle.selectbox(
            "Reward",
            list(REWARDS),
            format_func=lambda r: REWARDS[r].label,
            key="lab_reward",
            index=list(REWARDS).index("click"),
        )
        subject = options[chosen]
        kinds = right.multiselect(
            "Candidates", subject.kinds, default=list(subject.default), key=f"lab_candidates_{chosen}"
        )
        arguments = {"experience_id": chosen, "reward": reward, "window_hours": DEFAULT_WINDOW_HOURS}
        lab = periodic(run_lab, filters, chosen, subject.shape, tuple(kinds), reward, DEFAULT_WINDOW_HOURS)
        if not lab.loaded.rows:
            ui.no_data(
                f"No decisions chosen by a policy for {subject.name} for {ui.describe(filters)}. Widen the "
                "filters, or run `momento backfill` / `momento demo` to fill the lake."
            )
        else:
            st.subheader("Propensity integrity")
            integrity(lab.loaded.integrity)
            st.subheader(f"{subject.name}: candidate policies")
            if lab.loaded.log is None:
                ui.no_data("No decision with trustworthy propensities is left to evaluate.")
            else:
                results(lab)
        how_computed(explain(IMPORTED, filters, metrics=()), explain(LOG, filters, metrics=(), **arguments))


ui.header(
    "Policy lab",
    "What another policy would have earned on the traffic already served, before exposing "
    "anyone to it (off-policy evaluation).",
)
live()
