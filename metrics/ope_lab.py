"""The Policy lab for one adaptive experience: its logged feedback, its candidates, their values.

`run_lab` reads the experience's log (`metrics.ope_lake`), fits the outcome model once, builds
the candidates (`metrics.ope_candidates`) and evaluates each (`metrics.ope.evaluate`: IPS,
SNIPS, DM, DR with intervals, diagnostics, a verdict against the logging policy). The candidate
trained on an earlier window is evaluated on the later window alone, against the logging
policy's value there. `Lab.table` is what the page shows; `Lab.sentence` its one sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from metrics.filters import Filters
from metrics.ope import PolicyEvaluation, evaluate, on_policy_value, summary
from metrics.ope_candidates import DEFAULT_TRAIN_SHARE, PolicyShape, build, build_split
from metrics.ope_data import InvalidBanditLog
from metrics.ope_lake import DEFAULT_WINDOW_HOURS, REWARDS, LoadedLog, load_log
from metrics.ope_models import fit_outcome_model
from metrics.stats import Estimate
from momento.lake.warehouse import Warehouse

_FOLDS_MIN_ROWS = 50
"""Below this many decisions no outcome model is fitted (DR and DM are then not shown)."""


@dataclass(frozen=True, eq=False)
class Lab:
    """One experience's lab: the log as loaded, the logging policy's value, each candidate's
    evaluation (with the log it was evaluated on: the whole log, or the later window) and any
    candidate that could not be built, with why."""

    loaded: LoadedLog
    reward: str
    on_policy: Estimate | None
    evaluations: tuple[tuple[PolicyEvaluation, Estimate, int], ...]
    """(evaluation, the logging policy's value on the decisions it was evaluated on, how many)."""
    skipped: tuple[tuple[str, str], ...]
    r_squared: float | None

    @property
    def table(self) -> pl.DataFrame:
        """One row per candidate: value by the verdict's estimator with its interval, the logging
        policy's value on the same decisions, the other estimators, ESS, largest weight, support."""
        rows = []
        for e, logging, n in self.evaluations:
            c, d = e.versus_logging, e.diagnostics
            value = c.candidate_value
            rows.append(
                {
                    "candidate": e.name,
                    "estimator": c.estimator.upper(),
                    "value": value.estimate,
                    "ci_lower": value.ci_lower,
                    "ci_upper": value.ci_upper,
                    "logging_value": logging.estimate,
                    "difference": c.difference.estimate,
                    "verdict": c.verdict,
                    "decisions": n,
                    "ips": e.values["ips"].estimate,
                    "snips": e.values["snips"].estimate,
                    "dm": e.values["dm"].estimate if "dm" in e.values else None,
                    "dr": e.values["dr"].estimate if "dr" in e.values else None,
                    "ess": d.effective_sample_size,
                    "max_weight": d.max_weight,
                    "mean_weight": d.mean_weight.estimate,
                    "unsupported_share": d.unsupported_share,
                    "reason": c.reason,
                }
            )
        return pl.DataFrame(rows, schema=_TABLE_SCHEMA)

    def sentence(self) -> str:
        """The best supported candidate against the logging policy, in one sentence (or why none)."""
        if not self.evaluations:
            return "No candidate could be evaluated on this log."
        supported = [
            e for e, _, _ in self.evaluations if e.supported and e.versus_logging.candidate_value.estimate is not None
        ]
        best = max(supported, key=lambda e: e.versus_logging.candidate_value.estimate or 0.0, default=None)
        if best is None:
            first = self.evaluations[0][0]
            return (
                f"The log cannot judge any of the {len(self.evaluations)} candidates yet; for instance "
                f"{first.name}: {first.reason}."
            )
        chosen = best
        reward = REWARDS[self.reward]
        return summary(chosen.versus_logging, verb=reward.verb, value_format="{:.2%}" if reward.rate else "BRL {:,.2f}")


_TABLE_SCHEMA = {
    "candidate": pl.String,
    "estimator": pl.String,
    "value": pl.Float64,
    "ci_lower": pl.Float64,
    "ci_upper": pl.Float64,
    "logging_value": pl.Float64,
    "difference": pl.Float64,
    "verdict": pl.String,
    "decisions": pl.Int64,
    "ips": pl.Float64,
    "snips": pl.Float64,
    "dm": pl.Float64,
    "dr": pl.Float64,
    "ess": pl.Float64,
    "max_weight": pl.Float64,
    "mean_weight": pl.Float64,
    "unsupported_share": pl.Float64,
    "reason": pl.String,
}


def run_lab(
    wh: Warehouse,
    filters: Filters,
    experience_id: str,
    shape: PolicyShape,
    kinds: tuple[str, ...],
    reward: str = "conversion",
    window_hours: float = DEFAULT_WINDOW_HOURS,
    train_share: float = DEFAULT_TRAIN_SHARE,
) -> Lab:
    """The lab of one experience for `filters` (see the module docstring)."""
    loaded = load_log(wh, filters, experience_id, shape.variants, reward, window_hours)
    log = loaded.log
    if log is None:
        return Lab(loaded, reward, None, (), (), None)
    on_policy = on_policy_value(log)
    outcome = fit_outcome_model(log) if log.n >= _FOLDS_MIN_ROWS else None
    evaluations: list[tuple[PolicyEvaluation, Estimate, int]] = []
    skipped: list[tuple[str, str]] = []
    try:
        candidates = build(log, shape, kinds)
    except InvalidBanditLog as exc:
        return Lab(loaded, reward, on_policy, (), (("all", str(exc)),), None)
    evaluations += [(evaluate(log, c, outcome), on_policy, log.n) for c in candidates]
    if "split" in kinds:
        evaluation, candidate = build_split(log, train_share)
        if evaluation.n >= _FOLDS_MIN_ROWS:
            later = fit_outcome_model(evaluation)
            evaluations.append((evaluate(evaluation, candidate, later), on_policy_value(evaluation), evaluation.n))
        else:
            skipped.append((candidate.name, f"only {evaluation.n} decisions in the later window"))
    return Lab(
        loaded, reward, on_policy, tuple(evaluations), tuple(skipped), None if outcome is None else outcome.r_squared
    )
