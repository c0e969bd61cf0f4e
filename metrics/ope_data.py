"""Logged bandit feedback for off-policy evaluation: the validated input, and the integrity check.

Per logged decision i the log holds the action chosen among K (a_i), the probability with
which the logging policy chose it (the propensity μ(a_i|x_i)), the reward that followed (r_i),
a time key (the outcome model's folds are contiguous in time) and the context the policy saw
(x_i, d numbers). When the log also carries the logging policy's whole distribution μ(·|x_i),
the support check can see the actions that policy (almost) never takes; rows logged before it
was recorded hold NaN there.

`BanditLog` and `Candidate` validate on construction and raise `InvalidBanditLog` naming the
field. `check_propensities` instead counts the problems in raw logged distributions, so the
cockpit can show them: it raises only on a caller's mistake (shapes), never on bad values.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

SUM_TOLERANCE = 1e-6
"""How far a probability distribution's total may be from 1 (float32 storage rounds at ~1e-7)."""

PROPENSITY_FLOOR = 0.01
"""Probabilities below this are 'almost never': an action chosen with one weighs over 100."""


class InvalidBanditLog(ValueError):
    """Arrays that cannot be a bandit log or a candidate policy; `field` names the offending one."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _frozen(values: Any, dtype: type, field: str, ndim: int) -> NDArray[Any]:
    """`values` as a read-only array of `dtype` with `ndim` dimensions (a view when no cast is needed)."""
    try:
        array: NDArray[Any] = np.asarray(values, dtype=dtype).view()
    except (TypeError, ValueError) as error:
        raise InvalidBanditLog(field, f"must be numeric, got {error}") from None
    if array.ndim != ndim:
        raise InvalidBanditLog(field, f"must have {ndim} dimension(s), got shape {array.shape}")
    array.flags.writeable = False
    return array


def _refuse(field: str, bad: NDArray[np.bool_], values: NDArray[Any], rule: str) -> None:
    """Raise naming the field, how many rows break `rule`, and the first of them."""
    if bad.any():
        rows = np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))
        first = values[rows[0]]
        raise InvalidBanditLog(field, f"{len(rows)} row(s) break the rule ({rule}); first: row {rows[0]} = {first}")


def _check_distributions(field: str, p: FloatArray, known: NDArray[np.bool_] | None = None) -> None:
    """Rows of `p` (those marked `known`, when given) must be probability distributions."""
    inside = (p >= 0) & (p <= 1)  # NaN and ±inf fail
    if known is not None:
        inside |= ~known[:, None]
    rule = "probabilities in [0, 1]" + ("" if known is None else ", or a whole row of NaN for 'not logged'")
    _refuse(field, ~inside, p, rule)
    off = np.abs(np.einsum("ij->i", p) - 1.0) > SUM_TOLERANCE  # einsum: 3x faster than sum over a short axis
    _refuse(field, off if known is None else off & known, p, f"each row sums to 1 within {SUM_TOLERANCE:g}")


def _time_key(values: Any) -> NDArray[Any]:
    """Times as a read-only array that sorts in time order: numbers or datetimes (not NaN/NaT).

    Python datetimes (an object array) become POSIX seconds: only their order matters here.
    """
    array = np.asarray(values)
    if array.dtype == object:
        try:
            array = np.array([t.timestamp() for t in array.ravel()]).reshape(array.shape)
        except (AttributeError, TypeError, ValueError, OverflowError):
            raise InvalidBanditLog("time", "must be numbers or datetimes") from None
    if array.dtype.kind not in "iufM":
        raise InvalidBanditLog("time", f"must be numbers or datetimes, got {array.dtype}")
    if array.ndim != 1:
        raise InvalidBanditLog("time", f"must have 1 dimension(s), got shape {array.shape}")
    missing = np.isnat(array) if array.dtype.kind == "M" else ~np.isfinite(array)
    _refuse("time", missing, array, "a time on every row")
    array = array.view()
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)  # arrays: equal by identity, as ndarray == would not give a bool
class BanditLog:
    """Logged decisions of one logging policy over K actions, validated on construction.

    `actions` names the K actions (column order of every (n, K) array); `action` holds each
    decision's chosen index, `propensity` the logging probability of that choice (in (0, 1]),
    `reward` the outcome, `time` numbers or datetimes, `context` an (n, d) float matrix (d may
    be 0). `logging`, when given, is the logging policy's full (n, K) distribution, a row of NaN
    where it was not logged; its entry for the chosen action must equal `propensity`. `policy`
    names the logging policy in sentences ("the rules"). Array-likes (lists, polars Series) are
    accepted and stored as read-only numpy arrays: views of the caller's arrays where no
    conversion is needed (no copy of 1M rows), so do not change those afterwards.
    """

    actions: tuple[str, ...]
    action: IntArray
    propensity: FloatArray
    reward: FloatArray
    time: NDArray[Any]
    context: FloatArray
    logging: FloatArray | None = None
    policy: str = "logging policy"

    def __post_init__(self) -> None:
        actions = () if isinstance(self.actions, str) else tuple(self.actions)
        if not actions or len(set(actions)) != len(actions) or not all(isinstance(a, str) for a in actions):
            raise InvalidBanditLog("actions", f"must be distinct names, at least one, got {self.actions!r}")
        self._set("actions", actions)
        action = np.asarray(self.action)
        if action.size == 0:
            raise InvalidBanditLog("action", "the log has no decisions")
        if action.dtype.kind not in "iu":
            raise InvalidBanditLog("action", f"must hold action indices (integers), got {action.dtype}")
        self._set("action", _frozen(action, np.int64, "action", 1))
        n, k = len(self.action), len(actions)
        _refuse("action", (self.action < 0) | (self.action >= k), self.action, f"an index in 0..{k - 1}")
        for name in ("propensity", "reward"):
            self._set(name, _frozen(getattr(self, name), np.float64, name, 1))
        self._set("time", _time_key(self.time))
        self._set("context", _frozen(self.context, np.float64, "context", 2))
        for name in ("propensity", "reward", "time", "context"):
            if len(getattr(self, name)) != n:
                raise InvalidBanditLog(name, f"has {len(getattr(self, name))} rows, action has {n}")
        _refuse(
            "propensity",
            ~((self.propensity > 0) & (self.propensity <= 1)),
            self.propensity,
            "the chosen action's logging probability is in (0, 1]",
        )
        _refuse("reward", ~np.isfinite(self.reward), self.reward, "a finite reward")
        _refuse("context", ~np.isfinite(self.context), self.context, "finite features")
        if self.logging is not None:
            self._set("logging", self._checked_logging(n, k))

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # frozen: only validation stores the coerced arrays

    def _checked_logging(self, n: int, k: int) -> FloatArray:
        logging = _frozen(self.logging, np.float64, "logging", 2)
        if logging.shape != (n, k):
            raise InvalidBanditLog("logging", f"must be ({n}, {k}), decisions × actions, got {logging.shape}")
        known = ~np.isnan(logging).all(axis=1)
        _check_distributions("logging", logging, known)
        chosen = logging[np.arange(n), self.action]
        _refuse(
            "logging",
            known & (np.abs(chosen - self.propensity) > SUM_TOLERANCE),
            chosen,
            "the chosen action's entry equals its propensity",
        )
        return logging

    @functools.cached_property
    def chosen(self) -> IntArray:
        """Flat index of each decision's chosen entry in a C-ordered (n, K) array: i·K + a_i."""
        return np.arange(self.n, dtype=np.int64) * self.k + self.action

    @property
    def n(self) -> int:
        """Number of logged decisions."""
        return len(self.action)

    @property
    def k(self) -> int:
        """Number of actions."""
        return len(self.actions)


@dataclass(frozen=True, eq=False)
class Candidate:
    """A policy to evaluate: its (n, K) action probabilities at each logged decision's context.

    Each row is a distribution over the log's actions (a deterministic policy puts 1 on its
    choice). `name` is used in sentences ("the propensity model").
    """

    name: str
    probabilities: FloatArray

    def __post_init__(self) -> None:
        field = f"candidate {self.name!r}: probabilities"
        probabilities = _frozen(self.probabilities, np.float64, field, 2)
        _check_distributions(field, probabilities)
        object.__setattr__(self, "probabilities", probabilities)


@dataclass(frozen=True)
class PropensityIntegrity:
    """Counts of logged decisions whose propensities cannot be trusted, for the cockpit.

    `problems` counts rows with at least one of: malformed (an action index outside the
    distribution, a NaN amid numbers, a probability outside [0, 1]), a distribution not summing
    to 1, a chosen action with probability 0, a propensity that differs from the distribution's
    entry for the chosen action. `below_floor` (a positive probability under the floor) is a
    warning, not a problem: such actions weigh heavily when chosen. `unknown` rows carry no
    distribution (logged before distributions were).
    """

    rows: int
    unknown: int
    malformed: int
    not_summing_to_one: int
    chosen_zero: int
    mismatched: int
    below_floor: int
    problems: int
    floor: float


def check_propensities(
    action: Any,
    propensity: Any,
    distribution: Any | None = None,
    floor: float = PROPENSITY_FLOOR,
    tolerance: float = SUM_TOLERANCE,
) -> PropensityIntegrity:
    """Count the rows of raw logged propensities that break the rules `BanditLog` enforces.

    `action` (n,) chosen indices, `propensity` (n,) the logged probability of each choice,
    `distribution` (n, K) the logged distributions (a NaN row: not logged) or None when the log
    has none. Raises `InvalidBanditLog` only for shapes that do not fit together.
    """
    m = _integrity_masks(action, propensity, distribution, floor, tolerance)
    return PropensityIntegrity(
        rows=len(m["unknown"]),
        unknown=int(m["unknown"].sum()),
        malformed=int(m["malformed"].sum()),
        not_summing_to_one=int(m["summing"].sum()),
        chosen_zero=int(m["zero"].sum()),
        mismatched=int(m["mismatched"].sum()),
        below_floor=int(m["below"].sum()),
        problems=int(m["problems"].sum()),
        floor=floor,
    )


def propensity_problems(
    action: Any,
    propensity: Any,
    distribution: Any | None = None,
    tolerance: float = SUM_TOLERANCE,
) -> NDArray[np.bool_]:
    """(n,) True on the rows `check_propensities` counts as problems: those `BanditLog` refuses."""
    return _integrity_masks(action, propensity, distribution, PROPENSITY_FLOOR, tolerance)["problems"]


def _integrity_masks(
    action: Any, propensity: Any, distribution: Any | None, floor: float, tolerance: float
) -> dict[str, NDArray[np.bool_]]:
    """Per row, each problem of `check_propensities` (and `problems`, their union)."""
    a = np.asarray(action)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise InvalidBanditLog("action", f"must be a 1-dimensional array of integers, got {a.dtype} {a.shape}")
    p = np.asarray(propensity, dtype=np.float64)
    if p.shape != a.shape:
        raise InvalidBanditLog("propensity", f"must have shape {a.shape} like action, got {p.shape}")
    if not 0 <= floor <= 1:
        raise InvalidBanditLog("floor", f"must be in [0, 1], got {floor!r}")
    n = len(a)
    unknown: NDArray[np.bool_] = np.ones(n, bool)
    malformed, zero = ~((p >= 0) & (p <= 1)), p == 0  # NaN is malformed
    summing, mismatched, below = np.zeros(n, bool), np.zeros(n, bool), (p > 0) & (p < floor)
    if distribution is not None:
        d = np.asarray(distribution, dtype=np.float64)
        if d.ndim != 2 or len(d) != n or d.shape[1] == 0:
            raise InvalidBanditLog("distribution", f"must be ({n}, K) like action, K >= 1, got {d.shape}")
        unknown = np.logical_and.reduce(np.isnan(d), axis=1)
        known, inside = ~unknown, (a >= 0) & (a < d.shape[1])
        chosen = d[np.arange(n), np.where(inside, a, 0)]
        bad_entries = known & (~((d >= 0) & (d <= 1))).any(axis=1)
        malformed |= ~inside | (known & bad_entries)  # an action outside the actions, logged or not
        summing = known & ~bad_entries & (np.abs(d.sum(axis=1) - 1.0) > tolerance)
        zero |= known & inside & (chosen == 0)
        mismatched = known & inside & ~malformed & (np.abs(chosen - p) > tolerance)
        below = np.where(known, ((d > 0) & (d < floor)).any(axis=1), below)
    else:
        malformed |= a < 0
    return {
        "unknown": unknown,
        "malformed": malformed,
        "summing": summing,
        "zero": zero,
        "mismatched": mismatched,
        "below": below,
        "problems": malformed | summing | zero | mismatched,
    }
