"""Policies: who picks a variant, and with what probability (logged for off-policy evaluation).

Every policy answers `probabilities(X, eligible)`: an (n, k) matrix over the experience's
variants whose rows sum to 1 and are zero where a variant is not eligible. `choose` samples
from it and returns the chosen index with its probability, so the propensity logged is the
probability the choice was actually made with. One code path serves the service (n = 1) and
the backfill (n = 100k).

- `RulesPolicy`: deterministic business rules (probability 1 on the rule's variant).
- `ThompsonPolicy`: Beta-Bernoulli Thompson sampling; the probability that each eligible arm
  draws the highest sample is computed by numerical integration (not estimated), so
  sampling the arm from those probabilities is exactly Thompson sampling.
- `PropensityPolicy`: one logistic regression per variant trained online by SGD; softmax over
  predicted conversion mixed with epsilon-uniform exploration, so every eligible variant has
  a known probability > 0.

All are safe to call from many threads: readers use an immutable snapshot of the model,
`update` swaps in a new one under a lock.
"""

from __future__ import annotations

import threading
from typing import Protocol, cast, runtime_checkable

import numpy as np
from scipy import special

from momento.policy_maths import (
    PROPENSITY_EPSILON,
    PROPENSITY_L2,
    PROPENSITY_LEARNING_RATE,
    PROPENSITY_PRIOR_RATE,
    PROPENSITY_TEMPERATURE,
    initial_logistic_weights,
    logistic_step,
    propensity_probabilities,
    rule_table,
    thompson_pattern,
)
from momento.policy_maths import thompson_win_probabilities as thompson_win_probabilities
from momento.scenario import Experience


class ModelUnavailable(RuntimeError):
    """The model cannot answer right now (not loaded, outage): the engine serves the default."""


@runtime_checkable
class Policy(Protocol):
    """What the engine needs from a policy."""

    name: str

    @property
    def model_version(self) -> str:
        """The model, then `.<n>` for a learning policy's n-th online update (`thompson-v1.42`);
        the cockpit groups a model's updates under it by that suffix."""
        ...

    def probabilities(self, X: np.ndarray, eligible: np.ndarray) -> np.ndarray: ...

    def scores(self, X: np.ndarray) -> np.ndarray: ...

    def update(self, X: np.ndarray, chosen: np.ndarray, reward: np.ndarray) -> None: ...


def _check(X: np.ndarray, eligible: np.ndarray, k: int) -> None:
    if eligible.shape != (X.shape[0], k):
        raise ValueError(f"eligible must be ({X.shape[0]}, {k}), got {eligible.shape}")
    if not eligible.any(axis=1).all():
        raise ValueError("every row needs at least one eligible variant")


def choose(probabilities: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sample one variant per row from `probabilities`; return (index, its probability).

    Inverse-CDF sampling with each draw in (0, row total]: the first column whose running total
    reaches the draw is the choice. A zero-probability column never is (its running total equals
    the column's before it), and the last positive column's running total is the row total, so
    there always is one.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    cumulative = probabilities.cumsum(axis=1)
    draws = (1.0 - rng.random((len(probabilities), 1))) * cumulative[:, -1:]
    index = (cumulative >= draws).argmax(axis=1)
    return index, probabilities[np.arange(len(index)), index]


class RulesPolicy:
    """Business rules over the features, deterministic (probability 1 on the chosen variant).

    Discount experiences climb a ladder with price sensitivity: low -> the default (no
    discount), medium -> the smallest discount, high -> the largest; if the target is not
    eligible the largest eligible discount below it is offered. Other experiences show their
    first personalised variant to engaged visitors (returning, 3+ pages, or back on a category
    they viewed before) and the default to everyone else.
    """

    name = "rules"
    model_version = "rules-v1"

    def __init__(self, experience: Experience) -> None:
        self.variants = list(experience.variants)
        self._table = rule_table(self.variants, experience.default_variant, experience.discount)
        self.has_discounts = self._table.has_discounts

    def levels(self, X: np.ndarray) -> np.ndarray:
        """Each row's rule level (`momento.policy_maths.RuleTable.levels`)."""
        return self._table.levels(X)

    def probabilities(self, X: np.ndarray, eligible: np.ndarray) -> np.ndarray:
        _check(X, eligible, len(self.variants))
        return self._table.probabilities(X, eligible)

    def scores(self, X: np.ndarray) -> np.ndarray:
        """Rules predict nothing: NaN for every variant, (n, k)."""
        return np.full((len(X), len(self.variants)), np.nan)

    def update(self, X: np.ndarray, chosen: np.ndarray, reward: np.ndarray) -> None:
        """Rules do not learn."""


class _Posterior:
    """An immutable Beta posterior plus the arm probabilities computed from it so far."""

    def __init__(self, alpha: np.ndarray, beta: np.ndarray, generation: int) -> None:
        self.alpha, self.beta, self.generation = alpha, beta, generation
        self.mean = (alpha / (alpha + beta))[None, :]
        self.table: dict[int, np.ndarray] = {}  # eligibility pattern (bit code) -> probabilities

    def probabilities(self, code: int) -> np.ndarray:
        row = self.table.get(code)
        if row is None:
            mask = (code >> np.arange(self.alpha.size)) & 1 == 1
            row = thompson_pattern(self.alpha, self.beta, mask)
            self.table[code] = row
        return row


class ThompsonPolicy:
    """Beta-Bernoulli Thompson sampling with exact (integrated) arm probabilities.

    Probabilities depend only on the posterior and the eligibility pattern, so they are
    computed once per pattern and posterior; `update` recomputes the patterns in use before
    it swaps the new posterior in, so decisions never wait for the integration.
    """

    name = "thompson"

    def __init__(self, k: int, prior: tuple[float, float] = (1.0, 1.0)) -> None:
        self.k = k
        self._bits = 1 << np.arange(k)
        self._state = _Posterior(np.full(k, float(prior[0])), np.full(k, float(prior[1])), 0)
        self._update_lock = threading.Lock()

    @property
    def model_version(self) -> str:
        return f"thompson-v1.{self._state.generation}"

    @property
    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """The Beta posterior's (alpha, beta) per variant."""
        state = self._state
        return state.alpha.copy(), state.beta.copy()

    def probabilities(self, X: np.ndarray, eligible: np.ndarray) -> np.ndarray:
        _check(X, eligible, self.k)
        state = self._state
        codes = eligible.astype(np.int64) @ self._bits
        if codes.size == 1:
            return state.probabilities(int(codes[0]))[None, :]
        unique, inverse = np.unique(codes, return_inverse=True)
        return np.stack([state.probabilities(int(code)) for code in unique])[inverse.reshape(-1)]

    def scores(self, X: np.ndarray) -> np.ndarray:
        """The posterior mean success rate of each variant, (n, k)."""
        return cast(np.ndarray, self._state.mean.repeat(len(X), axis=0))

    def update(self, X: np.ndarray, chosen: np.ndarray, reward: np.ndarray) -> None:
        """Add Bernoulli outcomes (reward > 0 is a success) of the chosen variants."""
        chosen = np.asarray(chosen, dtype=np.int64)
        success = np.asarray(reward, dtype=np.float64) > 0
        with self._update_lock:
            old = self._state
            new = _Posterior(
                old.alpha + np.bincount(chosen[success], minlength=self.k),
                old.beta + np.bincount(chosen[~success], minlength=self.k),
                old.generation + 1,
            )
            for code in list(old.table):
                new.probabilities(code)
            self._state = new


class PropensityPolicy:
    """Per-variant logistic regression on the features, trained online by SGD.

    Selection: softmax of the predicted conversion logits at `temperature`, mixed with
    `epsilon` uniform exploration over the eligible variants (so every eligible variant keeps
    probability >= epsilon / eligible count).
    """

    name = "propensity"

    def __init__(
        self,
        k: int,
        rng: np.random.Generator,
        *,
        epsilon: float = PROPENSITY_EPSILON,
        temperature: float = PROPENSITY_TEMPERATURE,
        learning_rate: float = PROPENSITY_LEARNING_RATE,
        l2: float = PROPENSITY_L2,
        prior_rate: float = PROPENSITY_PRIOR_RATE,
    ) -> None:
        self.k, self.epsilon, self.temperature = k, epsilon, temperature
        self.learning_rate, self.l2 = learning_rate, l2
        self._weights = initial_logistic_weights(
            k, rng, prior_rate
        )  # replaced, never modified in place: readers need no lock
        self._generation = 0
        self._lock = threading.Lock()

    @property
    def model_version(self) -> str:
        return f"propensity-v1.{self._generation}"

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted conversion probability of each variant, (n, k)."""
        return cast(np.ndarray, special.expit(X @ self._weights.T))

    def scores(self, X: np.ndarray) -> np.ndarray:
        """The model's score is its predicted conversion (what AUC and calibration judge)."""
        return self.predict(X)

    def probabilities(self, X: np.ndarray, eligible: np.ndarray) -> np.ndarray:
        _check(X, eligible, self.k)
        return propensity_probabilities(
            X @ self._weights.T, eligible, temperature=self.temperature, epsilon=self.epsilon
        )

    def update(self, X: np.ndarray, chosen: np.ndarray, reward: np.ndarray) -> None:
        """One SGD step on the log loss of each chosen variant's model (reward > 0 = converted)."""
        with self._lock:
            self._weights = logistic_step(
                self._weights, X, chosen, reward, learning_rate=self.learning_rate, l2=self.l2
            )
            self._generation += 1


def make_policy(experience: Experience, rng: np.random.Generator, kind: str | None = None) -> Policy:
    """The policy `kind` (default: the experience's own) over the experience's variants."""
    kind = kind or experience.policy
    if kind == "rules":
        return RulesPolicy(experience)
    if kind == "thompson":
        return ThompsonPolicy(len(experience.variants))
    if kind == "propensity":
        return PropensityPolicy(len(experience.variants), rng)
    raise ValueError(f"unknown policy {kind!r} (known: rules, thompson, propensity)")
