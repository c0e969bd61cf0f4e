"""The decision flow's table: steps, codes, and the executors that walk it."""

from __future__ import annotations

import numpy as np
import pytest

from decisioning import flow
from momento.codes import POLICY_CODES, Code
from momento.scenario import Scenario


def test_a_step_without_a_test_or_a_test_for_no_step_is_refused() -> None:
    names = [step.name for step in flow.STEPS[: flow.POLICY_STEP]]
    with pytest.raises(ValueError, match=r"missing \['holdout'\]"):
        flow.bind({name: None for name in names if name != "holdout"})
    with pytest.raises(ValueError, match=r"unknown \['policy'\]"):
        flow.bind({step.name: None for step in flow.STEPS})
    assert flow.bind({name: name for name in reversed(names)}) == tuple(names)  # in step order


def test_one_request_and_a_batch_stop_at_the_first_step_that_holds() -> None:
    holds = {"control", "capped", "over_budget"}
    one = flow.bind({step.name: (lambda _, hit=step.name in holds: hit) for step in flow.STEPS[: flow.POLICY_STEP]})
    assert flow.STEPS[flow.first_step(one, None)].code == Code.CONTROL_ARM
    asked: list[np.ndarray] = []

    def costly(still: np.ndarray) -> np.ndarray:
        asked.append(still.copy())
        return np.array([False, False, True, False])

    n = 4
    tests = {step.name: np.zeros(n, dtype=bool) for step in flow.STEPS[: flow.POLICY_STEP]}
    tests |= {
        "holdout": np.array([True, False, False, False]),
        "capped": np.array([True, True, False, False]),
        "model_failed": costly,
    }
    stops = flow.first_steps(flow.bind(tests), n)
    assert [flow.CODES[s] for s in stops] == [Code.HOLDOUT, Code.FREQUENCY_CAP, Code.MODEL_ERROR, None]
    assert asked[0].tolist() == [False, False, True, True]  # a costly test sees only the rows still open
    assert (stops > flow.CAP_STEP).tolist() == [False, False, True, True]


def test_each_code_and_fallback_set_is_derived_from_the_one_table(bundled_scenario: Scenario) -> None:
    assert flow.FALLBACKS_AFTER_CAPS == (Code.MODEL_UNAVAILABLE, Code.MODEL_ERROR, Code.BUDGET_EXCEEDED)
    assert {Code.FEATURE_STORE_ERROR, Code.INTERNAL_ERROR, Code.FREQUENCY_CAP} <= flow.FALLBACKS
    assert not {Code.HOLDOUT, Code.CONTROL_ARM, Code.EXPERIENCE_INACTIVE, Code.FIXED_ARM} & flow.FALLBACKS
    assert set(POLICY_CODES) == {experience.policy for experience in bundled_scenario.experiences}
    assert {step.code for step in flow.STEPS if step.code} | set(POLICY_CODES.values()) == set(Code)
