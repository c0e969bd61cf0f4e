"""Judging rules, purely: the numbers a monitor reads (`Numbers`) and a rule in, one `Finding` per
subject out (firing or not, a sentence, the evidence numbers); and `Tracker`, which turns
findings into alert changes (a subject starts or stops firing) so each is written and sent once.

Experiment rules read the statistics engine's own verdicts (`metrics.stats`): the sample-ratio
chi-square, non-inferiority on the always-valid interval (`non_inferiority`: "failed" means the
interval lies entirely beyond the margin) and the primary metric's always-valid interval of the
difference. Those intervals hold under continuous monitoring, so evaluating every few seconds
does not inflate false alarms (tests/metrics/monitors/test_false_alarms.py checks it on A/A runs).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from metrics import stats
from metrics.monitors.rules import (
    ConsentViolation,
    ErrorRate,
    FallbackRate,
    Freshness,
    Guardrail,
    HarmfulArm,
    LatencyBurn,
    ModelHealth,
    Rule,
    Srm,
)

FIRING, RESOLVED = "firing", "resolved"
SERVICE = "service"
"""The subject of the service-wide rules (latency, errors, fallbacks, freshness, consent)."""
MODEL = "propensity_model"
"""The subject of the model-health rules."""


@dataclass(frozen=True)
class ExperimentNumbers:
    """What the experiment rules read about one running experiment (from `metrics.experiments.analyse`)."""

    experiment_id: str
    users: Mapping[str, int]
    srm: stats.SrmResult
    guardrails: tuple[stats.GuardrailResult, ...]
    primary: Mapping[str, stats.Comparison]
    """The primary metric's comparison of each variant with the control."""
    primary_metric: str
    higher_is_better: bool
    paused: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Window:
    """Decision counts over the last `seconds` before the evaluation."""

    seconds: int
    decisions: int
    within_budget: int
    errors: int
    failure_fallbacks: int
    consent_violations: int


@dataclass(frozen=True)
class ModelWindow:
    """The propensity model's mature decisions of one window: how many, how many outcomes
    followed, its AUC (None with one class) and that AUC's standard error, its mean score."""

    decisions: int
    outcomes: int
    auc: float | None
    auc_se: float | None
    mean_score: float

    @property
    def observed_rate(self) -> float:
        return self.outcomes / self.decisions if self.decisions else 0.0

    @property
    def calibration_gap(self) -> float:
        """Mean score minus the observed outcome rate (0: calibrated in the large)."""
        return self.mean_score - self.observed_rate

    @property
    def rate_se(self) -> float:
        """The observed rate's standard error."""
        p = self.observed_rate
        return math.sqrt(p * (1 - p) / self.decisions) if self.decisions else math.inf


@dataclass(frozen=True)
class Numbers:
    """Everything the rules are judged on at one evaluation."""

    at: datetime
    experiments: Mapping[float, Mapping[str, ExperimentNumbers]] = field(default_factory=dict)
    """Per interval level alpha, per running experiment."""
    windows: Mapping[int, Window] = field(default_factory=dict)
    writer_lag_s: float | None = None
    models: Mapping[str, tuple[ModelWindow, ModelWindow]] = field(default_factory=dict)
    """Per model-health rule: (its recent window, its reference window)."""


@dataclass(frozen=True)
class Finding:
    """One rule's judgement of one subject."""

    rule: str
    kind: str
    subject: str
    firing: bool
    summary: str
    evidence: dict[str, Any]
    action: str | None = None


def _experiments(rule: Srm | Guardrail | HarmfulArm, numbers: Numbers, alpha: float) -> list[ExperimentNumbers]:
    chosen = numbers.experiments.get(alpha, {})
    return [x for key, x in chosen.items() if not rule.experiments or key in rule.experiments]


def _action(rule: Rule, firing: bool) -> str | None:
    return rule.action if firing and rule.action != "alert" else None


def _srm(rule: Srm, numbers: Numbers) -> list[Finding]:
    out = []
    alphas = sorted(numbers.experiments)
    for x in _experiments(rule, numbers, alphas[0]) if alphas else []:
        total = sum(x.users.values())
        if x.paused or total < rule.min_users or x.srm.p_value is None:
            continue  # a paused arm's traffic goes to control: the split is off by design
        firing = x.srm.p_value < rule.threshold
        summary = (
            f"{x.experiment_id}: sample-ratio mismatch, p = {x.srm.p_value:.2g} < {rule.threshold:g} "
            f"over {total:,} users"
            if firing
            else f"{x.experiment_id}: split as allocated"
        )
        out.append(
            Finding(
                rule.name,
                rule.kind,
                x.experiment_id,
                firing,
                summary,
                {"users": dict(x.users), "chi2": x.srm.chi2, "p_value": x.srm.p_value, "threshold": rule.threshold},
            )
        )
    return out


def _guardrail(rule: Guardrail, numbers: Numbers) -> list[Finding]:
    out = []
    for x in _experiments(rule, numbers, rule.alpha):
        for variant in x.primary:
            results = [g for g in x.guardrails if g.variant == variant]
            failed = [g for g in results if g.verdict == "failed"]
            firing = bool(failed)
            subject = f"{x.experiment_id}/{variant}"
            summary = (
                f"{subject}: guardrail {', '.join(g.name for g in failed)} breached: {failed[0].reason}"
                if firing
                else f"{subject}: no guardrail breached"
            )
            out.append(
                Finding(
                    rule.name,
                    rule.kind,
                    subject,
                    firing,
                    summary,
                    {"alpha": rule.alpha, "guardrails": [g.to_dict() for g in results]},
                    _action(rule, firing),
                )
            )
    return out


def harmful(comparison: stats.Comparison, higher_is_better: bool) -> bool:
    """Whether the always-valid interval of the difference lies entirely on the bad side of zero."""
    diff = comparison.absolute
    if comparison.status != "ok" or diff.ci_lower is None or diff.ci_upper is None:
        return False
    return diff.ci_upper < 0 if higher_is_better else diff.ci_lower > 0


def _harmful_arm(rule: HarmfulArm, numbers: Numbers) -> list[Finding]:
    out = []
    for x in _experiments(rule, numbers, rule.alpha):
        for variant, c in x.primary.items():
            firing = harmful(c, x.higher_is_better)
            subject = f"{x.experiment_id}/{variant}"
            d = c.absolute
            summary = (
                f"{subject}: {x.primary_metric} is worse than control, difference {d.estimate:+.4g} "
                f"(always-valid {1 - rule.alpha:.0%} interval {d.ci_lower:+.4g} to {d.ci_upper:+.4g})"
                if firing
                else f"{subject}: {x.primary_metric} not shown worse"
            )
            out.append(
                Finding(
                    rule.name,
                    rule.kind,
                    subject,
                    firing,
                    summary,
                    {"metric": x.primary_metric, "alpha": rule.alpha, "comparison": c.to_dict()},
                    _action(rule, firing),
                )
            )
    return out


def burn(window: Window, target: float) -> float | None:
    """How fast the latency SLO's error budget burns over `window` (1: exactly the budget)."""
    if not window.decisions:
        return None
    return (1.0 - window.within_budget / window.decisions) / (1.0 - target)


def _latency_burn(rule: LatencyBurn, numbers: Numbers) -> list[Finding]:
    pairs, firing_pairs = [], []
    for pair in rule.windows:
        long_w, short_w = numbers.windows[pair.long_s], numbers.windows[pair.short_s]
        long_b, short_b = burn(long_w, rule.target), burn(short_w, rule.target)
        on = (
            long_w.decisions >= rule.min_decisions
            and short_w.decisions >= rule.min_decisions
            and long_b is not None
            and short_b is not None
            and long_b > pair.burn
            and short_b > pair.burn
        )
        pairs.append(
            {
                "long_s": pair.long_s,
                "short_s": pair.short_s,
                "threshold": pair.burn,
                "long_burn": long_b,
                "short_burn": short_b,
                "long_decisions": long_w.decisions,
                "short_decisions": short_w.decisions,
                "firing": on,
            }
        )
        if on:
            firing_pairs.append(pairs[-1])
    firing = bool(firing_pairs)
    if firing:
        p = firing_pairs[0]
        summary = (
            f"decision latency SLO burning {p['long_burn']:.1f}x over {p['long_s']} s and "
            f"{p['short_burn']:.1f}x over {p['short_s']} s (threshold {p['threshold']:g}x)"
        )
    else:
        summary = "decision latency SLO within its burn thresholds"
    return [Finding(rule.name, rule.kind, SERVICE, firing, summary, {"target": rule.target, "windows": pairs})]


def _rate(rule: ErrorRate | FallbackRate, numbers: Numbers) -> list[Finding]:
    w = numbers.windows[rule.window_s]
    count = w.errors if rule.kind == "error_rate" else w.failure_fallbacks
    rate = count / w.decisions if w.decisions else None
    firing = rate is not None and w.decisions >= rule.min_decisions and rate > rule.threshold
    what = "errors" if rule.kind == "error_rate" else "failure fallbacks"
    summary = (
        f"{what} at {rate:.1%} of {w.decisions:,} decisions over {rule.window_s} s (threshold {rule.threshold:.1%})"
        if firing
        else f"{what} below {rule.threshold:.1%}"
    )
    return [
        Finding(
            rule.name,
            rule.kind,
            SERVICE,
            firing,
            summary,
            {
                "window_s": rule.window_s,
                "decisions": w.decisions,
                "count": count,
                "rate": rate,
                "threshold": rule.threshold,
            },
        )
    ]


def _freshness(rule: Freshness, numbers: Numbers) -> list[Finding]:
    lag = numbers.writer_lag_s
    if lag is None:
        return []
    firing = lag > rule.max_lag_s
    summary = (
        f"the newest event reached the lake {lag:.0f} s ago (limit {rule.max_lag_s:g} s)"
        if firing
        else "the lake is fresh"
    )
    return [Finding(rule.name, rule.kind, SERVICE, firing, summary, {"lag_s": lag, "max_lag_s": rule.max_lag_s})]


def _consent(rule: ConsentViolation, numbers: Numbers) -> list[Finding]:
    w = numbers.windows[rule.window_s]
    firing = w.consent_violations > 0
    summary = (
        f"{w.consent_violations} personalised decisions for visitors without consent in {rule.window_s} s"
        if firing
        else "no decision personalised without consent"
    )
    return [
        Finding(
            rule.name,
            rule.kind,
            SERVICE,
            firing,
            summary,
            {"window_s": rule.window_s, "violations": w.consent_violations, "decisions": w.decisions},
        )
    ]


def _model_health(rule: ModelHealth, numbers: Numbers) -> list[Finding]:
    if rule.name not in numbers.models:
        return []
    recent, reference = numbers.models[rule.name]
    if any(w.decisions < rule.min_decisions or w.outcomes < rule.min_outcomes for w in (recent, reference)):
        return []  # too little to judge either window yet
    problems = []
    auc_drop = None
    if (
        recent.auc is not None
        and reference.auc is not None
        and recent.auc_se is not None
        and reference.auc_se is not None
    ):
        auc_drop = reference.auc - recent.auc
        if auc_drop > rule.max_auc_drop and auc_drop > rule.z * math.hypot(recent.auc_se, reference.auc_se):
            problems.append(f"AUC fell from {reference.auc:.3f} to {recent.auc:.3f}")
    drift = recent.calibration_gap - reference.calibration_gap
    if abs(drift) > rule.max_calibration_drift and abs(drift) > rule.z * math.hypot(recent.rate_se, reference.rate_se):
        problems.append(
            f"calibration gap (mean score - {rule.outcome} rate) moved from "
            f"{reference.calibration_gap:+.3f} to {recent.calibration_gap:+.3f}"
        )
    firing = bool(problems)
    summary = (
        f"propensity model on {rule.outcome}s, last {rule.recent_s} s against the {rule.reference_s} s before: "
        + "; ".join(problems)
        if firing
        else "propensity model as good as on its reference window"
    )
    evidence = {
        "outcome": rule.outcome,
        "auc_drop": auc_drop,
        "calibration_drift": drift,
        "recent": {
            "decisions": recent.decisions,
            "outcomes": recent.outcomes,
            "auc": recent.auc,
            "mean_score": recent.mean_score,
        },
        "reference": {
            "decisions": reference.decisions,
            "outcomes": reference.outcomes,
            "auc": reference.auc,
            "mean_score": reference.mean_score,
        },
    }
    return [Finding(rule.name, rule.kind, MODEL, firing, summary, evidence)]


# each kind's judge takes that kind's rule (a pairing the type of a dict cannot state)
_JUDGES: dict[str, Callable[[Any, Numbers], list[Finding]]] = {
    "srm": _srm,
    "guardrail": _guardrail,
    "harmful_arm": _harmful_arm,
    "latency_burn": _latency_burn,
    "error_rate": _rate,
    "fallback_rate": _rate,
    "freshness": _freshness,
    "consent_violation": _consent,
    "model_health": _model_health,
}


def evaluate(rule: Rule, numbers: Numbers) -> list[Finding]:
    """The rule's finding for every subject it can judge on `numbers` (none for a subject it
    cannot judge yet: too few users, no events)."""
    return _JUDGES[rule.kind](rule, numbers)


def windows_needed(rules: Iterable[Rule]) -> tuple[int, ...]:
    """Every window (seconds) the service rules read, sorted."""
    needed: set[int] = set()
    for rule in rules:
        if isinstance(rule, LatencyBurn):
            needed.update(s for pair in rule.windows for s in (pair.long_s, pair.short_s))
        elif isinstance(rule, ErrorRate | FallbackRate | ConsentViolation):
            needed.add(rule.window_s)
    return tuple(sorted(needed))


def alphas_needed(rules: Iterable[Rule]) -> tuple[float, ...]:
    """Every interval level the experiment rules read (SRM reads whichever is there)."""
    alphas = {rule.alpha for rule in rules if isinstance(rule, Guardrail | HarmfulArm)}
    if not alphas and any(isinstance(rule, Srm) for rule in rules):
        alphas.add(0.05)
    return tuple(sorted(alphas))


@dataclass(frozen=True)
class Change:
    """An alert starting (`firing`) or ending (`resolved`): one row of the `alerts` table."""

    alert_id: str
    at: datetime
    state: str
    finding: Finding

    def row(self) -> dict[str, Any]:
        f = self.finding
        return {
            "alert_id": self.alert_id,
            "ts": self.at,
            "rule": f.rule,
            "kind": f.kind,
            "subject": f.subject,
            "state": self.state,
            "summary": f.summary,
            "evidence": json.dumps(f.evidence, default=str, allow_nan=False),
            "action": f.action,
        }


class Tracker:
    """Which alerts are open, and the changes each evaluation brings: a firing finding opens an
    alert once (never again while it stays open), a quiet one resolves it."""

    def __init__(self, open_alerts: Iterable[tuple[str, str]] = ()) -> None:
        self.open: set[tuple[str, str]] = set(open_alerts)

    def update(self, findings: Iterable[Finding], at: datetime) -> list[Change]:
        changes = []
        for f in findings:
            key = (f.rule, f.subject)
            if f.firing and key not in self.open:
                self.open.add(key)
                changes.append(Change(uuid.uuid4().hex, at, FIRING, f))
            elif not f.firing and key in self.open:
                self.open.discard(key)
                changes.append(Change(uuid.uuid4().hex, at, RESOLVED, f))
        return changes
