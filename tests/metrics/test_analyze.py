"""`momento analyze`: JSON in, JSON out, exit 2 naming the field on bad input."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from metrics import stats
from metrics.analyze import main

REPO = Path(__file__).resolve().parents[2]
ENTRY = "import sys; from metrics.analyze import main; sys.exit(main(sys.stdin, sys.stdout))"

PROPORTIONS = {
    "metric_type": "proportion",
    "method": "fixed",
    "variants": [
        {"name": "treatment", "n": 10_050, "sum": 1_130, "sum_squares": 1_130},
        {"name": "control", "n": 10_000, "sum": 1_000, "sum_squares": 1_000},
        {"name": "other", "n": 9_900, "sum": 985, "sum_squares": 985},
    ],
}


def run_inprocess(request: object) -> tuple[int, dict]:
    stdout = io.StringIO()
    text = request if isinstance(request, str) else json.dumps(request)
    code = main(io.StringIO(text), stdout)
    return code, json.loads(stdout.getvalue())


def spawn(text: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", ENTRY], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, text: str) -> tuple[int, dict, str]:
    out, err = proc.communicate(text, timeout=60)
    return proc.returncode, json.loads(out), err


def with_variant(index: int, **changes) -> dict:
    request = json.loads(json.dumps(PROPORTIONS))
    request["variants"][index].update(changes)
    return request


INVALID = {
    "bad json": ("{not json", None),
    "negative n": (json.dumps(with_variant(1, n=-5)), "variants.1.n"),
    "unknown control": (json.dumps(dict(PROPORTIONS, control="nobody")), "control"),
}


@pytest.mark.slow  # each process imports scipy/statsmodels/pydantic (~2 s of CPU)
def test_subprocess_happy_path_and_invalid_inputs():
    """Real processes (started together to save time): JSON on stdout, exit codes, never a traceback."""
    cases = {"happy": json.dumps(PROPORTIONS)} | {name: text for name, (text, _) in INVALID.items()}
    procs = {name: spawn(text) for name, text in cases.items()}
    results = {name: finish(proc, cases[name]) for name, proc in procs.items()}

    code, out, err = results.pop("happy")
    assert code == 0 and "Traceback" not in err
    assert out["control"] == "control" and out["srm"]["ok"] is True
    assert [c["variant"] for c in out["comparisons"]] == ["treatment", "other"]
    reference = stats.compare(stats.ArmStats("control", 10_000, 1_000, 1_000),
                              stats.ArmStats("treatment", 10_050, 1_130, 1_130), "proportion", method="fixed")
    assert out["comparisons"][0]["absolute"] == pytest.approx(reference.to_dict()["absolute"])
    for name, (code, out, err) in results.items():
        assert code == 2, name
        assert "Traceback" not in err, name
        assert out["field"] == INVALID[name][1] and out["error"], name


def test_defaults_sequential_alpha_and_control_named_control():
    code, out = run_inprocess({k: v for k, v in PROPORTIONS.items() if k != "method"})
    assert code == 0
    assert (out["method"], out["alpha"], out["control"]) == ("sequential", 0.05, "control")
    first = out["comparisons"][0]
    assert set(first) >= {"variant", "control_mean", "variant_mean", "absolute", "relative", "chance_to_win",
                          "expected_loss", "status", "adjusted_p_value"}
    assert set(first["absolute"]) >= {"estimate", "ci_lower", "ci_upper", "p_value"}
    assert out["adjusted_p_values"]["values"] == [c["adjusted_p_value"] for c in out["comparisons"]]
    adjusted = out["adjusted_p_values"]["values"]
    assert all(adj >= c["absolute"]["p_value"] for adj, c in zip(adjusted, out["comparisons"]))
    assert out["recommendation"]["action"] in {"ship", "stop", "keep_running", "investigate"}


def test_control_defaults_to_first_arm_without_one_named_control():
    request = {"metric_type": "mean", "variants": [
        {"name": "a", "n": 500, "sum": 2_500.0, "sum_squares": 16_000.0},
        {"name": "b", "n": 500, "sum": 2_600.0, "sum_squares": 17_000.0}]}
    code, out = run_inprocess(request)
    assert code == 0 and out["control"] == "a" and out["comparisons"][0]["variant"] == "b"


def test_cuped_and_ratio_inputs():
    cuped = {"metric_type": "mean", "variants": [
        {"name": "control", "n": 1_000, "sum": 5_000, "sum_squares": 30_000,
         "pre_sum": 4_000, "pre_sum_squares": 20_000, "sum_product": 22_000},
        {"name": "b", "n": 1_000, "sum": 5_200, "sum_squares": 31_000,
         "pre_sum": 4_000, "pre_sum_squares": 20_000, "sum_product": 22_500}]}
    code, out = run_inprocess(cuped)
    assert code == 0 and set(out["comparisons"][0]["cuped"]) == {"theta", "variance_reduction"}
    ratio = {"metric_type": "ratio", "variants": [
        {"name": "control", "n": 1_000, "sum": 32_000, "sum_squares": 3_000_000,
         "denominator_sum": 800, "denominator_sum_squares": 1_400, "sum_product": 60_000},
        {"name": "b", "n": 1_000, "sum": 34_000, "sum_squares": 3_200_000,
         "denominator_sum": 810, "denominator_sum_squares": 1_420, "sum_product": 63_000}]}
    code, out = run_inprocess(ratio)
    assert code == 0 and out["comparisons"][0]["control_mean"] == pytest.approx(40.0)


def test_not_enough_data_is_a_result_with_nulls():
    request = {"metric_type": "proportion", "variants": [
        {"name": "control", "n": 1, "sum": 0}, {"name": "b", "n": 0, "sum": 0}]}
    code, out = run_inprocess(request)
    assert code == 0
    comparison = out["comparisons"][0]
    assert comparison["status"] == "not_enough_data" and comparison["reason"]
    assert comparison["absolute"]["p_value"] is None and out["adjusted_p_values"]["values"] == [None]
    assert out["recommendation"]["action"] == "keep_running"


def test_srm_uses_expected_shares():
    request = with_variant(0, expected_share=0.5)
    request["variants"][1]["expected_share"] = 0.25
    request["variants"][2]["expected_share"] = 0.25
    code, out = run_inprocess(request)
    assert code == 0 and out["srm"]["ok"] is False and out["recommendation"]["action"] == "investigate"


@pytest.mark.parametrize(
    "request_, field",
    [
        ({"variants": PROPORTIONS["variants"]}, "metric_type"),
        (dict(PROPORTIONS, metric_type="median"), "metric_type"),
        (dict(PROPORTIONS, method="bayesian"), "method"),
        (dict(PROPORTIONS, alpha=1.5), "alpha"),
        (dict(PROPORTIONS, variants=PROPORTIONS["variants"][:1]), "variants"),
        (dict(PROPORTIONS, variants="none"), "variants"),
        (with_variant(0, n=2.5), "variants.0.n"),
        (with_variant(2, n="many"), "variants.2.n"),
        (with_variant(1, sum=None), "variants.1.sum"),
        (with_variant(2, name="control"), "variants.2.name"),
        (with_variant(1, surprise=1), "variants.1.surprise"),
        (with_variant(1, expected_share=0.5), "variants.0.expected_share"),
        (with_variant(0, expected_share=-1), "variants.0.expected_share"),
        (dict(with_variant(0, sum_squares=None), metric_type="mean"), "variants.0.sum_squares"),
        (dict(PROPORTIONS, metric_type="ratio"), "variants.1.denominator_sum"),
        ([1, 2], None),
    ],
)
def test_invalid_requests_exit_2_naming_the_field(request_, field):
    code, out = run_inprocess(request_)
    assert code == 2
    assert out["field"] == field and out["error"]


def test_non_finite_numbers_are_rejected():
    text = json.dumps(with_variant(1, sum=float("nan")))  # Python writes NaN, which strict JSON forbids
    code, out = run_inprocess(text)
    assert code == 2 and out["field"] == "variants.1.sum"


def test_undecodable_stdin_is_an_input_error():
    stdout = io.StringIO()
    code = main(io.TextIOWrapper(io.BytesIO(b'{"metric_type": "\xff"}'), encoding="utf-8"), stdout)
    assert code == 2 and json.loads(stdout.getvalue())["field"] is None
