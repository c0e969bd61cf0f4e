"""metrics/model_quality.py: AUC against independent computations, calibration and lift against
polars over hand-made rows whose outcomes are drawn from the scores themselves (calibrated)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from metrics import model_quality as mq
from metrics.filters import Filters
from momento.lake.warehouse import Warehouse
from momento.lake.writer import LakeWriter

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
N = 4_000


def _pairwise_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Brute force: P(positive scores above negative), ties one half."""
    pos, neg = scores[labels], scores[~labels]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def _trapezoid_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve by the trapezoidal rule over distinct thresholds."""
    thresholds = np.unique(scores)[::-1]
    tpr = [0.0] + [(scores[labels] >= t).mean() for t in thresholds]
    fpr = [0.0] + [(scores[~labels] >= t).mean() for t in thresholds]
    return float(np.trapezoid(tpr, fpr))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_auc_equals_pairwise_and_trapezoid(seed):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.beta(2, 8, 600), 2)  # rounded: plenty of ties
    labels = rng.random(600) < scores
    got = mq.auc(scores, labels)
    assert got == pytest.approx(_pairwise_auc(scores, labels), abs=1e-12)
    assert got == pytest.approx(_trapezoid_auc(scores, labels), abs=1e-12)


def test_the_auc_standard_error_is_the_spread_of_the_auc_over_repeated_samples():
    rng = np.random.default_rng(3)
    positives, negatives = 60, 600
    labels = np.r_[np.ones(positives, bool), np.zeros(negatives, bool)]
    samples = [np.concatenate([rng.normal(1.0, 1, positives), rng.normal(0, 1, negatives)]) for _ in range(2_000)]
    spread = np.std([mq.auc(scores, labels) for scores in samples])
    errors = [mq.auc_standard_error(scores, labels) for scores in samples[:200]]
    assert np.median(errors) == pytest.approx(spread, rel=0.1)
    assert mq.auc_standard_error(np.array([0.2, 0.9, 0.5]), np.array([True, False, False])) is None


def test_auc_extremes_and_degenerate():
    assert mq.auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert mq.auc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1])) == 0.0
    assert mq.auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    assert mq.auc(np.array([0.1, 0.2]), np.array([1, 1])) is None
    assert mq.auc(np.array([]), np.array([])) is None


def test_calibration_bins_and_brier_match_polars():
    rng = np.random.default_rng(9)
    scores = rng.beta(1.5, 20, 5_000)
    labels = rng.random(5_000) < scores
    cal = mq.calibration(scores, labels, bins=10)
    assert cal.n == 5_000 and cal.bins["n"].sum() == 5_000 and cal.bins.height == 10
    assert cal.brier == pytest.approx(np.mean((scores - labels) ** 2))
    assert cal.brier_reference == pytest.approx(labels.mean() * (1 - labels.mean()))
    assert cal.brier_skill is not None and cal.brier_skill > 0  # informative scores beat the base rate
    edges = np.quantile(scores, np.linspace(0, 1, 11))  # deciles: the bins' definition
    expected = (
        pl.DataFrame({"s": scores, "y": labels.astype(float)})
        .with_columns(pl.col("s").bin_intervals(list(edges[1:-1]), labels=False).alias("q"))
        .group_by("q")
        .agg(pl.len().alias("n"), pl.col("s").mean().alias("m"), pl.col("y").mean().alias("r"))
        .sort("q")
    )
    assert cal.bins["n"].to_list() == expected["n"].to_list()
    np.testing.assert_allclose(cal.bins["mean_score"], expected["m"], rtol=1e-9)
    np.testing.assert_allclose(cal.bins["observed_rate"], expected["r"], rtol=1e-9)
    inside = (cal.bins["ci_lower"] <= cal.bins["mean_score"]) & (cal.bins["mean_score"] <= cal.bins["ci_upper"])
    assert inside.sum() >= 8  # calibrated by construction: most 95% intervals cover the prediction
    assert mq.calibration(np.array([]), np.array([])).brier is None


def _lake_rows(rng: np.random.Generator) -> tuple[pl.DataFrame, pl.DataFrame]:
    placement = rng.choice(["cart_cross_sell", "product_cta"], N)
    policy = rng.choice(["propensity", "fixed", "rules", "default"], N, p=[0.5, 0.3, 0.1, 0.1])
    arm = np.where(policy == "default", rng.choice(["holdout", "control"], N), "treatment")
    score = np.where(policy == "propensity", rng.beta(2, 12, N), np.nan)
    rate = np.where(policy == "propensity", score, 0.08)
    converted = rng.random(N) < rate
    ts = [T0 + timedelta(seconds=int(s)) for s in np.sort(rng.integers(0, 6 * 3600, N))]
    decisions = pl.DataFrame(
        {
            "decision_id": [f"d{i:05d}" for i in range(N)],
            "ts": ts,
            "user_id": [f"{u:032x}" for u in rng.integers(0, 900, N)],
            "journey": "cart",
            "placement": placement,
            "channel": rng.choice(["web", "app"], N),
            "experience_id": "x",
            "arm": arm,
            "variant": "v",
            "policy": policy,
            "propensity": 0.5,
            "score": [None if np.isnan(s) else float(s) for s in score],
            "reasons": [[]] * N,
            "fallback": rng.random(N) < 0.05,
            "consent": True,
            "latency_us": 900,
            "status": "ok",
        }
    )
    bought = decisions.filter(pl.Series(converted))
    events = pl.concat(
        [
            bought.select(
                "decision_id", "ts", "user_id", "channel", "placement", pl.lit("purchase").alias("event_type")
            ),
            # a click on every other decision: must not count as a conversion
            decisions[::2].select(
                "decision_id", "ts", "user_id", "channel", "placement", pl.lit("click").alias("event_type")
            ),
        ]
    ).with_columns(
        pl.col("ts").alias("received_at"), (pl.lit("e") + pl.int_range(pl.len()).cast(pl.String)).alias("event_id")
    )
    return decisions, events


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    decisions, events = _lake_rows(np.random.default_rng(4))
    root = tmp_path_factory.mktemp("model_lake")
    with LakeWriter(root, background=False, compact_every_seconds=None) as writer:
        writer.append("decisions", decisions)
        writer.append("events", events)
    wh = Warehouse(root)
    yield wh, decisions, events
    wh.close()


def _mature(decisions: pl.DataFrame, minutes: float) -> pl.DataFrame:
    cutoff = decisions["ts"].max() - timedelta(minutes=minutes)
    return decisions.filter((pl.col("ts") <= cutoff) & ~pl.col("fallback") & (pl.col("arm") != "holdout"))


def test_quality_matches_an_independent_join(lake):
    wh, decisions, events = lake
    got = mq.quality(wh, Filters(), outcome="conversion", maturity_minutes=30)
    buyers = events.filter(pl.col("event_type") == "purchase")["decision_id"]
    scored = (
        _mature(decisions, 30)
        .filter(pl.col("policy") == "propensity")
        .with_columns(pl.col("decision_id").is_in(buyers.implode()).alias("y"))
    )
    assert got.decisions == scored.height
    assert got.outcomes == scored["y"].sum()
    assert got.auc == pytest.approx(_pairwise_auc(scored["score"].to_numpy(), scored["y"].to_numpy()))
    assert 0.55 < got.auc < 0.9  # scores carry signal: outcomes were drawn from them
    assert got.calibration.brier == pytest.approx(((scored["score"] - scored["y"].cast(float)) ** 2).mean())


def test_recent_decisions_wait_for_their_outcomes(lake):
    wh, decisions, _ = lake
    fresh = mq.quality(wh, Filters(), maturity_minutes=0).decisions
    mature = mq.quality(wh, Filters(), maturity_minutes=120).decisions
    assert fresh > mature == _mature(decisions, 120).filter(pl.col("policy") == "propensity").height


def test_click_outcome_and_filters(lake):
    wh, decisions, events = lake
    got = mq.quality(wh, Filters(channel="web"), outcome="click", maturity_minutes=0)
    clicked = events.filter(pl.col("event_type") == "click")["decision_id"]
    web = _mature(decisions, 0).filter((pl.col("policy") == "propensity") & (pl.col("channel") == "web"))
    assert got.decisions == web.height
    assert got.outcomes == web["decision_id"].is_in(clicked.implode()).sum()
    with pytest.raises(ValueError, match="unknown outcome"):
        mq.quality(wh, Filters(), outcome="revenue")


def test_lift_vs_rules_per_placement(lake):
    wh, decisions, events = lake
    got = mq.lift_vs_rules(wh, Filters(), maturity_minutes=30)
    buyers = events.filter(pl.col("event_type") == "purchase")["decision_id"]
    expected = (
        _mature(decisions, 30)
        .with_columns(
            pl.when(pl.col("policy") == "propensity").then(pl.lit("model")).otherwise(pl.lit("rules")).alias("driver"),
            pl.col("decision_id").is_in(buyers.implode()).alias("y"),
        )
        .group_by("placement", "driver")
        .agg(pl.len().alias("n"), pl.col("y").mean().alias("rate"))
    )
    assert got.height == 2
    for row in got.iter_rows(named=True):
        want = {r["driver"]: r for r in expected.filter(pl.col("placement") == row["placement"]).iter_rows(named=True)}
        assert row["model_decisions"] == want["model"]["n"] and row["rules_decisions"] == want["rules"]["n"]
        assert row["model_rate"] == pytest.approx(want["model"]["rate"])
        assert row["rules_rate"] == pytest.approx(want["rules"]["rate"])
        assert row["lift"] == pytest.approx(row["model_rate"] / row["rules_rate"] - 1)
        assert row["ci_lower"] < row["lift"] < row["ci_upper"]
        assert row["status"] == "ok"


def test_empty_lake_is_not_enough_data():
    wh = Warehouse(Path("/nonexistent/momento-lake"))
    q = mq.quality(wh, Filters())
    assert q.decisions == 0 and q.auc is None and q.calibration.n == 0
    assert mq.lift_vs_rules(wh, Filters()).is_empty()
