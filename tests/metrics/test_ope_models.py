"""The cross-fitted outcome model against an explicit-design ridge regression, and its folds."""

from __future__ import annotations

import numpy as np
import pytest

from metrics.ope_data import BanditLog, InvalidBanditLog
from metrics.ope_models import fit_outcome_model, time_folds


def make_log(rng, n=600, k=3, d=4, only_early=None, reward=None):
    """A random log; `only_early` is an action logged only in the earliest fifth of the time."""
    time = rng.permutation(n).astype(float)
    action = rng.integers(0, k, n)
    if only_early is not None:
        action = np.where(time < n / 5, action, rng.integers(0, k - 1, n))
        action[np.argmin(time)] = only_early
    context = np.column_stack([np.ones(n), rng.normal(2.0, 3.0, (n, d - 1))])  # a constant column, as "bias"
    truth = context @ rng.normal(0, 0.5, (d, k))
    r = truth[np.arange(n), action] + rng.normal(0, 1.0, n) if reward is None else reward
    mu = np.full((n, k), 1.0 / k)
    return BanditLog(
        actions=tuple("abcde"[:k]),
        action=action,
        propensity=mu[np.arange(n), action],
        reward=r,
        time=time,
        context=context,
    ), truth


def reference(log, n_folds, ridge):
    """The model written out: design rows (z, 0, …, z at the action's block, …, 0), the penalty
    as extra rows sqrt(λ)·I (none on the pooled intercept), least squares per training set."""
    n, k = log.n, log.k
    order = np.argsort(log.time, kind="stable")
    folds = np.empty(n, int)
    folds[order] = np.arange(n) * n_folds // n
    sd = log.context.std(axis=0)
    z = np.column_stack([np.ones(n), (log.context - log.context.mean(axis=0)) / np.where(sd > 0, sd, 1.0)])
    p = z.shape[1]

    def design(rows, actions):
        out = np.zeros((len(rows), p * (k + 1)))
        out[:, :p] = z[rows]
        for j, (i, a) in enumerate(zip(rows, actions)):
            out[j, p * (a + 1) : p * (a + 2)] = z[i]
        return out

    penalty = np.sqrt(ridge) * np.eye(p * (k + 1))
    penalty[0, 0] = 0.0
    predictions = np.empty((n, k))
    for f in range(n_folds):
        train, test = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
        a = np.vstack([design(train, log.action[train]), penalty])
        b = np.concatenate([log.reward[train], np.zeros(len(penalty))])
        coef = np.linalg.lstsq(a, b, rcond=None)[0]
        for action in range(k):
            raw = design(test, np.full(len(test), action)) @ coef
            predictions[test, action] = np.clip(raw, log.reward[train].min(), log.reward[train].max())
    return predictions, folds


@pytest.mark.parametrize(("n_folds", "ridge", "only_early"), [(5, 1.0, None), (3, 25.0, None), (4, 0.5, 2)])
def test_predictions_match_an_explicit_design_ridge_fit(n_folds, ridge, only_early):
    log, _ = make_log(np.random.default_rng(n_folds), only_early=only_early)
    model = fit_outcome_model(log, n_folds=n_folds, ridge=ridge)
    expected, folds = reference(log, n_folds, ridge)
    np.testing.assert_allclose(model.predictions, expected, rtol=1e-8, atol=1e-10)
    assert model.folds.tolist() == folds.tolist() and model.n_folds == n_folds and model.ridge == ridge
    chosen = expected[np.arange(log.n), log.action]
    r = log.reward
    assert model.r_squared == pytest.approx(1 - ((r - chosen) ** 2).sum() / ((r - r.mean()) ** 2).sum())


def test_folds_are_contiguous_equal_blocks_of_time():
    time = np.random.default_rng(1).permutation(103)
    folds = time_folds(time, 5)
    by_time = folds[np.argsort(time)]
    assert (np.diff(by_time) >= 0).all()
    assert sorted(np.bincount(folds).tolist()) == [20, 20, 21, 21, 21]


def test_a_decision_never_shapes_its_own_prediction():
    rng = np.random.default_rng(2)
    log, _ = make_log(rng)
    before = fit_outcome_model(log)
    in_fold = before.folds == 2
    changed = BanditLog(
        actions=log.actions,
        action=log.action,
        propensity=log.propensity,
        reward=np.where(in_fold, log.reward + rng.normal(0, 5, log.n), log.reward),
        time=log.time,
        context=log.context,
    )
    after = fit_outcome_model(changed)
    np.testing.assert_array_equal(after.predictions[in_fold], before.predictions[in_fold])
    assert not np.allclose(after.predictions[~in_fold], before.predictions[~in_fold])


def test_a_linear_truth_is_recovered():
    log, truth = make_log(np.random.default_rng(3), n=20_000)
    model = fit_outcome_model(log)
    error = np.abs(model.predictions - truth)  # (the largest: truths beyond every observed reward, clipped)
    assert np.quantile(error, 0.5) < 0.03 and np.quantile(error, 0.99) < 0.1
    assert model.r_squared > 0.5


def test_without_context_the_model_is_each_actions_mean_in_the_other_folds():
    rng = np.random.default_rng(4)
    n = 2_000
    action = rng.integers(0, 3, n)
    log = BanditLog(
        actions=("a", "b", "c"),
        action=action,
        propensity=np.full(n, 1 / 3),
        reward=rng.normal(action, 1.0),
        time=np.arange(n),
        context=np.zeros((n, 0)),
    )
    model = fit_outcome_model(log, n_folds=4, ridge=1e-9)
    for f in range(4):
        train = model.folds != f
        means = [log.reward[train & (action == a)].mean() for a in range(3)]
        np.testing.assert_allclose(model.predictions[model.folds == f], np.tile(means, (n // 4, 1)), rtol=1e-6)


def test_predictions_stay_within_the_training_rewards():
    rng = np.random.default_rng(5)
    log, _ = make_log(rng, reward=(rng.random(600) < 0.05).astype(float))  # rare conversions
    model = fit_outcome_model(log)
    assert model.predictions.min() >= 0.0 and model.predictions.max() <= 1.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(n_folds=1), "n_folds"),
        (dict(n_folds=601), "n_folds"),
        (dict(n_folds=2.5), "n_folds"),
        (dict(ridge=0.0), "ridge"),
        (dict(ridge=float("inf")), "ridge"),
        (dict(ridge=True), "ridge"),
    ],
)
def test_bad_arguments_raise_naming_the_field(kwargs, field):
    log, _ = make_log(np.random.default_rng(6))
    with pytest.raises(InvalidBanditLog) as err:
        fit_outcome_model(log, **kwargs)
    assert err.value.field == field
