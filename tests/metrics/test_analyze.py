"""`momento analyze`: JSON in, JSON out, exit 2 naming the field on bad input; `--jsonl`; plans."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from metrics import power, stats
from metrics.analyze import analyze, main, main_jsonl

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
    return subprocess.Popen(
        [sys.executable, "-c", ENTRY],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


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


@pytest.mark.slow  # four processes, two of them loading scipy for the fixed-horizon t
def test_subprocess_happy_path_and_invalid_inputs():
    """Real processes (started together to save time): JSON on stdout, exit codes, never a traceback."""
    cases = {"happy": json.dumps(PROPORTIONS)} | {name: text for name, (text, _) in INVALID.items()}
    procs = {name: spawn(text) for name, text in cases.items()}
    results = {name: finish(proc, cases[name]) for name, proc in procs.items()}

    code, out, err = results.pop("happy")
    assert code == 0 and "Traceback" not in err
    assert out["control"] == "control" and out["srm"]["ok"] is True
    assert [c["variant"] for c in out["comparisons"]] == ["treatment", "other"]
    reference = stats.compare(
        stats.ArmStats("control", 10_000, 1_000, 1_000),
        stats.ArmStats("treatment", 10_050, 1_130, 1_130),
        "proportion",
        method="fixed",
    )
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
    assert set(first) >= {
        "variant",
        "control_mean",
        "variant_mean",
        "absolute",
        "relative",
        "chance_to_win",
        "expected_loss",
        "status",
        "adjusted_p_value",
    }
    assert set(first["absolute"]) >= {"estimate", "ci_lower", "ci_upper", "p_value"}
    assert out["adjusted_p_values"]["values"] == [c["adjusted_p_value"] for c in out["comparisons"]]
    adjusted = out["adjusted_p_values"]["values"]
    assert all(adj >= c["absolute"]["p_value"] for adj, c in zip(adjusted, out["comparisons"]))
    assert out["recommendation"]["action"] in {"ship", "stop", "keep_running", "investigate"}


def test_control_defaults_to_first_arm_without_one_named_control():
    request = {
        "metric_type": "mean",
        "variants": [
            {"name": "a", "n": 500, "sum": 2_500.0, "sum_squares": 16_000.0},
            {"name": "b", "n": 500, "sum": 2_600.0, "sum_squares": 17_000.0},
        ],
    }
    code, out = run_inprocess(request)
    assert code == 0 and out["control"] == "a" and out["comparisons"][0]["variant"] == "b"


def test_cuped_and_ratio_inputs():
    cuped = {
        "metric_type": "mean",
        "variants": [
            {
                "name": "control",
                "n": 1_000,
                "sum": 5_000,
                "sum_squares": 30_000,
                "pre_sum": 4_000,
                "pre_sum_squares": 20_000,
                "sum_product": 22_000,
            },
            {
                "name": "b",
                "n": 1_000,
                "sum": 5_200,
                "sum_squares": 31_000,
                "pre_sum": 4_000,
                "pre_sum_squares": 20_000,
                "sum_product": 22_500,
            },
        ],
    }
    code, out = run_inprocess(cuped)
    assert code == 0 and set(out["comparisons"][0]["cuped"]) == {"theta", "variance_reduction"}
    ratio = {
        "metric_type": "ratio",
        "variants": [
            {
                "name": "control",
                "n": 1_000,
                "sum": 32_000,
                "sum_squares": 3_000_000,
                "denominator_sum": 800,
                "denominator_sum_squares": 1_400,
                "sum_product": 60_000,
            },
            {
                "name": "b",
                "n": 1_000,
                "sum": 34_000,
                "sum_squares": 3_200_000,
                "denominator_sum": 810,
                "denominator_sum_squares": 1_420,
                "sum_product": 63_000,
            },
        ],
    }
    code, out = run_inprocess(ratio)
    assert code == 0 and out["comparisons"][0]["control_mean"] == pytest.approx(40.0)


def test_not_enough_data_is_a_result_with_nulls():
    request = {
        "metric_type": "proportion",
        "variants": [{"name": "control", "n": 1, "sum": 0}, {"name": "b", "n": 0, "sum": 0}],
    }
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
    ("request_", "field"),
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


def test_the_default_correction_is_benjamini_hochberg_over_the_requests_variants():
    """Regression (issue 14 defect 2): `momento analyze` defaulted to Holm while the cockpit used BH."""
    code, out = run_inprocess(PROPORTIONS)
    assert code == 0 and out["adjusted_p_values"]["method"] == "bh"
    raw = [c["absolute"]["p_value"] for c in out["comparisons"]]
    assert out["adjusted_p_values"]["values"] == pytest.approx(stats.adjust_pvalues(raw, "bh"))
    holm = run_inprocess(dict(PROPORTIONS, correction="holm"))[1]
    assert holm["adjusted_p_values"]["values"] == pytest.approx(stats.adjust_pvalues(raw, "holm"))


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (with_variant(1, sum=10_001), "variants.1.sum"),
        (with_variant(2, sum=3.5), "variants.2.sum"),
        (with_variant(0, sum_squares=1_000), "variants.0.sum_squares"),
        (
            {
                "metric_type": "mean",
                "variants": [
                    {"name": "control", "n": 10, "sum": 100.0, "sum_squares": 50.0},
                    {"name": "b", "n": 10, "sum": 5.0, "sum_squares": 30.0},
                ],
            },
            "variants.0.sum_squares",
        ),
        (
            {
                "metric_type": "ratio",
                "variants": [
                    {
                        "name": "control",
                        "n": 10,
                        "sum": 80.0,
                        "sum_squares": 3_000.0,
                        "denominator_sum": 4.0,
                        "denominator_sum_squares": 6.0,
                        "sum_product": 130.0,
                    },
                    {
                        "name": "b",
                        "n": 10,
                        "sum": 80.0,
                        "sum_squares": 3_000.0,
                        "denominator_sum": 4.0,
                        "denominator_sum_squares": 0.5,
                        "sum_product": 130.0,
                    },
                ],
            },
            "variants.1.denominator_sum_squares",
        ),
        (
            {
                "metric_type": "ratio",
                "variants": [
                    {
                        "name": "control",
                        "n": 10,
                        "sum": 80.0,
                        "sum_squares": 3_000.0,
                        "denominator_sum": 1e-300,
                        "denominator_sum_squares": 1e-300,
                        "sum_product": 1e-299,
                    },
                    {
                        "name": "b",
                        "n": 10,
                        "sum": 80.0,
                        "sum_squares": 3_000.0,
                        "denominator_sum": 4.0,
                        "denominator_sum_squares": 6.0,
                        "sum_product": 130.0,
                    },
                ],
            },
            "variants.0.denominator_sum",
        ),
        (dict(PROPORTIONS, plan={"days_elapsed": 0}), "plan.days_elapsed"),
        (dict(PROPORTIONS, plan={"days_elapsed": 7, "power": 1.5}), "plan.power"),
        (dict(PROPORTIONS, plan={"days_elapsed": 7, "effect_scale": "percent"}), "plan.effect_scale"),
    ],
)
def test_impossible_numbers_exit_2_naming_the_exact_field(request_, field):
    """Regression (issue 14 defect 3): impossible sums were "not enough data" blaming another field."""
    code, out = run_inprocess(request_)
    assert code == 2 and out["field"] == field and out["error"]


def test_a_plan_comes_with_every_comparison():
    request = dict(PROPORTIONS, method="sequential", plan={"days_elapsed": 7, "target_effect": 0.05})
    code, out = run_inprocess(request)
    assert code == 0
    control, treatment = (
        stats.ArmStats(v["name"], v["n"], v["sum"], v["sum_squares"])
        for v in (PROPORTIONS["variants"][1], PROPORTIONS["variants"][0])
    )
    expected = power.plan(stats.compare(control, treatment, "proportion"), 7, target_effect=0.05).to_dict()
    plan = out["comparisons"][0]["plan"]
    assert plan == expected and plan["sequential"]["days_to_detect"] is not None
    assert set(plan) >= {"sequential", "fixed", "units_per_day", "target_absolute"}
    assert "plan" not in run_inprocess(PROPORTIONS)[1]["comparisons"][0]


def test_p_values_say_which_kind_they_are_and_missing_ones_are_null():
    sequential = run_inprocess({k: v for k, v in PROPORTIONS.items() if k != "method"})[1]["comparisons"][0]
    fixed = run_inprocess(PROPORTIONS)[1]["comparisons"][0]
    assert (sequential["p_value_kind"], fixed["p_value_kind"]) == ("always_valid", "fixed_horizon")
    short = run_inprocess(
        {
            "metric_type": "proportion",
            "variants": [{"name": "control", "n": 1, "sum": 0}, {"name": "b", "n": 0, "sum": 0}],
        }
    )[1]
    assert short["comparisons"][0]["relative"]["p_value"] is None


# --- --jsonl ----------------------------------------------------------------------------------


def run_jsonl(lines: list[bytes]) -> tuple[int, list[dict]]:
    stdout = io.StringIO()
    code = main_jsonl(io.BytesIO(b"\n".join(lines) + b"\n"), stdout)
    return code, [json.loads(line) for line in stdout.getvalue().splitlines()]


def mixed_requests() -> list[dict]:
    """Requests of every kind and option, so one batch holds several groups."""
    mean = {
        "metric_type": "mean",
        "variants": [
            {"name": "a", "n": 500, "sum": 2_500.0, "sum_squares": 16_000.0},
            {"name": "b", "n": 500, "sum": 2_600.0, "sum_squares": 17_000.0},
        ],
    }
    return [
        PROPORTIONS,
        dict(PROPORTIONS, method="sequential"),
        mean,
        dict(mean, alpha=0.1),
        dict(PROPORTIONS, method="sequential", plan={"days_elapsed": 3, "target_effect": 0.1}),
        dict(mean, method="fixed", sequential_tuning_n=900),
    ]


def test_jsonl_answers_each_line_as_a_single_request_would():
    requests = mixed_requests() * 3
    code, answers = run_jsonl([json.dumps(r).encode() for r in requests])
    assert code == 0 and len(answers) == len(requests)
    for request, answer in zip(requests, answers):
        assert answer == analyze(json.dumps(request))


def test_jsonl_answers_invalid_lines_with_their_error_and_line_number_and_goes_on():
    good = json.dumps(PROPORTIONS).encode()
    lines = [good, b"{not json", json.dumps(with_variant(1, sum=10_001)).encode(), b"", good, b"\xff\xfe", good]
    code, answers = run_jsonl(lines)
    assert code == 2 and len(answers) == len(lines)
    errors = {i + 1: a for i, a in enumerate(answers) if "error" in a}
    assert sorted(errors) == [2, 3, 4, 6]
    assert all(errors[n]["line"] == n for n in errors)
    assert errors[3]["field"] == "variants.1.sum"
    assert [answers[i] for i in (0, 4, 6)] == [analyze(good.decode())] * 3


def test_jsonl_reads_lines_split_across_reads_and_a_last_line_without_newline():
    class Trickle(io.BytesIO):  # hands out a few bytes at a time, as a slow pipe does
        def read1(self, size: int = -1) -> bytes:
            return super().read1(7)

    text = b"\n".join(json.dumps(r).encode() for r in mixed_requests())
    stdout = io.StringIO()
    assert main_jsonl(Trickle(text), stdout) == 0
    assert [json.loads(line) for line in stdout.getvalue().splitlines()] == [
        analyze(json.dumps(r)) for r in mixed_requests()
    ]


def test_the_cli_converses_line_by_line_and_imports_only_what_the_request_needs():
    """`momento analyze --jsonl` answers a line before the next is written (it flushes what it has
    read), and a sequential request never loads scipy or statsmodels (cold start); a fixed one
    loads scipy for Student's t."""
    report = (
        "import json, runpy, sys\nsys.argv = ['momento', 'analyze', '--jsonl']\n"
        "try:\n    runpy.run_module('cli.main', run_name='__main__')\n"
        "finally:\n"
        "    heavy = ('scipy', 'statsmodels', 'pandas', 'polars')\n"
        "    print(json.dumps(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", report],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    sequential = dict(PROPORTIONS, method="sequential")
    for _ in range(2):
        proc.stdin.write(json.dumps(sequential) + "\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["method"] == "sequential"  # answered before the next line
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err
    assert json.loads(out) == []
    fixed = subprocess.run(
        [sys.executable, "-c", report],
        cwd=REPO,
        input=json.dumps(PROPORTIONS) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(fixed.stdout.splitlines()[-1]) == ["scipy"]
