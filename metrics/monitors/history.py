"""The alerts the monitors raised, read back from the lake's `alerts` table: every change in
order (the Alerts page), and which alerts are open now (the page, and `momento watch` at start,
so a restarted watcher neither raises an open alert again nor forgets to resolve it)."""

from __future__ import annotations

import polars as pl

from metrics.filters import Filters
from metrics.sql.query import Query, Statement
from momento.lake.warehouse import Warehouse

_CHANGES_SQL = """
SELECT ts, rule, kind, subject, state, summary, action, evidence, alert_id
FROM alerts
ORDER BY ts DESC, alert_id
LIMIT $limit
"""

_OPEN_SQL = """
SELECT rule, subject, arg_max(kind, ts) AS kind, arg_max(summary, ts) AS summary, arg_max(action, ts) AS action,
       arg_max(evidence, ts) AS evidence, max(ts) AS since
FROM alerts
GROUP BY rule, subject
HAVING arg_max(state, ts) = 'firing'
ORDER BY since DESC, rule, subject
"""

_AUDIT_SQL = """
SELECT ts, experiment_id, arm, action, actor, rule, reason, evidence
FROM arm_pauses
WHERE $experiment IS NULL OR experiment_id = $experiment
ORDER BY ts DESC
LIMIT $limit
"""

CHANGES = Query(
    "monitors.alerts",
    "The newest alert changes (firing and resolved), newest first.",
    lambda filters, limit: Statement(_CHANGES_SQL, {"limit": limit}),
    example={"limit": 200},
    method="One row per change of an alert, written by `momento watch` when a rule starts or stops firing.",
)

OPEN = Query(
    "monitors.open_alerts",
    "The alerts open now: each rule and subject whose newest change is a firing.",
    lambda filters: Statement(_OPEN_SQL, {}),
    method="An alert is open from the change that fired it until the change that resolved it.",
)


AUDIT = Query(
    "monitors.pause_audit",
    "Every pause and resume of an experiment arm, newest first: who or which rule, why, on what evidence.",
    lambda filters, limit, experiment_id=None: Statement(_AUDIT_SQL, {"limit": limit, "experiment": experiment_id}),
    example={"limit": 200},
    method="One row per change, written by the service before it answers the pause or resume request.",
)


def pause_audit(wh: Warehouse, limit: int = 200, experiment_id: str | None = None) -> pl.DataFrame:
    """The newest `limit` pause and resume changes (of one experiment when given), newest first."""
    return AUDIT.run(wh, Filters(), limit=limit, experiment_id=experiment_id)


def changes(wh: Warehouse, limit: int = 200) -> pl.DataFrame:
    """The newest `limit` alert changes, newest first."""
    return CHANGES.run(wh, Filters(), limit=limit)


def open_alerts(wh: Warehouse) -> pl.DataFrame:
    """The alerts open now, the most recent first."""
    return OPEN.run(wh, Filters())
