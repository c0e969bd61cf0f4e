"""pages/experiments.py in Streamlit's AppTest: the list, the recommendation, the per-variant
results and the true effects are the ones metrics/experiments.py computes; the analysis options
change the analysis; empty and damaged lakes show messages."""

from __future__ import annotations

import pytest

from metrics import experiments as ex
from metrics.filters import Filters
from metrics.rollup.read import aggregates
from momento.lake import ground_truth as truth
from momento.lake.warehouse import Warehouse

PAGE = "pages/experiments.py"


@pytest.fixture(scope="module")
def frame(small_lake, bundled_scenario):
    wh = Warehouse(small_lake)
    stats = ex.load_stats(
        wh, Filters(), bundled_scenario.business.pre_period_days, ex.scenario_metrics(bundled_scenario)
    )
    wh.close()
    return stats


def _table(at, column: str):
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_list_recommendation_and_results_equal_metrics(run_page, small_lake, bundled_scenario, frame, texts):
    at = run_page(PAGE, small_lake)
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    listing = ex.experiment_list(frame, bundled_scenario)
    shown = _table(at, "srm_p")
    assert shown["users"].tolist() == listing["users"].to_list()
    assert shown["action"].tolist() == listing["action"].to_list()
    first = bundled_scenario.experiments[0]
    report = ex.analyse(frame, first)
    assert report.recommendation.reason in texts(at)
    results = _table(at, "p_adjusted")
    expected = report.results["lift"].fill_null(float("nan")).to_list()
    assert results["lift"].tolist() == pytest.approx(expected, nan_ok=True)
    true = ex.true_lifts(truth.load(small_lake), first.id)
    shown_truth = dict(zip(zip(results["metric"], results["variant"]), results["truth"]))
    for metric, variant, value in true.iter_rows():
        if (metric, variant) in shown_truth:
            assert shown_truth[(metric, variant)] == pytest.approx(value)
    assert len(at.get("vega_lite_chart")) == 2  # intervals per metric, cumulative lift
    assert _table(at, "segment")["segment"].nunique() == 2


def test_picking_an_experiment_and_turning_cuped_off(run_page, small_lake, bundled_scenario, frame):
    at = run_page(PAGE, small_lake)
    at.selectbox(key="experiment_view").select("exp_adaptive_cta").run()
    x = bundled_scenario.experiment_by_id["exp_adaptive_cta"]
    results = _table(at, "p_adjusted")
    assert set(results["variant"]) == {"free_shipping", "adaptive"}
    assert results["cuped"].tolist() == ex.analyse(frame, x).results["cuped"].to_list()
    at.toggle(key="exp_cuped").set_value(False).run()
    assert not at.exception
    results = _table(at, "p_adjusted")
    assert not results["cuped"].any()
    unadjusted = ex.analyse(frame, x, ex.Options(cuped=False)).results
    expected = unadjusted["p_value"].fill_null(float("nan")).to_list()
    assert results["p_value"].tolist() == pytest.approx(expected, nan_ok=True)


def test_a_filter_with_no_data(run_page, small_lake, texts):
    at = run_page(PAGE, small_lake, query={"dates": ["2001-01-01", "2001-01-31"]})
    assert not at.exception and not at.error
    assert "No user exposed in any experiment for 01/01/2001 – 31/01/2001" in texts(at)


def test_an_empty_or_missing_lake(run_page, empty_lake, tmp_path, texts):
    for lake in (empty_lake, tmp_path / "no-such-lake"):
        at = run_page(PAGE, lake)
        assert not at.exception and not at.error
        assert "No user exposed in any experiment for no filter" in texts(at)


def test_power_plan_and_the_always_valid_p_label(run_page, small_lake, bundled_scenario, frame, texts):
    at = run_page(PAGE, small_lake)
    assert not at.exception and not at.error
    first = bundled_scenario.experiments[0]
    wh = Warehouse(small_lake)
    as_of = aggregates(wh, bundled_scenario.business.pre_period_days).source.as_of
    wh.close()
    plan = ex.plans(ex.analyse(frame, first), ex.days_observed(frame, first, as_of))
    shown = _table(at, "days_to_detect")
    assert shown["mde_relative"].tolist() == pytest.approx(plan["mde_relative"].to_list(), nan_ok=True)
    assert shown["days_to_detect"].tolist() == pytest.approx(plan["days_to_detect"].to_list(), nan_ok=True)
    assert ex.plan_sentence(first, plan) in texts(at)
    assert plan["mde"].drop_nulls().len() == plan.height  # the small lake has enough users for a plan
    results = next(d for d in at.dataframe if "p_adjusted" in d.value.columns)
    assert "Always-valid p" in str(results.proto.columns)


def test_segments_state_how_many_cells_were_looked_at(run_page, small_lake, bundled_scenario, frame, texts):
    at = run_page(PAGE, small_lake)
    first = bundled_scenario.experiments[0]
    seg = ex.segments(frame, first, first.primary_metric)
    assert f"{seg.looked_at} segment × variant cells looked at" in texts(at)
    shown = _table(at, "flagged")
    assert shown["flagged"].tolist() == seg.frame["flagged"].to_list()
