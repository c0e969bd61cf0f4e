"""pages/explain.py in Streamlit's AppTest: "How this is computed" shows, under the panel, the
catalogue's definition, the SQL that produced the numbers with the filters bound, and the method
with the link to docs/statistics.md; for the three numbers a newcomer traces first (incremental
revenue, an experiment's relative lift, latency p99) and, on every page, for every statement the
page ran against the lake."""

from __future__ import annotations

import time
from typing import Any

import pytest

from metrics import executive, experiments, health
from metrics.filters import Filters
from metrics.queries import DOCS
from metrics.rollup.read import aggregates
from metrics.sql.query import Query, display
from momento.kpis import METRICS, OPERATIONAL
from momento.lake.warehouse import Warehouse
from momento.settings import load_settings
from pages.explain import TITLE

BUDGET_MS = load_settings({}).decision_budget_ms
PAGES = [
    "pages/executive.py",
    "pages/journeys.py",
    "pages/experiments.py",
    "pages/engine_health.py",
    "pages/governance.py",
]


def _explained(at: Any, query: Query, filters: Filters, **arguments: Any) -> tuple[str, str]:
    """(the markdown, the SQL) of the page's expander that shows `query` run with these arguments."""
    expected = display(query.statement(filters, **arguments))
    for expander in at.expander:
        if expander.label == TITLE and any(code.value == expected for code in expander.code):
            return "\n".join(m.value for m in expander.markdown), expected
    raise AssertionError(f"no '{TITLE}' expander shows the SQL of {query.name}")


def _as_of(lake, bundled_scenario) -> Any:
    """The analysis time the pages read the lake at."""
    return aggregates(Warehouse(lake), bundled_scenario.business.pre_period_days).source.as_of


def test_incremental_revenue_on_executive(run_page, rolled_up_lake, bundled_scenario):
    at = run_page("pages/executive.py", rolled_up_lake, query={"channel": "app"})
    assert not at.exception and not at.error
    assert "Incremental revenue" in {m.label for m in at.metric}
    text, sql = _explained(
        at,
        executive.SUMMARY,
        Filters(channel="app"),
        pre_days=bundled_scenario.business.pre_period_days,
        as_of=_as_of(rolled_up_lake, bundled_scenario),
    )
    assert "channel = 'app'" in sql and "$" not in sql  # the filter bound, written in
    shown = [code.value for expander in at.expander if expander.label == TITLE for code in expander.code]
    assert any("FROM rollup_executive_stats" in sql for sql in shown)  # where the sums come from
    assert METRICS["arpu"].description in text
    assert "Incremental revenue (margin) = (mean revenue (margin) per exposed user − per holdout user)" in text
    assert f"]({DOCS})" in text


def test_relative_lift_on_experiments(run_page, rolled_up_lake, bundled_scenario):
    at = run_page("pages/experiments.py", rolled_up_lake)
    assert not at.exception and not at.error
    first = bundled_scenario.experiments[0]
    text, sql = _explained(
        at,
        experiments.STATS,
        Filters(),
        pre_days=bundled_scenario.business.pre_period_days,
        metric_names=experiments.scenario_metrics(bundled_scenario),
        as_of=_as_of(rolled_up_lake, bundled_scenario),
    )
    assert f"AS {first.primary_metric}__sum" in sql
    assert METRICS[first.primary_metric].description in text
    assert "the relative lift by the delta method" in text and "confidence sequence" in text
    assert f"]({DOCS})" in text


def test_latency_p99_on_engine_health(run_page, small_lake):
    at = run_page("pages/engine_health.py", small_lake, query={"segment": "returning"})
    assert not at.exception and not at.error
    assert "Latency p99" in {m.label for m in at.metric}
    text, sql = _explained(at, health.SUMMARY, Filters(segment="returning"), budget_ms=BUDGET_MS)
    assert "FROM latency_histogram" in sql and "segment = 'returning'" in sql
    assert OPERATIONAL["latency_p50_p95_p99"].description in text
    assert "nearest-rank" in text and "log-spaced buckets" in text


@pytest.mark.parametrize("page", PAGES)
def test_every_statement_a_page_runs_is_shown_under_its_panel(run_page, rolled_up_lake, statements_run, page):
    at = run_page(page, rolled_up_lake)
    newest = health.NEWEST.statement(Filters()).sql  # the header's freshness badge, on every page
    shown: set[str] = set()
    deadline = time.monotonic() + 30
    while True:
        # The first render serves the rollups as their run left them and folds the tail in behind:
        # what that fold ran is shown once a redraw serves its result.
        assert not at.exception and not at.error
        shown |= {code.value for expander in at.expander if expander.label == TITLE for code in expander.code}
        ran = {display(s) for s in statements_run if page == "pages/engine_health.py" or s.sql != newest}
        if ran <= shown or time.monotonic() > deadline:
            break
        time.sleep(0.2)
        at.run()
    assert ran, page
    assert ran <= shown, f"{page} ran SQL it does not show: {sorted(ran - shown)[0][:300]}"
