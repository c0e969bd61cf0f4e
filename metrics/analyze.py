"""`momento analyze`: compare experiment arms given as JSON sufficient statistics.

Reads one JSON document on stdin and writes one on stdout, so the engine can be driven from a
shell, a notebook or another service without Python glue. Bad input exits 2 with
`{"error": ..., "field": ...}` naming the offending field (dotted path, e.g. "variants.1.n").
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from metrics import stats

EXIT_OK = 0
EXIT_INVALID = 2


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)


class VariantInput(_Strict):
    """One arm's sufficient statistics, as `stats.ArmStats` takes them."""

    name: str = Field(min_length=1)
    n: int = Field(ge=0)
    sum: float
    sum_squares: float | None = None
    pre_sum: float | None = None
    pre_sum_squares: float | None = None
    sum_product: float | None = None
    denominator_sum: float | None = None
    denominator_sum_squares: float | None = None
    expected_share: float | None = Field(default=None, gt=0)


class AnalyzeInput(_Strict):
    """The whole request; `control` defaults to the arm named "control", else the first."""

    metric_type: stats.MetricType
    alpha: float = Field(default=0.05, gt=0, lt=1)
    method: stats.Method = "sequential"
    control: str | None = None
    variants: list[VariantInput] = Field(min_length=2)
    sequential_tuning_n: float = Field(default=stats.DEFAULT_TUNING_N, gt=0)
    correction: stats.Correction = stats.DEFAULT_CORRECTION


class InputError(Exception):
    """A request that cannot be analysed; `field` is the dotted path to blame (None: the whole input)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


def main(stdin: TextIO, stdout: TextIO) -> int:
    """Run one analysis from stdin to stdout; returns the process exit code."""
    try:
        result = analyze(_read(stdin))
    except InputError as exc:
        json.dump({"error": str(exc), "field": exc.field}, stdout)
        stdout.write("\n")
        return EXIT_INVALID
    json.dump(result, stdout, allow_nan=False)
    stdout.write("\n")
    return EXIT_OK


def analyze(text: str) -> dict[str, Any]:
    """Validate the request text and return the JSON-safe analysis; raises `InputError`."""
    request = _parse(text)
    arms = _arm_stats(request)
    names = [a.name for a in arms]
    control_name = request.control or ("control" if "control" in names else names[0])
    if control_name not in names:
        raise InputError("control", f"control {control_name!r} is not among the variants {names}")
    control = arms[names.index(control_name)]
    others = [a for a in arms if a is not control]
    try:
        srm = stats.srm_check(arms)
        comparisons = stats.compare_many([(control, v) for v in others], request.metric_type, request.alpha,
                                         request.method, request.sequential_tuning_n)
    except stats.InvalidStats as exc:
        field = f"variants.{names.index(exc.arm)}.{exc.field}" if exc.arm in names else exc.field
        raise InputError(field, str(exc)) from exc
    adjusted = stats.adjust_pvalues([c.absolute.p_value for c in comparisons], request.correction)
    recommendation = stats.recommend(comparisons, adjusted, (), srm)
    return {
        "metric_type": request.metric_type,
        "method": request.method,
        "alpha": request.alpha,
        "control": control_name,
        "srm": srm.to_dict(),
        "comparisons": [dict(c.to_dict(), adjusted_p_value=p) for c, p in zip(comparisons, adjusted)],
        "adjusted_p_values": {"method": request.correction, "values": adjusted},
        "recommendation": recommendation.to_dict(),
    }


def _read(stdin: TextIO) -> str:
    try:
        return stdin.read()
    except UnicodeDecodeError as exc:
        raise InputError(None, f"stdin is not valid text: {exc.reason}") from exc


def _parse(text: str) -> AnalyzeInput:
    try:
        request = AnalyzeInput.model_validate_json(text)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in error["loc"]) or None
        raise InputError(field, f"{field}: {error['msg']}" if field else error["msg"]) from exc
    seen: set[str] = set()
    for i, variant in enumerate(request.variants):
        if variant.name in seen:
            raise InputError(f"variants.{i}.name", f"duplicate variant name {variant.name!r}")
        seen.add(variant.name)
        if variant.sum_squares is None and request.metric_type != "proportion":
            raise InputError(f"variants.{i}.sum_squares", f"{request.metric_type} metrics need sum_squares")
    return request


def _arm_stats(request: AnalyzeInput) -> list[stats.ArmStats]:
    """Engine arms; for proportions a missing sum_squares is the conversion count itself."""
    arms = []
    for i, variant in enumerate(request.variants):
        values = variant.model_dump()
        if values["sum_squares"] is None:
            values["sum_squares"] = values["sum"]
        try:
            arms.append(stats.ArmStats(**values))
        except stats.InvalidStats as exc:
            raise InputError(f"variants.{i}.{exc.field}", str(exc)) from exc
    return arms
