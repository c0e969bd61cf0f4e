"""The decision flow, written once: the ordered steps of a decision, the reason code each logs,
and what a decision that stops at each step serves.

A decision goes down `STEPS` and stops at the first step whose test holds; a test is asked
only of the decisions that reached it, and the last step (the arm's policy) takes every
decision that passed the others. Two executors walk this one table:

- the service's engine, one request at a time (`first_step`): its tests are lazy, so a
  frequency cap is taken only by a decision that got as far as the cap, and a model is asked
  only by a decision that passed everything before it;
- the backfill's batch decider, a whole batch at once (`first_steps`): each test is given the
  rows still open and answers for them.

Each executor names a test for every step (`bind`), so a step added here without a test on
both paths fails when the engine or the decider is built; that both paths then decide alike
is tested on random requests (tests/decisioning/simulator/test_batch.py).

Also here, because both paths log them: the policy -> reason code map, the fallback codes,
the arm logged when an experiment is not running, which policy an injected model outage takes
down, and the name of the feature set a decision's logged context is in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import numpy as np

from momento.codes import Code
from momento.policy_maths import CONTEXT_VERSION as CONTEXT_VERSION
from momento.scenario import Arm, Experience, Experiment, PolicyName


class Serves(StrEnum):
    """What a decision that stops at a step serves, and how it is logged."""

    DEFAULT = "default"  # the experience's default, by design (not a fallback)
    FALLBACK = "fallback"  # the default, forced (fallback = true, fallback_reason = the step's code)
    ERROR = "error"  # the default, forced by a failure (also status = error, error_code = the code)
    FIXED = "fixed"  # the arm's fixed variant, with probability 1
    POLICY = "policy"  # a draw from the arm's policy; the reason is the policy's code


@dataclass(frozen=True)
class Step:
    """One step: the name its test goes by, the code logged when a decision stops here (None
    for the policy step, which logs the policy's own code), and what is served."""

    name: str
    code: Code | None
    serves: Serves

    @property
    def fallback(self) -> bool:
        return self.serves in (Serves.FALLBACK, Serves.ERROR)


STEPS: tuple[Step, ...] = (
    Step("store_failed", Code.FEATURE_STORE_ERROR, Serves.FALLBACK),  # the visitor's live state could not be read
    Step("error", Code.INTERNAL_ERROR, Serves.ERROR),  # an injected failure (the error_burst incident)
    Step("holdout", Code.HOLDOUT, Serves.DEFAULT),  # the unit is in the global holdout
    Step("inactive", Code.EXPERIENCE_INACTIVE, Serves.DEFAULT),  # no running experiment on the experience
    Step("paused", Code.PAUSED_BY_GUARDRAIL, Serves.DEFAULT),  # the unit's arm is paused: logged in control
    Step("control", Code.CONTROL_ARM, Serves.DEFAULT),  # the unit's arm shows the default variant
    Step("no_consent", Code.NO_CONSENT, Serves.FALLBACK),  # governance, in priority order ...
    Step("channel_not_served", Code.CHANNEL_NOT_SERVED, Serves.FALLBACK),
    Step("out_of_stock", Code.OUT_OF_STOCK, Serves.FALLBACK),
    Step("bought_today", Code.BOUGHT_TODAY, Serves.FALLBACK),  # ... only discounts left for today's buyer
    Step("capped", Code.FREQUENCY_CAP, Serves.FALLBACK),  # a decision that passes takes one from the cap
    Step("fixed", Code.FIXED_ARM, Serves.FIXED),  # the arm shows a fixed variant
    Step("features_failed", Code.FEATURE_STORE_ERROR, Serves.FALLBACK),  # the policy's features could not be built
    Step("model_unavailable", Code.MODEL_UNAVAILABLE, Serves.FALLBACK),
    Step("model_failed", Code.MODEL_ERROR, Serves.FALLBACK),
    Step("over_budget", Code.BUDGET_EXCEEDED, Serves.FALLBACK),  # the answer came after the decision budget
    Step("policy", None, Serves.POLICY),
)

POLICY_STEP = len(STEPS) - 1
CODES = np.array([step.code for step in STEPS], dtype=object)
"""Each step's code by index (None for the policy step), to read a batch's `first_steps`."""
SERVES = np.array([step.serves for step in STEPS], dtype=object)
FALLBACK_STEPS = np.array([step.fallback for step in STEPS])
CAP_STEP = next(index for index, step in enumerate(STEPS) if step.code == Code.FREQUENCY_CAP)
"""A decision that stops after this step has taken one from its frequency cap."""

FALLBACKS: frozenset[Code] = frozenset(step.code for step in STEPS if step.fallback and step.code is not None)
"""Codes logged with fallback = true: the default was forced."""

FALLBACKS_AFTER_CAPS: tuple[Code, ...] = tuple(
    step.code
    for step in STEPS[CAP_STEP + 1 :]
    if step.fallback and step.code is not None and step.code not in {s.code for s in STEPS[: CAP_STEP + 1]}
)
"""Fallbacks only a decision that took a frequency cap ends in (the cap passed, then the policy
failed). A code that also comes before the cap (a feature-store error) is not one of them."""

INACTIVE = "none"
"""The arm logged when the experience's experiment is not running."""

OUTAGE_TARGET: PolicyName = "propensity"
"""The policy an injected `model_outage` takes down: the one with a trained model to lose (rules
and Thompson sampling keep answering)."""

# CONTEXT_VERSION (the name of the feature set a logged `context` is in) lives with the features.


def running(experiment: Experiment) -> bool:
    """Whether the experiment assigns its units to arms now (if not: the `inactive` step)."""
    return experiment.status == "running"


def is_control(arm: Arm, experience: Experience) -> bool:
    """Whether `arm` shows the experience's default variant (the `control` step)."""
    return arm.variant == experience.default_variant


def control_arm(experiment: Experiment, experience: Experience) -> Arm | None:
    """The experiment's control arm (the first showing the default variant): where a paused arm's
    units are served (the `paused` step); None when no arm shows the default."""
    return next((arm for arm in experiment.arms if is_control(arm, experience)), None)


# -- executors -------------------------------------------------------------------------------

T = TypeVar("T")


def bind(tests: Mapping[str, T]) -> tuple[T, ...]:
    """The tests of every step but the last, in step order, from tests named by step; a step
    without a test, or a test for no step, is an error."""
    names = [step.name for step in STEPS[:POLICY_STEP]]
    missing, unknown = [n for n in names if n not in tests], sorted(set(tests) - set(names))
    if missing or unknown:
        raise ValueError(f"decision flow tests: missing {missing}, unknown {unknown}")
    return tuple(tests[name] for name in names)


def first_step(tests: Sequence[Callable[[Any], bool]], request: Any) -> int:
    """The index in `STEPS` of the step one request stops at (`tests` from `bind`)."""
    for index, test in enumerate(tests):
        if test(request):
            return index
    return POLICY_STEP


def first_steps(tests: Sequence[np.ndarray | Callable[[np.ndarray], np.ndarray]], n: int) -> np.ndarray:
    """Per request of a batch of n, the index in `STEPS` of the step it stops at (`tests` from
    `bind`). A test is the mask of the requests that stop at it, or, for a test that costs, a
    function given the mask of the requests still open that returns that mask (its answer for
    the others is ignored)."""
    stop = np.full(n, POLICY_STEP, dtype=np.int64)
    still = np.ones(n, dtype=bool)
    for index, test in enumerate(tests):
        if not still.any():
            break
        hit = still & (test(still) if callable(test) else test)
        stop[hit] = index
        still &= ~hit
    return stop
