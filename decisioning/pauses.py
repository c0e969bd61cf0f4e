"""Arm pauses: the safeguard a guardrail rule (or a person) pulls to send an arm's traffic to control.

A paused arm's units go down the normal decision flow as the experiment's control arm, with the
reason code `paused_by_guardrail` (`decisioning.flow`'s `paused` step; the engine keeps the set).
Every change is one row of the lake's `arm_pauses` table (who or which rule, when, why, the
evidence), committed before the API answers, and the newest row of each arm is its state: a
restarted service reloads it (`load`). Pausing a paused arm, or resuming a running one, changes
nothing and writes nothing, so a rule may safely ask again.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from momento.lake.location import Lake
from momento.lake.writer import open_table

PAUSE, RESUME = "pause", "resume"
TABLE = "arm_pauses"


class PauseRequest(BaseModel):
    """Who asks and why (all optional): a person's name, or the rule of `momento watch` and its
    evidence. The caller's credential is checked by the route, not here."""

    model_config = ConfigDict(extra="forbid")

    by: str | None = Field(default=None, min_length=1, max_length=128, description="who asks (a person or `rule:NAME`)")
    rule: str | None = Field(default=None, min_length=1, max_length=64, description="the monitor rule that asked")
    reason: str | None = Field(default=None, max_length=1000, description="why, in a sentence")
    evidence: dict[str, Any] | None = Field(default=None, description="the numbers the decision rests on")


class PauseState(BaseModel):
    """An arm's state after the request."""

    experiment_id: str
    arm: str
    paused: bool
    changed: bool = Field(description="false when the arm was already in that state (nothing written)")
    served_as: str | None = Field(description="the arm a paused arm's units are served as (control)")
    durable: bool | None = Field(default=None, description="the audit row is committed to the lake")


def audit_row(experiment_id: str, arm: str, action: str, body: PauseRequest, client: str) -> dict[str, Any]:
    """The `arm_pauses` row of one change, made now."""
    actor = body.by or (f"rule:{body.rule}" if body.rule else f"api ({client})")
    evidence = json.dumps(body.evidence, default=str) if body.evidence is not None else None
    return {
        "change_id": uuid.uuid4().hex,
        "ts": datetime.now(UTC),
        "experiment_id": experiment_id,
        "arm": arm,
        "action": action,
        "actor": actor,
        "rule": body.rule,
        "reason": body.reason,
        "evidence": evidence,
    }


def newest_states(rows: Iterable[dict[str, Any]]) -> dict[str, frozenset[str]]:
    """Per experiment, the arms whose newest change is a pause."""
    newest: dict[tuple[str, str], tuple[Any, str]] = {}
    for row in rows:
        key = (row["experiment_id"], row["arm"])
        if key not in newest or row["ts"] >= newest[key][0]:
            newest[key] = (row["ts"], row["action"])
    out: dict[str, set[str]] = {}
    for (experiment_id, arm), (_, action) in newest.items():
        if action == PAUSE:
            out.setdefault(experiment_id, set()).add(arm)
    return {key: frozenset(arms) for key, arms in out.items()}


def load(root: Lake) -> dict[str, frozenset[str]]:
    """The paused arms recorded in the lake at `root` (read at start-up; empty without the table)."""
    table = open_table(root, TABLE)
    if table is None or not table.file_uris():
        return {}
    rows = table.to_pyarrow_dataset().to_table(columns=["experiment_id", "arm", "action", "ts"])
    return newest_states(rows.to_pylist())
