"""pages/executive.py in Streamlit's AppTest: the numbers and the verdict it shows are the ones
metrics/executive.py computes, and every empty or damaged state renders a message instead."""

from __future__ import annotations

from metrics import executive
from metrics.filters import Filters
from momento.lake.warehouse import Warehouse

PAGE = "pages/executive.py"


def brl(value: float) -> str:
    """The cockpit's money format (R$ 1.234,56), written out independently."""
    text = f"{abs(value):,.2f}".replace(",", "_").replace(".", ",").replace("_", ".")
    return f"{'-' if value < 0 else ''}R$ {text}"


def test_key_numbers_and_verdict_equal_metrics(run_page, small_lake, bundled_scenario, metric_values, texts, pt_br):
    at = run_page(PAGE, small_lake)
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    wh = Warehouse(small_lake)
    summary = executive.summarise(executive.load_summary(wh, Filters(), bundled_scenario.business.pre_period_days))
    wh.close()
    shown = metric_values(at)
    assert shown["Incremental revenue"] == brl(summary.revenue.total.estimate)
    assert shown["Incremental margin"] == brl(summary.margin.total.estimate)
    assert shown["ARPU exposed"] == brl(summary.means["arpu"]["exposed"])
    assert shown["Conversion exposed"] == pt_br(f"{summary.means['conversion_rate']['exposed'] * 100:.2f}%")
    assert shown["Coverage"] == pt_br(f"{summary.means['coverage']['all'] * 100:.1f}%")
    assert shown["Users reached"] == pt_br(f"{sum(summary.users.values()):,}")
    assert executive.verdict(summary, bundled_scenario.population.holdout_share) in texts(at)
    groups = at.dataframe[0].value
    assert groups["users"].tolist() == [summary.users["exposed"], summary.users["holdout"], sum(summary.users.values())]
    assert len(at.get("vega_lite_chart")) == 2


def test_a_filter_with_no_data(run_page, small_lake, texts):
    at = run_page(PAGE, small_lake, query={"dates": ["2001-01-01", "2001-01-31"]})
    assert not at.exception and not at.error
    assert "No users reached by the engine for 01/01/2001 – 31/01/2001" in texts(at)
    assert not at.get("vega_lite_chart")


def test_an_empty_or_missing_lake(run_page, empty_lake, tmp_path, texts):
    for lake in (empty_lake, tmp_path / "no-such-lake"):
        at = run_page(PAGE, lake)
        assert not at.exception and not at.error
        assert "No users reached by the engine for no filter" in texts(at)
