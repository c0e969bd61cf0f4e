"""pages/policy_lab.py in Streamlit's AppTest: the candidates' values, the logging policy's value,
the integrity counts and the sentence are those metrics.ope_lab computes; switching experience
and reward, narrowing the candidates, filters with no data and empty lakes behave."""

from __future__ import annotations

import shutil

import pytest

from metrics.filters import Filters
from metrics.ope_candidates import PolicyShape
from metrics.ope_lab import run_lab
from momento.lake.bandit_import import import_bandit_log
from momento.lake.warehouse import Warehouse
from pages.explain import TITLE
from tests.support.obd import obd_file

PAGE = "pages/policy_lab.py"


def lab_for(lake, scenario, experience_id: str, reward: str, kinds=None):
    experience = scenario.experience_by_id[experience_id]
    shape = PolicyShape(tuple(experience.variants), experience.default_variant, tuple(experience.discount.items()))
    wh = Warehouse(lake)
    try:
        return run_lab(wh, Filters(), experience_id, shape, tuple(kinds or experience.lab_candidates), reward)
    finally:
        wh.close()


def _table(at):
    return next(d.value for d in at.dataframe if "candidate" in d.value.columns)


def test_every_number_equals_metrics(run_page, small_lake, bundled_scenario, metric_values, texts):
    at = run_page(PAGE, small_lake)
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    expected = lab_for(small_lake, bundled_scenario, "home_showcase", "click")
    shown = _table(at)
    assert shown["candidate"].tolist() == expected.table["candidate"].to_list()
    assert shown["value"].tolist() == pytest.approx(expected.table["value"].to_list())
    assert shown["ess"].tolist() == pytest.approx(expected.table["ess"].to_list())
    assert shown["verdict"].tolist() == expected.table["verdict"].to_list()
    assert expected.sentence() in texts(at)
    values = metric_values(at)
    assert values["Decisions read"] == f"{expected.loaded.rows:,}".replace(",", ".")
    assert values["Untrustworthy propensities"] == "0"
    assert len(at.get("vega_lite_chart")) == 1
    assert any(e.label == TITLE for e in at.expander)


def test_switching_experience_reward_and_candidates(run_page, small_lake, bundled_scenario):
    at = run_page(PAGE, small_lake)
    at.selectbox(key="lab_experience").set_value("adaptive_cta").run()
    at.selectbox(key="lab_reward").set_value("revenue").run()
    at.multiselect(key="lab_candidates_adaptive_cta").set_value(["rules", "variant:gift_message"]).run()
    assert not at.exception and not at.error
    expected = lab_for(small_lake, bundled_scenario, "adaptive_cta", "revenue", ["rules", "variant:gift_message"])
    shown = _table(at)
    assert shown["candidate"].tolist() == ["the rules", "always gift_message"]
    assert shown["value"].tolist() == pytest.approx(expected.table["value"].to_list())


def test_a_filter_with_no_data(run_page, small_lake, texts):
    at = run_page(PAGE, small_lake, query={"dates": ["2001-01-01", "2001-01-31"]})
    assert not at.exception and not at.error
    assert "No decisions chosen by a policy for Personalised homepage showcase for 01/01/2001 – 31/01/2001" in texts(at)


def test_an_empty_or_damaged_lake(run_page, empty_lake, corrupt_lake, texts):
    at = run_page(PAGE, empty_lake)
    assert not at.exception and not at.error
    assert "No decisions chosen by a policy" in texts(at)
    at = run_page(PAGE, corrupt_lake)
    assert not at.exception
    assert "the warehouse cannot be read" in texts(at)


def test_an_imported_campaign_is_evaluated_too(run_page, small_lake, tmp_path, texts):
    lake = tmp_path / "lake"
    shutil.copytree(small_lake, lake)
    obd_file(tmp_path / "obd.csv", 3_000, 11, 0.05, items=4)
    import_bandit_log(lake, tmp_path / "obd.csv", "obd_campaign", "random")
    at = run_page(PAGE, lake)
    at.selectbox(key="lab_experience").set_value("obd_campaign").run()
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    shown = _table(at)
    assert shown["candidate"].tolist() == [
        "uniform random",
        "the bandit",
        "the bandit's greedy choice",
        *(f"always item_{i}" for i in range(4)),
    ]
    assert "obd_campaign (imported): candidate policies" in [s.value for s in at.subheader]
