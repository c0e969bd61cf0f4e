"""How good the propensity model is on the outcomes that followed its decisions.

The model logs, for every decision it makes, `score`: its predicted probability that the
decision leads to a conversion. Joining each decision to the outcome events that carry its
`decision_id` gives (score, outcome) pairs, from which come:
- discrimination: AUC, computed as the Mann–Whitney U statistic of the positives' scores
  over the negatives' (scipy), i.e. P(score of a random positive > score of a random negative);
- calibration: reliability bins (mean predicted vs observed rate per score decile) and the
  Brier score, against the base rate's Brier score as the no-skill reference;
- lift: outcome rate per decision of model-driven decisions over rule-driven (static) ones in
  the same placements, with an interval from the statistics engine.

Decisions younger than `maturity_minutes` are left out: their outcomes have not happened yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy import stats as sps

from metrics import stats
from metrics.filters import Filters
from metrics.sql.query import Query, Statement
from momento.lake.warehouse import Warehouse

OUTCOMES: dict[str, tuple[str, ...]] = {
    "conversion": ("purchase",),
    "click": ("click", "email_click", "push_open"),
}
"""Outcome name -> the event types that count as that outcome for a decision."""

MODEL_POLICY = "propensity"
STATIC_POLICIES = ("rules", "fixed", "default")

_WHERE = Filters.where("d", channel=True, segment=True, journey=True)

_MATURE = f"""
mature AS (
    SELECT d.* FROM decisions d
    WHERE {_WHERE} AND d.status = 'ok' AND NOT d.fallback AND d.arm <> 'holdout'
      AND d.ts <= (SELECT max(ts) FROM decisions) - to_seconds($maturity_minutes * 60.0)
),
outcomes AS (
    SELECT DISTINCT decision_id FROM events
    WHERE decision_id IS NOT NULL AND list_contains($event_types, event_type)
)"""

_SCORES_SQL = f"""
WITH {_MATURE},
scored AS (
    SELECT decision_id, ts, placement, score FROM mature
    WHERE policy = '{MODEL_POLICY}' AND score IS NOT NULL
    ORDER BY ts DESC LIMIT $limit
)
SELECT s.placement, s.score, (o.decision_id IS NOT NULL) AS outcome
FROM scored s LEFT JOIN outcomes o USING (decision_id)
"""

_LIFT_SQL = f"""
WITH {_MATURE},
modelled AS (SELECT DISTINCT placement FROM mature WHERE policy = '{MODEL_POLICY}')
SELECT m.placement,
       CASE WHEN m.policy = '{MODEL_POLICY}' THEN 'model' ELSE 'rules' END AS driver,
       count(*) AS decisions, count(o.decision_id) AS outcomes
FROM mature m LEFT JOIN outcomes o USING (decision_id)
WHERE m.placement IN (SELECT placement FROM modelled)
  AND (m.policy = '{MODEL_POLICY}' OR m.policy IN {STATIC_POLICIES!r})
GROUP BY ALL ORDER BY m.placement, driver
"""


def _params(filters: Filters, outcome: str, maturity_minutes: float) -> dict[str, Any]:
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r} (known: {', '.join(OUTCOMES)})")
    return {**filters.params(), "event_types": list(OUTCOMES[outcome]), "maturity_minutes": maturity_minutes}


def _scores(filters: Filters, outcome: str, maturity_minutes: float, limit: int) -> Statement:
    return Statement(_SCORES_SQL, {**_params(filters, outcome, maturity_minutes), "limit": limit})


SCORES = Query(
    "model_quality.scores",
    "The newest mature propensity-model decisions: placement, the model's score, and whether the outcome followed.",
    _scores,
    example={"outcome": "conversion", "maturity_minutes": 30.0, "limit": 200_000},
    metrics=("model_auc", "model_calibration"),
    method="AUC as the Mann–Whitney U statistic of the positives' scores over the negatives' (scipy); reliability "
    "over score deciles with Wilson 95% intervals; Brier score against the base rate's.",
)


def scored_decisions(
    wh: Warehouse, filters: Filters, outcome: str = "conversion", maturity_minutes: float = 30.0, limit: int = 200_000
) -> pl.DataFrame:
    """The newest `limit` model decisions: placement, score, and whether the outcome followed."""
    return SCORES.run(wh, filters, outcome=outcome, maturity_minutes=maturity_minutes, limit=limit)


def auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve via Mann–Whitney U (ties count one half); None with one class."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    positives, negatives = scores[labels], scores[~labels]
    if positives.size == 0 or negatives.size == 0:
        return None
    u = sps.mannwhitneyu(positives, negatives, alternative="two-sided", method="asymptotic").statistic
    pairs: int = positives.size * negatives.size
    return float(u) / pairs


def auc_standard_error(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """The AUC's standard error by DeLong, DeLong & Clarke-Pearson (1988): the variance of each
    positive's share of negatives scored below it and of each negative's share of positives
    scored above it (midranks for ties); None with fewer than two of either class."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    positives, negatives = scores[labels], scores[~labels]
    m, n = positives.size, negatives.size
    if m < 2 or n < 2:
        return None
    ranks = sps.rankdata(np.concatenate([positives, negatives]))
    above = (ranks[:m] - sps.rankdata(positives)) / n  # per positive: share of negatives below it
    below = 1 - (ranks[m:] - sps.rankdata(negatives)) / m  # per negative: share of positives above it
    return float(np.sqrt(above.var(ddof=1) / m + below.var(ddof=1) / n))


@dataclass(frozen=True)
class Calibration:
    """Reliability bins and the Brier score of a set of predictions."""

    bins: pl.DataFrame  # bin, n, mean_score, observed_rate, ci_lower, ci_upper
    brier: float | None
    brier_reference: float | None  # the Brier score of always predicting the base rate
    base_rate: float | None
    n: int

    @property
    def brier_skill(self) -> float | None:
        """1 − Brier / reference: above 0 the model beats the base rate."""
        if self.brier is None or not self.brier_reference:
            return None
        return 1.0 - self.brier / self.brier_reference


_BIN_SCHEMA = {
    "bin": pl.Int64,
    "n": pl.Int64,
    "mean_score": pl.Float64,
    "observed_rate": pl.Float64,
    "ci_lower": pl.Float64,
    "ci_upper": pl.Float64,
}


def calibration(scores: np.ndarray, labels: np.ndarray, bins: int = 10) -> Calibration:
    """Reliability diagram over score quantile bins (equal counts: scores of a conversion model
    crowd near zero, so equal-width bins would leave most of them empty) with Wilson 95%
    intervals on each bin's observed rate, and the Brier score."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels, dtype=float)
    n = scores.size
    if n == 0:
        return Calibration(pl.DataFrame(schema=_BIN_SCHEMA), None, None, None, 0)
    edges = np.unique(np.quantile(scores, np.linspace(0.0, 1.0, bins + 1)))
    index = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, max(len(edges) - 2, 0))
    frame = (
        pl.DataFrame({"bin": index, "score": scores, "label": labels})
        .group_by("bin")
        .agg(
            pl.len().cast(pl.Int64).alias("n"),
            pl.col("score").mean().alias("mean_score"),
            pl.col("label").sum().alias("positives"),
        )
        .sort("bin")
    )
    low, high = _wilson(frame["positives"].to_numpy(), frame["n"].to_numpy())
    frame = frame.with_columns(
        (pl.col("positives") / pl.col("n")).alias("observed_rate"),
        pl.Series("ci_lower", low),
        pl.Series("ci_upper", high),
    ).select(list(_BIN_SCHEMA))
    base = float(labels.mean())
    return Calibration(
        bins=frame,
        brier=float(np.mean((scores - labels) ** 2)),
        brier_reference=base * (1.0 - base),
        base_rate=base,
        n=n,
    )


def _wilson(positives: np.ndarray, n: np.ndarray, z: float = 1.959964) -> tuple[np.ndarray, np.ndarray]:
    p = positives / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return centre - half, centre + half


@dataclass(frozen=True)
class Quality:
    """The model's discrimination and calibration on the decisions in the filter."""

    outcome: str
    decisions: int
    outcomes: int
    auc: float | None
    calibration: Calibration


def quality(
    wh: Warehouse,
    filters: Filters,
    outcome: str = "conversion",
    maturity_minutes: float = 30.0,
    bins: int = 10,
    limit: int = 200_000,
) -> Quality:
    """AUC and calibration of the propensity model's scores against the outcomes that followed."""
    frame = scored_decisions(wh, filters, outcome, maturity_minutes, limit)
    scores, labels = frame["score"].to_numpy(), frame["outcome"].to_numpy().astype(bool)
    return Quality(outcome, frame.height, int(labels.sum()), auc(scores, labels), calibration(scores, labels, bins))


LIFT = Query(
    "model_quality.lift_vs_rules",
    "Per placement the model serves: mature decisions driven by the model and by static rules, and how many led to "
    "the outcome.",
    lambda filters, outcome, maturity_minutes: Statement(_LIFT_SQL, _params(filters, outcome, maturity_minutes)),
    example={"outcome": "conversion", "maturity_minutes": 30.0},
    metrics=("model_vs_rules_lift",),
    method="Outcome rate per decision of each side; the model's relative lift over the rules by the delta method "
    "with an always-valid 95% interval.",
)


def lift_vs_rules(
    wh: Warehouse, filters: Filters, outcome: str = "conversion", maturity_minutes: float = 30.0, alpha: float = 0.05
) -> pl.DataFrame:
    """Per placement the model serves: outcome rate per decision of model-driven decisions and of
    rule-driven (static: rules, fixed arm, default) decisions, and the model's relative lift with
    its (sequential) interval. Both sides exclude the holdout, fallbacks and errors."""
    counts = LIFT.run(wh, filters, outcome=outcome, maturity_minutes=maturity_minutes)
    rows = []
    for placement in counts["placement"].unique(maintain_order=True).to_list():
        sides = {r["driver"]: r for r in counts.filter(pl.col("placement") == placement).iter_rows(named=True)}
        model, rules = sides.get("model"), sides.get("rules")
        row = {
            "placement": placement,
            "model_decisions": 0,
            "model_rate": None,
            "rules_decisions": 0,
            "rules_rate": None,
            "lift": None,
            "ci_lower": None,
            "ci_upper": None,
            "p_value": None,
            "status": "not enough data",
        }
        if model:
            row.update(model_decisions=model["decisions"], model_rate=model["outcomes"] / model["decisions"])
        if rules:
            row.update(rules_decisions=rules["decisions"], rules_rate=rules["outcomes"] / rules["decisions"])
        if model and rules:
            comparison = stats.compare(_arm("rules", rules), _arm("model", model), "proportion", alpha=alpha)
            if comparison.status == "ok" and comparison.relative.estimate is not None:
                rel = comparison.relative
                row.update(
                    lift=rel.estimate, ci_lower=rel.ci_lower, ci_upper=rel.ci_upper, p_value=rel.p_value, status="ok"
                )
            else:
                row.update(status=comparison.reason or "not enough data")
        rows.append(row)
    return pl.DataFrame(
        rows,
        schema={
            "placement": pl.String,
            "model_decisions": pl.Int64,
            "model_rate": pl.Float64,
            "rules_decisions": pl.Int64,
            "rules_rate": pl.Float64,
            "lift": pl.Float64,
            "ci_lower": pl.Float64,
            "ci_upper": pl.Float64,
            "p_value": pl.Float64,
            "status": pl.String,
        },
    )


def _arm(name: str, side: dict[str, Any]) -> stats.ArmStats:
    return stats.ArmStats(name, int(side["decisions"]), float(side["outcomes"]), float(side["outcomes"]))
