"""Policies: valid probability rows, exact Thompson probabilities, rules, online learning."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from scipy import integrate, stats

from decisioning.features import FEATURE_NAMES, encode
from decisioning.policies import (
    Policy,
    PropensityPolicy,
    RulesPolicy,
    ThompsonPolicy,
    choose,
    make_policy,
    thompson_win_probabilities,
)


def _random_eligible(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    eligible = rng.random((n, k)) < 0.6
    eligible[np.arange(n), rng.integers(0, k, n)] = True
    return eligible


@pytest.mark.parametrize("kind", ["rules", "thompson", "propensity"])
def test_every_policy_returns_probability_rows_over_eligible_variants(scenario, kind):
    rng = np.random.default_rng(3)
    for experience in scenario.experiences:
        policy = make_policy(experience, rng, kind)
        assert isinstance(policy, Policy) and policy.name == kind
        k = len(experience.variants)
        X = encode(
            [
                {"price_sensitivity": rng.choice(["low", "medium", "high"]), "pages_viewed": int(p)}
                for p in rng.integers(0, 8, 500)
            ]
        )
        eligible = _random_eligible(rng, 500, k)
        eligible[:, experience.variants.index(experience.default_variant)] = True
        probs = policy.probabilities(X, eligible)
        assert probs.shape == (500, k)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
        assert (probs[~eligible] == 0).all()
        assert (probs >= 0).all()


def test_make_policy_defaults_to_the_experience_policy_and_refuses_unknown(scenario):
    rng = np.random.default_rng(0)
    experience = scenario.experience_by_id["home_showcase"]
    assert make_policy(experience, rng).name == experience.policy
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy(experience, rng, "oracle")


def test_thompson_two_arms_matches_scipy_quadrature():
    alpha, beta = np.array([31.0, 45.0]), np.array([970.0, 1100.0])
    a, b = stats.beta(alpha[0], beta[0]), stats.beta(alpha[1], beta[1])
    p_second, _ = integrate.quad(lambda x: b.pdf(x) * a.cdf(x), 0, 1, points=[a.mean(), b.mean()], limit=200)
    got = thompson_win_probabilities(alpha, beta)
    assert got[1] == pytest.approx(p_second, abs=1e-5)
    assert got.sum() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("alpha", "beta"),
    [([1, 1, 1, 1], [1, 1, 1, 1]), ([3, 1, 3, 9], [2, 4, 2, 30]), ([3000, 3100, 2950], [97000, 96900, 97050])],
)
def test_thompson_probabilities_match_monte_carlo_draws(alpha, beta):
    rng = np.random.default_rng(11)
    alpha, beta = np.asarray(alpha, float), np.asarray(beta, float)
    draws = rng.beta(alpha, beta, size=(400_000, alpha.size)).argmax(axis=1)
    empirical = np.bincount(draws, minlength=alpha.size) / draws.size
    np.testing.assert_allclose(thompson_win_probabilities(alpha, beta), empirical, atol=0.004)


def test_thompson_restricts_to_eligible_arms_and_learns_from_rewards():
    policy = ThompsonPolicy(3)
    X = encode([{}] * 2)
    eligible = np.array([[True, True, True], [True, False, True]])
    np.testing.assert_allclose(policy.probabilities(X, eligible), [[1 / 3] * 3, [0.5, 0, 0.5]], atol=1e-6)
    version = policy.model_version
    chosen = np.repeat([0, 1, 2], 200)
    reward = np.concatenate([np.zeros(200), np.ones(100), np.zeros(100), np.ones(60), np.zeros(140)])
    policy.update(np.zeros((600, len(FEATURE_NAMES))), chosen, reward)
    alpha, beta = policy.posterior
    np.testing.assert_array_equal(alpha, [1, 101, 61])
    np.testing.assert_array_equal(beta, [201, 101, 141])
    assert policy.model_version != version
    probs = policy.probabilities(X, eligible)
    assert probs[0, 1] > 0.99 and probs[1, 1] == 0 and probs[1, 2] > 0.99
    np.testing.assert_allclose(policy.scores(X), [[1 / 202, 101 / 202, 61 / 202]] * 2)


def test_choose_samples_from_the_probabilities_and_reports_them():
    rng = np.random.default_rng(5)
    probs = np.tile([0.0, 0.2, 0.5, 0.3], (60_000, 1))
    index, propensity = choose(probs, rng)
    assert not (index == 0).any()
    np.testing.assert_array_equal(propensity, probs[np.arange(60_000), index])
    counts = np.bincount(index, minlength=4)[1:]
    assert stats.chisquare(counts, 60_000 * np.array([0.2, 0.5, 0.3])).pvalue > 0.001
    last, p_last = choose(np.array([[0.0, 0.0, 1.0]]), rng)
    assert last[0] == 2 and p_last[0] == 1.0


def test_rules_climb_the_discount_ladder_with_price_sensitivity(scenario):
    experience = scenario.experience_by_id["recovery_offer"]  # reminder, discount_10, discount_15
    policy = RulesPolicy(experience)
    X = encode([{"price_sensitivity": level} for level in ("low", "medium", "high")])
    everything = np.ones((3, 3), dtype=bool)
    assert policy.probabilities(X, everything).argmax(axis=1).tolist() == [0, 1, 2]
    no_15 = np.array([[True, True, False]] * 3)
    assert policy.probabilities(X, no_15).argmax(axis=1).tolist() == [0, 1, 1]
    no_discount = np.array([[True, False, False]] * 3)
    probs = policy.probabilities(X, no_discount)
    assert probs.argmax(axis=1).tolist() == [0, 0, 0] and (probs.max(axis=1) == 1).all()


def test_rules_score_nothing(scenario):
    policy = RulesPolicy(scenario.experience_by_id["recovery_offer"])
    assert np.isnan(policy.scores(encode([{}] * 3))).all()


def test_rules_show_engaged_visitors_the_first_personalised_variant(scenario):
    experience = scenario.experience_by_id["home_showcase"]  # editorial (default), style_affinity, ...
    policy = RulesPolicy(experience)
    X = encode([{}, {"returning": True}, {"pages_viewed": 4}, {"category": "vestidos", "last_category": "vestidos"}])
    assert policy.probabilities(X, np.ones((4, 4), bool)).argmax(axis=1).tolist() == [0, 1, 1, 1]


def test_propensity_explores_every_eligible_variant_and_learns_the_better_one():
    rng = np.random.default_rng(8)
    policy = PropensityPolicy(2, rng, epsilon=0.1, learning_rate=0.5)
    rows = [{"device": "mobile"}, {"device": "desktop"}]
    X = encode(rows)
    before = policy.probabilities(X, np.ones((2, 2), bool))
    assert (before >= 0.05).all()
    # Truth: variant 1 converts at 30% on mobile, 5% on desktop; variant 0 at 10% everywhere.
    for _ in range(300):
        device = rng.integers(0, 2, 200)
        Xb = encode([rows[d] for d in device])
        chosen = rng.integers(0, 2, 200)
        rate = np.where(chosen == 1, np.where(device == 0, 0.30, 0.05), 0.10)
        policy.update(Xb, chosen, (rng.random(200) < rate).astype(float))
    predicted = policy.predict(X)
    np.testing.assert_allclose(predicted, [[0.10, 0.30], [0.10, 0.05]], atol=0.04)
    np.testing.assert_array_equal(policy.scores(X), predicted)  # the logged score is the prediction
    after = policy.probabilities(X, np.ones((2, 2), bool))
    assert after[0, 1] > 0.5 > after[1, 1] and after.min() >= 0.05 - 1e-12
    assert policy.model_version == "propensity-v1.300"


def test_policies_stay_valid_under_concurrent_updates_and_reads():
    rng = np.random.default_rng(2)
    thompson, propensity = ThompsonPolicy(3), PropensityPolicy(3, rng)
    X = encode([{"device": "mobile"}])
    eligible = np.ones((1, 3), bool)
    failures: list[str] = []

    def read() -> None:
        for _ in range(400):
            for policy in (thompson, propensity):
                row = policy.probabilities(X, eligible)[0]
                if abs(row.sum() - 1) > 1e-9 or (row < 0).any():
                    failures.append(f"{policy.name}: {row}")

    def write() -> None:
        local = np.random.default_rng()
        for _ in range(100):
            chosen = local.integers(0, 3, 5)
            reward = (local.random(5) < 0.3).astype(float)
            thompson.update(np.repeat(X, 5, axis=0), chosen, reward)
            propensity.update(np.repeat(X, 5, axis=0), chosen, reward)

    threads = [threading.Thread(target=read) for _ in range(3)] + [threading.Thread(target=write) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    alpha, beta = thompson.posterior
    assert alpha.sum() + beta.sum() == 3 * 2 + 2 * 100 * 5  # every update counted exactly once
    assert thompson.model_version == "thompson-v1.200"
