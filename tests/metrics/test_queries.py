"""metrics/queries.py: the registry is complete and consistent with the catalogue, and
`momento sql METRIC` prints a metric's definition, the SQL the cockpit runs for it and the method."""

from __future__ import annotations

import pytest

from cli.main import main
from metrics import experiments
from metrics.filters import Filters
from metrics.queries import DOCS, PAGES, QUERIES, as_text, definition, explain_metric
from metrics.rollup.read import EXAMPLE_AS_OF
from metrics.sql.query import pretty
from momento.kpis import METRICS, OPERATIONAL


def test_every_query_is_on_a_page_and_names_catalogue_metrics():
    on_pages = {name for names in PAGES.values() for name in names}
    assert on_pages == set(QUERIES)
    for query in QUERIES.values():
        assert query.description and query.method, query.name
        assert set(query.metrics) <= {*METRICS, *OPERATIONAL}, query.name
    shown = {m for q in QUERIES.values() for m in q.metrics}
    assert {"arpu", "revenue_per_user", "ctr", "latency_p50_p95_p99"} <= shown


def test_a_metric_is_explained_from_the_first_page_that_shows_it(bundled_scenario):
    arpu = explain_metric("arpu", bundled_scenario, 10.0)
    assert arpu.query.name == "executive.summary"
    assert [d.name for d in arpu.definitions] == ["arpu"]
    assert arpu.definitions[0].description == METRICS["arpu"].description
    assert "$" not in arpu.sql  # no filter: every filter folded away, the as-of bound
    assert "FROM executive_stats" in arpu.sql and "change_day <= " in arpu.sql
    assert "holdout" in arpu.method and arpu.docs == DOCS
    latency = explain_metric("latency_p50_p95_p99", bundled_scenario, 12.5)
    assert latency.query.name == "health.summary"
    assert "FROM latency_histogram" in latency.sql
    assert "LOG(10, 12500.0)" in latency.sql
    on_experiments = explain_metric("conversion_rate", bundled_scenario, 10.0, page="experiments")
    assert on_experiments.query.name == "experiments.stats"
    expected = experiments.STATS.statement(
        Filters(), pre_days=14, as_of=EXAMPLE_AS_OF, metric_names=experiments.scenario_metrics(bundled_scenario)
    )
    assert on_experiments.sql.count("AS ctr__n") == pretty(expected.sql).count("AS ctr__n") == 1


def test_one_experiment_alone(bundled_scenario):
    lift = explain_metric("ctr", bundled_scenario, 10.0, experiment="exp_adaptive_cta")
    assert lift.query.name == "experiments.stats"
    assert "experiment_id = 'exp_adaptive_cta'" in lift.sql
    assert "AS ctr__n" in lift.sql and "conversion_rate__n" not in lift.sql
    assert "confidence sequence" in lift.method


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(metric="margin_per_usr"), "unknown metric 'margin_per_usr' (known: conversion_rate, "),
        (dict(metric="arpu", experiment="exp_nope"), "unknown experiment 'exp_nope' (known: exp_home_showcase"),
        (
            dict(metric="arpu", experiment="exp_home_showcase"),
            "metric 'arpu' is not measured on an experiment's exposed",
        ),
        (dict(metric="arpu", page="sales"), "unknown page 'sales' (known: executive, journeys, experiments"),
        (dict(metric="arpu", page="governance"), "no panel of the governance page shows 'arpu' (shown on: executive)"),
    ],
)
def test_bad_requests_name_what_is_wrong(bundled_scenario, kwargs, message):
    metric = kwargs.pop("metric")
    with pytest.raises(ValueError) as caught:  # noqa: PT011 (the message is checked below)
        explain_metric(metric, bundled_scenario, 10.0, **kwargs)
    assert str(caught.value).startswith(message)


def test_definitions_cover_both_catalogues():
    assert definition("aov").formula == "ratio: revenue (BRL) / orders"
    assert definition("retention_7d").formula.endswith("counted on days 1–7 after the day of the first exposure (UTC)")
    assert definition("model_auc").formula == "operational, computed in metrics.model_quality"


def test_momento_sql_prints_the_definition_the_sql_and_the_method(capsys, bundled_scenario):
    assert main(["sql", "ctr", "--experiment", "exp_adaptive_cta"]) == 0
    out = capsys.readouterr().out
    expected = as_text(explain_metric("ctr", bundled_scenario, 10.0, experiment="exp_adaptive_cta"))
    assert out == expected + "\n"
    assert out.startswith(f"Click-through rate (ctr): {METRICS['ctr'].description}")
    assert "-- experiments.stats:" in out and "SELECT" in out and f"See {DOCS}" in out
    assert main(["sql", "nope"]) == 2
    assert capsys.readouterr().err.startswith("momento sql: unknown metric 'nope'")
