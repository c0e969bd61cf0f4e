"""The bandit log's validation (errors naming the field) and the propensity integrity check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from metrics.ope_data import BanditLog, Candidate, InvalidBanditLog, check_propensities

NAN = float("nan")


def columns(**changes):
    base = dict(
        actions=("a", "b", "c"),
        action=[0, 2, 1],
        propensity=[0.5, 0.25, 1.0],
        reward=[1.0, 0.0, 3.5],
        time=[3.0, 1.0, 2.0],
        context=[[0.1, 1.0], [0.2, 0.0], [0.3, 1.0]],
        logging=[[0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.0, 1.0, 0.0]],
    )
    return {**base, **changes}


def test_a_valid_log_is_stored_as_read_only_arrays():
    log = BanditLog(**columns())
    assert (log.n, log.k) == (3, 3)
    assert log.action.dtype == np.int64 and log.context.shape == (3, 2)
    assert log.chosen.tolist() == [0, 5, 7]  # flat index i·K + a_i
    with pytest.raises(ValueError, match="read-only"):
        log.reward[0] = 2.0
    same = log
    assert same == log and log != BanditLog(**columns()) and len({log, log}) == 1  # by identity: arrays inside
    source = np.array([1.0, 0.0, 3.5])
    BanditLog(**columns(reward=source))
    source[0] = 9.0  # the caller's array stays writable
    assert source.flags.writeable


def test_polars_columns_and_datetimes_are_accepted():
    t0 = datetime(2026, 6, 12, tzinfo=UTC)
    frame = pl.DataFrame(
        {
            "action": [0, 2, 1],
            "propensity": [0.5, 0.25, 1.0],
            "reward": [1.0, 0.0, 3.5],
            "ts": [t0 + timedelta(minutes=m) for m in (3, 1, 2)],
            "x1": [0.1, 0.2, 0.3],
        }
    )
    log = BanditLog(
        actions=("a", "b", "c"),
        action=frame["action"],
        propensity=frame["propensity"],
        reward=frame["reward"],
        time=frame["ts"],
        context=frame.select("x1").to_numpy(),
    )
    assert log.time.dtype.kind == "M" and np.argsort(log.time).tolist() == [1, 2, 0]
    assert log.logging is None
    python_times = BanditLog(**columns(time=[t0 + timedelta(seconds=1), t0, t0 - timedelta(days=1)]))
    assert np.argsort(python_times.time).tolist() == [2, 1, 0]


def test_rows_without_a_logged_distribution_are_nan():
    log = BanditLog(**columns(logging=[[0.5, 0.25, 0.25], [NAN, NAN, NAN], [0.0, 1.0, 0.0]]))
    assert np.isnan(log.logging[1]).all()


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        (dict(actions=()), "actions", "distinct"),
        (dict(actions=("a", "a", "c")), "actions", "distinct"),
        (dict(actions="abc"), "actions", "distinct"),
        (dict(action=[0.0, 2.0, 1.0]), "action", "integers"),
        (dict(action=[0, 3, 1]), "action", "row 1 = 3"),
        (dict(action=[]), "action", "no decisions"),
        (dict(propensity=[0.5, 0.0, 1.0]), "propensity", "row 1 = 0.0"),
        (dict(propensity=[0.5, 1.5, 1.0]), "propensity", "(0, 1]"),
        (dict(propensity=[0.5, NAN, 1.0]), "propensity", "row 1"),
        (dict(propensity=[0.5, 0.25]), "propensity", "has 2 rows"),
        (dict(propensity=["x", "y", "z"]), "propensity", "numeric"),
        (dict(reward=[1.0, float("inf"), 0.0]), "reward", "finite"),
        (dict(time=[1.0, NAN, 2.0]), "time", "row 1"),
        (dict(time=["monday", "tuesday", "friday"]), "time", "numbers or datetimes"),
        (dict(context=[0.1, 0.2, 0.3]), "context", "2 dimension"),
        (dict(context=[[0.1], [NAN], [0.3]]), "context", "finite"),
        (dict(logging=[[0.5, 0.25, 0.25], [0.5, 0.25, 0.25]]), "logging", "(3, 3)"),
        (dict(logging=[[0.5, 0.25, 0.25], [0.5, 0.2, 0.25], [0.0, 1.0, 0.0]]), "logging", "sums to 1"),
        (dict(logging=[[0.5, 0.25, 0.25], [0.5, 0.25, NAN], [0.0, 1.0, 0.0]]), "logging", "whole row of NaN"),
        (dict(logging=[[1.5, -0.25, -0.25], [0.5, 0.25, 0.25], [0.0, 1.0, 0.0]]), "logging", "[0, 1]"),
        (dict(logging=[[0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.5, 0.5, 0.0]]), "logging", "equals its propensity"),
    ],
)
def test_bad_logs_raise_naming_the_field(changes, field, words):
    with pytest.raises(InvalidBanditLog) as err:
        BanditLog(**columns(**changes))
    assert err.value.field == field and str(err.value).startswith(f"{field}: ")
    assert words in str(err.value)


@pytest.mark.parametrize(
    ("probabilities", "words"),
    [
        ([0.5, 0.5, 0.5], "2 dimension"),
        ([[0.5, 0.5, 0.0], [0.5, 0.6, 0.0]], "sums to 1"),
        ([[0.5, 0.5, 0.0], [NAN, 1.0, 0.0]], "[0, 1]"),
    ],
)
def test_bad_candidates_raise_naming_the_candidate(probabilities, words):
    with pytest.raises(InvalidBanditLog) as err:
        Candidate("the model", probabilities)
    assert err.value.field == "candidate 'the model': probabilities" and words in str(err.value)


def test_integrity_check_counts_each_kind_of_problem():
    rows = [
        ([0.5, 0.5, 0.0], 0, 0.5),  # fine
        ([0.6, 0.5, 0.0], 0, 0.6),  # sums to 1.1
        ([1.0, 0.0, 0.0], 1, 0.0),  # chosen action has probability 0
        ([0.995, 0.005, 0.0], 0, 0.995),  # fine, but 0.005 is below the 1% floor
        ([0.7, 0.3, 0.0], 0, 0.3),  # the propensity is another action's probability
        ([NAN, NAN, NAN], 2, 0.2),  # logged before distributions were: unknown
        ([0.5, NAN, 0.5], 0, 0.5),  # malformed
        ([0.5, 0.5, 0.0], 5, 0.5),  # the chosen index is not an action: malformed
        ([1.5, -0.5, 0.0], 0, 1.5),  # out of range (and so is the propensity): malformed
    ]
    distribution, action, propensity = (list(column) for column in zip(*rows))
    result = check_propensities(action, propensity, distribution)
    assert (result.rows, result.unknown, result.malformed) == (9, 1, 3)
    assert (result.not_summing_to_one, result.chosen_zero, result.mismatched, result.below_floor) == (1, 1, 1, 1)
    assert result.problems == 6 and result.floor == 0.01


def test_integrity_check_without_distributions_reads_the_propensities():
    result = check_propensities(np.array([0, 1, 2, 0]), [0.5, 0.0, 0.004, NAN], floor=0.01)
    assert (result.rows, result.unknown, result.malformed, result.chosen_zero, result.below_floor) == (4, 4, 1, 1, 1)
    assert result.problems == 2 and result.not_summing_to_one == result.mismatched == 0


def test_integrity_check_agrees_with_the_log_on_clean_rows():
    rng = np.random.default_rng(0)
    mu = rng.dirichlet(np.ones(4), 1_000)
    action = (mu.cumsum(axis=1) >= rng.random((1_000, 1))).argmax(axis=1)
    assert check_propensities(action, mu[np.arange(1_000), action], mu.astype(np.float32)).problems == 0


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (([0.0, 1.0], [0.5, 0.5]), "action"),
        (([0, 1], [0.5]), "propensity"),
        (([0, 1], [0.5, 0.5], [[1.0], [1.0], [1.0]]), "distribution"),
        (([0, 1], [0.5, 0.5], None, 1.5), "floor"),
    ],
)
def test_integrity_check_refuses_shapes_that_do_not_fit(args, field):
    with pytest.raises(InvalidBanditLog) as err:
        check_propensities(*args)
    assert err.value.field == field
