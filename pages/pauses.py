"""The pause control of the Experiments page: which arms of an experiment are paused (from the
lake's audit), and a button per arm that asks the service to pause or resume it
(`POST /v1/experiments/{id}/arms/{arm}/pause|resume`, with the server key when the cockpit has one),
recording the viewer and their reason. The cockpit does not import the service: it calls its API
like any client."""

from __future__ import annotations

import httpx
import streamlit as st

from metrics.filters import Filters
from metrics.monitors import history, inputs
from metrics.queries import explain
from momento.scenario import Experiment
from pages import tables, ui
from pages.cache import cached, scenario, service_client, settings, warehouse
from pages.explain import how_computed

TIMEOUT_S = 15.0
AUDIT_ROWS = 20


def _viewer() -> str:
    """Who is asking: the user the reverse proxy signed in off loopback, else the cockpit."""
    user = (st.context.headers.get(ui.PROXY_USER_HEADER) or "").strip()
    return f"{user} (cockpit)" if user else "cockpit"


def _ask(experiment_id: str, arm: str, action: str, reason: str) -> None:
    config = settings()
    headers = {"Authorization": f"Bearer {config.api_token}"} if config.api_token else {}
    url = f"{config.service_url.rstrip('/')}/v1/experiments/{experiment_id}/arms/{arm}/{action}"
    body = {"by": _viewer(), "reason": reason.strip() or None}
    try:
        answer = service_client().post(url, json=body, headers=headers, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        st.session_state["pause_outcome"] = ("error", f"The service could not be reached ({exc}): nothing changed.")
        return
    if answer.is_success:
        warehouse().refresh(force=True)  # the audit row is committed: show it on this very redraw
        verb = "paused: its users are served as control" if action == "pause" else "resumed"
        st.session_state["pause_outcome"] = ("ok", f"{experiment_id} · {arm} {verb}.")
    else:
        try:
            reason_given = answer.json().get("reason", answer.text)
        except ValueError:
            reason_given = answer.text
        st.session_state["pause_outcome"] = ("error", f"The service refused ({answer.status_code}): {reason_given}")


def pause_control(experiment: Experiment) -> None:
    """The experiment's paused arms, a pause/resume button for every arm but control, their audit."""
    st.markdown(
        "**Safeguards** — pause an arm: its users are served as control (reason `paused_by_guardrail`) "
        'until it is resumed; guardrail rules with `action = "pause"` do this by themselves.'
    )
    paused = cached(inputs.paused_arms).get(experiment.id, frozenset())
    experience = scenario().experience_by_id[experiment.experience]
    arms = [arm.name for arm in experiment.arms if arm.variant != experience.default_variant]
    if not arms or len(arms) == len(experiment.arms):
        st.caption("This experiment has no control arm to send paused traffic to.")
        return
    reason = st.text_input("Reason", key=f"pause_reason_{experiment.id}", placeholder="why (kept in the audit)")
    columns = st.columns(len(arms))
    for column, arm in zip(columns, arms, strict=True):
        action = "resume" if arm in paused else "pause"
        column.button(
            f"{action.capitalize()} {arm}",
            key=f"pause_{experiment.id}_{arm}",
            icon=":material/play_arrow:" if action == "resume" else ":material/pause:",
            on_click=_ask,
            args=(experiment.id, arm, action, reason),
        )
        if arm in paused:
            column.warning(f"{arm} is paused", icon=":material/pause_circle:")
    outcome = st.session_state.pop("pause_outcome", None)
    if outcome:
        (st.success if outcome[0] == "ok" else st.error)(outcome[1])
    audit = cached(history.pause_audit, AUDIT_ROWS, experiment.id)
    if not audit.is_empty():
        tables.table(
            audit.drop("experiment_id"),
            f"pause_audit_{experiment.id}",
            {
                "ts": tables.timestamp("Time (UTC)"),
                "arm": "Arm",
                "action": "Change",
                "actor": "By",
                "rule": "Rule",
                "reason": tables.text("Why"),
                "evidence": tables.text("Evidence"),
            },
        )
    how_computed(
        explain(inputs.PAUSES, Filters()),
        explain(history.AUDIT, Filters(), limit=AUDIT_ROWS, experiment_id=experiment.id),
    )
