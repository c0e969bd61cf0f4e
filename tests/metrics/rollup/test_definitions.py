"""The rollups' definitions count exactly what the catalogue says: a hand-made 10-user lake with
round numbers, read from raw and from rollups (metrics/rollup/definitions.py)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import polars as pl
import pytest

from metrics import experiments as ex
from metrics.arm_stats import arm_stats, stat_names
from metrics.filters import Filters
from metrics.rollup import definitions as defs
from metrics.rollup.job import RollupJob
from metrics.rollup.read import aggregates
from momento import kpis
from momento.lake.warehouse import Warehouse, used_params

sys.path.insert(0, str(Path(__file__).parent.parent))
from handmade import T0, decision, event, exposure, purchase, write_lake

PRE_DAYS = 14
EXPERIMENT = "exp_home_showcase"


def ten_user_rows() -> tuple[list, list, list]:
    """Ten users exposed at hour 0 (midday); everything else placed to give round numbers."""
    decisions = [decision(u, 0) for u in range(1, 11)]
    exposures = [exposure(d) for d in decisions] + [exposure(decisions[0], after_seconds=60)]
    events = [
        purchase(1, 2, 100),
        purchase(1, 30, 20),
        purchase(2, 2, 50),
        purchase(3, 2, 30),  # 3 of 10 convert
        purchase(4, -24, 80),  # the day before the exposure's: the pre-period (CUPED covariate), not an outcome
        purchase(6, -0.5, 60),  # earlier on the exposure's own day: neither outcome nor covariate
        purchase(5, -24 * 20, 70),  # before the 14-day pre-period: nowhere
        event(1, 0.1, "click", placement="homepage_showcase"),
        event(1, 0.2, "click", placement="homepage_showcase"),
        event(2, 0.3, "click", placement="product_cta"),  # another element's click
        event(2, 30, "return", revenue=50.0, margin=20.0),
        event(3, 5, "nps_response", nps_score=10),
        event(6, 5, "nps_response", nps_score=3),
        event(7, 5, "nps_response", nps_score=8),
        event(8, 3, "opt_out"),
        event(1, 10, "page_view"),
        event(10, 48, "page_view"),
        event(9, 240, "page_view"),  # day 0, day 2, day 10
    ]
    return events, decisions, exposures


@pytest.fixture(scope="module", params=["raw", "rollups"])
def ten_users(request, tmp_path_factory) -> Warehouse:
    """The ten users, read from raw or through the rollups (a job run)."""
    events, decisions, exposures = ten_user_rows()
    lake = write_lake(tmp_path_factory.mktemp("ten") / "lake", events, decisions, exposures)
    if request.param == "rollups":
        RollupJob(lake, PRE_DAYS).run_once()
    wh = Warehouse(lake)
    yield wh
    wh.close()


def _row(wh: Warehouse, names=tuple(m.name for m in defs.EXPOSED_METRICS)) -> dict:
    frame = ex.load_stats(wh, Filters(), PRE_DAYS, names, EXPERIMENT)
    return frame.select(pl.exclude("experiment_id", "arm", "segment", "day").sum()).row(0, named=True)


def _mean(row: dict, name: str) -> float:
    a = arm_stats(row, kpis.metric(name), "all")
    return a.sum / (a.denominator_sum if a.denominator_sum is not None else a.n)


def test_the_source_is_what_the_fixture_says(ten_users):
    mode = aggregates(ten_users, PRE_DAYS).source.mode
    assert mode in ("raw", "rollups")


def test_every_metric_counts_exactly_what_its_definition_says(ten_users):
    row = _row(ten_users)
    assert {m.name: _mean(row, m.name) for m in defs.EXPOSED_METRICS} == pytest.approx(
        {
            "conversion_rate": 0.3,
            "revenue_per_user": (120 + 50 + 30) / 10,
            "aov": 200 / 4,
            "ctr": 2 / 11,  # clicks on this element per exposure of it (user 1 saw it twice)
            "margin_per_user": (48 + 20 - 20 + 12) / 10,  # user 2's returned order gives its margin back
            "return_rate": 1 / 4,
            "retention_7d": 1 / 10,  # only user 10 came back on one of the 7 days after the first
            "opt_out_rate": 0.1,
            "nps": 0.0,  # one promoter, one detractor, one passive
        },
        abs=1e-12,
    )
    conversion = arm_stats(row, kpis.metric("conversion_rate"), "all")
    assert (conversion.n, conversion.sum, conversion.sum_squares) == (10, 3.0, 3.0)
    assert (conversion.pre_sum, conversion.pre_sum_squares, conversion.sum_product) == (1.0, 1.0, 0.0)
    revenue = arm_stats(row, kpis.metric("revenue_per_user"), "all")
    assert (revenue.pre_sum, revenue.pre_sum_squares) == (80.0, 6400.0)
    assert arm_stats(row, kpis.metric("revenue_per_user"), "all", cuped=False).has_covariate is False


def test_a_windowed_metric_leaves_out_users_whose_days_are_not_over(tmp_path):
    late = decision(11, 200)  # exposed on day 8; the newest event is on day 10: its 7 days are not over
    lake = write_lake(
        tmp_path / "lake", [event(11, 230, "page_view"), event(9, 240, "page_view")], [late], [exposure(late)]
    )
    wh = Warehouse(lake)
    row = _row(wh, ("retention_7d", "conversion_rate"))
    assert row["retention_7d__n"] == 0 and row["conversion_rate__n"] == 1
    wh.close()


def test_as_of_day_statistics_replay_the_experiment_day_by_day(ten_users):
    daily = ex.load_cumulative(ten_users, Filters(), EXPERIMENT, "conversion_rate", PRE_DAYS)
    # Day 0: users 1, 2, 3 bought (user 1 again on day 1: still one converted user).
    assert daily["conversion_rate__n"].to_list() == [10] * daily.height
    assert daily["conversion_rate__sum"].to_list() == [3.0] * daily.height
    assert daily["conversion_rate__pre_sum"][0] == 1.0
    by_day = ex.load_cumulative(ten_users, Filters(), EXPERIMENT, "revenue_per_user", PRE_DAYS)
    assert by_day["revenue_per_user__sum"].to_list()[:3] == [180.0, 200.0, 200.0]  # user 1's 20 came on day 1
    assert by_day["revenue_per_user__sum_squares"][0] == 100**2 + 50**2 + 30**2
    assert by_day["revenue_per_user__sum_squares"][1] == 120**2 + 50**2 + 30**2
    last = by_day.row(-1, named=True)
    summary = _row(ten_users)
    names = stat_names(kpis.metric("revenue_per_user"))
    assert {k: last[k] for k in names} == pytest.approx({k: summary[k] for k in names})


def test_windowed_metrics_enter_the_daily_statistics_when_their_days_are_over(ten_users):
    daily = ex.load_cumulative(ten_users, Filters(), EXPERIMENT, "retention_7d", PRE_DAYS)
    assert daily["retention_7d__n"].to_list() == [0] * 8 + [10] * (daily.height - 8)
    assert daily["retention_7d__sum"][-1] == 1.0


def test_a_date_filter_takes_the_users_who_entered_then_as_of_its_end(ten_users):
    day = T0.date()
    on_day = _filtered(ten_users, Filters(start=day, end=day))
    assert on_day["conversion_rate__n"] == 10 and on_day["revenue_per_user__sum"] == 180.0  # as of day 0's end
    assert _filtered(ten_users, Filters(start=day.replace(day=2)))["conversion_rate__n"] == 0  # nobody entered later


def _filtered(wh: Warehouse, filters: Filters) -> dict:
    frame = ex.load_stats(wh, filters, PRE_DAYS, ("conversion_rate", "revenue_per_user"), EXPERIMENT)
    return frame.select(pl.exclude("experiment_id", "arm", "segment", "day").sum()).row(0, named=True)


def test_only_used_parameters_are_bound_and_values_are_never_spliced(ten_users):
    sql = "SELECT count(*) FROM events WHERE user_id = $who"
    assert used_params(sql, {"who": "x", "whom": "y", "w": 1}) == {"who": "x"}
    assert ten_users.scalar(sql, {"who": "x' OR '1'='1", "whom": "unused"}) == 0


def test_decision_measures_count_coverage_and_eligible_traffic(tmp_path):
    decisions = [
        decision(1, 0, "holdout"),
        decision(2, 0, "treatment"),
        decision(3, 0, "control"),
        decision(2, 1, "treatment", fallback=True, fallback_reason="budget_exceeded", policy="default"),
        decision(4, 0, "treatment", fallback=True, fallback_reason="out_of_stock", policy="default"),
        decision(5, 0, "treatment", consent=False, fallback=True, fallback_reason="no_consent", policy="default"),
    ]
    wh = Warehouse(write_lake(tmp_path / "lake", [event(1, 2, "page_view")], decisions))
    stats = aggregates(wh, PRE_DAYS)["executive_stats"].filter(pl.col("scope") == defs.ALL_JOURNEYS)
    row = stats.select(pl.exclude("scope", "grp", "segment", "channel", "cohort_day", "change_day").sum()).row(
        0, named=True
    )
    assert _mean(row, "coverage") == pytest.approx(1 / 5)  # only user 2 got a policy's choice
    assert _mean(row, "eligible_share") == pytest.approx(3 / 6)  # user 2 twice (a failure is eligible), user 3
    wh.close()


def test_a_table_looked_up_by_finer_keys_than_the_user_is_read_only_by_the_aggregates_that_allow_it():
    """A fold reads, of a state table, only the rows sharing its `FOLD_KEYS` with the batch: exact
    only while the aggregates that read the table group its rows no coarser than those keys (the
    operational counts sum rows one by one; the funnel counts each decision)."""
    allowed = {(): set(defs.OPERATIONS), ("user_id", "decision_id"): {defs.JOURNEY_FUNNEL}}
    for aggregate in defs.AGGREGATES:
        body = defs.contributions_sql(aggregate.name, PRE_DAYS)
        for table in defs.STATE:
            keys = defs.FOLD_KEYS[table.name]
            if keys != ("user_id",) and re.search(rf"\b{table.name}\b", body):
                assert aggregate in allowed[keys], (aggregate.name, table.name)
    assert {n for n, k in defs.FOLD_KEYS.items() if k != ("user_id",)} == {
        "decision_ops",
        "event_ops",
        "served_decisions",
        "decision_links",
    }
