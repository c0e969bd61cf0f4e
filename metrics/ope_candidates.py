"""Candidate policies for the Policy lab, as action probabilities at every logged decision.

Each builder takes a `BanditLog` (its contexts, in `momento.policy_maths.FEATURE_NAMES` order)
and returns a `Candidate`. The rules, the bandit and the propensity model recompute what the
service's policies would choose from the logged context with the service's own maths
(`momento.policy_maths`), so "the rules" here are the rules the service runs:

- `uniform`: every eligible variant alike; `single(v)`: always variant v.
- `rules`: the experience's business rules (a point mass on the rule's variant).
- `thompson` / `greedy`: the bandit's posterior Beta(1 + successes, 1 + failures) per variant from
  the log's rewards; Thompson's exact win probabilities, or all mass on the best posterior mean.
- `propensity`: the propensity model (per-variant logistic regression, softmax at temperature
  0.25 with 10% exploration) trained by the service's online SGD step replayed over the log in
  time order.
- `split`: a policy trained on the earlier part of the log and evaluated on the later part only
  (`time_split`), so its value is judged on decisions it never learnt from.

Eligibility is what the log reveals: a variant the logging policy gave probability 0 in a logged
distribution was not eligible there, when that policy was stochastic (the bandit and the model
give every eligible variant a positive probability); the rules' point masses reveal nothing, so
on their log every variant counts as eligible.

Kinds can be declared per experience in the scenario (`candidates = [...]`, validated by
`momento.scenario`); `build` makes them by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from metrics.ope_data import BanditLog, Candidate, InvalidBanditLog
from momento.policy_maths import (
    CANDIDATE_KINDS,
    FEATURE_NAMES,
    SINGLE_PREFIX,
    initial_logistic_weights,
    logistic_step,
    propensity_probabilities,
    rule_table,
    thompson_probabilities,
)

SGD_BATCH = 500
"""Decisions per replayed SGD step: about what the service learns from between two `learn` calls."""

DEFAULT_TRAIN_SHARE = 0.5

CONTEXT_FREE: tuple[str, ...] = ("uniform", "thompson", "greedy")
"""The kinds that do not read the service's features: all a log imported from another system allows
(with each single variant)."""


@dataclass(frozen=True)
class PolicyShape:
    """What the candidates need to know of an experience (hashable, for the cockpit's cache)."""

    variants: tuple[str, ...]
    default_variant: str
    discount: tuple[tuple[str, float], ...] = ()


def eligibility(log: BanditLog) -> np.ndarray:
    """(n, K) the variants each logged decision could show, as far as the log reveals (see the module)."""
    if log.logging is None:
        return np.ones((log.n, log.k), bool)
    known = ~np.isnan(log.logging[:, 0])
    positive = np.nan_to_num(log.logging) > 0
    revealing = known & (positive.sum(axis=1) > 1)
    return np.where(revealing[:, None], positive, True)


def _features(log: BanditLog) -> np.ndarray:
    if log.context.shape[1] != len(FEATURE_NAMES):
        raise InvalidBanditLog(
            "context", f"the service's policies read {len(FEATURE_NAMES)} features, the log has {log.context.shape[1]}"
        )
    return log.context


def uniform(log: BanditLog) -> Candidate:
    """Every eligible variant with the same probability."""
    eligible = eligibility(log)
    return Candidate("uniform random", eligible / eligible.sum(axis=1, keepdims=True))


def single(log: BanditLog, variant: str) -> Candidate:
    """Always `variant`."""
    if variant not in log.actions:
        raise InvalidBanditLog("variant", f"unknown variant {variant!r} (known: {', '.join(log.actions)})")
    probabilities = np.zeros((log.n, log.k))
    probabilities[:, log.actions.index(variant)] = 1.0
    return Candidate(f"always {variant}", probabilities)


def rules(log: BanditLog, shape: PolicyShape) -> Candidate:
    """The experience's business rules, from each decision's context."""
    table = rule_table(shape.variants, shape.default_variant, dict(shape.discount))
    return Candidate("the rules", table.probabilities(_features(log), eligibility(log)))


def posterior(log: BanditLog, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Beta(1 + successes, 1 + failures) per variant from the log's rewards (> 0 a success)."""
    action, reward = (log.action, log.reward) if rows is None else (log.action[rows], log.reward[rows])
    success = reward > 0
    return (1.0 + np.bincount(action[success], minlength=log.k), 1.0 + np.bincount(action[~success], minlength=log.k))


def thompson(log: BanditLog, alpha: np.ndarray, beta: np.ndarray) -> Candidate:
    """Thompson sampling on the posterior (alpha, beta): its exact win probabilities per decision."""
    return Candidate("the bandit", thompson_probabilities(alpha, beta, eligibility(log)))


def greedy(log: BanditLog, alpha: np.ndarray, beta: np.ndarray) -> Candidate:
    """The eligible variant with the highest posterior mean, always."""
    mean = np.where(eligibility(log), alpha / (alpha + beta), -np.inf)
    return Candidate("the bandit's greedy choice", np.eye(log.k)[mean.argmax(axis=1)])


def train_propensity(log: BanditLog, rows: np.ndarray | None = None, initial: np.ndarray | None = None) -> np.ndarray:
    """(K, d) the propensity model's weights after the service's SGD step replayed over the log's
    decisions (`rows`, default all) in time order, `SGD_BATCH` at a time, from `initial` (default
    the service's starting point without its tiny random slopes)."""
    x = _features(log)
    order = np.argsort(log.time, kind="stable") if rows is None else rows[np.argsort(log.time[rows], kind="stable")]
    weights = initial_logistic_weights(log.k, None) if initial is None else initial
    for start in range(0, len(order), SGD_BATCH):
        batch = order[start : start + SGD_BATCH]
        weights = logistic_step(weights, x[batch], log.action[batch], log.reward[batch])
    return weights


def propensity(log: BanditLog, weights: np.ndarray, name: str = "the propensity model") -> Candidate:
    """The propensity model with `weights`: exploring softmax over the eligible variants."""
    return Candidate(name, propensity_probabilities(_features(log) @ weights.T, eligibility(log)))


def subset(log: BanditLog, rows: np.ndarray) -> BanditLog:
    """The log restricted to `rows` (in their order)."""
    return BanditLog(
        actions=log.actions,
        action=log.action[rows],
        propensity=log.propensity[rows],
        reward=log.reward[rows],
        time=log.time[rows],
        context=log.context[rows],
        logging=None if log.logging is None else log.logging[rows],
        policy=log.policy,
    )


def time_split(log: BanditLog, train_share: float = DEFAULT_TRAIN_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """(earlier rows, later rows): the first `train_share` of the decisions in time, and the rest."""
    if not 0.0 < train_share < 1.0:
        raise InvalidBanditLog("train_share", f"must be in (0, 1), got {train_share!r}")
    order = np.argsort(log.time, kind="stable")
    cut = round(len(order) * train_share)
    return order[:cut], order[cut:]


def build(log: BanditLog, shape: PolicyShape, kinds: Sequence[str]) -> list[Candidate]:
    """The candidates `kinds` (`momento.policy_maths.CANDIDATE_KINDS`, or `variant:<name>`) on the
    whole log. The split kind is evaluated on its own sub-log: see `build_split`."""
    out: list[Candidate] = []
    alpha_beta = posterior(log) if {"thompson", "greedy"} & set(kinds) else None
    for kind in kinds:
        if kind.startswith(SINGLE_PREFIX):
            out.append(single(log, kind.removeprefix(SINGLE_PREFIX)))
        elif kind == "uniform":
            out.append(uniform(log))
        elif kind == "rules":
            out.append(rules(log, shape))
        elif kind in ("thompson", "greedy") and alpha_beta is not None:
            out.append((thompson if kind == "thompson" else greedy)(log, *alpha_beta))
        elif kind == "propensity":
            out.append(propensity(log, train_propensity(log)))
        elif kind != "split":
            raise InvalidBanditLog(
                "candidates",
                f"unknown candidate {kind!r} (known: {', '.join(CANDIDATE_KINDS)}, {SINGLE_PREFIX}<variant>)",
            )
    return out


def build_split(log: BanditLog, train_share: float = DEFAULT_TRAIN_SHARE) -> tuple[BanditLog, Candidate]:
    """The later part of the log, and the propensity model trained on the earlier part only."""
    earlier, later = time_split(log, train_share)
    weights = train_propensity(log, earlier)
    evaluation = subset(log, later)
    return evaluation, propensity(evaluation, weights, f"the propensity model trained on the first {train_share:.0%}")
