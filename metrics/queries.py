"""The registry of every query a cockpit panel runs, and how to read one: the metric's definition
from the catalogue, the SQL with the filters bound, the statistical method.

Each query is declared next to the code that reduces its rows (`metrics.sql.query.Query`); this
module lists them all (`QUERIES`) and which page shows which (`PAGES`). The cockpit's "How this is
computed" (`explain`), `momento sql METRIC` (`sql_command`) and the golden files
(`tests/metrics/golden_sql/`) all render from here, so a new query plugs in by being listed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from metrics import compliance, executive, experiments, health, journeys, model_quality, ope_lake
from metrics.filters import Filters
from metrics.monitors import history as alert_history
from metrics.monitors import inputs as monitor_inputs
from metrics.rollup import read as rollup_read
from metrics.rollup.read import Aggregates
from metrics.sql.query import Query, display
from momento.kpis import MEASURES, METRICS, OPERATIONAL
from momento.scenario import Scenario, ScenarioError, load_scenario
from momento.settings import Settings

QUERIES: dict[str, Query] = {
    q.name: q
    for q in (
        *rollup_read.READS,
        executive.SUMMARY,
        executive.TREND,
        journeys.FUNNEL,
        experiments.STATS,
        experiments.CUMULATIVE,
        health.NEWEST,
        health.SUMMARY,
        health.ARRIVALS,
        health.BURN,
        health.OVER_TIME,
        health.EVENTS_OVER_TIME,
        health.ERRORS,
        health.FALLBACKS,
        health.MODELS,
        model_quality.SCORES,
        model_quality.LIFT,
        compliance.CONSENT,
        compliance.CONSENT_DAILY,
        compliance.SATURATION,
        compliance.PARITY,
        compliance.AUDIT,
        compliance.ERASURES,
        ope_lake.LOG,
        ope_lake.IMPORTED,
        ope_lake.INTEGRITY,
        monitor_inputs.WINDOWS,
        monitor_inputs.PAUSES,
        monitor_inputs.MODEL_WINDOWS,
        alert_history.CHANGES,
        alert_history.OPEN,
        alert_history.AUDIT,
    )
}

PAGES: dict[str, tuple[str, ...]] = {
    "executive": ("executive.summary", "executive.trend", *(q.name for q in rollup_read.READS)),
    "journeys": (
        "journeys.funnel",
        "experiments.stats",
        "experiments.cumulative",
        *(q.name for q in rollup_read.READS),
    ),
    "experiments": (
        "experiments.stats",
        "experiments.cumulative",
        "monitors.pauses",
        "monitors.pause_audit",
        *(q.name for q in rollup_read.READS),
    ),
    "engine_health": (
        "health.summary",
        "health.arrivals",
        "health.newest_received",
        "health.burn_rates",
        "health.latency_over_time",
        "health.events_over_time",
        "health.errors_by_code",
        "health.fallbacks_by_reason",
        "health.model_versions",
        "model_quality.scores",
        "model_quality.lift_vs_rules",
        *(q.name for q in rollup_read.READS),
    ),
    "alerts": (
        "monitors.open_alerts",
        "monitors.pauses",
        "monitors.pause_audit",
        "monitors.alerts",
        "monitors.windows",
        "monitors.model_windows",
    ),
    "governance": (
        "compliance.consent",
        "compliance.consent_daily",
        "compliance.saturation",
        "compliance.parity",
        "compliance.audit",
        "compliance.erasures",
        "ope.propensity_integrity",
        *(q.name for q in rollup_read.READS),
    ),
    "policy_lab": ("ope.imported_campaigns", "ope.bandit_log"),
}
"""Page (its file in pages/, without .py) -> the queries it runs, in the page's order."""

DOCS = "docs/statistics.md"
"""The method sheet: every formula the cockpit uses, with its references (a file of this repository)."""


@dataclass(frozen=True)
class Definition:
    """A catalogue entry as a reader needs it."""

    name: str
    label: str
    description: str
    formula: str


@dataclass(frozen=True)
class Explanation:
    """How a panel's numbers are computed."""

    query: Query
    definitions: tuple[Definition, ...]
    sql: str
    """The statement as run, formatted, with the bound values written in (for reading only)."""
    method: str
    docs: str = DOCS


def definition(name: str) -> Definition:
    """The catalogue's definition of metric `name` (business or operational)."""
    if name in METRICS:
        m = METRICS[name]
        measures = " / ".join(MEASURES[n].label for n in m.measures)
        window = (
            ""
            if m.window.end_day is None
            else f", counted on days {m.window.start_day}–"
            f"{m.window.end_day - 1} after the day of the first exposure (UTC)"
        )
        kind = {"proportion": f"share of users with any {measures}", "mean": f"{measures} per user", "ratio": measures}[
            m.type
        ]
        return Definition(m.name, m.label, m.description, f"{m.type}: {kind}{window}")
    if name in OPERATIONAL:
        o = OPERATIONAL[name]
        return Definition(o.name, o.label, o.description, f"operational, computed in {o.implemented_in}")
    raise ValueError(f"unknown metric {name!r} (known: {', '.join([*METRICS, *OPERATIONAL])})")


def explain(query: Query, filters: Filters, metrics: Iterable[str] | None = None, **arguments: Any) -> Explanation:
    """How `query`, run with `filters` and `arguments` as the panel runs it, gives the numbers of
    `metrics` (default: every metric the query computes)."""
    names = tuple(query.metrics if metrics is None else metrics)
    return Explanation(
        query, tuple(definition(n) for n in names), display(query.statement(filters, **arguments)), query.method
    )


def explain_source(aggregates: Aggregates) -> tuple[Explanation, ...]:
    """How the aggregates a rollup-backed panel reads were assembled: each read of the run log,
    the live tail and the rollups, as it ran."""
    return tuple(explain(query, Filters(), (), **arguments) for query, arguments in aggregates.reads)


def as_text(explanation: Explanation) -> str:
    """The explanation as plain text (what `momento sql` prints)."""
    lines = []
    for d in explanation.definitions:
        lines += [f"{d.label} ({d.name}): {d.description}", f"  {d.formula}"]
    q = explanation.query
    lines += [
        "",
        f"-- {q.name}: {q.description}",
        explanation.sql,
        "",
        f"Method: {explanation.method}",
        f"See {explanation.docs} for the formulas and their references.",
    ]
    return "\n".join(lines)


def explain_metric(
    metric: str, scenario: Scenario, budget_ms: float, *, experiment: str | None = None, page: str | None = None
) -> Explanation:
    """How the cockpit computes `metric` on `page` (default: the first page that shows it), with no
    filter; with `experiment`, its statistics for that experiment alone (Experiments page)."""
    definition(metric)
    if experiment is not None:
        if experiment not in scenario.experiment_by_id:
            raise ValueError(f"unknown experiment {experiment!r} (known: {', '.join(scenario.experiment_by_id)})")
        if metric not in experiments.EXPERIMENT_METRICS:
            raise ValueError(
                f"metric {metric!r} is not measured on an experiment's exposed users (experiments use: "
                f"{', '.join(experiments.EXPERIMENT_METRICS)})"
            )
        return explain(
            experiments.STATS,
            Filters(),
            (metric,),
            pre_days=scenario.business.pre_period_days,
            metric_names=(metric,),
            experiment_id=experiment,
            as_of=rollup_read.EXAMPLE_AS_OF,
        )
    if page is not None and page not in PAGES:
        raise ValueError(f"unknown page {page!r} (known: {', '.join(PAGES)})")
    pages = [page] if page is not None else list(PAGES)
    found = next((QUERIES[name] for p in pages for name in PAGES[p] if metric in QUERIES[name].metrics), None)
    if found is None:
        shown = [p for p in PAGES if any(metric in QUERIES[n].metrics for n in PAGES[p])]
        raise ValueError(f"no panel of the {page} page shows {metric!r} (shown on: {', '.join(shown) or 'none'})")
    overrides = _arguments(scenario, budget_ms, metric)
    chosen = {key: overrides.get(key, value) for key, value in found.example.items()}
    return explain(found, Filters(), (metric,), **chosen)


def _arguments(scenario: Scenario, budget_ms: float, metric: str) -> Mapping[str, Any]:
    """The arguments the cockpit passes its queries for this scenario and settings."""
    return {
        "pre_days": scenario.business.pre_period_days,
        "metric_names": experiments.scenario_metrics(scenario),
        "metric_name": metric,
        "budget_ms": budget_ms,
        "offer_variants": scenario.offer_variants,
        "offer_placements": scenario.offer_placements,
    }


def sql_command(
    settings: Settings, metric: str, out: TextIO, err: TextIO, *, experiment: str | None = None, page: str | None = None
) -> int:
    """`momento sql METRIC [--experiment ID] [--page NAME]`: print how the cockpit computes METRIC;
    2 and a message naming what is wrong for an unknown metric, experiment or page."""
    try:
        scenario = load_scenario(settings.scenario)
        explanation = explain_metric(metric, scenario, settings.decision_budget_ms, experiment=experiment, page=page)
    except (ScenarioError, ValueError) as exc:
        print(f"momento sql: {exc}", file=err)
        return 2
    print(as_text(explanation), file=out)
    return 0
