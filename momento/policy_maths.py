"""The pure maths of the service's policies, shared by the service and off-policy evaluation.

The service's policies (`decisioning.policies`) choose with these functions; the Policy lab's
candidates (`metrics.ope_candidates`) recompute, from a logged context, what those policies
would have chosen with the same functions. The layers forbid metrics/ from importing the
service, so the maths lives here, in the foundation, once: the feature set a logged `context`
is in, the business rules' ladder, Thompson sampling's exact win probabilities, the propensity
model's exploring softmax and its online logistic update.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

FEATURE_NAMES: tuple[str, ...] = (
    "bias",
    "recency",  # log-scaled seconds since the user's previous visit (1.0 = never seen / 30+ days)
    "pages_viewed",  # pages viewed in this session, /10, capped at 2
    "cart_value",  # log-scaled cart value (1.0 ~ BRL 1,000)
    "device_mobile",
    "device_desktop",
    "device_tablet",
    "returning",
    "price_sensitivity",  # low 0, medium 0.5, high 1
    "category_match",  # the page's category is the user's last category
    "referrer_search",
    "referrer_social",
    "referrer_email",
    "referrer_direct",
    "hour_sin",
    "hour_cos",
    "email_open_recency",  # log-scaled seconds since the last e-mail open (1.0 = none in 30 days)
)
"""The features every policy is given, in this order (`decisioning.features` encodes them)."""

CONTEXT_VERSION = "features-{}-{}".format(
    len(FEATURE_NAMES), hashlib.blake2b(",".join(FEATURE_NAMES).encode(), digest_size=4).hexdigest()
)
"""The name of the feature set a logged `context` is in: its values are the features in
`FEATURE_NAMES` order. Derived from the names, so it changes whenever they or their order do."""

CANDIDATE_KINDS: tuple[str, ...] = ("uniform", "rules", "thompson", "greedy", "propensity", "split")
"""The Policy lab's candidate policies (`metrics.ope_candidates`): uniform random, the business
rules, the bandit's Thompson probabilities and greedy choice, the propensity model, and the model
trained on an earlier window and evaluated on a later one; plus `variant:<name>`, always that
variant. An experience may declare its own list in the scenario (`candidates`)."""

SINGLE_PREFIX = "variant:"

_PRICE = FEATURE_NAMES.index("price_sensitivity")
_PAGES = FEATURE_NAMES.index("pages_viewed")
_RETURNING = FEATURE_NAMES.index("returning")
_MATCH = FEATURE_NAMES.index("category_match")

PROPENSITY_EPSILON = 0.1
PROPENSITY_TEMPERATURE = 0.25
PROPENSITY_LEARNING_RATE = 0.05
PROPENSITY_L2 = 1e-4
PROPENSITY_PRIOR_RATE = 0.05


@dataclass(frozen=True, eq=False)
class RuleTable:
    """The business rules of one experience as a table (see `rule_table`).

    `preference[level]` lists the variant indices in order of preference at a rule level; the
    first eligible one is shown.
    """

    has_discounts: bool
    preference: np.ndarray
    top: int

    def levels(self, X: np.ndarray) -> np.ndarray:
        """Each row's rule level, (n,): the discount step (0 = none, 1 = the smallest, top = the
        largest) or, without discounts, whether the visitor is engaged (1) or not (0)."""
        if self.has_discounts:
            price = X[:, _PRICE]
            return np.where(price >= 0.75, self.top, (price >= 0.25).astype(np.int64))
        return ((X[:, _RETURNING] > 0) | (X[:, _PAGES] >= 0.3) | (X[:, _MATCH] > 0)).astype(np.int64)

    def probabilities(self, X: np.ndarray, eligible: np.ndarray) -> np.ndarray:
        """(n, k): probability 1 on the variant the rules show each row, 0 elsewhere."""
        rows = np.arange(len(X))
        preference = self.preference[self.levels(X)]
        chosen = preference[rows, eligible[rows[:, None], preference].argmax(axis=1)]
        out = np.zeros(eligible.shape)
        out[rows, chosen] = 1.0
        return out


def rule_table(variants: Sequence[str], default_variant: str, discount: Mapping[str, float]) -> RuleTable:
    """The rules of an experience with these variants, default and discounts.

    Discount experiences climb a ladder with price sensitivity: low -> the default (no
    discount), medium -> the smallest discount, high -> the largest; if the target is not
    eligible the largest eligible discount below it is offered. Other experiences show their
    first personalised variant to engaged visitors (returning, 3+ pages, or back on a category
    they viewed before) and the default to everyone else.
    """
    variants = list(variants)
    k, default = len(variants), variants.index(default_variant)
    discounts = np.array([discount.get(v, 0.0) for v in variants])
    ladder = [int(i) for i in np.argsort(discounts, kind="stable") if discounts[i] > 0]  # rising discount
    if ladder:  # per level, the target then the smaller discounts down the ladder
        targets = [[default]] + [ladder[:level][::-1] for level in range(1, len(ladder) + 1)]
    else:
        others = [i for i in range(k) if i != default]
        targets = [[default], [others[0] if others else default]]
    # Per rule level, the variants in order of preference (padded with the default): the
    # level's targets, the default, then every variant; the first eligible one is shown.
    width = max(len(t) for t in targets)
    preference = np.array([t + [default] * (width - len(t) + 1) + list(range(k)) for t in targets])
    return RuleTable(bool(ladder), preference, len(targets) - 1)


def thompson_win_probabilities(alpha: np.ndarray, beta: np.ndarray, grid_points: int = 2048) -> np.ndarray:
    """P(arm i draws the highest sample) for independent Beta(alpha_i, beta_i), by integration.

    P_i = integral f_i(x) prod_{j != i} F_j(x) dx, evaluated as the sum over grid cells of
    (F_i(b) - F_i(a)) times the mean over the cell's ends of prod_{j != i} F_j: the mass of
    each arm is conserved exactly, and the grid spans only where the posteriors have mass
    (12 standard deviations around every mean), so peaked posteriors stay accurate.
    """
    alpha, beta = np.asarray(alpha, dtype=np.float64), np.asarray(beta, dtype=np.float64)
    if alpha.size == 1:
        return np.ones(1)
    total = alpha + beta
    mean, sd = alpha / total, np.sqrt(alpha * beta / (total**2 * (total + 1)))
    grid = np.linspace(max(0.0, float((mean - 12 * sd).min())), min(1.0, float((mean + 12 * sd).max())), grid_points)
    cdf = special.betainc(alpha[:, None], beta[:, None], grid[None, :])
    others = np.stack([np.prod(np.delete(cdf, i, axis=0), axis=0) for i in range(alpha.size)])
    won = np.maximum((np.diff(cdf, axis=1) * 0.5 * (others[:, 1:] + others[:, :-1])).sum(axis=1), 0.0)
    return won / won.sum() if won.sum() > 0 else np.full(alpha.size, 1.0 / alpha.size)


def thompson_pattern(alpha: np.ndarray, beta: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(k,) Thompson probabilities when only the variants in `mask` are eligible (0 elsewhere)."""
    row = np.zeros(len(alpha))
    row[mask] = thompson_win_probabilities(alpha[mask], beta[mask])
    return row


def thompson_probabilities(alpha: np.ndarray, beta: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """(n, k) Thompson probabilities per row's eligibility pattern (one integration per pattern)."""
    eligible = np.asarray(eligible, dtype=bool)
    codes = eligible.astype(np.int64) @ (1 << np.arange(eligible.shape[1], dtype=np.int64))  # a pattern as bits
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    rows = np.stack([thompson_pattern(alpha, beta, eligible[i]) for i in first])
    return rows[inverse.reshape(-1)]


def propensity_probabilities(
    logits: np.ndarray,
    eligible: np.ndarray,
    *,
    temperature: float = PROPENSITY_TEMPERATURE,
    epsilon: float = PROPENSITY_EPSILON,
) -> np.ndarray:
    """(n, k): softmax of the eligible variants' logits at `temperature`, mixed with `epsilon`
    uniform exploration over them (every eligible variant keeps >= epsilon / eligible count)."""
    logits = np.where(eligible, logits, -np.inf)
    soft = np.exp((logits - logits.max(axis=1, keepdims=True)) / temperature)
    uniform = eligible / eligible.sum(axis=1, keepdims=True)
    probabilities: np.ndarray = soft * ((1.0 - epsilon) / soft.sum(axis=1, keepdims=True)) + epsilon * uniform
    return probabilities


def initial_logistic_weights(
    k: int, rng: np.random.Generator | None, prior_rate: float = PROPENSITY_PRIOR_RATE
) -> np.ndarray:
    """(k, d) starting weights: the prior rate's logit as bias, tiny random slopes (zero without `rng`)."""
    weights = np.zeros((k, len(FEATURE_NAMES))) if rng is None else rng.normal(0.0, 0.01, size=(k, len(FEATURE_NAMES)))
    weights[:, 0] = special.logit(prior_rate)
    return weights


def logistic_step(
    weights: np.ndarray,
    X: np.ndarray,
    chosen: np.ndarray,
    reward: np.ndarray,
    *,
    learning_rate: float = PROPENSITY_LEARNING_RATE,
    l2: float = PROPENSITY_L2,
) -> np.ndarray:
    """New (k, d) weights after one SGD step on the log loss of each chosen variant's model
    (reward > 0 = converted); `weights` is left as it was."""
    X = np.asarray(X, dtype=np.float64)
    chosen = np.asarray(chosen, dtype=np.int64)
    target = (np.asarray(reward, dtype=np.float64) > 0).astype(np.float64)
    weights = weights.copy()
    predicted = special.expit(np.einsum("nd,nd->n", X, weights[chosen]))
    gradient = (target - predicted)[:, None] * X
    step = np.zeros_like(weights)
    np.add.at(step, chosen, gradient)
    counts = np.bincount(chosen, minlength=len(weights))[:, None]
    weights += learning_rate * (step / np.maximum(counts, 1) - l2 * weights * (counts > 0))
    return weights
