"""The numbers monitors judge, read from the warehouse the way the cockpit reads them.

Experiments: `metrics.experiments.load_stats` (the rollups plus the live tail, or every raw row)
and `analyse`, exactly what the Experiments page shows, for every running experiment. Service:
decision counts over the rules' windows ending now (`WINDOWS`, one query), and the writer lag
(`metrics.health`). Model health: the propensity model's scored decisions of two windows
(`MODEL_WINDOWS`). Paused arms: the newest row of each (experiment, arm) in `arm_pauses`
(`PAUSES`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import polars as pl

from metrics import experiments, health
from metrics import model_quality as mq
from metrics.filters import Filters
from metrics.monitors.evaluate import ExperimentNumbers, ModelWindow, Numbers, Window, alphas_needed, windows_needed
from metrics.monitors.rules import EXPERIMENT_KINDS, ModelHealth, Monitors
from metrics.sql.query import Query, Statement
from momento.codes import FAILURES
from momento.kpis import METRICS
from momento.lake.warehouse import Warehouse
from momento.scenario import Scenario

EXAMPLE_NOW = datetime(2026, 6, 12, 12, 0, tzinfo=UTC)

_WINDOWS_SQL = """
SELECT w.window_s,
       count(d.decision_id) AS decisions,
       count(d.decision_id) FILTER (WHERE d.latency_us <= $budget_us) AS within_budget,
       count(d.decision_id) FILTER (WHERE d.status = 'error') AS errors,
       count(d.decision_id) FILTER (WHERE d.fallback AND list_contains($failures, d.fallback_reason))
           AS failure_fallbacks,
       count(d.decision_id) FILTER (WHERE NOT d.consent AND d.policy <> 'default') AS consent_violations
FROM (SELECT unnest($windows) AS window_s) AS w
LEFT JOIN decisions d ON d.ts > $now - to_seconds(w.window_s) AND d.ts <= $now
GROUP BY w.window_s
ORDER BY w.window_s
"""


def _windows_statement(filters: Filters, windows: Sequence[int], now: datetime, budget_ms: float) -> Statement:
    return Statement(
        _WINDOWS_SQL,
        {
            "windows": list(windows),
            "now": now,
            "budget_us": budget_ms * 1000.0,
            "failures": sorted(str(code) for code in FAILURES),
        },
    )


WINDOWS = Query(
    "monitors.windows",
    "Decisions over each monitor window ending now: within the latency budget, errored, fallen back for an engine "
    "failure, and personalised without consent.",
    _windows_statement,
    example={"windows": [300, 3600], "now": EXAMPLE_NOW, "budget_ms": 10.0},
    method="Burn rate = (1 - within budget / decisions) / (1 - SLO target), judged on a long and a short window "
    "at once (SRE workbook); error and fallback rates = count / decisions over the window; consent "
    "violations must stay 0.",
)

_MODEL_WINDOWS_SQL = f"""
WITH outcomes AS (
    SELECT DISTINCT decision_id FROM events
    WHERE decision_id IS NOT NULL AND list_contains($event_types, event_type)
)
SELECT CASE WHEN d.ts > $mature_until - to_seconds($recent_s) THEN 'recent' ELSE 'reference' END AS window,
       d.score, (o.decision_id IS NOT NULL) AS outcome
FROM decisions d LEFT JOIN outcomes o USING (decision_id)
WHERE d.policy = '{mq.MODEL_POLICY}' AND d.score IS NOT NULL AND d.status = 'ok' AND NOT d.fallback
  AND d.arm <> 'holdout'
  AND d.ts > $mature_until - to_seconds($recent_s + $reference_s) AND d.ts <= $mature_until
"""


def _model_windows_statement(filters: Filters, rule: ModelHealth, now: datetime) -> Statement:
    mature_until = now - timedelta(minutes=rule.maturity_minutes)
    return Statement(
        _MODEL_WINDOWS_SQL,
        {
            "event_types": list(mq.OUTCOMES[rule.outcome]),
            "mature_until": mature_until,
            "recent_s": rule.recent_s,
            "reference_s": rule.reference_s,
        },
    )


MODEL_WINDOWS = Query(
    "monitors.model_windows",
    "The propensity model's mature decisions of the last recent_s and of the reference_s before: score and whether "
    "the outcome followed.",
    _model_windows_statement,
    example={"rule": ModelHealth.model_validate({"name": "model_health", "kind": "model_health"}), "now": EXAMPLE_NOW},
    metrics=("model_auc", "model_calibration"),
    method="Per window: AUC (Mann–Whitney U) with its DeLong standard error, and the calibration gap (mean "
    "score − observed rate). Fires when the recent AUC is more than max_auc_drop below the reference's, or the "
    "gap moved more than max_calibration_drift, and the change exceeds z standard errors.",
)


def model_windows(wh: Warehouse, rule: ModelHealth, now: datetime) -> tuple[ModelWindow, ModelWindow]:
    """The model's (recent, reference) windows for `rule`, ending `rule.maturity_minutes` before `now`."""
    frame = MODEL_WINDOWS.run(wh, Filters(), rule=rule, now=now)
    out = []
    for name in ("recent", "reference"):
        part = frame.filter(pl.col("window") == name)
        scores, labels = part["score"].to_numpy(), part["outcome"].to_numpy().astype(bool)
        out.append(
            ModelWindow(
                part.height,
                int(labels.sum()),
                mq.auc(scores, labels),
                mq.auc_standard_error(scores, labels),
                float(scores.mean()) if part.height else 0.0,
            )
        )
    return out[0], out[1]


_PAUSES_SQL = """
SELECT experiment_id, arm, arg_max(action, ts) AS action, arg_max(actor, ts) AS actor, arg_max(rule, ts) AS rule,
       arg_max(reason, ts) AS reason, max(ts) AS ts
FROM arm_pauses
GROUP BY experiment_id, arm
ORDER BY experiment_id, arm
"""

PAUSES = Query(
    "monitors.pauses",
    "Each experiment arm's newest pause or resume: its state, who changed it, why and when.",
    lambda filters: Statement(_PAUSES_SQL, {}),
    method="An arm is paused when its newest change in the audit (arm_pauses) is a pause.",
)


def pause_states(wh: Warehouse) -> pl.DataFrame:
    """Each arm ever paused: its newest change (`action` pause: paused now), who made it, why, when."""
    return PAUSES.run(wh, Filters())


def paused_arms(wh: Warehouse) -> dict[str, frozenset[str]]:
    """Per experiment, the arms paused now."""
    frame = pause_states(wh).filter(pl.col("action") == "pause")
    out: dict[str, set[str]] = {}
    for row in frame.iter_rows(named=True):
        out.setdefault(row["experiment_id"], set()).add(row["arm"])
    return {key: frozenset(arms) for key, arms in out.items()}


def service_windows(wh: Warehouse, windows: Sequence[int], now: datetime, budget_ms: float) -> pl.DataFrame:
    """Decision counts over each window (seconds) ending at `now` (`WINDOWS`)."""
    return WINDOWS.run(wh, Filters(), windows=windows, now=now, budget_ms=budget_ms)


def experiment_numbers(
    wh: Warehouse, scenario: Scenario, alphas: Sequence[float], paused: dict[str, frozenset[str]]
) -> dict[float, dict[str, ExperimentNumbers]]:
    """Per alpha, every running experiment's numbers, as the Experiments page computes them."""
    running = [x for x in scenario.experiments if x.status == "running"]
    if not alphas or not running:
        return {}
    frame = experiments.load_stats(
        wh, Filters(), scenario.business.pre_period_days, experiments.scenario_metrics(scenario)
    )
    out: dict[float, dict[str, ExperimentNumbers]] = {}
    for alpha in alphas:
        options = experiments.Options(alpha=alpha)
        per: dict[str, ExperimentNumbers] = {}
        for x in running:
            report = experiments.analyse(frame, x, options)
            users = {row["arm"]: int(row["users"]) for row in report.arms.iter_rows(named=True)}
            per[x.id] = ExperimentNumbers(
                experiment_id=x.id,
                users=users,
                srm=report.srm,
                guardrails=tuple(report.guardrails),
                primary={variant: c for (name, variant), c in report.comparisons.items() if name == x.primary_metric},
                primary_metric=x.primary_metric,
                higher_is_better=METRICS[x.primary_metric].higher_is_better,
                paused=paused.get(x.id, frozenset()),
            )
        out[alpha] = per
    return out


def read_numbers(wh: Warehouse, scenario: Scenario, monitors: Monitors, now: datetime | None = None) -> Numbers:
    """Everything `monitors`' rules need, read from the warehouse's current snapshot."""
    now = now or datetime.now(UTC)
    rules = monitors.rules
    windows: dict[int, Window] = {}
    needed = windows_needed(rules)
    if needed:
        frame = service_windows(wh, needed, now, scenario.governance.decision_budget_ms)
        windows = {
            row["window_s"]: Window(
                seconds=row["window_s"],
                decisions=row["decisions"],
                within_budget=row["within_budget"],
                errors=row["errors"],
                failure_fallbacks=row["failure_fallbacks"],
                consent_violations=row["consent_violations"],
            )
            for row in frame.iter_rows(named=True)
        }
    judged = [rule for rule in rules if rule.kind in EXPERIMENT_KINDS]
    numbers = experiment_numbers(wh, scenario, alphas_needed(judged), paused_arms(wh)) if judged else {}
    lag = health.writer_lag(health.newest_received(wh), now) if any(r.kind == "freshness" for r in rules) else None
    models = {rule.name: model_windows(wh, rule, now) for rule in rules if isinstance(rule, ModelHealth)}
    return Numbers(at=now, experiments=numbers, windows=windows, writer_lag_s=lag, models=models)
