"""The statistics engine: experiment comparisons from per-arm sufficient statistics.

Everything here works on sums the warehouse can produce in one GROUP BY (n, Σx, Σx², and for
CUPED or ratio metrics a second variable's sums and the cross sum), so no raw rows ever leave
SQL. The work is vectorised: `compare_many` evaluates a whole batch of control/variant pairs
with numpy, and `compare` is the batch of one.

Intervals are always-valid by default (an asymptotic confidence sequence, Waudby-Smith et al.,
"Time-uniform central limit theory and asymptotic confidence sequences", 2023, two-sided normal
mixture), because the cockpit shows results every day and a fixed-horizon interval peeked at
daily declares false winners far more often than alpha. `method="fixed"` (Welch) stays available.
Every formula is written out, with its reference, in docs/statistics.md.

The module imports numpy alone: the normal distribution and the chi-square of the sample-ratio
check have closed forms in the standard library, so only a fixed-horizon request (Student's t)
loads scipy, on first use. That keeps `momento analyze` starting in a fraction of a second.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Literal, cast, get_args

import numpy as np

MetricType = Literal["mean", "proportion", "ratio"]
Method = Literal["sequential", "fixed"]
Status = Literal["ok", "not_enough_data"]
Action = Literal["ship", "stop", "keep_running", "investigate"]
Verdict = Literal["passed", "failed", "inconclusive"]
Correction = Literal["bh", "holm"]
PValueKind = Literal["always_valid", "fixed_horizon"]

DEFAULT_TUNING_N = 5_000
"""Planned units per arm at which the sequential interval is tightest (it is valid at every n)."""

DEFAULT_CORRECTION: Correction = "bh"
"""The one multiple-testing policy: Benjamini–Hochberg over the family of tested comparisons."""

SRM_THRESHOLD = 0.001
"""Sample-ratio-mismatch p-values below this flag a broken split (strict: SRM is checked daily)."""

MIN_EVENTS = 10
"""A proportion needs at least this many events (units whose 0/1 value is 1) *and* non-events in
every arm before its normal-approximation interval is shown (docs/statistics.md, "Rare events")."""

_TOLERANCE = 1e-9  # relative rounding slack before a sum is called impossible
_FLAT = 1e-12  # a centred second moment below this share of Σx² is zero (rounding of a constant)
_COLUMNS = (  # ArmStats' numeric fields, in order
    "n",
    "sum",
    "sum_squares",
    "pre_sum",
    "pre_sum_squares",
    "sum_product",
    "denominator_sum",
    "denominator_sum_squares",
)
_COVARIATE = ("pre_sum", "pre_sum_squares", "sum_product")


class InvalidStats(ValueError):
    """Numbers that cannot be sufficient statistics at all (as opposed to too few of them).

    `field` names the offending argument or ArmStats field; `arm` the arm's name when it is one.
    """

    def __init__(self, field: str, message: str, arm: str | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.arm = arm


@dataclass(frozen=True)
class ArmStats:
    """Sufficient statistics of one arm, as one SQL aggregate returns them.

    For proportions `sum` counts converted units and `sum_squares` equals `sum`. For CUPED the
    `pre_*` fields describe the pre-exposure covariate and `sum_product` is Σ metric·covariate;
    for ratio metrics the `denominator_*` fields describe the denominator and `sum_product` is
    Σ numerator·denominator (one row per randomisation unit in both cases).
    """

    name: str
    n: int
    sum: float
    sum_squares: float
    pre_sum: float | None = None
    pre_sum_squares: float | None = None
    sum_product: float | None = None
    denominator_sum: float | None = None
    denominator_sum_squares: float | None = None
    expected_share: float | None = None

    def __post_init__(self) -> None:
        if type(self.n) is not int and (isinstance(self.n, bool) or not isinstance(self.n, Integral)):
            raise InvalidStats("n", f"arm {self.name!r}: n must be an integer, got {self.n!r}", self.name)
        if self.n < 0:
            raise InvalidStats("n", f"arm {self.name!r}: n must be >= 0, got {self.n}", self.name)
        for name in (*_COLUMNS[1:], "expected_share"):
            value = getattr(self, name)
            if value is None and name not in ("sum", "sum_squares"):
                continue
            if type(value) is float and math.isfinite(value):  # the common case, without the ABC check
                continue
            if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
                raise InvalidStats(name, f"arm {self.name!r}: {name} must be a finite number, got {value!r}", self.name)
        if self.expected_share is not None and self.expected_share <= 0:
            raise InvalidStats("expected_share", f"arm {self.name!r}: expected_share must be > 0", self.name)

    @property
    def has_covariate(self) -> bool:
        """Whether CUPED can use this arm (all three covariate sums are present)."""
        return self.pre_sum is not None and self.pre_sum_squares is not None and self.sum_product is not None


@dataclass(frozen=True)
class NormalPrior:
    """Normal prior on the absolute effect (metric units) for the Bayesian summaries."""

    mean: float
    sd: float


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval and p-value (None where undefined)."""

    estimate: float | None = None
    ci_lower: float | None = None
    ci_upper: float | None = None
    p_value: float | None = None
    se: float | None = None

    def scaled(self, factor: float) -> Estimate:
        """The same estimate in units a non-negative `factor` times larger (p-value unchanged)."""

        def times(value: float | None) -> float | None:
            return None if value is None else value * factor

        return Estimate(times(self.estimate), times(self.ci_lower), times(self.ci_upper), self.p_value, times(self.se))


@dataclass(frozen=True)
class Cuped:
    """The CUPED adjustment used: pooled slope and how much it shrank the variance of the difference."""

    theta: float | None
    variance_reduction: float | None


class JsonMixin:
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: non-finite numbers become None, so json.dumps(allow_nan=False) works."""
        return _json_safe(self)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Comparison(JsonMixin):
    """One variant against the control on one metric.

    `control_mean` and `variant_mean` are the arms' observed means (Σ/n, or Σ/Σ for a ratio);
    `absolute` is the (CUPED-adjusted) difference variant − control in metric units; `relative`
    is that difference divided by |control_mean|, so its sign is the sign of the change whatever
    the sign of the metric, and it is left empty (with the reason in `reason`) when the control
    mean is not clearly away from zero. p-values are of the absolute difference being zero;
    `p_value_kind` says which kind: "always_valid" (sequential: the smallest alpha at which the
    confidence sequence excludes 0 — it stays at 1 until the evidence is strong and may be read
    at every look) or "fixed_horizon" (Welch; valid for one look at a planned sample size).
    """

    control: str
    variant: str
    metric_type: MetricType
    method: Method
    alpha: float
    status: Status
    reason: str
    n_control: int
    n_variant: int
    control_mean: float | None = None
    variant_mean: float | None = None
    absolute: Estimate = Estimate()
    relative: Estimate = Estimate()
    chance_to_win: float | None = None
    expected_loss: float | None = None
    cuped: Cuped | None = None
    p_value_kind: PValueKind = "always_valid"
    sequential_tuning_n: float | None = None


@dataclass(frozen=True)
class SrmResult(JsonMixin):
    """Chi-square goodness of fit of the observed split to the configured allocation."""

    chi2: float
    p_value: float | None
    df: int
    ok: bool
    threshold: float


@dataclass(frozen=True)
class GuardrailResult(JsonMixin):
    """Non-inferiority verdict for one guardrail metric on one variant.

    Judged on the absolute scale: the tolerated harm is `margin_absolute` = margin × |control
    mean| in metric units, and `bound_absolute` is the worst plausible difference (the interval's
    end on the bad side). `bound` is that worst case as a share of |control mean| (None when the
    control mean is 0), for display next to the relative `margin`.
    """

    name: str
    variant: str
    verdict: Verdict
    passed: bool
    bound: float | None
    margin: float
    reason: str
    bound_absolute: float | None = None
    margin_absolute: float | None = None


@dataclass(frozen=True)
class Recommendation(JsonMixin):
    """What to do with the experiment, in plain words."""

    action: Action
    reason: str


@dataclass(frozen=True)
class IncrementalValue(JsonMixin):
    """Value created for the exposed population versus the global holdout."""

    status: Status
    reason: str
    users_exposed: int
    per_user: Estimate
    total: Estimate


@dataclass(frozen=True)
class LiftPoint(JsonMixin):
    """Cumulative relative lift up to one point in time."""

    label: str
    status: Status
    n_control: int
    n_variant: int
    relative: Estimate


@dataclass(frozen=True)
class SegmentEffect(JsonMixin):
    """One segment's comparison, with its Benjamini–Hochberg-adjusted p-value and the interval at
    the FCR-adjusted level; `flagged` when that adjusted interval excludes zero."""

    segment: str
    comparison: Comparison
    adjusted_p_value: float | None
    adjusted: Estimate
    adjusted_relative: Estimate
    flagged: bool


@dataclass(frozen=True)
class SegmentAnalysis(JsonMixin):
    """Segment effects adjusted for how many were looked at (see `segment_effects`)."""

    looked_at: int
    """Comparisons with a p-value (segments × variants with enough data): the family size m."""
    flagged: int
    """Segment effects selected by BH at `alpha`, R; exactly the rows with `flagged`."""
    alpha: float
    adjusted_alpha: float
    """max(R, 1) · alpha / m: the level of the adjusted intervals (Benjamini & Yekutieli 2005)."""
    effects: list[SegmentEffect]


# ---------------------------------------------------------------------------------------------
# Distributions: the normal in closed form (standard library), Student's t from scipy on demand.

_NORMAL = statistics.NormalDist()
_erfc = np.frompyfunc(math.erfc, 1, 1)  # elementwise math.erfc (cheaper per call than np.vectorize)


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    return 0.5 * np.asarray(_erfc(-np.asarray(z, dtype=float) / math.sqrt(2.0)), dtype=float)


def _t_quantile(df: np.ndarray, q: float) -> np.ndarray:
    """Student's t quantile; the normal one where every df is infinite (no scipy needed)."""
    if np.all(np.isinf(df)):
        return np.full(np.shape(df), _NORMAL.inv_cdf(q))
    from scipy import special

    return np.asarray(special.stdtrit(df, q), dtype=float)


def _t_sf(df: np.ndarray, x: np.ndarray) -> np.ndarray:
    """P(T_df > x); the normal tail where every df is infinite."""
    if np.all(np.isinf(df)):
        return 1.0 - _normal_cdf(x)
    from scipy import special

    return np.asarray(special.stdtr(df, -x), dtype=float)


def _chi2_sf(x: float, df: int) -> float:
    """P(χ²_df > x) for a whole number of degrees of freedom, in closed form (Abramowitz &
    Stegun 26.4.4 and 26.4.5): the Poisson tail for even df, the normal tail plus a finite
    series for odd df. Terms are summed in log space so large x cannot overflow."""
    if x <= 0.0:
        return 1.0
    half = x / 2.0
    if df % 2 == 0:
        return min(1.0, sum(math.exp(-half + j * math.log(half) - math.lgamma(j + 1)) for j in range(df // 2)))
    series = sum(math.exp(-half + (j - 0.5) * math.log(half) - math.lgamma(j + 0.5)) for j in range(1, df // 2 + 1))
    return min(1.0, math.erfc(math.sqrt(half)) + series)


# ---------------------------------------------------------------------------------------------
# Interval boundary: one place that turns (estimate, se) into an interval and p-value.


@dataclass(frozen=True)
class _Boundary:
    """Critical multiplier and p-value for either method, evaluated on numpy arrays.

    Sequential: the two-sided normal-mixture asymptotic confidence sequence
    est ± se·sqrt(2(tρ²+1)/(tρ²)·log(sqrt(tρ²+1)/α)), t = total units, with ρ chosen so the
    width is smallest at t* = 2·tuning_n. Its p-value is the α at which that boundary touches 0
    (ρ held fixed), so p ≤ α exactly when the interval excludes 0. `tuning_alpha` (default
    `alpha`) is the α that ρ is tuned for: holding it fixed while `alpha` changes gives intervals
    at other levels that stay dual to the same p-values (the segment adjustment needs that).
    """

    method: Method
    alpha: float
    tuning_n: float
    tuning_alpha: float | None = None

    def _mixture(self, total_n: np.ndarray) -> np.ndarray:
        log_a = -2.0 * math.log(self.tuning_alpha or self.alpha)
        rho2 = (log_a + math.log(log_a + 1.0)) / (2.0 * self.tuning_n)
        return total_n * rho2

    def multiplier(self, total_n: np.ndarray, df: np.ndarray) -> np.ndarray:
        if self.method == "fixed":
            return _t_quantile(df, 1.0 - self.alpha / 2.0)
        a = self._mixture(total_n)
        with np.errstate(divide="ignore"):  # no units yet: the sequence is infinitely wide (inf)
            return cast(np.ndarray, np.sqrt(2.0 * (a + 1.0) / a * np.log(np.sqrt(a + 1.0) / self.alpha)))

    def p_value(self, z: np.ndarray, total_n: np.ndarray, df: np.ndarray) -> np.ndarray:
        if self.method == "fixed":
            return 2.0 * _t_sf(df, np.abs(z))
        a = self._mixture(total_n)
        return cast(np.ndarray, np.minimum(1.0, np.sqrt(a + 1.0) * np.exp(-(z**2) * a / (2.0 * (a + 1.0)))))


def critical_value(
    total_n: float,
    alpha: float,
    method: Method = "sequential",
    sequential_tuning_n: float = DEFAULT_TUNING_N,
    df: float = math.inf,
) -> float:
    """The multiplier m of the standard error in the interval est ± m·se at `total_n` units (both
    arms together): the confidence sequence's for "sequential", Student's t (normal at infinite
    `df`) for "fixed". Power planning uses the very boundary the comparisons use."""
    _check_arguments("mean", alpha, method, sequential_tuning_n, None)
    boundary = _Boundary(method, alpha, sequential_tuning_n)
    return float(boundary.multiplier(np.array([float(total_n)]), np.array([float(df)]))[0])


@dataclass(frozen=True)
class _Interval:
    estimate: np.ndarray
    se: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    p_value: np.ndarray

    def rows(self) -> list[Estimate]:
        """Per-row Estimate, non-finite parts as None."""
        parts = (self.estimate, self.lower, self.upper, self.p_value, self.se)
        return [Estimate(*row) for row in zip(*map(_floats, parts))]


def _interval(estimate: np.ndarray, se: np.ndarray, half: np.ndarray, p_value: np.ndarray) -> _Interval:
    return _Interval(estimate, se, estimate - half, estimate + half, p_value)


# ---------------------------------------------------------------------------------------------
# Per-arm moments, vectorised over a batch of arms.

_SHORTAGES: dict[int, Callable[[ArmStats], str]] = {
    1: lambda a: f"has {a.n} unit(s); at least 2 per arm are needed",
    2: lambda a: "has denominator_sum 0, so its ratio is undefined",
    3: lambda a: (
        f"has {a.sum:g} event(s) and {a.n - a.sum:g} non-event(s); at least {MIN_EVENTS} of each per arm "
        "are needed before a normal-approximation interval means anything"
    ),
    4: lambda a: (
        "has no variation (every unit has the same value, or for a ratio the same ratio), so its "
        "uncertainty cannot be estimated yet"
    ),
}
"""Why an arm cannot be compared yet: data that is possible but too little (codes ordered most basic first)."""


def _columns(arms: Sequence[ArmStats]) -> dict[str, np.ndarray]:
    """One float array per field across the arms; absent optional fields become NaN."""
    return {c: np.array([getattr(a, c) for a in arms], dtype=float) for c in _COLUMNS}


def _comoment(n: np.ndarray, s1: np.ndarray, s2: np.ndarray, s12: np.ndarray) -> np.ndarray:
    """Σ(x−x̄)(y−ȳ) from raw sums (the mean taken first, so a large Σ cannot overflow its square)."""
    return cast(np.ndarray, s12 - s1 / n * s2)


def _negative(m2: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """A centred second moment that is negative beyond rounding error."""
    return cast(np.ndarray, m2 < -_TOLERANCE * np.maximum(np.abs(scale), 1.0))


def _flat(m2: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """A centred second moment that is zero up to rounding (every unit has the same value)."""
    return cast(np.ndarray, np.isfinite(m2) & (m2 <= _FLAT * np.abs(scale)))


def _schwarz_broken(cxy: np.ndarray, vx: np.ndarray, vy: np.ndarray) -> np.ndarray:
    return cast(np.ndarray, cxy**2 > vx * vy * (1.0 + 1e-6) + _TOLERANCE)


@dataclass(frozen=True)
class _Arms:
    """Per-arm moments: the metric's mean and unit variance (Var(mean) = var / n; for ratio metrics
    the delta-method linearisation), the covariate's unit variance, its unit covariance with the
    metric and its mean (NaN without a covariate), and the first shortage code (0: none)."""

    n: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    x_var: np.ndarray
    xy_cov: np.ndarray
    x_mean: np.ndarray
    shortage: np.ndarray


def _arms(arms: Sequence[ArmStats], metric_type: MetricType) -> _Arms:
    """Moments of each arm; raises `InvalidStats` naming the field of any impossible number."""
    col = _columns(arms)
    n, s, ss = col["n"], col["sum"], col["sum_squares"]
    m2 = _comoment(n, s, s, ss)
    impossible = (
        [  # most specific first: a proportion's count is checked before its sum of squares
            ((s < 0) | (s > n), "sum", "a conversion count must lie in 0..n"),
            (np.abs(s - np.round(s)) > _TOLERANCE * np.maximum(s, 1.0), "sum", "a conversion count must be whole"),
            (
                np.abs(ss - s) > _TOLERANCE * np.maximum(s, 1.0),
                "sum_squares",
                "a proportion's sum_squares must equal its sum (x² = x for 0/1 values)",
            ),
        ]
        if metric_type == "proportion"
        else []
    )
    impossible.append((_negative(m2, ss), "sum_squares", "sum_squares is below sum²/n, which no real data can produce"))
    mean, var, spread, scale = s / n, np.maximum(m2, 0.0) / (n - 1), m2, ss
    if metric_type == "ratio":
        d, dd = col["denominator_sum"], col["denominator_sum_squares"]
        dm2, cm2 = _comoment(n, d, d, dd), _comoment(n, s, d, col["sum_product"])
        impossible += [
            (
                _negative(dm2, dd),
                "denominator_sum_squares",
                "denominator_sum_squares is below denominator_sum²/n, which no real data can produce",
            ),
            (
                _schwarz_broken(cm2, m2, dm2),
                "sum_product",
                "sum_product is inconsistent with the sums of squares (|covariance| above both deviations)",
            ),
        ]
        mean = s / d  # ratio of sums; its delta-method unit variance is Var(x − R·y) / ȳ²
        spread = m2 - mean * (2 * cm2 - mean * dm2)  # products ordered so no square overflows first
        var, scale = np.maximum(spread, 0.0) / (n - 1) / (d / n) ** 2, ss + mean * (mean * dd)
    x, xx = col["pre_sum"], col["pre_sum_squares"]
    xm2, xym2 = _comoment(n, x, x, xx), _comoment(n, s, x, col["sum_product"])  # NaN without a covariate
    impossible += [
        (_negative(xm2, xx), "pre_sum_squares", "pre_sum_squares is below pre_sum²/n, which no real data can produce"),
        (
            _schwarz_broken(xym2, xm2, m2),
            "sum_product",
            "sum_product is inconsistent with the sums of squares (|covariance| above both deviations)",
        ),
    ]
    _raise_first(impossible, arms)
    xm2 = np.where(_flat(xm2, xx), 0.0, np.maximum(xm2, 0.0))  # a constant covariate carries no information
    shortage = _first_code(
        [
            (1, n < 2),
            (2, metric_type == "ratio" and col["denominator_sum"] == 0),
            (3, metric_type == "proportion" and ((s < MIN_EVENTS) | (n - s < MIN_EVENTS))),
            (4, _flat(spread, scale)),
        ],
        n.shape,
    )
    return _Arms(n, mean, var, xm2 / (n - 1), xym2 / (n - 1), x / n, shortage)


def _raise_first(checks: list[tuple[np.ndarray, str, str]], arms: Sequence[ArmStats]) -> None:
    """Raise for the first failing check (in order), naming its field and the first arm failing it."""
    for failed, field, message in checks:
        if np.any(failed):
            arm = arms[int(np.argmax(failed))]
            raise InvalidStats(field, f"arm {arm.name!r}: {message} (got {field} = {getattr(arm, field)!r})", arm.name)


def _first_code(checks: list[tuple[int, Any]], shape: tuple[int, ...]) -> np.ndarray:
    """Per row, the lowest code among failing checks (codes are ordered most basic first)."""
    code = np.zeros(shape, dtype=int)
    for value, failed in sorted(checks, key=lambda check: -check[0]):
        code[np.asarray(failed, dtype=bool) & np.ones(shape, dtype=bool)] = value
    return code


def _theta(c: _Arms, v: _Arms) -> np.ndarray:
    """CUPED's θ pooled within arms: Σ_arms Σ(x−x̄)(y−ȳ) / Σ_arms Σ(x−x̄)², the OLS slope of y on x
    with an arm dummy (ANCOVA), so the adjusted difference equals the regression's treatment
    coefficient. 0 for rows without a covariate or with a constant one."""
    sxx = (c.n - 1) * c.x_var + (v.n - 1) * v.x_var
    sxy = (c.n - 1) * c.xy_cov + (v.n - 1) * v.xy_cov
    return np.where((sxx > 0) & np.isfinite(sxy), sxy / sxx, 0.0)


def _residual_var(a: _Arms, theta: np.ndarray, weight: np.ndarray | float = 1.0) -> np.ndarray:
    """Unit variance of weight·y − θ·x within one arm (the plain variance when θ = 0)."""
    extra = np.where(theta != 0.0, theta * (theta * a.x_var - 2.0 * weight * a.xy_cov), 0.0)
    return np.maximum(weight**2 * a.var + extra, 0.0)


def _welch_df(c_var: np.ndarray, c_n: np.ndarray, v_var: np.ndarray, v_n: np.ndarray) -> np.ndarray:
    """Welch–Satterthwaite degrees of freedom, written in variance shares so tiny variances cannot underflow."""
    a, b = c_var / c_n, v_var / v_n
    wa, wb = a / (a + b), b / (a + b)
    return cast(np.ndarray, 1.0 / (wa**2 / (c_n - 1) + wb**2 / (v_n - 1)))


# ---------------------------------------------------------------------------------------------
# Comparisons


@dataclass(frozen=True)
class _Batch:
    """A batch of comparisons with the arrays behind them (for intervals at other levels)."""

    comparisons: list[Comparison]
    total_n: np.ndarray
    df: np.ndarray
    absolute: _Interval
    relative: _Interval
    relative_defined: np.ndarray


def compare(
    control: ArmStats,
    variant: ArmStats,
    metric_type: MetricType,
    alpha: float = 0.05,
    method: Method = "sequential",
    sequential_tuning_n: float = DEFAULT_TUNING_N,
    prior: NormalPrior | None = None,
) -> Comparison:
    """Compare one variant with the control; see `compare_many` (this is its batch of one)."""
    return compare_many([(control, variant)], metric_type, alpha, method, sequential_tuning_n, prior)[0]


def compare_many(
    pairs: Sequence[tuple[ArmStats, ArmStats]],
    metric_type: MetricType,
    alpha: float = 0.05,
    method: Method = "sequential",
    sequential_tuning_n: float = DEFAULT_TUNING_N,
    prior: NormalPrior | None = None,
) -> list[Comparison]:
    """Compare each (control, variant) pair in one vectorised pass.

    Means and proportions use Welch's unequal-variance difference; ratio metrics the delta
    method on each arm's ratio of sums. The relative lift is the difference over |control mean|,
    its standard error from the delta method, and it gets the same boundary as the absolute one,
    so both are time-uniform in sequential mode; fixed intervals use Student's t with
    Welch–Satterthwaite degrees of freedom (normal for ratio metrics). CUPED is applied when both
    arms carry a covariate. Chance to win and expected loss (of shipping the variant, in metric
    units) come from the normal posterior of the absolute difference under `prior` (flat when
    None). Impossible numbers raise `InvalidStats`; too little data gives `not_enough_data`.
    """
    return _evaluate(pairs, metric_type, alpha, method, sequential_tuning_n, prior).comparisons


def _evaluate(
    pairs: Sequence[tuple[ArmStats, ArmStats]],
    metric_type: MetricType,
    alpha: float,
    method: Method,
    tuning_n: float,
    prior: NormalPrior | None,
) -> _Batch:
    _check_arguments(metric_type, alpha, method, tuning_n, prior)
    for control, variant in pairs:
        _check_fields(control, variant, metric_type)
    controls, variants = [p[0] for p in pairs], [p[1] for p in pairs]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        c, v = _arms(controls, metric_type), _arms(variants, metric_type)
        theta = _theta(c, v)
        c_var, v_var = _residual_var(c, theta), _residual_var(v, theta)
        difference = v.mean - c.mean - np.where(theta != 0.0, theta * (v.x_mean - c.x_mean), 0.0)
        se_abs = np.sqrt(c_var / c.n + v_var / v.n)
        total_n = c.n + v.n
        df = np.full_like(total_n, np.inf) if metric_type == "ratio" else _welch_df(c_var, c.n, v_var, v.n)
        boundary = _Boundary(method, alpha, tuning_n)
        multiplier = boundary.multiplier(total_n, df)
        absolute = _interval(
            difference, se_abs, multiplier * se_abs, boundary.p_value(difference / se_abs, total_n, df)
        )
        # Relative lift D/|μ_c| (μ_c the observed control mean); delta method over the four arm
        # means with θ fixed: ∂/∂ȳ_c = −(1 + D/μ_c)/|μ_c|, ∂/∂x̄_c = θ/|μ_c|, the variant's as for D.
        scale = np.abs(c.mean)
        relative_se = np.sqrt(v_var / v.n + _residual_var(c, theta, 1.0 + difference / c.mean) / c.n) / scale
        relative_estimate = difference / scale
        relative = _interval(
            relative_estimate,
            relative_se,
            multiplier * relative_se,
            boundary.p_value(relative_estimate / relative_se, total_n, df),
        )
        clear_of_zero = scale > multiplier * np.sqrt(c.var / c.n)  # Fieller: the ratio's set is bounded
        relative_defined = clear_of_zero & np.isfinite(relative_estimate) & np.isfinite(relative_se)
        chance, loss = _posterior(difference, se_abs, prior)
        reduction = 1.0 - se_abs**2 / (c.var / c.n + v.var / v.n)
    _raise_overflow(pairs, c, v, absolute, metric_type)
    rows = zip(
        pairs,
        c.shortage.tolist(),
        v.shortage.tolist(),
        _floats(se_abs),
        absolute.rows(),
        relative.rows(),
        relative_defined.tolist(),
        *map(_floats, (c.mean, v.mean, chance, loss, theta, reduction)),
    )
    common: dict[str, Any] = {
        "metric_type": metric_type,
        "method": method,
        "alpha": alpha,
        "p_value_kind": "always_valid" if method == "sequential" else "fixed_horizon",
        "sequential_tuning_n": float(tuning_n) if method == "sequential" else None,
    }
    comparisons = [_comparison(*row, **common) for row in rows]
    return _Batch(comparisons, total_n, df, absolute, relative, relative_defined)


def _raise_overflow(
    pairs: Sequence[tuple[ArmStats, ArmStats]], c: _Arms, v: _Arms, absolute: _Interval, metric_type: MetricType
) -> None:
    """Comparable rows whose difference left floating-point range: an input error, with its field."""
    comparable = (c.shortage == 0) & (v.shortage == 0)
    broken = comparable & ~(np.isfinite(absolute.estimate) & np.isfinite(absolute.se))
    if not broken.any():
        return
    i = int(np.argmax(broken))
    control, variant = pairs[i]
    control_broken = not (np.isfinite(c.mean[i]) and np.isfinite(c.var[i]))
    arm = control if control_broken or c.var[i] / c.n[i] >= v.var[i] / v.n[i] else variant
    field = "denominator_sum" if metric_type == "ratio" else "sum_squares"
    what = "its ratio sum/denominator_sum" if metric_type == "ratio" else "its variance"
    raise InvalidStats(
        field,
        f"arm {arm.name!r}: {what} is beyond floating-point range (got {field} = {getattr(arm, field)!r})",
        arm.name,
    )


def _check_arguments(metric_type: str, alpha: float, method: str, tuning_n: float, prior: NormalPrior | None) -> None:
    if metric_type not in get_args(MetricType):
        raise InvalidStats("metric_type", f"must be one of {get_args(MetricType)}, got {metric_type!r}")
    if method not in get_args(Method):
        raise InvalidStats("method", f"must be one of {get_args(Method)}, got {method!r}")
    if not 0.0 < alpha < 1.0:
        raise InvalidStats("alpha", f"must be in (0, 1), got {alpha!r}")
    if not tuning_n > 0:
        raise InvalidStats("sequential_tuning_n", f"must be > 0, got {tuning_n!r}")
    if prior is not None and not prior.sd > 0:
        raise InvalidStats("prior.sd", f"must be > 0, got {prior.sd!r}")


def _check_fields(control: ArmStats, variant: ArmStats, metric_type: MetricType) -> None:
    """Reject pairs whose fields do not fit the metric type (a caller bug, not a data shortage)."""
    for arm in (control, variant):
        if metric_type == "ratio":
            for name in ("denominator_sum", "denominator_sum_squares", "sum_product"):
                if getattr(arm, name) is None:
                    raise InvalidStats(name, f"arm {arm.name!r}: ratio metrics need {name}", arm.name)
            if arm.pre_sum is not None or arm.pre_sum_squares is not None:
                raise InvalidStats("pre_sum", f"arm {arm.name!r}: ratio metrics do not support CUPED", arm.name)
        elif arm.denominator_sum is not None or arm.denominator_sum_squares is not None:
            raise InvalidStats("denominator_sum", f"arm {arm.name!r}: only ratio metrics take a denominator", arm.name)
        elif not arm.has_covariate and any(getattr(arm, f) is not None for f in _COVARIATE):
            missing = next(f for f in _COVARIATE if getattr(arm, f) is None)
            raise InvalidStats(missing, f"arm {arm.name!r}: CUPED needs all of {', '.join(_COVARIATE)}", arm.name)
    if metric_type != "ratio" and control.has_covariate != variant.has_covariate:
        lacking = variant if control.has_covariate else control
        raise InvalidStats("pre_sum", f"arm {lacking.name!r}: CUPED needs the covariate in both arms", lacking.name)


def _posterior(estimate: np.ndarray, se: np.ndarray, prior: NormalPrior | None) -> tuple[np.ndarray, np.ndarray]:
    """P(variant beats control) and E[max(0, −effect)], normal approximation to the posterior."""
    mean, sd = estimate, se
    if prior is not None:
        precision = 1.0 / se**2 + 1.0 / prior.sd**2
        mean = (estimate / se**2 + prior.mean / prior.sd**2) / precision
        sd = np.sqrt(1.0 / precision)
    z = mean / sd
    density = np.exp(-0.5 * z**2) / math.sqrt(2.0 * math.pi)
    return _normal_cdf(z), sd * density - mean * _normal_cdf(-z)


def _comparison(
    pair: tuple[ArmStats, ArmStats],
    shortage_c: int,
    shortage_v: int,
    se: float | None,
    absolute: Estimate,
    relative: Estimate,
    relative_defined: bool,
    mean_c: float | None,
    mean_v: float | None,
    chance: float | None,
    loss: float | None,
    theta: float | None,
    reduction: float | None,
    **common: Any,
) -> Comparison:
    """Assemble one row of a batch: not_enough_data with the first reason found, else the full result."""
    control, variant = pair
    base: dict[str, Any] = dict(
        control=control.name, variant=variant.name, n_control=int(control.n), n_variant=int(variant.n), **common
    )
    for arm, code in ((control, shortage_c), (variant, shortage_v)):
        if code:
            return Comparison(status="not_enough_data", reason=f"arm {arm.name!r} {_SHORTAGES[code](arm)}", **base)
    if not se:
        return Comparison(status="not_enough_data", reason="no variation is left after the CUPED adjustment", **base)
    return Comparison(
        status="ok",
        reason=""
        if relative_defined
        else (
            f"relative lift undefined: the control mean {mean_c:g} is not clearly "
            "away from zero (its own interval contains 0); absolute reported"
        ),
        control_mean=mean_c,
        variant_mean=mean_v,
        absolute=absolute,
        relative=relative if relative_defined else Estimate(),
        chance_to_win=chance,
        expected_loss=loss,
        cuped=Cuped(theta, reduction) if control.has_covariate else None,
        **base,
    )


# ---------------------------------------------------------------------------------------------
# Experiment-level checks and summaries


def srm_check(
    arms: Sequence[ArmStats], expected_shares: Sequence[float] | None = None, threshold: float = SRM_THRESHOLD
) -> SrmResult:
    """Chi-square test of the arms' unit counts against the configured allocation.

    Shares come from `expected_shares`, else from every arm's `expected_share`, else equal; they
    are normalised. Fewer than two arms, or no units yet, leave nothing to test (ok, p None).
    """
    shares = _shares(arms, expected_shares)
    total = sum(a.n for a in arms)
    if len(arms) < 2 or total == 0:
        return SrmResult(chi2=0.0, p_value=None, df=max(len(arms) - 1, 0), ok=True, threshold=threshold)
    expected = [total * share / math.fsum(shares) for share in shares]
    chi2 = math.fsum((a.n - e) ** 2 / e for a, e in zip(arms, expected))
    p = _chi2_sf(chi2, len(arms) - 1)
    return SrmResult(chi2=chi2, p_value=p, df=len(arms) - 1, ok=p >= threshold, threshold=threshold)


def _shares(arms: Sequence[ArmStats], expected_shares: Sequence[float] | None) -> Sequence[float]:
    if expected_shares is None:
        missing = [a.name for a in arms if a.expected_share is None]
        if len(missing) == len(arms):
            return [1.0] * len(arms)
        if missing:
            raise InvalidStats("expected_share", f"arm {missing[0]!r}: set it on every arm or on none", missing[0])
        expected_shares = [a.expected_share for a in arms]  # type: ignore[misc]
    if len(expected_shares) != len(arms):
        raise InvalidStats("expected_shares", f"{len(expected_shares)} shares for {len(arms)} arms")
    if not all(math.isfinite(s) and s > 0 for s in expected_shares):
        raise InvalidStats("expected_shares", "every share must be a finite number > 0")
    return expected_shares


def adjust_pvalues(p_values: Sequence[float | None], method: Correction = DEFAULT_CORRECTION) -> list[float | None]:
    """Multiple-testing adjustment over the p-values that exist: Benjamini–Hochberg ("bh", step-up,
    false discovery rate) or Holm ("holm", step-down, family-wise error rate).

    The caller passes one family once (docs/statistics.md, "Multiple testing"); None and NaN
    entries (comparisons without enough data) are passed through untouched and do not count as
    tests. Equal to statsmodels' `multipletests(..., "fdr_bh" / "holm")` and scipy's
    `false_discovery_control`, without importing either (each costs a second of start-up).
    """
    if method not in get_args(Correction):
        raise InvalidStats("method", f"must be one of {get_args(Correction)}, got {method!r}")
    out = list(p_values)
    present = [(p, i) for i, p in enumerate(p_values) if p is not None and not math.isnan(p)]
    order = [i for _, i in sorted(present)]  # by p, ties in their given order
    m, running = len(order), 1.0 if method == "bh" else 0.0
    if method == "bh":  # step-up: from the largest p down, p·m/rank, never above the next one
        for rank in range(m, 0, -1):
            running = min(running, p_values[order[rank - 1]] * m / rank)  # type: ignore[operator]
            out[order[rank - 1]] = running
    else:  # step-down: from the smallest p up, p·(m − rank + 1), never below the previous one
        for rank, i in enumerate(order, start=1):
            running = max(running, p_values[i] * (m - rank + 1))  # type: ignore[operator]
            out[i] = min(running, 1.0)
    return out


def non_inferiority(
    comparison: Comparison, margin: float, higher_is_better: bool = True, name: str = "guardrail"
) -> GuardrailResult:
    """Guardrail check: is the variant shown to be no worse than `margin` (relative, e.g. 0.02)?

    Judged on the absolute scale, so the sign of the metric cannot invert it: the tolerated harm
    is margin × |control mean| in metric units. Passes when the interval's bound on the bad side
    stays within it; fails when even the good-side bound is beyond it (harm larger than the
    margin is established); otherwise inconclusive. A comparison without enough data (too few
    units or events) never passes. Uses the comparison's own interval, so sequential comparisons
    give an always-valid guardrail; the two-sided (1−α) interval makes this a one-sided α/2 test.
    """
    if not margin >= 0:
        raise InvalidStats("margin", f"must be >= 0, got {margin!r}")
    diff = comparison.absolute
    base: dict[str, Any] = {"name": name, "variant": comparison.variant, "margin": margin}
    if comparison.status != "ok" or diff.ci_lower is None or diff.ci_upper is None or comparison.control_mean is None:
        why = comparison.reason or "difference unavailable"
        return GuardrailResult(
            verdict="inconclusive", passed=False, bound=None, reason=f"not enough data: {why}", **base
        )
    scale = abs(comparison.control_mean)
    tolerated = margin * scale
    sign = 1.0 if higher_is_better else -1.0
    bad, good = (diff.ci_lower, diff.ci_upper) if higher_is_better else (diff.ci_upper, diff.ci_lower)

    def share(value: float) -> str:
        return f"{value:+.4g} ({value / scale:+.2%} of |control mean|)" if scale else f"{value:+.4g}"

    allowed = f"the margin {tolerated:.4g} ({margin:.2%} of |control mean| {scale:.4g})"
    if sign * bad > -tolerated:
        verdict: Verdict = "passed"
        reason = f"worst plausible change {share(bad)} is within {allowed}"
    elif sign * good < -tolerated:
        verdict = "failed"
        reason = f"even the best plausible change {share(good)} is worse than {allowed}"
    else:
        verdict = "inconclusive"
        reason = f"worst plausible change {share(bad)} could exceed {allowed}; keep collecting"
    return GuardrailResult(
        verdict=verdict,
        passed=verdict == "passed",
        bound=bad / scale if scale else None,
        reason=reason,
        bound_absolute=bad,
        margin_absolute=tolerated,
        **base,
    )


def incremental_value(
    exposed: ArmStats,
    holdout: ArmStats,
    users_exposed: int,
    alpha: float = 0.05,
    method: Method = "sequential",
    sequential_tuning_n: float = DEFAULT_TUNING_N,
) -> IncrementalValue:
    """Value versus the global holdout: (mean per exposed user − mean per holdout user) × users.

    The per-user difference is a mean comparison with the holdout as control; scaling it (and
    its interval) by the exposed population gives the total, e.g. revenue or margin created.
    """
    if isinstance(users_exposed, bool) or not isinstance(users_exposed, Integral) or users_exposed < 0:
        raise InvalidStats("users_exposed", f"must be a non-negative integer, got {users_exposed!r}")
    comp = compare(holdout, exposed, "mean", alpha, method, sequential_tuning_n)
    return IncrementalValue(
        status=comp.status,
        reason=comp.reason,
        users_exposed=int(users_exposed),
        per_user=comp.absolute,
        total=comp.absolute.scaled(float(users_exposed)),
    )


def cumulative(
    series: Sequence[tuple[str, ArmStats, ArmStats]],
    metric_type: MetricType,
    alpha: float = 0.05,
    method: Method = "sequential",
    sequential_tuning_n: float = DEFAULT_TUNING_N,
) -> list[LiftPoint]:
    """Relative lift with its interval at each point of a cumulative series (label, control, variant).

    Sequential intervals are valid at every point simultaneously, so the whole curve can be read.
    """
    comps = compare_many([(c, v) for _, c, v in series], metric_type, alpha, method, sequential_tuning_n)
    return [
        LiftPoint(label, comp.status, comp.n_control, comp.n_variant, comp.relative)
        for (label, _, _), comp in zip(series, comps)
    ]


def recommend(
    comparisons: Sequence[Comparison],
    adjusted_p_values: Sequence[float | None],
    guardrails: Sequence[GuardrailResult] = (),
    srm: SrmResult | None = None,
    higher_is_better: bool = True,
) -> Recommendation:
    """Turn the primary metric's comparisons, guardrails and SRM into one plain-words action.

    `adjusted_p_values` are the comparisons' p-values as adjusted within the experiment's one
    family (`adjust_pvalues` over primary and secondary metrics × variants), so the decision reads
    the same adjusted p-value the results table shows; nothing is adjusted again here.

    Order matters: a broken split invalidates everything (investigate); a failed guardrail stops
    the test; a primary win after multiple-testing correction ships, unless a guardrail of that
    variant is still inconclusive; a significant loss stops; anything else keeps running.
    """
    if len(adjusted_p_values) != len(comparisons):
        raise InvalidStats("adjusted_p_values", f"{len(adjusted_p_values)} p-values for {len(comparisons)} comparisons")
    if srm is not None and not srm.ok:
        return Recommendation(
            "investigate",
            f"sample ratio mismatch (p = {srm.p_value:.2g}): the traffic split is "
            "not what was configured, so no result can be trusted; check assignment and logging",
        )
    failed = [g for g in guardrails if g.verdict == "failed"]
    if failed:
        return Recommendation(
            "stop", "; ".join(f"guardrail {g.name!r} failed for {g.variant!r}: {g.reason}" for g in failed)
        )

    def gain(c: Comparison) -> float:
        return (c.absolute.estimate or 0.0) * (1.0 if higher_is_better else -1.0)

    significant = [
        (c, p) for c, p in zip(comparisons, adjusted_p_values) if c.status == "ok" and p is not None and p <= c.alpha
    ]
    winners = [(c, p) for c, p in significant if gain(c) > 0]
    losers = [(c, p) for c, p in significant if gain(c) < 0]
    if winners:
        best, p = max(winners, key=lambda cp: gain(cp[0]))
        pending = [g for g in guardrails if g.variant == best.variant and g.verdict != "passed"]
        if pending:
            names = ", ".join(repr(g.name) for g in pending)
            return Recommendation(
                "keep_running",
                f"{best.variant!r} wins on the primary metric (adjusted p = {p:.2g}) "
                f"but guardrail {names} is not yet shown non-inferior",
            )
        return Recommendation(
            "ship",
            f"{best.variant!r} beats {best.control!r} on the primary metric ({_describe(best)}, adjusted p = {p:.2g})",
        )
    if losers:
        names = ", ".join(f"{c.variant!r} ({_describe(c)})" for c, _ in losers)
        return Recommendation("stop", f"significantly worse than control after correction: {names}")
    short = [c.variant for c in comparisons if c.status != "ok"]
    if short:
        return Recommendation("keep_running", f"not enough data yet for {', '.join(map(repr, short))}")
    return Recommendation("keep_running", "no significant difference yet; keep collecting data")


def _describe(c: Comparison) -> str:
    """The headline of a comparison: its relative lift where defined, else its absolute difference."""
    rel = c.relative.estimate
    return f"relative lift {rel:+.2%}" if rel is not None else f"absolute difference {c.absolute.estimate:+.4g}"


def segment_effects(
    cells: Sequence[tuple[str, ArmStats, ArmStats]],
    metric_type: MetricType,
    alpha: float = 0.05,
    method: Method = "sequential",
    sequential_tuning_n: float = DEFAULT_TUNING_N,
) -> SegmentAnalysis:
    """Per-segment comparisons (segment label, control, variant) adjusted for how many were looked at.

    Looking at many segments finds "effects" by chance, so the cells form one family: their
    p-values are adjusted by Benjamini–Hochberg, and each cell's interval is recomputed at the
    false-coverage-rate level of Benjamini & Yekutieli (2005): with m cells looked at and R
    selected by BH at `alpha`, the level is 1 − max(R, 1)·alpha/m. A segment effect is flagged
    only when that adjusted interval excludes zero, which happens exactly for the R cells BH
    selects (the sequential boundary keeps its mixture tuned for `alpha`, so intervals and
    p-values stay dual).
    """
    batch = _evaluate([(c, v) for _, c, v in cells], metric_type, alpha, method, sequential_tuning_n, None)
    raw = [c.absolute.p_value if c.status == "ok" else None for c in batch.comparisons]
    adjusted = adjust_pvalues(raw, "bh")
    looked_at = sum(p is not None for p in raw)
    selected = sum(p is not None and p <= alpha for p in adjusted)
    level = alpha * max(selected, 1) / max(looked_at, 1)
    boundary = _Boundary(method, level, sequential_tuning_n, tuning_alpha=alpha)
    with np.errstate(invalid="ignore"):
        multiplier = boundary.multiplier(batch.total_n, batch.df)
    absolute, relative = batch.absolute, batch.relative
    wide = _interval(absolute.estimate, absolute.se, multiplier * absolute.se, absolute.p_value).rows()
    wide_relative = _interval(relative.estimate, relative.se, multiplier * relative.se, relative.p_value).rows()
    effects = []
    for (label, _, _), comp, p, est, rel, rel_ok in zip(
        cells, batch.comparisons, adjusted, wide, wide_relative, batch.relative_defined.tolist()
    ):
        ok = comp.status == "ok" and est.ci_lower is not None and est.ci_upper is not None
        flagged = ok and (est.ci_lower > 0 or est.ci_upper < 0)
        effects.append(
            SegmentEffect(
                label, comp, p, est if ok else Estimate(), rel if ok and rel_ok else Estimate(), bool(flagged)
            )
        )
    return SegmentAnalysis(looked_at, sum(e.flagged for e in effects), alpha, level, effects)


# ---------------------------------------------------------------------------------------------
# Small helpers


def _num(x: Any) -> float | None:
    """A plain float, or None for NaN/±inf (so nothing non-JSON leaks out)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _floats(a: np.ndarray) -> list[float | None]:
    """`_num` over an array."""
    return [x if math.isfinite(x) else None for x in a.tolist()]


def _json_safe(value: Any) -> Any:
    """Dataclasses (read field by field, without asdict's deep copies), dicts and sequences as
    plain JSON values; the common cases first, since `momento analyze --jsonl` runs this per line."""
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if value is None or kind is str or kind is int or kind is bool:
        return value
    if hasattr(kind, "__dataclass_fields__"):
        return {k: _json_safe(v) for k, v in vars(value).items()}
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.floating):
        return _num(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
