"""The service's decision flow (`decisioning.engine.Engine._decide`) on a whole batch at once.

The backfill's path. Same steps in the same order as the engine, with the same building
blocks: an injected error, the holdout, the experiment arm (a control arm serves the default
at once), governance from `decisioning.guards` (consent, channel, stock, bought-today,
then the frequency cap, taken only by a decision that passed the rest), a fixed arm's
variant, or the arm's policy from `decisioning.policies` (model outage, budget), sampled with
`choose` so the logged propensity is the probability the choice was made with.

Besides what was served, each row carries the distribution over variants it would have been
served under every arm of its experiment (`dists`); the ground truth averages outcomes over it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from decisioning import guards as gov
from decisioning.features import FEATURE_NAMES
from decisioning.policies import Policy, choose
from momento.scenario import Experience, Experiment, Governance, Placement
from momento.codes import POLICY_CODES, Code


@dataclass(frozen=True)
class Requests:
    """One experience's decision requests (arrays of equal length n, in time order)."""

    holdout: np.ndarray  # bool
    arm: np.ndarray  # int index into the experiment's arms
    consent: np.ndarray  # bool
    channel: np.ndarray  # str
    cap_used: np.ndarray  # personalised decisions the user already had today on the channel
    in_stock: np.ndarray  # bool: the item the placement would promote
    bought_today: np.ndarray  # bool
    features: Callable[[np.ndarray], np.ndarray]  # rows (bool mask) -> their (rows, d) model features
    error: np.ndarray  # bool: the request fails (error burst)
    spike: np.ndarray  # bool: the feature step is slow (latency spike): a policy misses its budget
    outage: np.ndarray  # bool: the propensity model is unavailable


@dataclass(frozen=True)
class Served:
    """What the engine answered for each request, plus the counterfactual distributions."""

    variant: np.ndarray
    propensity: np.ndarray
    policy: np.ndarray  # str: default, fixed, or the policy's name
    model_version: np.ndarray  # str or None
    score: np.ndarray  # float, NaN when none
    reason: np.ndarray  # Code
    fallback: np.ndarray  # bool
    error: np.ndarray  # bool: status `error`
    takes_cap: np.ndarray  # bool: counted against the frequency cap
    learned: np.ndarray  # bool: chosen by a policy (its outcome updates that policy)
    dists: np.ndarray  # (n, arms, k)
    X: np.ndarray  # (n, d): the features of the rows a policy was asked about (zeros elsewhere)


class ExperienceDecider:
    """Decides one experience's requests; holds the arm policies, which learn across batches."""

    def __init__(self, experience: Experience, experiment: Experiment, placement: Placement,
                 governance: Governance, caps: dict[str, int], policies: dict[str, Policy]) -> None:
        self.experience, self.experiment, self.placement = experience, experiment, placement
        self.governance, self.caps = governance, caps
        self.k = len(experience.variants)
        self.default = experience.variants.index(experience.default_variant)
        self.policies = policies  # arm name -> policy, for the arms that let a policy choose

    def decide(self, r: Requests, rng: np.random.Generator) -> Served:
        n, arms = len(r.holdout), self.experiment.arms
        rows = np.arange(n)
        gate = gov.first_block(  # governance, before the cap
            gov.consent_block(r.consent),
            gov.channel_block(self.placement, r.channel),
            gov.stock_block(r.in_stock, self.governance),
            np.where(r.bought_today, gov.bought_today_block(self.experience, r.bought_today, self.governance), None),
        )
        capped = np.equal(gate, None) & (r.cap_used >= gov.cap_limits(self.caps, r.channel))
        blocked = np.where(capped, Code.FREQUENCY_CAP, gate)
        eligible = gov.eligible_variants(self.experience, r.bought_today, self.governance)
        open_rows = ~r.error & ~r.holdout & np.equal(blocked, None)
        # features only where a policy will be asked (every arm's, for the counterfactuals)
        X = np.zeros((n, len(FEATURE_NAMES)))
        wanted = open_rows & ~r.spike & any(arm.policy is not None for arm in arms)
        if wanted.any():
            X[wanted] = r.features(wanted)

        dists = np.zeros((n, len(arms), self.k))
        dists[:, :, self.default] = 1.0
        reasons = np.empty((n, len(arms)), dtype=object)
        kinds = np.full((n, len(arms)), "default", dtype=object)
        versions = np.full((n, len(arms)), None, dtype=object)
        scores = np.full((n, len(arms), self.k), np.nan)
        for a, arm in enumerate(arms):
            if arm.variant == self.experience.default_variant:
                reasons[:, a] = Code.CONTROL_ARM
                continue
            reasons[:, a] = np.where(r.error, Code.INTERNAL_ERROR, blocked)
            if arm.variant is not None:
                v = self.experience.variants.index(arm.variant)
                dists[open_rows, a] = np.eye(self.k)[v]
                kinds[open_rows, a] = "fixed"
                reasons[open_rows, a] = Code.FIXED_ARM
                continue
            policy = self.policies[arm.name]
            down = open_rows & r.outage & (policy.name == "propensity")
            slow = open_rows & ~down & r.spike
            asked = open_rows & ~down & ~slow
            reasons[down, a], reasons[slow, a] = Code.MODEL_UNAVAILABLE, Code.BUDGET_EXCEEDED
            reasons[asked, a] = POLICY_CODES[policy.name]
            kinds[asked, a] = policy.name
            versions[asked, a] = policy.model_version
            if asked.any():
                dists[asked, a] = policy.probabilities(X[asked], eligible[asked])
                scores[asked, a] = policy.scores(X[asked])

        arm = r.arm
        served = dists[rows, arm].copy()
        served[r.holdout] = np.eye(self.k)[self.default]
        variant, propensity = choose(served, rng)
        reason = np.where(r.error, Code.INTERNAL_ERROR, np.where(r.holdout, Code.HOLDOUT, reasons[rows, arm]))
        kind = np.where(r.holdout | r.error, "default", kinds[rows, arm])
        learned = np.isin(kind, list(POLICY_CODES))
        personal = ~r.error & ~r.holdout & np.array([a.variant != self.experience.default_variant for a in arms])[arm]
        return Served(
            variant=variant,
            propensity=propensity,
            policy=kind,
            model_version=np.where(learned, versions[rows, arm], None),
            score=np.where(learned, scores[rows, arm, variant], np.nan),  # the policy's score of its choice
            reason=reason,
            fallback=np.isin(reason, list(FALLBACKS)),
            error=r.error,
            takes_cap=personal & np.equal(blocked, None),
            learned=learned,
            dists=dists,
            X=X,
        )


FALLBACKS = frozenset({Code.NO_CONSENT, Code.CHANNEL_NOT_SERVED, Code.FREQUENCY_CAP, Code.OUT_OF_STOCK,
                       Code.BOUGHT_TODAY, Code.INTERNAL_ERROR, Code.BUDGET_EXCEEDED, Code.MODEL_UNAVAILABLE})
"""Reasons that mean the default was forced (logged with fallback = true)."""
