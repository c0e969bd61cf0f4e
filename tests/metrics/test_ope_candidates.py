"""metrics/ope_candidates.py: the rules, the bandit and the propensity model recomputed from a
logged context choose exactly what the service's policies (decisioning/policies.py) choose."""

from __future__ import annotations

import numpy as np
import pytest

from decisioning.policies import PropensityPolicy, RulesPolicy, ThompsonPolicy
from metrics import ope_candidates as oc
from metrics.ope_data import BanditLog, InvalidBanditLog
from momento.policy_maths import FEATURE_NAMES, initial_logistic_weights


def contexts(rng: np.random.Generator, n: int) -> np.ndarray:
    """Feature rows shaped like the service's: bias 1, price sensitivity in {0, .5, 1}, flags, scales."""
    x = rng.random((n, len(FEATURE_NAMES)))
    x[:, 0] = 1.0
    for name in ("returning", "category_match", "device_mobile"):
        x[:, FEATURE_NAMES.index(name)] = rng.integers(0, 2, n)
    x[:, FEATURE_NAMES.index("price_sensitivity")] = rng.choice([0.0, 0.5, 1.0], n)
    return x


def make_log(
    rng: np.random.Generator, n: int, k: int, logging: np.ndarray | None = None, actions: tuple[str, ...] | None = None
) -> BanditLog:
    x = contexts(rng, n)
    mu = np.full((n, k), 1.0 / k) if logging is None else logging
    action = (mu.cumsum(axis=1) >= rng.random((n, 1))).argmax(axis=1)
    return BanditLog(
        actions=actions or tuple(f"v{j}" for j in range(k)),
        action=action,
        propensity=mu[np.arange(n), action],
        reward=(rng.random(n) < 0.1 + 0.05 * action).astype(float),
        time=np.arange(n),
        context=x,
        logging=mu,
    )


def shape(experience) -> oc.PolicyShape:
    return oc.PolicyShape(tuple(experience.variants), experience.default_variant, tuple(experience.discount.items()))


@pytest.mark.parametrize("experience_id", ["home_showcase", "recovery_offer", "adaptive_cta"])
def test_the_rules_candidate_chooses_what_the_service_rules_choose(bundled_scenario, experience_id):
    experience = bundled_scenario.experience_by_id[experience_id]
    rng = np.random.default_rng(1)
    log = make_log(rng, 2_000, len(experience.variants))
    expected = RulesPolicy(experience).probabilities(log.context, np.ones((log.n, log.k), bool))
    np.testing.assert_array_equal(oc.rules(log, shape(experience)).probabilities, expected)
    assert len(np.unique(expected.argmax(axis=1))) > 1  # the contexts reach more than one rule level


def test_the_bandit_candidates_are_the_service_thompson_posterior():
    rng = np.random.default_rng(2)
    k = 4
    mu = np.full((3_000, k), 1.0 / k)
    mu[:1_000] = [0.5, 0.5, 0.0, 0.0]  # a third of the decisions had only two eligible variants
    log = make_log(rng, 3_000, k, mu)
    policy = ThompsonPolicy(k)
    policy.update(log.context, log.action, log.reward)
    eligible = mu > 0
    alpha, beta = oc.posterior(log)
    np.testing.assert_array_equal((alpha, beta), policy.posterior)
    np.testing.assert_allclose(oc.thompson(log, alpha, beta).probabilities, policy.probabilities(log.context, eligible))
    greedy = oc.greedy(log, alpha, beta).probabilities
    means = np.where(eligible, alpha / (alpha + beta), -1)
    np.testing.assert_array_equal(greedy.argmax(axis=1), means.argmax(axis=1))
    assert set(np.unique(greedy)) == {0.0, 1.0}


def test_the_propensity_candidate_replays_the_service_model_updates():
    rng = np.random.default_rng(3)
    k = 3
    log = make_log(rng, 2_300, k)
    policy = PropensityPolicy(k, np.random.default_rng(9))
    initial = initial_logistic_weights(k, np.random.default_rng(9))
    for start in range(0, log.n, oc.SGD_BATCH):
        rows = slice(start, start + oc.SGD_BATCH)
        policy.update(log.context[rows], log.action[rows], log.reward[rows])
    weights = oc.train_propensity(log, initial=initial)
    expected = policy.probabilities(log.context, np.ones((log.n, k), bool))
    np.testing.assert_allclose(oc.propensity(log, weights).probabilities, expected)


def test_eligibility_comes_from_stochastic_logged_distributions_only():
    rng = np.random.default_rng(4)
    mu = np.array([[0.5, 0.5, 0.0]] * 5 + [[0.0, 1.0, 0.0]] * 5)
    log = make_log(rng, 10, 3, mu)
    eligible = oc.eligibility(log)
    assert eligible[:5].tolist() == [[True, True, False]] * 5
    assert eligible[5:].all()  # a point mass (rules, a fallback) reveals nothing
    np.testing.assert_allclose(oc.uniform(log).probabilities[0], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(oc.single(log, "v2").probabilities[:, 2], 1.0)


def test_the_split_candidate_learns_on_the_earlier_window_and_is_judged_on_the_later():
    rng = np.random.default_rng(5)
    log = make_log(rng, 1_000, 3)
    earlier, later = oc.time_split(log, 0.6)
    assert len(earlier) == 600 and log.time[earlier].max() < log.time[later].min()
    evaluation, candidate = oc.build_split(log, 0.6)
    assert evaluation.n == 400 and candidate.probabilities.shape == (400, 3)
    weights = oc.train_propensity(log, earlier)
    np.testing.assert_allclose(candidate.probabilities, oc.propensity(evaluation, weights).probabilities)


def test_build_by_name_and_refuse_unknown_names(bundled_scenario):
    experience = bundled_scenario.experience_by_id["home_showcase"]
    log = make_log(np.random.default_rng(6), 500, 4, actions=tuple(experience.variants))
    built = oc.build(log, shape(experience), experience.lab_candidates)
    assert [c.name for c in built] == [
        "uniform random",
        "the rules",
        "the bandit",
        "the bandit's greedy choice",
        "the propensity model",
        *(f"always {v}" for v in experience.variants),
    ]
    with pytest.raises(InvalidBanditLog, match="candidates"):
        oc.build(log, shape(experience), ("always_best",))
    with pytest.raises(InvalidBanditLog, match="variant"):
        oc.build(log, shape(experience), ("variant:nope",))
