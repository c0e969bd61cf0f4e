"""Power and duration planning: the smallest effect an experiment can detect now, and how many
more days until an effect of a given size would be detected, for the fixed-horizon test and for
the confidence sequence the cockpit reads every day.

Planning uses the very boundary the comparisons use (`stats.critical_value`) and the variance
the comparison measured (CUPED included), so "detectable" means "the interval `compare` shows
would exclude zero". For an absolute difference estimated with standard error sqrt(K / t) after t
units (both arms together; K = t·se², constant while the allocation is), the interval at t
excludes zero with probability about Φ(δ·sqrt(t/K) − m(t)) when the true difference is δ (the
opposite tail, below 1e-5 at the usual alpha and power, is left out). So the minimum detectable
effect at power 1 − β is

    MDE(t) = (m(t) + z_{1−β}) · sqrt(K / t),

with m(t) = z_{1−α/2} for the fixed-horizon test (normal approximation, as every planner) and
the confidence sequence's multiplier for the sequential one. The units needed for an effect δ
solve MDE(t) = δ: in closed form for the fixed test, by bisection on log t for the sequential
one (MDE(t) decreases in t). This is derived, not simulated, and it is the probability of
detection *at* t: a sequential test read daily may detect earlier, so for it the chance of
having detected the effect by then is at least the requested power (tests/metrics/test_power.py
checks both by simulation). Details and references: docs/statistics.md, "Power and duration".
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Literal

from metrics import stats

DEFAULT_POWER = 0.8
EffectScale = Literal["relative", "absolute"]

_NORMAL = statistics.NormalDist()


def detectable_effect(
    variance_per_unit: float,
    total_n: float,
    alpha: float = 0.05,
    power: float = DEFAULT_POWER,
    method: stats.Method = "sequential",
    sequential_tuning_n: float = stats.DEFAULT_TUNING_N,
) -> float:
    """The minimum detectable absolute effect after `total_n` units, MDE(t) = (m(t) + z_power)·sqrt(K/t),
    where K = `variance_per_unit` is the standard error squared times the units (both arms)."""
    _check(variance_per_unit, power)
    if not total_n > 0:
        raise stats.InvalidStats("total_n", f"must be > 0, got {total_n!r}")
    m = stats.critical_value(total_n, alpha, method, sequential_tuning_n)
    return (m + _NORMAL.inv_cdf(power)) * math.sqrt(variance_per_unit / total_n)


def units_to_detect(
    variance_per_unit: float,
    effect: float,
    alpha: float = 0.05,
    power: float = DEFAULT_POWER,
    method: stats.Method = "sequential",
    sequential_tuning_n: float = stats.DEFAULT_TUNING_N,
) -> float:
    """Total units (both arms) at which an absolute `effect` is detected with probability `power`:
    the t solving MDE(t) = |effect| (closed form for "fixed", bisection on log t for "sequential")."""
    _check(variance_per_unit, power)
    if not (math.isfinite(effect) and effect != 0):
        raise stats.InvalidStats("target_effect", f"must be a finite non-zero number, got {effect!r}")
    z_power, size = _NORMAL.inv_cdf(power), abs(effect)
    fixed = variance_per_unit * ((stats.critical_value(1.0, alpha, "fixed") + z_power) / size) ** 2
    if method == "fixed":
        return fixed

    def excess(t: float) -> float:
        return detectable_effect(variance_per_unit, t, alpha, power, method, sequential_tuning_n) - size

    low, high = fixed, 2.0 * fixed  # the sequence is never narrower than the fixed interval
    while excess(high) > 0:
        low, high = high, 2.0 * high
    while high / low > 1.0 + 1e-12:
        middle = math.sqrt(low * high)
        low, high = (middle, high) if excess(middle) > 0 else (low, middle)
    return high


def _check(variance_per_unit: float, power: float) -> None:
    if not (math.isfinite(variance_per_unit) and variance_per_unit > 0):
        raise stats.InvalidStats("variance_per_unit", f"must be a finite number > 0, got {variance_per_unit!r}")
    if not 0.0 < power < 1.0:
        raise stats.InvalidStats("power", f"must be in (0, 1), got {power!r}")


@dataclass(frozen=True)
class Horizon(stats.JsonMixin):
    """One method's answer: the effect detectable now, and when the target effect would be."""

    method: stats.Method
    mde: float
    """Minimum detectable absolute effect with the units collected so far."""
    mde_relative: float | None
    """The same as a share of |control mean| (None when the relative lift is undefined)."""
    units_needed: float | None
    """Total units (both arms) at which the target effect is detected with the requested power."""
    days_to_detect: float | None
    """Days from now until then at the observed traffic (0 when the units are already there)."""


@dataclass(frozen=True)
class Plan(stats.JsonMixin):
    """Power and duration of one comparison, for the method it uses and for the other one."""

    status: stats.Status
    reason: str
    alpha: float
    power: float
    units: int
    units_per_day: float | None
    target_effect: float | None
    """The target as given (relative to |control mean|, or absolute per `effect_scale`)."""
    effect_scale: EffectScale
    target_absolute: float | None
    sequential: Horizon | None = None
    fixed: Horizon | None = None


def plan(
    comparison: stats.Comparison,
    days_elapsed: float,
    power: float = DEFAULT_POWER,
    target_effect: float | None = None,
    effect_scale: EffectScale = "relative",
    sequential_tuning_n: float | None = None,
) -> Plan:
    """Power and duration for `comparison` after `days_elapsed` days of traffic.

    The variance per unit is the comparison's own (K = se² × units, CUPED included), the traffic
    is its units over `days_elapsed` (assumed steady), the boundary is the comparison's alpha and,
    for the sequential horizon, its tuning (`sequential_tuning_n` overrides it; a fixed-horizon
    comparison is planned with the default tuning). A relative `target_effect` is a share of
    |control mean| and needs the relative lift to be defined. A comparison without enough data
    gives a plan with its reason and no numbers.
    """
    if not (math.isfinite(days_elapsed) and days_elapsed > 0):
        raise stats.InvalidStats("days_elapsed", f"must be a finite number > 0, got {days_elapsed!r}")
    if target_effect is not None and not (math.isfinite(target_effect) and target_effect > 0):
        raise stats.InvalidStats("target_effect", f"must be a finite number > 0, got {target_effect!r}")
    _check(1.0, power)
    units = comparison.n_control + comparison.n_variant
    base: dict[str, Any] = {
        "alpha": comparison.alpha,
        "power": power,
        "units": units,
        "target_effect": target_effect,
        "effect_scale": effect_scale,
    }
    se, mean = comparison.absolute.se, comparison.control_mean
    if comparison.status != "ok" or se is None or mean is None:
        return Plan(
            status="not_enough_data", reason=comparison.reason, units_per_day=None, target_absolute=None, **base
        )
    relative_ok = comparison.relative.estimate is not None
    target: float | None = target_effect
    reason = ""
    if target_effect is not None and effect_scale == "relative":
        target = target_effect * abs(mean) if relative_ok else None
        if not relative_ok:
            reason = (
                "a relative target needs the relative lift, undefined here (the control mean is not clearly "
                "away from zero); give target_effect with effect_scale 'absolute'"
            )
    variance = se**2 * units
    rate = units / days_elapsed
    tuning = sequential_tuning_n or comparison.sequential_tuning_n or stats.DEFAULT_TUNING_N

    def horizon(method: stats.Method) -> Horizon:
        mde = detectable_effect(variance, units, comparison.alpha, power, method, tuning)
        needed = None if target is None else units_to_detect(variance, target, comparison.alpha, power, method, tuning)
        return Horizon(
            method,
            mde,
            mde / abs(mean) if relative_ok else None,
            needed,
            None if needed is None else max(needed - units, 0.0) / rate,
        )

    return Plan(
        status="ok",
        reason=reason,
        units_per_day=rate,
        target_absolute=target,
        sequential=horizon("sequential"),
        fixed=horizon("fixed"),
        **base,
    )
