"""The monitors file: which rules `momento watch` evaluates, declared as code and validated on load.

`data/monitors.toml` sits next to the scenario. Each `[[rules]]` entry has a `name` (unique), a
`kind` and that kind's settings; a bad field is refused with its path (`rules.2.threshold: ...`),
as the scenario is. An optional `[webhook]` names where alerts go and the file holding the HMAC
key that signs them.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Action = Literal["alert", "pause"]
PAUSING_KINDS = frozenset({"guardrail", "harmful_arm"})


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_\-]+$")
    action: Action = "alert"
    experiments: tuple[str, ...] = ()
    """Experiment rules only: the experiments watched (empty: every running one)."""

    @model_validator(mode="after")
    def _may_pause(self) -> _Rule:
        if self.action == "pause" and getattr(self, "kind", None) not in PAUSING_KINDS:
            raise ValueError(f"action: only {' and '.join(sorted(PAUSING_KINDS))} rules may pause an arm")
        return self


class Srm(_Rule):
    """Sample-ratio mismatch: the chi-square p-value of the arms' users against the allocation
    below a strict `threshold`, once `min_users` have entered."""

    kind: Literal["srm"]
    threshold: float = Field(0.001, gt=0, lt=0.5)
    min_users: int = Field(100, ge=2)


class Guardrail(_Rule):
    """A guardrail breached: a guardrail metric's always-valid interval lies entirely beyond its
    non-inferiority margin (the scenario's margins; `alpha` sets the interval's level)."""

    kind: Literal["guardrail"]
    alpha: float = Field(0.05, gt=0, lt=0.5)


class HarmfulArm(_Rule):
    """A harmful arm: the primary metric's always-valid interval lies entirely on the bad side of zero."""

    kind: Literal["harmful_arm"]
    alpha: float = Field(0.05, gt=0, lt=0.5)


class BurnWindow(BaseModel):
    """One pair of the multi-window rule: both windows must burn faster than `burn`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    long_s: int = Field(gt=0)
    short_s: int = Field(gt=0)
    burn: float = Field(gt=0)

    @model_validator(mode="after")
    def _short_is_shorter(self) -> BurnWindow:
        if self.short_s >= self.long_s:
            raise ValueError("short_s: must be shorter than long_s")
        return self


class LatencyBurn(_Rule):
    """The decision latency SLO's error budget burning: multi-window, multi-burn-rate (SRE workbook:
    1 h and 5 min at 14.4x, 6 h and 30 min at 6x). Burn = share over budget / (1 - target)."""

    kind: Literal["latency_burn"]
    target: float = Field(0.99, gt=0, lt=1)
    windows: tuple[BurnWindow, ...] = Field(
        (BurnWindow(long_s=3600, short_s=300, burn=14.4), BurnWindow(long_s=21600, short_s=1800, burn=6.0)),
        min_length=1,
    )
    min_decisions: int = Field(20, ge=1)


class RateRule(_Rule):
    """A share of the decisions of the last `window_s` above `threshold` (once `min_decisions`)."""

    window_s: int = Field(300, gt=0)
    threshold: float = Field(gt=0, le=1)
    min_decisions: int = Field(20, ge=1)


class ErrorRate(RateRule):
    """Decisions that errored (status `error`)."""

    kind: Literal["error_rate"]


class FallbackRate(RateRule):
    """Decisions that fell back for an engine failure (budget, model, feature store, internal error)."""

    kind: Literal["fallback_rate"]


class Freshness(_Rule):
    """Writer lag: the newest event reached the lake more than `max_lag_s` ago."""

    kind: Literal["freshness"]
    max_lag_s: float = Field(120.0, gt=0)


class ConsentViolation(_Rule):
    """A personalised decision for a visitor without consent in the last `window_s` (must stay 0)."""

    kind: Literal["consent_violation"]
    window_s: int = Field(3600, gt=0)


class ModelHealth(_Rule):
    """The propensity model judged on the outcomes that followed its decisions: its AUC over the
    last `recent_s` fell more than `max_auc_drop` below its AUC over the `reference_s` before (the
    traffic it was learning from), or its calibration gap (mean score minus observed outcome
    rate) moved more than `max_calibration_drift` from the reference's. A decision counts once its
    outcome window (`maturity_minutes`) has passed. Each change must also exceed `z` standard
    errors, so the noise of a small window does not fire; each window needs `min_decisions`
    decisions and `min_outcomes` outcomes."""

    kind: Literal["model_health"]
    outcome: Literal["click", "conversion"] = "click"
    recent_s: int = Field(3600, gt=0)
    reference_s: int = Field(86_400, gt=0)
    maturity_minutes: float = Field(30.0, ge=0)
    max_auc_drop: float = Field(0.05, gt=0, lt=1)
    max_calibration_drift: float = Field(0.05, gt=0, lt=1)
    z: float = Field(3.0, gt=0)
    min_decisions: int = Field(500, ge=10)
    min_outcomes: int = Field(20, ge=1)

    @model_validator(mode="after")
    def _reference_is_longer(self) -> ModelHealth:
        if self.reference_s <= self.recent_s:
            raise ValueError("reference_s: must be longer than recent_s")
        return self


Rule = Annotated[
    Srm | Guardrail | HarmfulArm | LatencyBurn | ErrorRate | FallbackRate | Freshness | ConsentViolation | ModelHealth,
    Field(discriminator="kind"),
]
EXPERIMENT_KINDS = frozenset({"srm", "guardrail", "harmful_arm"})


class Webhook(BaseModel):
    """Where alerts are posted (Slack/Teams-compatible JSON) and the file with the HMAC key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(pattern=r"^https?://")
    secret_file: Path | None = None
    timeout_s: float = Field(5.0, gt=0)
    max_backoff_s: float = Field(30.0, gt=0, description="longest wait between delivery attempts (doubling up to it)")


class Monitors(BaseModel):
    """The whole monitors file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval_s: float = Field(5.0, gt=0)
    webhook: Webhook | None = None
    rules: tuple[Rule, ...] = ()

    @model_validator(mode="after")
    def _unique_names(self) -> Monitors:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"rules: two rules are called {rule.name!r}")
            seen.add(rule.name)
        return self


class MonitorsError(ValueError):
    """A monitors file that cannot be used: the path of the bad field and what is wrong."""


def _first_error(exc: ValidationError, raw: dict[str, Any]) -> str:
    first = exc.errors()[0]
    loc = list(first["loc"])
    # A rule's errors carry its kind as a step of the path (the union's tag): not a field.
    if loc[:1] == ["rules"] and len(loc) > 2 and isinstance(loc[1], int):
        rules = raw.get("rules") or []
        kind = rules[loc[1]].get("kind") if loc[1] < len(rules) and isinstance(rules[loc[1]], dict) else None
        if loc[2] == kind:
            del loc[2]
    if first["type"] == "union_tag_invalid":
        loc.append("kind")
    message = str(first["msg"]).removeprefix("Value error, ")
    named = re.match(r"^(\w+): (.*)$", message, re.S)
    if named and first["type"] == "value_error":
        loc.append(named.group(1))
        message = named.group(2)
    return f"{'.'.join(str(part) for part in loc) or '(top level)'}: {message}"


def parse_monitors(raw: dict[str, Any], base: Path | None = None) -> Monitors:
    """Validate a parsed monitors file; a relative `webhook.secret_file` is read from `base`."""
    try:
        monitors = Monitors.model_validate(raw)
    except ValidationError as exc:
        raise MonitorsError(_first_error(exc, raw)) from None
    if monitors.webhook and monitors.webhook.secret_file and base and not monitors.webhook.secret_file.is_absolute():
        webhook = monitors.webhook.model_copy(update={"secret_file": base / monitors.webhook.secret_file})
        monitors = monitors.model_copy(update={"webhook": webhook})
    return monitors


def default_path(scenario: Path) -> Path:
    """Where the monitors file sits unless told otherwise: next to the scenario."""
    return Path(scenario).with_name("monitors.toml")


def load_monitors(path: Path) -> Monitors:
    """Read and validate the monitors file at `path` (MonitorsError names the file and the field)."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MonitorsError(f"{path}: no such monitors file") from None
    except tomllib.TOMLDecodeError as exc:
        raise MonitorsError(f"{path}: not valid TOML: {exc}") from None
    try:
        return parse_monitors(raw, Path(path).parent)
    except MonitorsError as exc:
        raise MonitorsError(f"{path}: {exc}") from None
