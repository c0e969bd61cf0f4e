"""The backfill's batch decision flow gives the same answers as the service's engine."""

from __future__ import annotations

import time

import numpy as np
import pytest

from decisioning import guards as gov
from decisioning.assignment import assign_arm, in_holdout
from decisioning.engine import Context, Engine
from decisioning.features import FEATURE_NAMES
from decisioning.policies import make_policy
from momento.scenario import Scenario
from decisioning.simulator.batch import ExperienceDecider, Requests
from momento.codes import Code

N = 600


def _decider(scenario: Scenario, placement: str) -> ExperienceDecider:
    experience = scenario.experience_by_placement[placement]
    experiment = scenario.experiment_by_experience[experience.id]
    policies = {arm.name: make_policy(experience, np.random.default_rng(0), arm.policy)
                for arm in experiment.arms if arm.policy}
    return ExperienceDecider(experience, experiment, scenario.placement_by_id[placement], scenario.governance,
                             dict(scenario.caps), policies)


@pytest.mark.parametrize("placement", ["homepage_showcase", "product_cta", "cart_cross_sell", "cart_recovery_offer"])
def test_reasons_arms_and_fallbacks_match_the_engine_request_by_request(bundled_scenario: Scenario, placement: str) -> None:
    """Random visitors with random consent, channel (some not served), stock, purchases today,
    frequency-cap usage and a model outage: the engine (one by one) and the batch (all at
    once) give each the same arm, reason code, fallback and status; and where a policy chose,
    the same kind of policy."""
    rng = np.random.default_rng(7)
    engine = Engine(bundled_scenario, seed=1, budget_ms=60_000)  # timing is not under test here
    decider = _decider(bundled_scenario, placement)
    experiment = decider.experiment
    now = time.time()
    day = engine.day_of(now)
    channels = np.array(["web", "app", "email", "push"], dtype=object)
    units = [f"{i:032x}" for i in rng.integers(0, 2**62, N)]
    consent = rng.random(N) < 0.8
    channel = channels[rng.integers(0, 4, N)]
    in_stock = rng.random(N) < 0.9
    bought = rng.random(N) < 0.2
    outage = rng.random(N) < 0.2
    used = rng.integers(0, 3, N)
    answers = []
    for i, unit in enumerate(units):
        if bought[i]:
            engine.store.observe_event(unit, None, "purchase", now)
        for _ in range(used[i]):
            engine.caps.try_take(unit, channel[i], day)
        ctx = Context(unit=unit, placement=placement, channel=channel[i], consent=bool(consent[i]),
                      in_stock=bool(in_stock[i]), price_sensitivity="high", now=now)
        answers.append(engine.decide(ctx, ["model_outage"] if outage[i] else []))

    arm_index = {arm.name: a for a, arm in enumerate(experiment.arms)}
    holdout = np.array([in_holdout(u, bundled_scenario.population) for u in units])
    requests = Requests(
        holdout=holdout,
        arm=np.array([arm_index[assign_arm(u, experiment)] for u in units]),
        consent=consent, channel=channel, cap_used=used, in_stock=in_stock, bought_today=bought,
        features=lambda rows: np.tile(np.eye(len(FEATURE_NAMES))[0], (rows.sum(), 1)), error=np.zeros(N, dtype=bool),
        spike=np.zeros(N, dtype=bool), outage=outage,
    )
    served = decider.decide(requests, rng)
    batch_arm = np.where(holdout, "holdout", np.array([a.name for a in experiment.arms], dtype=object)[requests.arm])
    for i, answer in enumerate(answers):
        assert answer.arm == batch_arm[i]
        assert answer.reasons == [served.reason[i]], (i, answer.reasons, served.reason[i])
        assert answer.fallback == served.fallback[i]
        assert answer.policy == served.policy[i]
        assert answer.status == ("error" if served.error[i] else "ok")
    assert len(set(served.reason)) >= 4  # the draw exercised several paths


def test_the_logged_propensity_is_the_probability_the_variant_was_chosen_with(bundled_scenario: Scenario) -> None:
    decider = _decider(bundled_scenario, "cart_cross_sell")
    n = 20_000
    rng = np.random.default_rng(3)
    X = np.column_stack([np.ones(n), rng.random((n, len(FEATURE_NAMES) - 1))])
    requests = Requests(
        holdout=np.zeros(n, dtype=bool), arm=np.ones(n, dtype=np.int64), consent=np.ones(n, dtype=bool),
        channel=np.full(n, "web", dtype=object), cap_used=np.zeros(n, dtype=np.int64), in_stock=np.ones(n, dtype=bool),
        bought_today=np.zeros(n, dtype=bool), features=lambda rows: X[rows], error=np.zeros(n, dtype=bool),
        spike=np.zeros(n, dtype=bool),
        outage=np.zeros(n, dtype=bool),
    )
    served = decider.decide(requests, rng)
    treatment = 1
    rows = np.arange(n)
    assert served.propensity == pytest.approx(served.dists[rows, treatment, served.variant])
    # E[1 / p(chosen)] = number of variants with p > 0: exact propensities make this unbiased
    inverse = 1.0 / served.propensity
    assert abs(inverse.mean() - 3) < 4 * inverse.std() / np.sqrt(n)
    control = served.dists[:, 0, :]
    assert (control[:, decider.default] == 1.0).all()


def test_a_capped_or_blocked_decision_does_not_take_from_the_cap_and_control_never_does(bundled_scenario: Scenario) -> None:
    decider = _decider(bundled_scenario, "cart_recovery_offer")
    limit = bundled_scenario.caps["email"]
    n = 4
    requests = Requests(
        holdout=np.zeros(n, dtype=bool), arm=np.array([1, 1, 1, 0]), consent=np.array([True, True, False, True]),
        channel=np.full(n, "email", dtype=object), cap_used=np.array([0, limit, 0, 0]), in_stock=np.ones(n, dtype=bool),
        bought_today=np.zeros(n, dtype=bool), features=lambda rows: np.ones((rows.sum(), len(FEATURE_NAMES))),
        error=np.zeros(n, dtype=bool),
        spike=np.zeros(n, dtype=bool), outage=np.zeros(n, dtype=bool),
    )
    served = decider.decide(requests, np.random.default_rng(0))
    assert served.takes_cap.tolist() == [True, False, False, False]
    assert served.reason[1] == Code.FREQUENCY_CAP and served.reason[2] == Code.NO_CONSENT
    assert served.reason[3] == Code.CONTROL_ARM and not served.fallback[3]
    assert gov.cap_limits(bundled_scenario.caps, np.array(["email"]))[0] == limit
