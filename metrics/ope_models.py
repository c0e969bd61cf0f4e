"""The outcome model of off-policy evaluation: every logged decision's reward under every action.

The direct method and doubly robust estimators need q̂(x, a), a prediction of the reward of
action a in context x. Here it is a ridge regression of the reward on the context with a
pooled part and a per-action part,

    q̂(x, a) = z(x)ᵀ(β + γ_a),   z(x) = (1, standardised x),

fitted by minimising Σ_i (r_i − q̂(x_i, a_i))² + λ(‖β_slopes‖² + Σ_a ‖γ_a‖²). The penalty pulls
each action's model towards the pooled one, so a rarely logged action borrows from the others
instead of extrapolating from a handful of rows. Predictions are clipped to the training
rewards' range, which can only bring them closer to the true conditional mean.

Cross-fitting (Chernozhukov et al., "Double/debiased machine learning for treatment and
structural parameters", Econometrics Journal 2018): the decisions are split into `n_folds`
contiguous time blocks and each block's predictions come from the model fitted on the other
blocks, so a decision's own reward never shapes the prediction it is corrected against.
Time blocks rather than random ones keep a session's correlated decisions mostly on one side.

One pass over the data builds a Gram matrix per (fold, action); every fold's training system is
then the total minus that fold's blocks, a p(K+1)-square solve (p = d + 1), so fitting 1M rows
costs about as much as reading them.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from metrics.ope_data import BanditLog, FloatArray, IntArray, InvalidBanditLog

DEFAULT_FOLDS = 5
DEFAULT_RIDGE = 1.0
"""Penalty on standardised features: negligible against thousands of rows, decisive for a dozen."""


@dataclass(frozen=True, eq=False)
class OutcomeModel:
    """Cross-fitted predictions for one log: `predictions[i, a]` is q̂(x_i, a).

    `folds[i]` is decision i's time block (0 = earliest); `r_squared` is the cross-fitted share
    of reward variance explained at the chosen actions (NaN for a constant reward), what the
    model buys the doubly robust estimator.
    """

    predictions: FloatArray
    folds: IntArray
    ridge: float
    r_squared: float

    @property
    def n_folds(self) -> int:
        """Number of time blocks."""
        return int(self.folds.max()) + 1


def time_folds(time: np.ndarray, n_folds: int) -> IntArray:
    """Each decision's block among `n_folds` contiguous time blocks of (almost) equal size.

    Ties in time are kept in log order, so equal times may straddle a block boundary.
    """
    n = len(time)
    folds = np.empty(n, dtype=np.int64)
    folds[np.argsort(time, kind="stable")] = np.arange(n, dtype=np.int64) * n_folds // n
    return folds


def fit_outcome_model(log: BanditLog, n_folds: int = DEFAULT_FOLDS, ridge: float = DEFAULT_RIDGE) -> OutcomeModel:
    """Cross-fit the ridge outcome model on `log` (see the module docstring)."""
    if isinstance(n_folds, bool) or not isinstance(n_folds, Integral) or not 2 <= n_folds <= log.n:
        raise InvalidBanditLog("n_folds", f"must be an integer in 2..{log.n} (the decisions), got {n_folds!r}")
    if isinstance(ridge, bool) or not isinstance(ridge, Real) or not 0 < ridge < np.inf:
        raise InvalidBanditLog("ridge", f"must be a finite number > 0, got {ridge!r}")
    n, k, p = log.n, log.k, log.context.shape[1] + 1
    folds = time_folds(log.time, n_folds)
    block = folds * k + log.action  # fold-major, so each fold's rows are contiguous once sorted
    order = np.argsort(block.astype(np.uint16) if n_folds * k < 2**16 else block, kind="stable")
    bounds = np.searchsorted(block[order], np.arange(n_folds * k + 1))
    x, r = np.take(log.context, order, axis=0), log.reward[order]  # take: ~5x faster than x[order]
    gram, cross = np.zeros((n_folds, k, p, p)), np.zeros((n_folds, k, p))
    for b in range(n_folds * k):  # the Gram matrix of (1, x) and its cross-product with r, per block
        xb, rb = x[bounds[b]:bounds[b + 1]], r[bounds[b]:bounds[b + 1]]
        g, c = gram[divmod(b, k)], cross[divmod(b, k)]  # views
        g[0, 0] = len(xb)
        g[0, 1:] = g[1:, 0] = xb.sum(axis=0)
        g[1:, 1:] = xb.T @ xb
        c[0], c[1:] = rb.sum(), xb.T @ rb
    fold_rows = [slice(bounds[f * k], bounds[(f + 1) * k]) for f in range(n_folds)]
    low, high = np.array([r[s].min() for s in fold_rows]), np.array([r[s].max() for s in fold_rows])
    to_z = _standardiser(gram.sum(axis=(0, 1)))
    predicted = np.empty((n, k))
    for f, rows in enumerate(fold_rows):
        train = np.arange(n_folds) != f
        coef = _ridge(gram[train].sum(axis=0), cross[train].sum(axis=0), to_z, ridge)
        predicted[rows] = np.clip(x[rows] @ coef[1:] + coef[0], low[train].min(), high[train].max())
    predictions = np.empty((n, k))
    predictions[order] = predicted
    return OutcomeModel(predictions, folds, float(ridge), _r_squared(log, predictions))


def _standardiser(gram: FloatArray) -> FloatArray:
    """T with z = (1, x)·T = (1, (x − mean)/sd), the moments read off the Gram matrix of (1, x).

    A constant feature keeps sd 1 (its z is 0); the scale only sets the penalty's units, so the
    rounding of Σx²/n − mean² for a feature far from 0 does no harm.
    """
    n = gram[0, 0]
    mean = gram[0, 1:] / n
    variance = np.diag(gram)[1:] / n - mean**2
    sd = np.where(variance > 1e-12 * np.maximum(mean**2, 1.0), np.sqrt(np.maximum(variance, 0.0)), 1.0)
    t = np.diag(np.concatenate([[1.0], 1.0 / sd]))
    t[0, 1:] = -mean / sd
    return t


def _ridge(gram: FloatArray, cross: FloatArray, to_z: FloatArray, ridge: float) -> FloatArray:
    """Raw-feature coefficients (p, K) of the pooled + per-action ridge from per-action Grams.

    The stacked design row of a decision with action a is (z, 0, …, z at block a, …, 0), so the
    normal matrix has Σ_a G_a in the pooled corner, G_a beside it and on block a's diagonal.
    """
    k, p = cross.shape
    g = to_z.T @ gram @ to_z  # (K, p, p) in standardised units
    c = cross @ to_z  # (K, p)
    a = np.zeros(((k + 1) * p, (k + 1) * p))
    a[:p, :p] = g.sum(axis=0)
    for j in range(k):
        s = slice((j + 1) * p, (j + 2) * p)
        a[:p, s] = a[s, :p] = a[s, s] = g[j]
    a[np.diag_indices_from(a)] += ridge
    a[0, 0] -= ridge  # the pooled intercept is not shrunk
    solution = np.linalg.solve(a, np.concatenate([c.sum(axis=0), c.ravel()]))
    beta, gamma = solution[:p], solution[p:].reshape(k, p)
    coef: FloatArray = to_z @ (beta + gamma).T
    return coef


def _r_squared(log: BanditLog, predictions: FloatArray) -> float:
    chosen = predictions[np.arange(log.n), log.action]
    total = float(((log.reward - log.reward.mean()) ** 2).sum())
    return 1.0 - float(((log.reward - chosen) ** 2).sum()) / total if total > 0 else float("nan")
