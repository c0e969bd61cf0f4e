"""Experiments from raw rows to a recommendation: the SQL's sufficient statistics against an
independent polars computation on the small lake, the analysis against the statistics engine,
exact numbers on a hand-made experiment, and the empty and filtered cases."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from metrics import experiments as ex
from metrics import stats
from metrics.arm_stats import arm_stats
from metrics.filters import Filters
from momento.kpis import METRICS
from momento.lake.warehouse import Warehouse

sys.path.insert(0, str(Path(__file__).parent))
from handmade import T0, decision, exposure, purchase, write_lake

PRE_DAYS = 14


@pytest.fixture(scope="module")
def warehouse(small_lake: Path):
    wh = Warehouse(small_lake)
    yield wh
    wh.close()


@pytest.fixture(scope="module")
def names(bundled_scenario):
    return ex.scenario_metrics(bundled_scenario)


@pytest.fixture(scope="module")
def frame(warehouse, names) -> pl.DataFrame:
    return ex.load_stats(warehouse, Filters(), PRE_DAYS, names)


def _per_user_truth(warehouse: Warehouse, experiment_id: str, segment: str | None = None) -> pl.DataFrame:
    """Per exposed user of the experiment, straight from the raw rows with polars: arm, orders,
    revenue and clicks after the first exposure, exposures, and orders in the pre-period."""
    exposures = warehouse.query("SELECT * FROM exposures")
    events = warehouse.query("SELECT user_id, ts, event_type, placement, revenue FROM events")
    as_of = events["ts"].max() + timedelta(microseconds=1)
    units = (
        exposures.filter((pl.col("experiment_id") == experiment_id) & (pl.col("arm") != "holdout"))
        .sort("ts", "exposure_id")
        .group_by("user_id")
        .agg(
            pl.col("arm").first(),
            pl.col("ts").min().alias("first_ts"),
            pl.col("placement").first(),
            pl.len().alias("exposures"),
        )
    )
    if segment is not None:
        first_segment = (
            warehouse.query("SELECT user_id, ts, segment FROM decisions")
            .sort("ts")
            .group_by("user_id")
            .agg(pl.col("segment").first())
        )
        units = units.join(first_segment, on="user_id").filter(pl.col("segment") == segment)
    joined = units.join(events, on="user_id", how="left")
    after = (pl.col("ts") >= pl.col("first_ts")) & (pl.col("ts") < as_of)
    first_day = pl.col("first_ts").dt.truncate("1d")  # the pre-period: whole UTC days before the first exposure's
    before = (pl.col("ts") < first_day) & (pl.col("ts") >= first_day - timedelta(days=PRE_DAYS))
    purchase_ = pl.col("event_type") == "purchase"
    return joined.group_by("user_id", "arm", "exposures").agg(
        (after & purchase_).sum().alias("orders"),
        pl.when(after & purchase_).then(pl.col("revenue")).otherwise(0.0).sum().alias("revenue"),
        (
            after
            & pl.col("event_type").is_in(["click", "email_click"])
            & (pl.col("placement") == pl.col("placement_right"))
        )
        .sum()
        .alias("clicks"),
        (before & purchase_).sum().alias("pre_orders"),
    )


@pytest.mark.parametrize("experiment_id", ["exp_home_showcase", "exp_adaptive_cta"])
def test_sufficient_statistics_match_an_independent_polars_computation(warehouse, frame, experiment_id):
    users = _per_user_truth(warehouse, experiment_id)
    sql = (
        frame.filter(pl.col("experiment_id") == experiment_id).group_by("arm").agg(pl.col("^.*__.*$").sum()).sort("arm")
    )
    expected = (
        users.group_by("arm")
        .agg(
            pl.len().alias("users"),
            (pl.col("orders") > 0).sum().alias("converted"),
            (pl.col("pre_orders") > 0).sum().alias("pre_converted"),
            ((pl.col("orders") > 0) & (pl.col("pre_orders") > 0)).sum().alias("both"),
            pl.col("revenue").sum(),
            (pl.col("revenue") ** 2).sum().alias("revenue_sq"),
            pl.col("clicks").sum(),
            pl.col("exposures").sum(),
            (pl.col("clicks") * pl.col("exposures")).sum().alias("cross"),
        )
        .sort("arm")
    )
    assert sql["arm"].to_list() == expected["arm"].to_list()
    assert sql["exposed__users"].to_list() == expected["users"].to_list()
    assert sql["conversion_rate__n"].to_list() == expected["users"].to_list()
    assert sql["conversion_rate__sum"].to_list() == expected["converted"].cast(pl.Float64).to_list()
    assert sql["conversion_rate__pre_sum"].to_list() == expected["pre_converted"].cast(pl.Float64).to_list()
    assert sql["conversion_rate__sum_product"].to_list() == expected["both"].cast(pl.Float64).to_list()
    if "revenue_per_user__sum" in sql.columns:
        assert np.allclose(sql["revenue_per_user__sum"], expected["revenue"], rtol=1e-9)
        assert np.allclose(sql["revenue_per_user__sum_squares"], expected["revenue_sq"], rtol=1e-9)
    assert sql["ctr__sum"].to_list() == expected["clicks"].cast(pl.Float64).to_list()
    assert sql["ctr__denominator_sum"].to_list() == expected["exposures"].cast(pl.Float64).to_list()
    assert sql["ctr__sum_product"].to_list() == expected["cross"].cast(pl.Float64).to_list()


def test_the_report_is_the_statistics_engine_applied_to_those_sums(frame, bundled_scenario):
    x = bundled_scenario.experiment_by_id["exp_adaptive_cta"]
    report = ex.analyse(frame, x)
    rows = ex.arm_rows(frame, x)[()]
    variants = [a.name for a in x.arms[1:]]
    tested = []
    for name, role in ex.roles(x).items():
        m = METRICS[name]
        arms = {a.name: arm_stats(rows[a.name], m, a.name, expected_share=a.share) for a in x.arms}
        for v in variants:
            direct = stats.compare(arms["control"], arms[v], m.type)
            assert report.comparisons[(name, v)] == direct
            if role != "guardrail":
                tested.append((name, v, direct.absolute.p_value))
    adjusted = multipletests([p for *_, p in tested], method="fdr_bh")[1]
    shown = report.results.filter(pl.col("role") != "guardrail")
    assert [(r["metric"], r["variant"]) for r in shown.iter_rows(named=True)] == [(n, v) for n, v, _ in tested]
    assert np.allclose(shown["p_adjusted"].to_numpy(), adjusted)
    users = report.arms["users"].to_list()
    assert users == [int(rows[a.name]["exposed__users"]) for a in x.arms] and report.users == sum(users)
    chi2 = sps.chisquare(users, np.array([a.share for a in x.arms]) * sum(users))
    assert report.srm.p_value == pytest.approx(chi2.pvalue)
    assert [(g.name, g.variant) for g in report.guardrails] == [("return_rate", v) for v in variants]
    primary = [report.comparisons[("ctr", v)] for v in variants]
    primary_adjusted = shown.filter(pl.col("metric") == "ctr")["p_adjusted"].to_list()
    assert report.recommendation == stats.recommend(primary, primary_adjusted, report.guardrails, report.srm, True)


def test_one_family_one_adjusted_p_value_per_row(frame, bundled_scenario):
    """Regression (issue 14 defect 2): the recommendation re-adjusted the primary metric across
    variants with Holm while the table adjusted metrics × variants with BH, so a row could carry
    two adjusted p-values. Now the family is primary + secondary metrics × variants (guardrails
    excluded), adjusted once by BH, and the recommendation quotes the table's own number."""
    for x in bundled_scenario.experiments:
        report = ex.analyse(frame, x)
        table = report.results
        assert (
            table.filter(pl.col("role") == "guardrail")["p_adjusted"].null_count()
            == table.filter(pl.col("role") == "guardrail").height
        )
        family = table.filter(pl.col("role") != "guardrail")
        expected = stats.adjust_pvalues(family["p_value"].to_list(), "bh")
        assert family["p_adjusted"].to_list() == pytest.approx(expected, nan_ok=True)
    x = bundled_scenario.experiment_by_id["exp_home_showcase"]
    for treated, quoted in ((0.125, None), (0.13, "adjusted p = 0.04)")):
        n, rate = pl.col("conversion_rate__n"), {"control": 0.10, "treatment": treated}
        conversions = (n * pl.col("arm").replace_strict(rate, default=0.0)).round()
        rows = frame.filter(pl.col("experiment_id") == x.id).with_columns(
            conversions.alias("conversion_rate__sum"),
            conversions.alias("conversion_rate__sum_squares"),
            *(pl.lit(0.0).alias(f"conversion_rate__{c}") for c in ("pre_sum", "pre_sum_squares", "sum_product")),
        )
        report = ex.analyse(rows, x, ex.Options(method="fixed"))
        primary = report.results.filter(pl.col("metric") == "conversion_rate").row(0, named=True)
        if quoted is None:  # significant alone, not within the family: no one may call it a win
            assert primary["p_value"] <= 0.05 < primary["p_adjusted"]
            assert primary["verdict"] == "no difference yet" and "wins" not in report.recommendation.reason
        else:
            assert primary["verdict"] == "better" and f"{primary['p_adjusted']:.2g}" == "0.04"
            assert quoted in report.recommendation.reason


def test_a_handmade_experiment_gives_exact_means_lifts_and_verdicts(tmp_path, bundled_scenario):
    x = bundled_scenario.experiment_by_id["exp_home_showcase"]
    decisions = [decision(u, 0, "control" if u <= 5 else "treatment") for u in range(1, 11)]
    events = [purchase(1, 1, 100), purchase(6, 1, 100), purchase(7, 1, 50), purchase(8, 1, 150)]
    wh = Warehouse(write_lake(tmp_path / "lake", events, decisions, [exposure(d) for d in decisions]))
    frame = ex.load_stats(wh, Filters(), PRE_DAYS, ex.scenario_metrics(bundled_scenario))
    report = ex.analyse(frame, x, ex.Options(method="fixed"))
    assert report.arms.select("arm", "users", "share", "conversion_rate", "revenue_per_user").rows() == [
        ("control", 5, 0.5, 0.2, 20.0),
        ("treatment", 5, 0.5, 0.6, 60.0),
    ]
    conversion = report.results.filter(pl.col("metric") == "conversion_rate").row(0, named=True)
    assert conversion["verdict"] == "not enough data" and conversion["lift"] is None  # 1 and 3 conversions
    assert f"at least {stats.MIN_EVENTS}" in conversion["note"]
    revenue = report.results.filter(pl.col("metric") == "revenue_per_user").row(0, named=True)
    assert revenue["absolute"] == pytest.approx(40.0) and revenue["control_mean"] == pytest.approx(20.0)
    assert revenue["lift"] is None and "not clearly away from zero" in revenue["note"]  # 20 ± 20 per user
    welch = sps.ttest_ind([100, 50, 150, 0, 0], [100, 0, 0, 0, 0], equal_var=False)
    assert revenue["p_value"] == pytest.approx(welch.pvalue)
    assert revenue["verdict"] == ("better" if revenue["p_adjusted"] <= 0.05 else "no difference yet")
    assert report.srm.p_value == pytest.approx(1.0)


def test_a_margin_guardrail_with_a_negative_control_mean_is_judged_on_the_cockpits_path(frame, bundled_scenario):
    """Regression (issue 14 defect 1), through `analyse` as the Experiments page calls it: the
    recovery offer's margin per user is negative in both arms (discounts cost more than they
    earn) and worse in the treatment. It was read as a +20% "improvement" and the 5% guardrail
    passed; it is a 20% drop in margin and the guardrail fails, so the recommendation is stop."""
    x = bundled_scenario.experiment_by_id["exp_recovery_offer"]
    mean = {"control": -5.0, "treatment": -6.0}
    n = pl.col("margin_per_user__n")
    rows = frame.filter(pl.col("experiment_id") == x.id).with_columns(
        (n * pl.col("arm").replace_strict(mean, default=0.0)).alias("margin_per_user__sum"),
        (n * (1.0 + pl.col("arm").replace_strict(mean, default=0.0) ** 2)).alias("margin_per_user__sum_squares"),
        *(pl.lit(0.0).alias(f"margin_per_user__{c}") for c in ("pre_sum", "pre_sum_squares", "sum_product")),
    )
    report = ex.analyse(rows, x, ex.Options(method="fixed"))
    margin = report.results.filter(pl.col("metric") == "margin_per_user").row(0, named=True)
    assert margin["control_mean"] == pytest.approx(-5.0) and margin["absolute"] == pytest.approx(-1.0)
    assert margin["lift"] == pytest.approx(-0.2) and margin["lift_upper"] < 0
    guard = next(g for g in report.guardrails if g.name == "margin_per_user")
    assert guard.verdict == "failed" and guard.margin_absolute == pytest.approx(0.25)
    assert report.recommendation.action == "stop" and "margin_per_user" in report.recommendation.reason


def test_cumulative_lift_ends_at_the_overall_lift_and_only_grows_in_users(warehouse, frame, bundled_scenario):
    for x in bundled_scenario.experiments:
        daily = ex.load_cumulative(warehouse, Filters(), x.id, x.primary_metric, PRE_DAYS)
        curve = ex.cumulative_lift(daily, x, x.primary_metric)
        report = ex.analyse(frame, x)
        for variant in (a.name for a in x.arms[1:]):
            series = curve.filter(pl.col("variant") == variant).sort("day")
            assert series["n_variant"].diff().drop_nulls().min() >= 0
            final = report.comparisons[(x.primary_metric, variant)]
            assert series["n_control"][-1] == final.n_control and series["n_variant"][-1] == final.n_variant
            if final.relative.estimate is None:  # too few events, or a control mean not clear of zero
                assert series["lift"][-1] is None
            else:
                assert series["lift"][-1] == pytest.approx(final.relative.estimate, rel=1e-9, abs=1e-12)


def test_segments_split_the_same_users_and_are_one_bh_family(frame, bundled_scenario):
    x = bundled_scenario.experiment_by_id["exp_home_showcase"]
    seg = ex.segments(frame, x, "conversion_rate")
    by_segment = seg.frame
    report = ex.analyse(frame, x)
    assert set(by_segment["segment"]) == {"new", "returning"}
    assert by_segment["n_variant"].sum() == report.comparisons[("conversion_rate", "treatment")].n_variant
    rows = ex.arm_rows(frame, x, ["segment"])
    raw = [
        stats.compare(
            arm_stats(rows[(s,)]["control"], METRICS["conversion_rate"], "control"),
            arm_stats(rows[(s,)]["treatment"], METRICS["conversion_rate"], "treatment"),
            "proportion",
        ).absolute.p_value
        for s in by_segment["segment"]
    ]
    expected = multipletests(raw, method="fdr_bh")[1]
    assert seg.looked_at == 2 and by_segment["p_adjusted"].to_list() == pytest.approx(list(expected), rel=1e-12)
    assert seg.flagged == sum(by_segment["flagged"]) == sum(p <= 0.05 for p in expected)


def test_days_observed_run_from_the_first_exposure_day():
    x_id = "exp_home_showcase"
    frame = pl.DataFrame(
        {"experiment_id": [x_id, x_id, "other"], "day": [date(2026, 2, 3), date(2026, 2, 1), date(2026, 1, 1)]}
    )
    x = type("X", (), {"id": x_id})()
    as_of = datetime(2026, 2, 4, 12, tzinfo=UTC)
    assert ex.days_observed(frame, x, as_of) == pytest.approx(3.5)
    assert ex.days_observed(frame.filter(pl.col("experiment_id") == "none"), x, as_of) is None


def test_plans_are_the_power_module_plans_of_the_primary_comparisons(frame, bundled_scenario):
    from metrics import power

    for x in bundled_scenario.experiments:
        report = ex.analyse(frame, x)
        table = ex.plans(report, 7.0)
        assert table["variant"].to_list() == [a.name for a in x.arms[1:]]
        for row in table.iter_rows(named=True):
            expected = power.plan(
                report.comparisons[(x.primary_metric, row["variant"])], 7.0, target_effect=x.target_effect
            ).sequential
            if expected is None:
                assert row["mde"] is None and row["note"]
            else:
                assert row["mde"] == pytest.approx(expected.mde) and row["days_to_detect"] == pytest.approx(
                    expected.days_to_detect
                )
        assert ex.plan_sentence(x, table).startswith(METRICS[x.primary_metric].label)
    nothing = ex.plans(ex.analyse(frame, bundled_scenario.experiments[0]), None)
    assert nothing["mde"].is_null().all() and set(nothing["note"]) == {"no user exposed yet"}


def test_the_segment_filter_is_the_same_population_polars_finds(warehouse, names):
    filtered = ex.load_stats(warehouse, Filters(segment="returning"), PRE_DAYS, names)
    home = filtered.filter(pl.col("experiment_id") == "exp_home_showcase")
    expected = _per_user_truth(warehouse, "exp_home_showcase", segment="returning")
    assert home["exposed__users"].sum() == expected.height > 0
    assert set(home["segment"]) == {"returning"}


def test_the_list_has_one_row_per_experiment_and_follows_the_journey_filter(frame, bundled_scenario):
    listing = ex.experiment_list(frame, bundled_scenario)
    assert listing["experiment"].to_list() == [x.id for x in bundled_scenario.experiments]
    assert listing["users"].to_list() == [ex.analyse(frame, x).users for x in bundled_scenario.experiments]
    assert set(listing["action"]) <= {"ship", "stop", "keep_running", "investigate"}
    cart = ex.experiment_list(frame, bundled_scenario, Filters(journey="cart"))
    assert cart["experiment"].to_list() == ["exp_cart_cross_sell"]


def test_no_data_is_flagged_not_an_error(warehouse, bundled_scenario, names):
    past = Filters(start=T0.date() - timedelta(days=3000), end=T0.date() - timedelta(days=2990))
    empty = ex.load_stats(warehouse, past, PRE_DAYS, names)
    assert empty.height == 0
    for x in bundled_scenario.experiments:
        report = ex.analyse(empty, x)
        assert not report.has_data and report.srm.p_value is None
        assert set(report.results["verdict"]) <= {"not enough data", "see guardrails"}
        assert report.recommendation.action == "keep_running"
        assert (
            ex.cumulative_lift(
                ex.load_cumulative(warehouse, past, x.id, x.primary_metric, PRE_DAYS), x, x.primary_metric
            ).height
            == 0
        )
    assert ex.experiment_list(empty, bundled_scenario)["users"].to_list() == [0] * len(bundled_scenario.experiments)


def test_the_true_lifts_sit_next_to_the_estimates(frame, bundled_scenario, small_truth):
    x = bundled_scenario.experiment_by_id["exp_home_showcase"]
    known = ex.true_lifts(small_truth, x.id)
    results = ex.with_truth(ex.analyse(frame, x).results, known)
    row = results.filter((pl.col("metric") == x.primary_metric) & (pl.col("variant") == "treatment")).row(0, named=True)
    assert row["truth"] == pytest.approx(
        small_truth["experiments"][x.id]["metrics"][x.primary_metric]["effects"]["treatment"]["relative"]
    )
    assert ex.true_lifts(None, x.id).height == 0
    assert ex.with_truth(results.drop("truth"), ex.true_lifts(None, x.id))["truth"].null_count() == results.height


def test_metrics_outside_the_exposed_population_are_refused(warehouse):
    with pytest.raises(ValueError, match="coverage"):
        ex.load_stats(warehouse, Filters(), PRE_DAYS, ("conversion_rate", "coverage"))


def test_one_experiments_statistics_are_its_rows_of_all(warehouse, frame, names):
    only = ex.load_stats(warehouse, Filters(), PRE_DAYS, names, "exp_cart_cross_sell")
    expected = frame.filter(pl.col("experiment_id") == "exp_cart_cross_sell")
    assert only.height == expected.height > 0
    keys = ["arm", "segment", "day"]
    assert_frame_equal(only.sort(keys), expected.sort(keys))


@pytest.mark.parametrize("segment", [None, "returning"])
def test_the_cumulative_ends_with_the_population_of_the_filter(warehouse, segment):
    filters = Filters(segment=segment)
    daily = ex.load_cumulative(warehouse, filters, "exp_home_showcase", "conversion_rate", PRE_DAYS)
    last = daily.filter(pl.col("day") == daily["day"].max())
    expected = _per_user_truth(warehouse, "exp_home_showcase", segment=segment)
    assert last["conversion_rate__n"].sum() == expected.height > 0
