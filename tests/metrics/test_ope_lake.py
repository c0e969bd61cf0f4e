"""metrics/ope_lake.py and metrics/ope_lab.py on a backfilled lake: the log read through the
warehouse holds exactly the decisions a policy chose, their logged distributions and the
decision-level rewards computed here independently from the Delta tables; rows whose
propensities cannot be trusted are counted and left out; the lab evaluates every candidate."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from metrics.filters import Filters
from metrics.ope_candidates import PolicyShape
from metrics.ope_data import check_propensities
from metrics.ope_lab import run_lab
from metrics.ope_lake import build_log, integrity_by_experience, load_log
from momento.lake.warehouse import Warehouse
from tests.metrics import handmade

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


def _expected_integrity(rows: list[dict], actions: tuple[str, ...]) -> dict[str, int]:
    """`check_propensities` on the rows as Python holds them: the plain path the warehouse's
    counts must equal (each distribution built here from the rows, independently of the SQL)."""
    index = {name: i for i, name in enumerate(actions)}
    distribution = np.full((len(rows), len(actions)), np.nan)
    for i, row in enumerate(rows):
        if row["action_probabilities"] is None:
            continue
        distribution[i] = 0.0
        for entry in row["action_probabilities"]:
            if entry["variant"] in index:
                distribution[i, index[entry["variant"]]] = np.nan if entry["p"] is None else entry["p"]
    check = check_propensities(
        np.array([index.get(row["variant"], -1) for row in rows], dtype=np.int64),
        np.array([row["propensity"] for row in rows], dtype=np.float64),
        distribution,
    )
    return {f.name: getattr(check, f.name) for f in dataclasses.fields(check) if f.name != "floor"}


@pytest.mark.parametrize("seed", range(3))
def test_integrity_counted_in_the_warehouse_equals_check_propensities_on_random_logs(tmp_path, seed):
    """Random policy decisions with every kind of damage (propensities outside [0, 1], NaN or 0;
    distributions missing, empty, not summing to 1, naming unknown or no variants, repeating one,
    with missing or tiny probabilities; chosen variants not declared), and decisions the check
    must skip (fallbacks, errors, no context)."""
    rng = np.random.default_rng(seed)
    declared = {"home_showcase": ("editorial", "style_affinity", "gift_guide"), "adaptive_cta": ("buy_now", "gift")}
    placement = {"home_showcase": "homepage_showcase", "adaptive_cta": "product_cta"}

    def probability() -> float | None:
        return [0.5, 0.0, 0.004, 1.0, 1.3, -0.2, float("nan"), None][rng.integers(8)]

    def distribution(actions: tuple[str, ...]) -> list[dict] | None:
        kind = rng.integers(5)
        if kind == 0:
            return None
        if kind == 1:  # a well-formed distribution, as the engine logs it
            return [{"variant": v, "p": float(p)} for v, p in zip(actions, rng.dirichlet(np.ones(len(actions))))]
        names = [*actions, "unknown_variant", None]
        return [{"variant": names[rng.integers(len(names))], "p": probability()} for _ in range(rng.integers(4))]

    decisions = []
    for i in range(600):
        experience = ("home_showcase", "adaptive_cta")[rng.integers(2)]
        actions = declared[experience]
        probabilities = distribution(actions)
        variant = [*actions, "undeclared"][rng.integers(len(actions) + 1)]
        propensity = probability()
        if probabilities and rng.random() < 0.5:  # consistent with its distribution
            chosen = [e for e in probabilities if e["variant"] in actions and e["p"] is not None]
            if chosen:
                variant, propensity = chosen[-1]["variant"], chosen[-1]["p"]
        decisions.append(
            handmade.decision(
                i,
                i / 60,
                placement=placement[experience],
                variant=variant,
                propensity=float("nan") if propensity is None else propensity,
                action_probabilities=probabilities,
                context=None if rng.random() < 0.1 else [0.5, 1.0],
                fallback=bool(rng.random() < 0.05),
                status="error" if rng.random() < 0.05 else "ok",
            )
        )
    wh = Warehouse(handmade.write_lake(tmp_path / "lake", decisions=decisions))
    try:
        counted = integrity_by_experience(wh, Filters(), tuple(declared.items()))
    finally:
        wh.close()
    assert counted["experience_id"].to_list() == list(declared)
    for row in counted.iter_rows(named=True):
        rows = [
            d
            for d in decisions
            if d["experience_id"] == row["experience_id"]
            and d["context"] is not None
            and d["status"] == "ok"
            and not d["fallback"]
        ]
        expected = _expected_integrity(rows, declared[row["experience_id"]])
        assert {k: row[k] for k in expected} == expected
        assert expected["problems"] > 0 and expected["below_floor"] > 0  # the damage was there to count
