"""Journey funnels: every serving class counted exactly on hand-made decisions, the waterfall's
stages nested and adding up, and the small lake's counts equal to an independent polars count."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from metrics import experiments, journeys
from metrics.filters import Filters
from momento.kpis import GOVERNANCE_BLOCKS
from momento.lake.warehouse import Warehouse

sys.path.insert(0, str(Path(__file__).parent))
from handmade import decision, event, exposure, purchase, write_lake

PRE_DAYS = 14


@pytest.fixture(scope="module")
def handmade(tmp_path_factory) -> Warehouse:
    d = {
        "no_consent": decision(1, 0, "treatment", consent=False, fallback=True, fallback_reason="no_consent"),
        "capped": decision(2, 0, "treatment", fallback=True, fallback_reason="frequency_cap"),
        "holdout": decision(3, 0, "holdout"),
        "blocked": decision(4, 0, "treatment", fallback=True, fallback_reason="out_of_stock"),
        "failure": decision(5, 0, "treatment", fallback=True, fallback_reason="model_error"),
        "error": decision(6, 0, "treatment", status="error", error_code="internal_error", policy="default"),
        "model": decision(7, 0, "treatment"),
        "model2": decision(8, 0, "treatment"),
        "fixed": decision(9, 0, "control"),
        "elsewhere": decision(10, 0, "control", placement="product_cta"),
    }
    exposures = [exposure(d[k]) for k in ("holdout", "failure", "model", "model2", "fixed", "elsewhere")]
    events = [
        event(7, 0.1, "click", placement="homepage_showcase", decision_id=d["model"]["decision_id"]),
        purchase(7, 0.2, 100, decision_id=d["model"]["decision_id"]),
        purchase(8, 0.2, 50, decision_id=d["model2"]["decision_id"]),  # converted without a click
        event(3, 0.1, "click", placement="homepage_showcase", decision_id=d["holdout"]["decision_id"]),
        event(9, 0.1, "click", placement="homepage_showcase"),  # no decision_id: not attributed
    ]
    wh = Warehouse(write_lake(tmp_path_factory.mktemp("journeys") / "lake", events, list(d.values()), exposures))
    yield wh
    wh.close()


def test_every_serving_class_and_stage_is_counted_exactly(handmade, bundled_scenario):
    view = journeys.journey(journeys.load_funnel(handmade, Filters(), PRE_DAYS), bundled_scenario, "browse")
    assert dict(view.serving.select("serving", "decisions").rows()) == {
        "no_consent": 1,
        "capped": 1,
        "holdout": 1,
        "blocked": 1,
        "fallback": 2,
        "model": 2,
        "fixed": 1,
    }
    assert dict(view.waterfall.select("stage", "decisions").rows()) == {
        "traffic": 9,
        "consented": 8,
        "not_capped": 7,
        "eligible": 5,
        "model": 2,
        "fixed": 1,
        "fallback": 2,
        "exposed": 4,
        "clicked": 1,
        "converted": 2,
    }
    model = view.serving.filter(pl.col("serving") == "model").row(0, named=True)
    assert (model["ctr"], model["conversion"]) == (0.5, 1.0)
    assert view.waterfall.filter(pl.col("stage") == "eligible")["share"].item() == pytest.approx(5 / 9)
    assert (view.placement, view.experiment.id) == ("homepage_showcase", "exp_home_showcase")


def test_the_overview_answers_how_much_traffic_is_eligible_per_experience(handmade, bundled_scenario):
    overview = journeys.overview(journeys.load_funnel(handmade, Filters(), PRE_DAYS), bundled_scenario)
    assert overview["journey"].to_list() == [j.id for j in bundled_scenario.journeys]
    browse = overview.filter(pl.col("journey") == "browse").row(0, named=True)
    assert (browse["traffic"], browse["eligible"], browse["eligible_share"]) == (9, 5, pytest.approx(5 / 9))
    conversion = overview.filter(pl.col("journey") == "conversion").row(0, named=True)
    assert (conversion["traffic"], conversion["eligible"], conversion["exposed"]) == (1, 1, 1)
    assert overview.filter(pl.col("journey") == "cart")["eligible_share"].item() is None


def test_small_lake_counts_equal_an_independent_polars_count(small_lake, bundled_scenario):
    wh = Warehouse(small_lake)
    funnel = journeys.load_funnel(wh, Filters(), PRE_DAYS)
    raw = wh.query("SELECT journey, arm, consent, fallback, fallback_reason, status FROM decisions")
    blocks = [c.value for c in GOVERNANCE_BLOCKS]
    eligible = raw.filter(
        (pl.col("arm") != "holdout")
        & pl.col("consent")
        & ~(pl.col("fallback") & pl.col("fallback_reason").is_in(blocks))
    )
    for j in bundled_scenario.journeys:
        view = journeys.journey(funnel, bundled_scenario, j.id)
        stage = dict(view.waterfall.select("stage", "decisions").rows())
        assert stage["traffic"] == raw.filter(pl.col("journey") == j.id).height > 0
        assert stage["eligible"] == eligible.filter(pl.col("journey") == j.id).height
        assert stage["eligible"] == stage["model"] + stage["fixed"] + stage["fallback"]
        assert stage["traffic"] >= stage["consented"] >= stage["not_capped"] >= stage["eligible"] >= stage["exposed"]
        assert stage["exposed"] >= stage["clicked"]
    wh.close()


def test_filters_narrow_the_funnel(small_lake, bundled_scenario):
    wh = Warehouse(small_lake)
    everything = journeys.load_funnel(wh, Filters(), PRE_DAYS)["decisions"].sum()
    returning = journeys.load_funnel(wh, Filters(segment="returning"), PRE_DAYS)
    only_cart = journeys.load_funnel(wh, Filters(journey="cart"), PRE_DAYS)
    assert 0 < returning["decisions"].sum() < everything
    assert set(only_cart["journey"]) == {"cart"}
    raw = wh.query("SELECT count(*) AS n FROM decisions WHERE segment = 'returning'")["n"].item()
    assert returning["decisions"].sum() == raw
    wh.close()


def test_revenue_per_exposed_user_is_the_experiment_population(small_lake, bundled_scenario):
    wh = Warehouse(small_lake)
    frame = experiments.load_stats(wh, Filters(), 14, experiments.scenario_metrics(bundled_scenario))
    x = bundled_scenario.experiment_by_id["exp_cart_cross_sell"]
    table = journeys.revenue_per_exposed_user(frame, x)
    report = experiments.analyse(frame, x)
    arms = table.filter(pl.col("arm") != "all arms")
    assert arms["users"].to_list() == report.arms["users"].to_list()
    assert arms["revenue_per_user"].to_list() == pytest.approx(report.arms["revenue_per_user"].to_list())
    total = table.filter(pl.col("arm") == "all arms").row(0, named=True)
    assert total["revenue_per_user"] == pytest.approx(arms["revenue"].sum() / arms["users"].sum())
    wh.close()


def test_revenue_per_exposed_user_from_one_experiments_statistics(small_lake, bundled_scenario):
    wh = Warehouse(small_lake)
    x = bundled_scenario.experiment_by_id["exp_cart_cross_sell"]
    everything = experiments.load_stats(wh, Filters(), 14, experiments.scenario_metrics(bundled_scenario))
    only = experiments.load_stats(wh, Filters(), 14, (journeys.REVENUE_METRIC,), x.id)
    wh.close()
    assert set(only["experiment_id"]) == {x.id}
    expected = journeys.revenue_per_exposed_user(everything, x)
    assert expected["users"].sum() > 0
    assert_frame_equal(journeys.revenue_per_exposed_user(only, x), expected)
