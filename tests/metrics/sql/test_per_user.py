"""The SQL written from the catalogue: exact values on a hand-made 10-user lake, sufficient
statistics against numpy, and the as-of-day statistics against the per-user values."""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest

from momento import kpis
from metrics.filters import Filters
from metrics.sql import per_user, user_key
from momento.lake.warehouse import used_params
from momento.lake.warehouse import Warehouse

sys.path.insert(0, str(Path(__file__).parent.parent))
from handmade import T0, decision, event, exposure, purchase, write_lake  # noqa: E402

EXPOSED = [m for m in kpis.METRICS.values() if "exposed" in m.population]
UNITS = f"""    SELECT {user_key('f')} AS uid, 'all' AS grp, min(f.ts) AS first_ts, any_value(f.placement) AS placement
           {per_user.unit_columns(EXPOSED, 'exposures')}
    FROM exposures f
    WHERE ($f_start IS NULL OR f.ts >= $f_start)
    GROUP BY uid"""


@pytest.fixture(scope="module")
def ten_users(tmp_path_factory) -> Warehouse:
    """Ten users exposed at hour 0; everything else is placed to give round numbers."""
    decisions = [decision(u, 0) for u in range(1, 11)]
    exposures = [exposure(d) for d in decisions] + [exposure(decisions[0], after_seconds=60)]
    events = [
        purchase(1, 2, 100), purchase(1, 30, 20), purchase(2, 2, 50), purchase(3, 2, 30),  # 3 of 10 convert
        purchase(4, -24, 80),  # before the exposure: the pre-period (CUPED covariate), not an outcome
        purchase(5, -24 * 20, 70),  # before the 14-day pre-period: nowhere
        event(1, 0.1, "click", placement="homepage_showcase"), event(1, 0.2, "click", placement="homepage_showcase"),
        event(2, 0.3, "click", placement="product_cta"),  # another element's click
        event(2, 30, "return", revenue=50.0, margin=20.0),
        event(3, 5, "nps_response", nps_score=10), event(6, 5, "nps_response", nps_score=3),
        event(7, 5, "nps_response", nps_score=8),
        event(8, 3, "opt_out"),
        event(1, 10, "page_view"), event(10, 48, "page_view"), event(9, 240, "page_view"),  # day 0, day 2, day 10
    ]
    wh = Warehouse(write_lake(tmp_path_factory.mktemp("ten") / "lake", events, decisions, exposures))
    yield wh
    wh.close()


def _stats(wh: Warehouse, metrics, filters: Filters = Filters(), units: str = UNITS) -> dict:
    per_user_rows = per_user.per_user_sql(units, metrics)
    sql = f"SELECT grp{per_user.stats_columns(metrics)} FROM (\n{per_user_rows}\n) GROUP BY grp"
    return wh.query(sql, {**filters.params(), "pre_days": 14}).row(0, named=True)


def _mean(row: dict, name: str) -> float:
    a = per_user.arm_stats(row, kpis.metric(name), "all")
    return a.sum / (a.denominator_sum if a.denominator_sum is not None else a.n)


def test_every_metric_counts_exactly_what_its_definition_says(ten_users):
    row = _stats(ten_users, EXPOSED)
    assert {m.name: _mean(row, m.name) for m in EXPOSED} == pytest.approx({
        "conversion_rate": 0.3,
        "revenue_per_user": (120 + 50 + 30) / 10,
        "aov": 200 / 4,
        "ctr": 2 / 11,  # clicks on this element per exposure of it (user 1 saw it twice)
        "margin_per_user": (48 + 20 - 20 + 12) / 10,  # user 2's returned order gives its margin back
        "return_rate": 1 / 4,
        "retention_7d": 1 / 10,  # only user 10 came back between day 1 and day 7
        "opt_out_rate": 0.1,
        "nps": 0.0,  # one promoter, one detractor, one passive
    }, abs=1e-12)
    conversion = per_user.arm_stats(row, kpis.metric("conversion_rate"), "all")
    assert (conversion.n, conversion.sum, conversion.sum_squares) == (10, 3.0, 3.0)
    assert (conversion.pre_sum, conversion.pre_sum_squares, conversion.sum_product) == (1.0, 1.0, 0.0)
    revenue = per_user.arm_stats(row, kpis.metric("revenue_per_user"), "all")
    assert (revenue.pre_sum, revenue.pre_sum_squares) == (80.0, 6400.0)
    assert per_user.arm_stats(row, kpis.metric("revenue_per_user"), "all", cuped=False).has_covariate is False


def test_a_windowed_metric_leaves_out_users_who_have_not_matured(ten_users, tmp_path):
    late = decision(11, 200)  # exposed 40 hours before the newest event: its week is not over
    wh = Warehouse(write_lake(tmp_path / "lake", [event(11, 230, "page_view"), event(9, 240, "page_view")],
                              [late], [exposure(late)]))
    row = _stats(wh, [kpis.metric("retention_7d"), kpis.metric("conversion_rate")])
    assert row["retention_7d__n"] == 0 and row["conversion_rate__n"] == 1
    assert _stats(ten_users, [kpis.metric("retention_7d")])["retention_7d__n"] == 10


def test_stats_columns_are_the_sufficient_statistics_numpy_computes():
    rng = np.random.default_rng(7)
    v, x, d = rng.gamma(2.0, 10.0, 500), rng.gamma(2.0, 8.0, 500), rng.poisson(2.0, 500).astype(float)
    metrics = [kpis.metric("revenue_per_user"), kpis.metric("aov")]
    con = duckdb.connect()
    con.execute("CREATE TABLE per_user (v_revenue_per_user DOUBLE, x_revenue_per_user DOUBLE, "
                "v_aov DOUBLE, d_aov DOUBLE)")
    con.executemany("INSERT INTO per_user VALUES (?, ?, ?, ?)", list(zip(v, x, v, d)))
    row = con.sql(f"SELECT 1 AS one{per_user.stats_columns(metrics)} FROM per_user").pl().row(0, named=True)
    mean = per_user.arm_stats(row, metrics[0], "a")
    assert (mean.n, mean.sum, mean.sum_squares) == (500, pytest.approx(v.sum()), pytest.approx(v @ v))
    assert (mean.pre_sum, mean.pre_sum_squares, mean.sum_product) == pytest.approx((x.sum(), x @ x, v @ x))
    ratio = per_user.arm_stats(row, metrics[1], "a", expected_share=0.5)
    assert (ratio.denominator_sum, ratio.denominator_sum_squares, ratio.sum_product) == pytest.approx(
        (d.sum(), d @ d, v @ d))
    assert ratio.pre_sum is None and ratio.expected_share == 0.5


def test_as_of_day_statistics_replay_the_experiment_day_by_day(ten_users):
    m = kpis.metric("conversion_rate")
    daily = ten_users.query(per_user.cumulative_sql(UNITS, m, "grp"), {**Filters().params(), "pre_days": 14}).sort("day")
    # Day 0: users 1, 2, 3 bought (user 1 again on day 1: still one converted user).
    assert daily["conversion_rate__n"].to_list() == [10] * daily.height
    assert daily["conversion_rate__sum"].to_list() == [3.0] * daily.height
    assert daily["conversion_rate__pre_sum"][0] == 1.0
    revenue = kpis.metric("revenue_per_user")
    sql = per_user.cumulative_sql(UNITS, revenue, "grp")
    by_day = ten_users.query(sql, {**Filters().params(), "pre_days": 14}).sort("day")
    assert by_day["revenue_per_user__sum"].to_list()[:3] == [180.0, 200.0, 200.0]  # user 1's 20 came on day 1
    assert by_day["revenue_per_user__sum_squares"][0] == 100 ** 2 + 50 ** 2 + 30 ** 2
    assert by_day["revenue_per_user__sum_squares"][1] == 120 ** 2 + 50 ** 2 + 30 ** 2
    last = by_day.row(-1, named=True)
    summary = _stats(ten_users, [revenue])
    names = per_user.stat_names(revenue)
    assert {k: last[k] for k in names} == pytest.approx({k: summary[k] for k in names})


def test_windowed_metrics_enter_the_daily_statistics_when_they_mature(ten_users):
    m = kpis.metric("retention_7d")
    sql = per_user.cumulative_sql(UNITS, m, "grp")
    daily = ten_users.query(sql, {**Filters().params(), "pre_days": 14}).sort("day")
    assert daily["retention_7d__n"].to_list() == [0] * 7 + [10] * (daily.height - 7)
    assert daily["retention_7d__sum"][-1] == 1.0


def test_decision_measures_cannot_be_replayed_by_day():
    with pytest.raises(ValueError, match="no history"):
        per_user.cumulative_sql(UNITS, kpis.metric("coverage"), "grp")


def test_only_used_parameters_are_bound_and_values_are_never_spliced(ten_users):
    sql = "SELECT count(*) FROM events WHERE user_id = $who"
    assert used_params(sql, {"who": "x", "whom": "y", "w": 1}) == {"who": "x"}
    assert ten_users.scalar(sql, {"who": "x' OR '1'='1", "whom": "unused"}) == 0
    assert _stats(ten_users, [kpis.metric("conversion_rate")], Filters(start=T0.date()))["conversion_rate__n"] == 10


def test_exposure_measures_need_their_daily_counts_to_be_replayed():
    with pytest.raises(ValueError, match="unit_days"):
        per_user.cumulative_sql(UNITS, kpis.metric("ctr"), "grp")


def test_decision_measures_count_coverage_and_eligible_traffic(tmp_path):
    decisions = [decision(1, 0, "holdout"), decision(2, 0, "treatment"), decision(3, 0, "control"),
                 decision(2, 1, "treatment", fallback=True, fallback_reason="budget_exceeded", policy="default"),
                 decision(4, 0, "treatment", fallback=True, fallback_reason="out_of_stock", policy="default"),
                 decision(5, 0, "treatment", consent=False, fallback=True, fallback_reason="no_consent",
                          policy="default")]
    wh = Warehouse(write_lake(tmp_path / "lake", [event(1, 2, "page_view")], decisions))
    metrics = [kpis.metric("coverage"), kpis.metric("eligible_share")]
    units = f"""    SELECT {user_key('d')} AS uid, 'all' AS grp, min(d.ts) AS first_ts, NULL AS placement
           {per_user.unit_columns(metrics, 'decisions')}
    FROM decisions d GROUP BY uid"""
    row = _stats(wh, metrics, units=units)
    assert _mean(row, "coverage") == pytest.approx(1 / 5)  # only user 2 got a policy's choice
    assert _mean(row, "eligible_share") == pytest.approx(3 / 6)  # user 2 twice (a failure is eligible), user 3
