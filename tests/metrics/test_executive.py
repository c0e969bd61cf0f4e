"""The executive numbers: exact on a hand-made lake, equal to an independent polars computation
on the small lake, the trend adding up to the total, and the verdict's honest wording."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from metrics import executive, stats
from metrics.filters import Filters
from momento.lake.warehouse import Warehouse

sys.path.insert(0, str(Path(__file__).parent))
from handmade import T0, decision, event, purchase, write_lake

PRE_DAYS = 14


@pytest.fixture(scope="module")
def handmade(tmp_path_factory) -> Warehouse:
    """Users 1-4 reached outside the holdout (2 personalised), users 5-6 in the holdout."""
    decisions = [
        decision(1, 0, "treatment"),
        decision(2, 0, "treatment"),
        decision(3, 0, "control"),
        decision(4, 0, "control"),
        decision(5, 0, "holdout"),
        decision(6, 0, "holdout"),
        decision(1, 5, "treatment", fallback=True, fallback_reason="budget_exceeded", policy="default"),
    ]
    events = [
        purchase(1, 1, 100, 40),
        purchase(3, 1, 50, 20),
        purchase(4, 25, 50, 20),
        purchase(5, 1, 10, 4),
        purchase(6, 1, 30, 12),
        purchase(2, -24 * 30, 999, 400),  # long before the first decision: counts nowhere
        event(1, 2, "nps_response", nps_score=10),
        event(5, 2, "nps_response", nps_score=2),
        event(6, 2, "nps_response", nps_score=9),
    ]
    wh = Warehouse(write_lake(tmp_path_factory.mktemp("exec") / "lake", events, decisions))
    yield wh
    wh.close()


def test_handmade_numbers_are_exact(handmade):
    summary = executive.summarise(executive.load_summary(handmade, Filters(), PRE_DAYS), method="fixed")
    assert summary.users == {"exposed": 4, "holdout": 2}
    assert summary.means["arpu"] == pytest.approx({"exposed": 50.0, "holdout": 20.0, "all": 40.0})
    assert summary.means["margin_per_user"] == pytest.approx({"exposed": 20.0, "holdout": 8.0, "all": 16.0})
    assert summary.means["conversion_rate"] == pytest.approx({"exposed": 0.75, "holdout": 1.0, "all": 5 / 6})
    assert summary.means["aov"]["all"] == pytest.approx(240 / 5)
    assert summary.means["nps"] == pytest.approx({"exposed": 100.0, "holdout": 0.0, "all": 100 / 3})
    assert summary.means["coverage"] == pytest.approx({"exposed": 0.5, "holdout": 0.0, "all": 2 / 6})
    assert summary.revenue.users_exposed == 4
    assert summary.revenue.total.estimate == pytest.approx((50 - 20) * 4)
    assert summary.margin.total.estimate == pytest.approx((20 - 8) * 4)
    welch = stats.compare(
        stats.ArmStats("h", 2, 40.0, 10**2 + 30**2),
        stats.ArmStats("e", 4, 200.0, 100**2 + 50**2 + 50**2),
        "mean",
        method="fixed",
    )
    assert summary.revenue.per_user == welch.absolute
    assert summary.days == pytest.approx(37 / 24, abs=1e-6)  # first decision's day (midnight) to the newest event


def test_the_summary_equals_an_independent_polars_computation(small_lake):
    wh = Warehouse(small_lake)
    frame = executive.load_summary(wh, Filters(), PRE_DAYS)
    decisions = wh.query("SELECT user_id, ts, arm FROM decisions")
    events = wh.query("SELECT user_id, ts, event_type, revenue FROM events")
    users = decisions.group_by("user_id").agg(
        pl.col("ts").min().alias("first_ts"), (pl.col("arm") == "holdout").any().alias("holdout")
    )
    revenue = (
        users.join(events.filter(pl.col("event_type") == "purchase"), on="user_id", how="left")
        .filter(pl.col("ts") >= pl.col("first_ts"))
        .group_by("user_id")
        .agg(pl.col("revenue").sum())
    )
    per_user = users.join(revenue, on="user_id", how="left").with_columns(pl.col("revenue").fill_null(0.0))
    expected = (
        per_user.group_by("holdout")
        .agg(pl.len(), pl.col("revenue").sum(), (pl.col("revenue") ** 2).sum().alias("sq"))
        .sort("holdout")
    )
    got = frame.sort("grp")  # exposed, holdout
    assert got["users"].to_list() == expected["len"].to_list()
    assert got["arpu__sum"].to_list() == pytest.approx(expected["revenue"].to_list(), rel=1e-9)
    assert got["arpu__sum_squares"].to_list() == pytest.approx(expected["sq"].to_list(), rel=1e-9)
    summary = executive.summarise(frame)
    assert summary.revenue.per_user.ci_lower < summary.revenue.per_user.estimate < summary.revenue.per_user.ci_upper
    wh.close()


@pytest.mark.parametrize("grain", ["day", "hour"])
def test_the_trend_adds_up_to_the_unadjusted_total(small_lake, grain):
    wh = Warehouse(small_lake)
    summary = executive.summarise(executive.load_summary(wh, Filters(), PRE_DAYS))
    trend = executive.trend(executive.load_trend(wh, Filters(), PRE_DAYS, grain), summary)
    n_e, n_h = summary.users["exposed"], summary.users["holdout"]
    frame = executive.load_summary(wh, Filters(), PRE_DAYS).sort("grp")
    rev_e, rev_h = frame["arpu__sum"].to_list()
    assert trend["cumulative_incremental"][-1] == pytest.approx((rev_e / n_e - rev_h / n_h) * n_e, rel=1e-9)
    assert trend["bucket"].is_sorted()
    wh.close()


def _executive(
    lower: float | None,
    estimate: float | None,
    upper: float | None,
    status: str = "ok",
    users: dict[str, int] | None = None,
) -> executive.Executive:
    total = stats.Estimate(estimate, lower, upper)
    value = stats.IncrementalValue(status, "", 100, total, total)
    return executive.Executive(
        users or {"exposed": 950, "holdout": 50}, {}, value, value, T0, T0 + timedelta(days=14), 0.05
    )


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        (
            (120_000, 182_400, 240_000),
            "Personalisation added R$ 182.400 (95% CI R$ 120.000 – R$ 240.000) over the last 14 days against the "
            "5% holdout: it pays.",
        ),
        ((-30_000, 10_000, 50_000), "not yet distinguishable from zero."),
        ((-9_000, -5_000, -1_000), "Personalisation cost -R$ 5.000 (95% CI -R$ 9.000 – -R$ 1.000)"),
    ],
)
def test_the_verdict_says_what_the_interval_supports(bounds, expected):
    assert expected in executive.verdict(_executive(*bounds), 0.05)


def test_the_verdict_admits_when_there_is_nothing_to_say():
    assert "Not enough data" in executive.verdict(_executive(None, None, None, "not_enough_data"), 0.05)
    nobody = _executive(None, None, None, users={"exposed": 0, "holdout": 0})
    assert executive.verdict(nobody, 0.05).startswith("No users reached")


def test_an_empty_lake_gives_an_empty_summary_not_an_error(tmp_path):
    wh = Warehouse(tmp_path / "none")
    summary = executive.summarise(executive.load_summary(wh, Filters(), PRE_DAYS))
    assert not summary.has_data and summary.revenue.status == "not_enough_data"
    assert executive.trend(executive.load_trend(wh, Filters(), PRE_DAYS), summary).height == 0
