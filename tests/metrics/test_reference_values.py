"""The engine against published reference values (tests/metrics/reference_values.json): gbstats'
own test vectors, each with its tolerance and, where Momento differs on purpose, what differs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import scipy.stats as sps

from metrics import power
from metrics.stats import ArmStats, Comparison, compare, srm_check

REFERENCE = json.loads((Path(__file__).parent / "reference_values.json").read_text())
CASES = {case["id"]: case for case in REFERENCE["cases"]}


def arm(name: str, fields: dict[str, Any], binomial_variance: bool = False) -> ArmStats:
    """The case's arm; with `binomial_variance`, a proportion given as a mean metric whose n−1
    sample variance is p(1−p) (gbstats' proportion variance), so the formulas can be compared."""
    values = {k: float(v) for k, v in fields.items() if k != "n"}
    n = fields["n"]
    if binomial_variance:
        p = values["sum"] / n
        values["sum_squares"] = values["sum"] ** 2 / n + (n - 1) * p * (1 - p)
    values.setdefault("sum_squares", values["sum"])
    return ArmStats(name, n, **values)


def comparison(case: dict[str, Any]) -> Comparison:
    engine = dict(case["engine"])
    if case.get("binomial_variance"):
        engine["metric_type"] = "mean"
    binomial = case.get("binomial_variance", False)
    return compare(arm("control", case["control"], binomial), arm("b", case["variant"], binomial), **engine)


def value(result: Comparison, path: str) -> float:
    """A number of the result by its dotted path; `relative_z_interval.*` and `relative_scale.*`
    are the normal interval and posterior summaries computed from the relative Estimate."""
    part, key = path.split(".")
    rel = result.relative
    if part == "relative_z_interval":
        half = sps.norm.ppf(1 - result.alpha / 2) * rel.se
        return {"ci_lower": rel.estimate - half, "ci_upper": rel.estimate + half}[key]
    if part == "relative_scale":
        posterior = sps.norm(rel.estimate, rel.se)
        return {"chance_to_win": posterior.sf(0.0), "expected_loss": posterior.expect(lambda x: max(0.0, -x))}[key]
    return getattr(getattr(result, part), key)


@pytest.mark.parametrize("case_id", [c for c, case in CASES.items() if case["kind"] == "compare"])
def test_comparisons_reproduce_the_published_values(case_id):
    case = CASES[case_id]
    result = comparison(case)
    assert result.status == "ok", result.reason
    for path, expected in case["expected"].items():
        got = value(result, path)
        if case.get("relative_tolerance"):
            assert got == pytest.approx(expected, rel=case["tolerance"]), path
        else:
            assert got == pytest.approx(expected, rel=0, abs=case["tolerance"]), path


def test_the_sample_ratio_check_reproduces_the_published_p_value():
    case = CASES["srm-two-arms"]
    arms = [ArmStats(f"a{i}", n, 0.0, 0.0) for i, n in enumerate(case["counts"])]
    assert srm_check(arms, case["shares"]).p_value == pytest.approx(
        case["expected"]["p_value"], rel=0, abs=case["tolerance"]
    )


@pytest.mark.parametrize("case_id", [c for c, case in CASES.items() if case["kind"] == "power"])
def test_power_planning_reproduces_the_published_scaling_factor(case_id):
    case = CASES[case_id]
    engine = case["engine"]
    fixed = compare(arm("control", case["control"]), arm("b", case["variant"]), "mean", method="fixed")
    units = case["control"]["n"] + case["variant"]["n"]
    variance = fixed.relative.se**2 * units
    needed = power.units_to_detect(
        variance,
        case["target_relative_effect"],
        engine["alpha"],
        case["power"],
        engine["method"],
        engine.get("sequential_tuning_n", 5_000),
    )
    assert needed / units - 1.0 == pytest.approx(case["expected"]["scaling_factor"], rel=0, abs=case["tolerance"])


def test_every_case_states_its_source_and_every_deliberate_difference_is_explained():
    for case in REFERENCE["cases"]:
        assert case["source"].startswith("packages/stats/tests/") and "http" not in json.dumps(case)
        if case.get("binomial_variance") or case.get("relative_tolerance") or case["tolerance"] > 5e-6:
            assert case.get("note") or case["kind"] == "srm", case["id"]
