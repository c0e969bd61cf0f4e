"""The decision flow (`decisioning.flow`) on a whole batch of requests at once: the backfill's path.

The same steps in the same order as the service's engine, with the same building blocks:
governance from `decisioning.guards`, policies from `decisioning.policies` sampled with
`choose`, so the logged propensity is the probability the choice was made with. What the
simulated service cannot suffer is never true here (a feature store or a model that raises):
its failures are the incidents a request carries (an error burst, a latency spike that makes a
policy miss its budget, a model outage).

Besides what was served, each request carries the distribution over variants it would have
been served under every arm of its experiment (`dists`); the ground truth averages outcomes
over it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from decisioning import flow
from decisioning import guards as gov
from decisioning.assignment import HOLDOUT
from decisioning.features import FEATURE_NAMES
from decisioning.flow import INACTIVE, Serves
from decisioning.policies import Policy, choose
from momento.codes import POLICY_CODES
from momento.scenario import Experience, Experiment, Governance, Placement


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
    dists: np.ndarray  # (n, arms, k); under the request's own arm, the distribution its variant was drawn from
    X: np.ndarray  # (n, d): the features of the rows a policy was asked about (zeros elsewhere)


class ExperienceDecider:
    """Decides one experience's requests; holds the arm policies, which learn across batches."""

    def __init__(
        self,
        experience: Experience,
        experiment: Experiment,
        placement: Placement,
        governance: Governance,
        caps: dict[str, int],
        policies: dict[str, Policy],
    ) -> None:
        self.experience, self.experiment, self.placement = experience, experiment, placement
        self.governance, self.caps = governance, caps
        self.k = len(experience.variants)
        self.default = experience.variants.index(experience.default_variant)
        self.policies = policies  # arm name -> policy, for the arms that let a policy choose

    def decide(self, r: Requests, rng: np.random.Generator) -> Served:
        n, arms = len(r.holdout), self.experiment.arms
        rows = np.arange(n)
        never = np.zeros(n, dtype=bool)
        X = np.zeros((n, len(FEATURE_NAMES)))
        built = np.zeros(n, dtype=bool)

        def features(still: np.ndarray) -> np.ndarray:
            """Build the features of the rows that reach the policy (once, whichever arm's)."""
            todo = still & ~built
            if todo.any():
                X[todo] = r.features(todo)
                built[todo] = True
            return never

        shared = {  # the tests no arm changes, answered once for the batch
            "store_failed": never,
            "error": r.error,
            "holdout": r.holdout,
            "inactive": np.full(n, not flow.running(self.experiment)),
            "paused": never,  # arms are paused on the live service only
            "no_consent": _blocked(gov.consent_block(r.consent)),
            "channel_not_served": _blocked(gov.channel_block(self.placement, r.channel)),
            "out_of_stock": _blocked(gov.stock_block(r.in_stock, self.governance)),
            "bought_today": _blocked(gov.bought_today_block(self.experience, r.bought_today, self.governance)),
            "capped": _blocked(gov.cap_block(r.cap_used, gov.cap_limits(self.caps, r.channel))),
            "model_failed": never,
            "over_budget": r.spike,
        }
        eligible = gov.eligible_variants(self.experience, r.bought_today, self.governance)
        stops = np.empty((n, len(arms)), dtype=np.int64)
        dists = np.zeros((n, len(arms), self.k))
        dists[:, :, self.default] = 1.0
        versions = np.full((n, len(arms)), None, dtype=object)
        scores = np.full((n, len(arms), self.k), np.nan)
        for a, arm in enumerate(arms):
            stops[:, a] = flow.first_steps(
                flow.bind(
                    {
                        **shared,
                        "control": np.full(n, flow.is_control(arm, self.experience)),
                        "fixed": np.full(n, arm.variant is not None),
                        "features_failed": features,
                        "model_unavailable": r.outage & (arm.policy == flow.OUTAGE_TARGET),
                    }
                ),
                n,
            )
            if arm.variant is not None:
                fixed = flow.SERVES[stops[:, a]] == Serves.FIXED
                dists[fixed, a] = np.eye(self.k)[self.experience.variants.index(arm.variant)]
                continue
            asked = stops[:, a] == flow.POLICY_STEP
            if asked.any():
                policy = self.policies[arm.name]
                versions[asked, a] = policy.model_version
                dists[asked, a] = policy.probabilities(X[asked], eligible[asked])
                scores[asked, a] = policy.scores(X[asked])

        assigned = r.arm
        stop = stops[rows, assigned]
        variant, propensity = choose(dists[rows, assigned], rng)
        serves = flow.SERVES[stop]
        learned = serves == Serves.POLICY
        kinds = np.array([a.policy or "fixed" for a in arms], dtype=object)[assigned]
        codes = np.array([POLICY_CODES[a.policy] if a.policy else None for a in arms], dtype=object)[assigned]
        return Served(
            variant=variant,
            propensity=propensity,
            policy=np.where(learned | (serves == Serves.FIXED), kinds, "default").astype(object),
            model_version=versions[rows, assigned],  # None unless a policy chose
            score=scores[rows, assigned, variant],  # the policy's score of its choice; NaN unless a policy chose
            reason=np.where(learned, codes, flow.CODES[stop]),
            fallback=flow.FALLBACK_STEPS[stop],
            error=serves == Serves.ERROR,
            takes_cap=stop > flow.CAP_STEP,
            learned=learned,
            dists=dists,
            X=X,
        )


def _blocked(codes: np.ndarray) -> np.ndarray:
    """Where a guard's codes block (a code is a non-empty string, None is falsy)."""
    return codes.astype(bool)


def arm_labels(experiment: Experiment, holdout: np.ndarray, arm: np.ndarray) -> np.ndarray:
    """The arm each decision logs, as the engine names it: the holdout, `flow.INACTIVE` while
    the experiment is not running, or the arm's name (`arm` indexes the experiment's arms)."""
    names = np.array([a.name for a in experiment.arms], dtype=object)[arm]
    return np.where(holdout, HOLDOUT, names if flow.running(experiment) else INACTIVE).astype(object)
