"""pages/journeys.py in Streamlit's AppTest: the eligibility table, the waterfall and the revenue
per exposed user are the numbers metrics/ computes; empty and damaged lakes show messages."""

from __future__ import annotations

import pytest

from metrics import experiments, journeys
from metrics.filters import Filters
from momento.lake.warehouse import Warehouse

PAGE = "pages/journeys.py"


@pytest.fixture(scope="module")
def computed(small_lake, bundled_scenario):
    wh = Warehouse(small_lake)
    funnel = journeys.load_funnel(wh, Filters(), bundled_scenario.business.pre_period_days)
    stats = experiments.load_stats(
        wh, Filters(), bundled_scenario.business.pre_period_days, experiments.scenario_metrics(bundled_scenario)
    )
    wh.close()
    return funnel, stats


def _table(at, column: str):
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_every_number_equals_metrics(run_page, small_lake, bundled_scenario, computed):
    funnel, stats = computed
    at = run_page(PAGE, small_lake)
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    overview = journeys.overview(funnel, bundled_scenario)
    shown = _table(at, "eligible_share")
    assert shown["traffic"].tolist() == overview["traffic"].to_list()
    assert shown["eligible"].tolist() == overview["eligible"].to_list()
    browse = journeys.journey(funnel, bundled_scenario, "browse")
    serving = _table(at, "serving")
    assert serving["decisions"].tolist() == browse.serving["decisions"].to_list()
    revenue = _table(at, "revenue_per_user")
    expected = journeys.revenue_per_exposed_user(stats, browse.experiment)
    assert revenue["revenue_per_user"].tolist() == pytest.approx(expected["revenue_per_user"].to_list())
    assert len(at.get("vega_lite_chart")) == 2  # the waterfall and the uplift over time


def test_switching_journey_shows_its_funnel(run_page, small_lake, bundled_scenario, computed):
    funnel, _ = computed
    at = run_page(PAGE, small_lake)
    at.segmented_control(key="journey_view").set_value("recovery").run()
    assert not at.exception
    recovery = journeys.journey(funnel, bundled_scenario, "recovery")
    assert _table(at, "serving")["decisions"].tolist() == recovery.serving["decisions"].to_list()
    assert any("Triggered e-mail/push offer" in s.value for s in at.subheader)


def test_a_filter_with_no_data(run_page, small_lake, texts):
    at = run_page(PAGE, small_lake, query={"dates": ["2001-01-01", "2001-01-31"]})
    assert not at.exception and not at.error
    assert "No decisions for 01/01/2001 – 31/01/2001" in texts(at)


def test_an_empty_or_missing_lake(run_page, empty_lake, tmp_path, texts):
    for lake in (empty_lake, tmp_path / "no-such-lake"):
        at = run_page(PAGE, lake)
        assert not at.exception and not at.error
        assert "No decisions for no filter" in texts(at)
