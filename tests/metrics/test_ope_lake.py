"""metrics/ope_lake.py and metrics/ope_lab.py on a backfilled lake: the log read through the
warehouse holds exactly the decisions a policy chose, their logged distributions and the
decision-level rewards computed here independently from the Delta tables; rows whose
propensities cannot be trusted are counted and left out; the lab evaluates every candidate."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from metrics.filters import Filters
from metrics.ope_candidates import PolicyShape
from metrics.ope_lab import run_lab
from metrics.ope_lake import build_log, integrity_by_experience, load_log
from momento.lake.warehouse import Warehouse

EXPERIENCE = "home_showcase"


@pytest.fixture(scope="module")
def wh(small_lake):
    warehouse = Warehouse(small_lake)
    yield warehouse
    warehouse.close()


def delta(lake, table: str) -> pl.DataFrame:
    return pl.read_delta(str(lake / table))


@pytest.mark.parametrize("reward", ["click", "conversion", "revenue"])
def test_the_log_equals_an_independent_reading_of_the_tables(small_lake, wh, bundled_scenario, reward):
    experience = bundled_scenario.experience_by_id[EXPERIENCE]
    loaded = load_log(wh, Filters(), EXPERIENCE, tuple(experience.variants), reward, 24.0)
    decisions = delta(small_lake, "decisions")
    cutoff = decisions["ts"].max() - timedelta(hours=24)
    chosen = decisions.filter(
        (pl.col("experience_id") == EXPERIENCE)
        & pl.col("context").is_not_null()
        & (pl.col("status") == "ok")
        & ~pl.col("fallback")
        & (pl.col("ts") <= cutoff)
    )
    decided = chosen.select("decision_id", pl.col("ts").alias("d_ts"))
    events = delta(small_lake, "events").join(decided, on="decision_id")
    events = events.filter((pl.col("ts") >= pl.col("d_ts")) & (pl.col("ts") < pl.col("d_ts") + timedelta(hours=24)))
    value = {
        "click": pl.col("event_type").is_in(["click", "email_click"]).any().cast(pl.Float64),
        "conversion": (pl.col("event_type") == "purchase").any().cast(pl.Float64),
        "revenue": pl.when(pl.col("event_type") == "purchase").then(pl.col("revenue")).otherwise(0.0).sum(),
    }
    per = events.group_by("decision_id").agg(value[reward].alias("r"))
    expected = chosen.join(per, on="decision_id", how="left").sort("ts", "decision_id")["r"].fill_null(0.0)
    log = loaded.log
    assert loaded.rows == chosen.height and loaded.integrity.problems == 0 and log is not None
    assert log.n == chosen.height > 100
    np.testing.assert_allclose(log.reward, expected.to_numpy())
    assert log.reward.sum() > 0
    assert loaded.policies == {"thompson": chosen.height}
    np.testing.assert_allclose(log.logging.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(log.logging[np.arange(log.n), log.action], log.propensity)


def test_filters_narrow_the_log(wh, bundled_scenario):
    variants = tuple(bundled_scenario.experience_by_id[EXPERIENCE].variants)
    everything = load_log(wh, Filters(), EXPERIENCE, variants)
    web = load_log(wh, Filters(channel="web"), EXPERIENCE, variants)
    assert 0 < web.rows < everything.rows
    none = load_log(
        wh, Filters(start=datetime(2001, 1, 1).date(), end=datetime(2001, 1, 2).date()), EXPERIENCE, variants
    )
    assert none.rows == 0 and none.log is None


def test_rows_with_untrustworthy_propensities_are_counted_and_left_out(wh, bundled_scenario):
    variants = tuple(bundled_scenario.experience_by_id[EXPERIENCE].variants)
    frame = load_log(wh, Filters(), EXPERIENCE, variants).log
    assert frame is not None
    raw = wh.query(
        "SELECT * FROM decisions WHERE experience_id = $e AND context IS NOT NULL AND status = 'ok' "
        "AND NOT fallback ORDER BY ts LIMIT 40",
        {"e": EXPERIENCE},
    ).with_columns(pl.lit(0.0).alias("reward"))
    bad = raw.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(0.0)  # row 0: the chosen variant logged with p = 0
        .when(pl.int_range(pl.len()) == 1)
        .then(pl.col("propensity") / 2)  # row 1: propensity != its entry
        .otherwise(pl.col("propensity"))
        .alias("propensity")
    )
    loaded = build_log(bad, variants)
    assert loaded.integrity.problems == 2 and loaded.integrity.mismatched >= 1
    assert loaded.log is not None and loaded.log.n == 38


def test_the_lab_evaluates_every_declared_candidate(wh, bundled_scenario):
    experience = bundled_scenario.experience_by_id[EXPERIENCE]
    shape = PolicyShape(tuple(experience.variants), experience.default_variant, ())
    lab = run_lab(wh, Filters(), EXPERIENCE, shape, experience.lab_candidates, "click")
    table = lab.table
    assert table.height == len(experience.lab_candidates) and not lab.skipped
    assert set(table["verdict"]) <= {"better", "worse", "cannot tell", "not supported"}
    assert (table["ci_lower"] <= table["value"]).all() and (table["value"] <= table["ci_upper"]).all()
    assert lab.on_policy is not None and lab.on_policy.estimate == pytest.approx(lab.loaded.log.reward.mean())
    trained = table.filter(pl.col("candidate").str.contains("trained"))
    assert trained["decisions"].item() < lab.loaded.log.n
    assert "effective decisions" in lab.sentence() or "cannot judge" in lab.sentence()
    empty = run_lab(wh, Filters(channel="no-such"), EXPERIENCE, shape, experience.lab_candidates, "click")
    assert empty.table.height == 0 and empty.on_policy is None


def test_integrity_per_experience_counts_every_policy_decision(wh, bundled_scenario):
    experiences = tuple((e.id, tuple(e.variants)) for e in bundled_scenario.experiences)
    counts = integrity_by_experience(wh, Filters(), experiences)
    for row in counts.iter_rows(named=True):
        loaded = load_log(wh, Filters(), row["experience_id"], dict(experiences)[row["experience_id"]], "click", 0.0)
        assert row["rows"] >= loaded.rows > 0  # the log also leaves out decisions younger than the window
        assert row["problems"] == 0 and row["unknown"] == 0
    wrong = integrity_by_experience(wh, Filters(), (("home_showcase", ("editorial", "style_affinity")),))
    # declared with two of its four variants: a choice of the others is malformed, and the others'
    # probability is lost, so no distribution sums to 1: every row is a problem
    assert wrong["malformed"].item() > 0
    assert wrong["problems"].item() == wrong["rows"].item()
