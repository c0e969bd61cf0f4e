"""`momento analyze`: compare experiment arms given as JSON sufficient statistics.

One request (the default): one JSON document on stdin, one on stdout, so the engine can be
driven from a shell, a notebook or another service without Python glue. Bad input exits 2 with
`{"error": ..., "field": ...}` naming the offending field (dotted path, e.g. "variants.1.n").

`--jsonl`: one request per line in, one answer per line out, in the same order. Lines are
batched through `stats.compare_many`, so thousands of analyses run per second. An invalid line
answers `{"error": ..., "field": ..., "line": N}` (N counts lines from 1) and the others go on;
the exit code is 2 when any line was invalid, else 0. The answers to every line read so far are
written and flushed before more input is awaited, so a program can also converse line by line.

A request may ask for power planning: `"plan": {"days_elapsed": 14, "power": 0.8,
"target_effect": 0.05, "effect_scale": "relative"}` (only `days_elapsed` is required). Every
comparison then carries its plan: the minimum detectable effect now and, for `target_effect`,
the units and days until it would be detected, for the sequential and the fixed method
(`metrics.power.plan`).

Start-up loads numpy and pydantic-core only (a fixed-horizon request also loads scipy, for
Student's t). The request is validated by pydantic's validator, pydantic-core, from schemas
written with its `core_schema` API: declaring the same fields as pydantic `BaseModel` classes
costs about 0.1 s more at every start (pydantic's model machinery and its plugin discovery),
a third of the cold-start budget.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO, get_args

from pydantic_core import SchemaValidator, ValidationError
from pydantic_core import core_schema as cs

from metrics import power as planning
from metrics import stats

EXIT_OK = 0
EXIT_INVALID = 2
_CHUNK = 1 << 16  # bytes read at a time in --jsonl mode: every complete line in them is one batch
_REQUIRED = object()


def _number(**bounds: float) -> cs.FloatSchema:
    """A finite JSON number (an integer is one too), within `bounds` (gt, ge, lt, le)."""
    return cs.float_schema(strict=True, allow_inf_nan=False, **bounds)  # type: ignore[arg-type]


def _choice(values: tuple[Any, ...]) -> cs.LiteralSchema:
    return cs.literal_schema(list(values))


def _field(schema: cs.CoreSchema, default: Any = _REQUIRED) -> cs.TypedDictField:
    if default is _REQUIRED:
        return cs.typed_dict_field(schema)
    return cs.typed_dict_field(cs.with_default_schema(schema, default=default), required=False)


def _optional(schema: cs.CoreSchema) -> cs.TypedDictField:
    return _field(cs.nullable_schema(schema), None)


def _object(fields: dict[str, cs.TypedDictField]) -> cs.TypedDictSchema:
    """A JSON object with exactly these fields (an unknown one is an error naming it)."""
    return cs.typed_dict_schema(fields, extra_behavior="forbid", strict=True)


VARIANT = _object(
    {
        "name": _field(cs.str_schema(strict=True, min_length=1)),
        "n": _field(cs.int_schema(strict=True, ge=0)),
        "sum": _field(_number()),
        **{
            name: _optional(_number())
            for name in (
                "sum_squares",
                "pre_sum",
                "pre_sum_squares",
                "sum_product",
                "denominator_sum",
                "denominator_sum_squares",
            )
        },
        "expected_share": _optional(_number(gt=0)),
    }
)
"""One arm's sufficient statistics, as `stats.ArmStats` takes them."""

PLAN = _object(
    {
        "days_elapsed": _field(_number(gt=0)),
        "power": _field(_number(gt=0, lt=1), planning.DEFAULT_POWER),
        "target_effect": _optional(_number(gt=0)),
        "effect_scale": _field(_choice(get_args(planning.EffectScale)), "relative"),
    }
)
"""Power planning for every comparison of the request (`metrics.power.plan`)."""

REQUEST = SchemaValidator(
    _object(
        {
            "metric_type": _field(_choice(get_args(stats.MetricType))),
            "alpha": _field(_number(gt=0, lt=1), 0.05),
            "method": _field(_choice(get_args(stats.Method)), "sequential"),
            "control": _optional(cs.str_schema(strict=True)),
            "variants": _field(cs.list_schema(VARIANT, min_length=2, strict=True)),
            "sequential_tuning_n": _field(_number(gt=0), float(stats.DEFAULT_TUNING_N)),
            "correction": _field(_choice(get_args(stats.Correction)), stats.DEFAULT_CORRECTION),
            "plan": _optional(PLAN),
        }
    )
)
"""The whole request; `control` defaults to the arm named "control", else the first."""


class InputError(Exception):
    """A request that cannot be analysed; `field` is the dotted path to blame (None: the whole input)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field

    def to_dict(self) -> dict[str, Any]:
        return {"error": str(self), "field": self.field}


def main(stdin: TextIO, stdout: TextIO) -> int:
    """Run one analysis from stdin to stdout; returns the process exit code."""
    (answer,) = analyze_many([_read(stdin)])
    if isinstance(answer, InputError):
        json.dump(answer.to_dict(), stdout)
        stdout.write("\n")
        return EXIT_INVALID
    json.dump(answer, stdout, allow_nan=False)
    stdout.write("\n")
    return EXIT_OK


def main_jsonl(stdin: io.BufferedIOBase, stdout: TextIO) -> int:
    """Answer one request per input line, one line each, in order; exit 2 if any line was invalid."""
    invalid = False
    for batch in _line_batches(stdin):
        lines = []
        for (number, _), answer in zip(batch, analyze_many([_decode(raw) for _, raw in batch])):
            if isinstance(answer, InputError):
                invalid = True
                lines.append(json.dumps(answer.to_dict() | {"line": number}))
            else:
                lines.append(json.dumps(answer, allow_nan=False))
        stdout.write("\n".join(lines) + "\n")
        stdout.flush()
    return EXIT_INVALID if invalid else EXIT_OK


def analyze(text: str) -> dict[str, Any]:
    """Validate the request text and return the JSON-safe analysis; raises `InputError`."""
    (answer,) = analyze_many([text])
    if isinstance(answer, InputError):
        raise answer
    return answer


def analyze_many(texts: Sequence[str | InputError]) -> list[dict[str, Any] | InputError]:
    """The analysis of each request text (or the `InputError` that rules it out), in order; an
    `InputError` in `texts` (a line that could not even be read) is passed through.

    Requests sharing metric type, alpha, method and tuning are compared in one vectorised batch;
    if the batch meets an impossible number, its requests are compared one by one instead, so the
    error is charged to the request (and field) it belongs to.
    """
    prepared = [_prepare(text) for text in texts]
    requests = {i: item for i, item in enumerate(prepared) if isinstance(item, _Request)}
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, request in requests.items():
        groups.setdefault(request.batch_key, []).append(i)
    compared: dict[int, list[stats.Comparison] | InputError] = {}
    for key, members in groups.items():
        try:
            batch = iter(stats.compare_many([pair for i in members for pair in requests[i].pairs], *key))
        except stats.InvalidStats:
            compared.update({i: requests[i].compare() for i in members})
            continue
        compared.update({i: [next(batch) for _ in requests[i].pairs] for i in members})
    answers: list[dict[str, Any] | InputError] = []
    for i, item in enumerate(prepared):
        result = item if isinstance(item, InputError) else compared[i]
        answers.append(result if isinstance(result, InputError) else requests[i].answer(result))
    return answers


@dataclass(frozen=True)
class _Request:
    """A validated request: its engine arms, the control and the pairs to compare."""

    request: dict[str, Any]
    names: list[str]
    control: stats.ArmStats
    pairs: list[tuple[stats.ArmStats, stats.ArmStats]]
    srm: stats.SrmResult

    @property
    def batch_key(self) -> tuple[Any, ...]:
        r = self.request
        return r["metric_type"], r["alpha"], r["method"], r["sequential_tuning_n"]

    def compare(self) -> list[stats.Comparison] | InputError:
        """This request's comparisons alone, or the input error they meet."""
        try:
            return stats.compare_many(self.pairs, *self.batch_key)
        except stats.InvalidStats as exc:
            return _blame(exc, self.names)

    def answer(self, comparisons: list[stats.Comparison]) -> dict[str, Any]:
        """The JSON answer: one family (this request's variants) adjusted once, read by the recommendation."""
        r, plan = self.request, self.request["plan"]
        adjusted = stats.adjust_pvalues([c.absolute.p_value for c in comparisons], r["correction"])
        recommendation = stats.recommend(comparisons, adjusted, (), self.srm)
        rows = []
        for c, p in zip(comparisons, adjusted):
            row = c.to_dict() | {"adjusted_p_value": p}
            if plan is not None:
                row["plan"] = planning.plan(
                    c, plan["days_elapsed"], plan["power"], plan["target_effect"], plan["effect_scale"]
                ).to_dict()
            rows.append(row)
        return {
            "metric_type": r["metric_type"],
            "method": r["method"],
            "alpha": r["alpha"],
            "control": self.control.name,
            "srm": self.srm.to_dict(),
            "comparisons": rows,
            "adjusted_p_values": {
                "method": r["correction"],
                "family": "the variants of this request against its control",
                "values": adjusted,
            },
            "recommendation": recommendation.to_dict(),
        }


def _prepare(text: str | InputError) -> _Request | InputError:
    """Parse and check one request up to the comparisons (which run batched)."""
    if isinstance(text, InputError):
        return text
    try:
        request = _parse(text)
        arms = _arm_stats(request)
    except InputError as exc:
        return exc
    names = [a.name for a in arms]
    control_name = request["control"] or ("control" if "control" in names else names[0])
    if control_name not in names:
        return InputError("control", f"control {control_name!r} is not among the variants {names}")
    control = arms[names.index(control_name)]
    pairs = [(control, v) for v in arms if v is not control]
    try:
        srm = stats.srm_check(arms)
    except stats.InvalidStats as exc:
        return _blame(exc, names)
    return _Request(request, names, control, pairs, srm)


def _blame(exc: stats.InvalidStats, names: list[str]) -> InputError:
    """The engine's error as an input error on the request's field path (variants.<i>.<field>)."""
    field = f"variants.{names.index(exc.arm)}.{exc.field}" if exc.arm in names else exc.field
    return InputError(field, str(exc))


def _read(stdin: TextIO) -> str | InputError:
    try:
        return stdin.read()
    except UnicodeDecodeError as exc:
        return InputError(None, f"stdin is not valid text: {exc.reason}")


def _decode(raw: bytes) -> str | InputError:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return InputError(None, f"the line is not valid UTF-8 text: {exc.reason}")


def _line_batches(stream: io.BufferedIOBase) -> Iterator[list[tuple[int, bytes]]]:
    """Numbered lines, a batch per read: every complete line in the bytes available at once."""
    pending, number = b"", 0
    while data := stream.read1(_CHUNK):
        *lines, pending = (pending + data).split(b"\n")
        if lines:
            yield [(number + i, line) for i, line in enumerate(lines, start=1)]
            number += len(lines)
    if pending:
        yield [(number + 1, pending)]


def _parse(text: str) -> dict[str, Any]:
    try:
        request: dict[str, Any] = REQUEST.validate_json(text)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in error["loc"]) or None
        raise InputError(field, f"{field}: {error['msg']}" if field else error["msg"]) from exc
    seen: set[str] = set()
    for i, variant in enumerate(request["variants"]):
        if variant["name"] in seen:
            raise InputError(f"variants.{i}.name", f"duplicate variant name {variant['name']!r}")
        seen.add(variant["name"])
        if variant["sum_squares"] is None and request["metric_type"] != "proportion":
            raise InputError(f"variants.{i}.sum_squares", f"{request['metric_type']} metrics need sum_squares")
    return request


def _arm_stats(request: dict[str, Any]) -> list[stats.ArmStats]:
    """Engine arms; for proportions a missing sum_squares is the conversion count itself."""
    arms = []
    for i, variant in enumerate(request["variants"]):
        values = dict(variant)
        if values["sum_squares"] is None:
            values["sum_squares"] = values["sum"]
        try:
            arms.append(stats.ArmStats(**values))
        except stats.InvalidStats as exc:
            raise InputError(f"variants.{i}.{exc.field}", str(exc)) from exc
    return arms
