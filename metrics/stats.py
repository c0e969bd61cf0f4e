"""The statistics engine: experiment comparisons from per-arm sufficient statistics.

Everything here works on sums the warehouse can produce in one GROUP BY (n, Σx, Σx², and for
CUPED or ratio metrics a second variable's sums and the cross sum), so no raw rows ever leave
SQL. The work is vectorised: `compare_many` evaluates a whole batch of control/variant pairs
with numpy, and `compare` is the batch of one.

Intervals are always-valid by default (an asymptotic confidence sequence, Waudby-Smith et al.,
"Time-uniform central limit theory and asymptotic confidence sequences", 2023, two-sided normal
mixture), because the cockpit shows results every day and a fixed-horizon interval peeked at
daily declares false winners far more often than alpha. `method="fixed"` (Welch) stays available.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from numbers import Integral, Real
from typing import Any, Literal, get_args

import numpy as np
from scipy import special
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

MetricType = Literal["mean", "proportion", "ratio"]
Method = Literal["sequential", "fixed"]
Status = Literal["ok", "not_enough_data"]
Action = Literal["ship", "stop", "keep_running", "investigate"]
Verdict = Literal["passed", "failed", "inconclusive"]
Correction = Literal["bh", "holm"]

DEFAULT_TUNING_N = 5_000
"""Planned units per arm at which the sequential interval is tightest (it is valid at every n)."""

SRM_THRESHOLD = 0.001
"""Sample-ratio-mismatch p-values below this flag a broken split (strict: SRM is checked daily)."""

_TOLERANCE = 1e-9
_COLUMNS = (  # ArmStats' numeric fields, in order
    "n", "sum", "sum_squares", "pre_sum", "pre_sum_squares", "sum_product",
    "denominator_sum", "denominator_sum_squares")
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
        if isinstance(self.n, bool) or not isinstance(self.n, Integral):
            raise InvalidStats("n", f"arm {self.name!r}: n must be an integer, got {self.n!r}", self.name)
        if self.n < 0:
            raise InvalidStats("n", f"arm {self.name!r}: n must be >= 0, got {self.n}", self.name)
        for name in _COLUMNS[1:] + ("expected_share",):
            value = getattr(self, name)
            if value is None and name not in ("sum", "sum_squares"):
                continue
            if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
                raise InvalidStats(name, f"arm {self.name!r}: {name} must be a finite number, got {value!r}", self.name)
        if self.expected_share is not None and self.expected_share <= 0:
            raise InvalidStats("expected_share", f"arm {self.name!r}: expected_share must be > 0", self.name)

    @property
    def has_covariate(self) -> bool:
        """Whether CUPED can use this arm (all three covariate sums are present)."""
        return all(getattr(self, f) is not None for f in _COVARIATE)


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


class _JsonMixin:
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: non-finite numbers become None, so json.dumps(allow_nan=False) works."""
        return _json_safe(asdict(self))  # type: ignore[call-overload]


@dataclass(frozen=True)
class Comparison(_JsonMixin):
    """One variant against the control on one metric."""

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


@dataclass(frozen=True)
class SrmResult(_JsonMixin):
    """Chi-square goodness of fit of the observed split to the configured allocation."""

    chi2: float
    p_value: float | None
    df: int
    ok: bool
    threshold: float


@dataclass(frozen=True)
class GuardrailResult(_JsonMixin):
    """Non-inferiority verdict for one guardrail metric on one variant."""

    name: str
    variant: str
    verdict: Verdict
    passed: bool
    bound: float | None
    margin: float
    reason: str


@dataclass(frozen=True)
class Recommendation(_JsonMixin):
    """What to do with the experiment, in plain words."""

    action: Action
    reason: str


@dataclass(frozen=True)
class IncrementalValue(_JsonMixin):
    """Value created for the exposed population versus the global holdout."""

    status: Status
    reason: str
    users_exposed: int
    per_user: Estimate
    total: Estimate


@dataclass(frozen=True)
class LiftPoint(_JsonMixin):
    """Cumulative relative lift up to one point in time."""

    label: str
    status: Status
    n_control: int
    n_variant: int
    relative: Estimate


# ---------------------------------------------------------------------------------------------
# Interval boundary: one place that turns (estimate, se) into an interval and p-value.


@dataclass(frozen=True)
class _Boundary:
    """Critical multiplier and p-value for either method, evaluated on numpy arrays.

    Sequential: the two-sided normal-mixture asymptotic confidence sequence
    est ± se·sqrt(2(tρ²+1)/(tρ²)·log(sqrt(tρ²+1)/α)), t = total units, with ρ chosen so the
    width is smallest at t* = 2·tuning_n. Its p-value is the α at which that boundary touches 0
    (ρ held fixed), so p ≤ α exactly when the interval excludes 0.
    """

    method: Method
    alpha: float
    tuning_n: float

    def _mixture(self, total_n: np.ndarray) -> np.ndarray:
        log_a = -2.0 * math.log(self.alpha)
        rho2 = (log_a + math.log(log_a + 1.0)) / (2.0 * self.tuning_n)
        return total_n * rho2

    def multiplier(self, total_n: np.ndarray, df: np.ndarray) -> np.ndarray:
        if self.method == "fixed":
            return special.stdtrit(df, 1.0 - self.alpha / 2.0)
        a = self._mixture(total_n)
        return np.sqrt(2.0 * (a + 1.0) / a * np.log(np.sqrt(a + 1.0) / self.alpha))

    def p_value(self, z: np.ndarray, total_n: np.ndarray, df: np.ndarray) -> np.ndarray:
        if self.method == "fixed":
            return 2.0 * special.stdtr(df, -np.abs(z))
        a = self._mixture(total_n)
        return np.minimum(1.0, np.sqrt(a + 1.0) * np.exp(-(z**2) * a / (2.0 * (a + 1.0))))


@dataclass(frozen=True)
class _Interval:
    estimate: np.ndarray
    se: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    p_value: np.ndarray

    def rows(self) -> list[tuple[Estimate, bool]]:
        """Per-row Estimate (non-finite parts as None) and whether all of it is finite."""
        parts = (self.estimate, self.lower, self.upper, self.p_value, self.se)
        finite = np.logical_and.reduce([np.isfinite(a) for a in parts]).tolist()
        return list(zip((Estimate(*row) for row in zip(*map(_floats, parts))), finite))


def _interval(
    estimate: np.ndarray, se: np.ndarray, boundary: _Boundary, total_n: np.ndarray, df: np.ndarray
) -> _Interval:
    """The one place an (estimate, standard error) pair becomes an interval and p-value."""
    half = boundary.multiplier(total_n, df) * se
    p = boundary.p_value(estimate / se, total_n, df)
    return _Interval(estimate, se, estimate - half, estimate + half, p)


# ---------------------------------------------------------------------------------------------
# Per-arm moments, vectorised over a batch of arms.

_ARM_PROBLEMS = {
    1: "has {n} unit(s); at least 2 per arm are needed",
    2: "has sum_squares < sum²/n, which no real data can produce",
    3: "has a conversion count outside 0..n, or sum_squares != sum",
    4: "has cross/covariate sums inconsistent with its sums of squares",
    5: "has denominator_sum 0, so its ratio is undefined",
}


def _columns(arms: Sequence[ArmStats]) -> dict[str, np.ndarray]:
    """One float array per field across the arms; absent optional fields become NaN."""
    return {c: np.array([getattr(a, c) for a in arms], dtype=float) for c in _COLUMNS}


def _comoment(n: np.ndarray, s1: np.ndarray, s2: np.ndarray, s12: np.ndarray) -> np.ndarray:
    """Σ(x−x̄)(y−ȳ) from raw sums."""
    return s12 - s1 * s2 / n


def _negative(m2: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """A centred second moment that is negative beyond rounding error."""
    return m2 < -_TOLERANCE * np.maximum(np.abs(scale), 1.0)


def _schwarz_broken(cxy: np.ndarray, vx: np.ndarray, vy: np.ndarray) -> np.ndarray:
    return cxy**2 > vx * vy * (1.0 + 1e-6) + _TOLERANCE


@dataclass(frozen=True)
class _Arms:
    """Per-arm mean of the metric and the unit-level variance such that Var(mean) = var / n."""

    n: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    problem: np.ndarray
    cov_x: np.ndarray  # covariate: Σ(x−x̄)², Σ(x−x̄)(y−ȳ), x̄ (NaN without a covariate)
    cov_xy: np.ndarray
    pre_mean: np.ndarray


def _arms(col: dict[str, np.ndarray], metric_type: MetricType) -> _Arms:
    """Moments of each arm plus the first problem that rules it out (0 when none)."""
    n, s, ss = col["n"], col["sum"], col["sum_squares"]
    m2 = _comoment(n, s, s, ss)
    mean, var = s / n, np.maximum(m2, 0.0) / (n - 1)
    checks = [(1, n < 2), (2, _negative(m2, ss))]
    if metric_type == "proportion":
        checks.append((3, (s < 0) | (s > n) | (np.abs(ss - s) > _TOLERANCE * np.maximum(s, 1.0))))
    if metric_type == "ratio":
        mean, var, ratio_checks = _ratio_moments(col, m2)
        checks += ratio_checks
    x, xx = col["pre_sum"], col["pre_sum_squares"]
    xm2, xym2 = _comoment(n, x, x, xx), _comoment(n, s, x, col["sum_product"])  # NaN without a covariate
    checks.append((4, _negative(xm2, xx) | _schwarz_broken(xym2, xm2, m2)))
    return _Arms(n, mean, var, _first_problem(checks, n.shape), np.maximum(xm2, 0.0), xym2, x / n)


def _ratio_moments(col: dict[str, np.ndarray], m2: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
    """Ratio of sums R = Σx/Σy and its delta-method unit variance Var(x − R·y) / ȳ²."""
    n, s, d, dd = col["n"], col["sum"], col["denominator_sum"], col["denominator_sum_squares"]
    dm2, cm2 = _comoment(n, d, d, dd), _comoment(n, s, d, col["sum_product"])
    ratio = s / d
    var = np.maximum(m2 - 2 * ratio * cm2 + ratio**2 * dm2, 0.0) / (n - 1) / (d / n) ** 2
    return ratio, var, [(2, _negative(dm2, dd)), (4, _schwarz_broken(cm2, m2, dm2)), (5, d == 0)]


def _first_problem(checks: list[tuple[int, np.ndarray]], shape: tuple[int, ...]) -> np.ndarray:
    """Per row, the lowest code among failing checks (codes are ordered most basic first)."""
    problem = np.zeros(shape, dtype=int)
    for code, failed in sorted(checks, key=lambda check: -check[0]):
        problem[failed] = code
    return problem


def _cuped(c: _Arms, v: _Arms) -> tuple[_Arms, _Arms, np.ndarray]:
    """Adjust both arms with θ pooled within arms (the OLS slope of y on x with an arm dummy).

    Means move by θ·(x̄_arm − x̄_pooled), so the difference stays unbiased and the arm means stay
    on the metric's scale. Rows without a covariate (or with a constant one) get θ = 0.
    """
    sxx, sxy = c.cov_x + v.cov_x, c.cov_xy + v.cov_xy
    used = (sxx > 0) & np.isfinite(sxy)
    theta = np.where(used, sxy / sxx, 0.0)
    pooled = (c.pre_mean * c.n + v.pre_mean * v.n) / (c.n + v.n)

    def adjust(a: _Arms) -> _Arms:
        shift = np.where(used, theta * (a.pre_mean - pooled), 0.0)
        extra = np.where(used, (theta**2 * a.cov_x - 2 * theta * a.cov_xy) / (a.n - 1), 0.0)
        return _Arms(a.n, a.mean - shift, np.maximum(a.var + extra, 0.0), a.problem, a.cov_x, a.cov_xy, a.pre_mean)

    return adjust(c), adjust(v), theta


def _welch_df(c: _Arms, v: _Arms) -> np.ndarray:
    """Welch–Satterthwaite degrees of freedom, written in variance shares so tiny variances cannot underflow."""
    a, b = c.var / c.n, v.var / v.n
    wa, wb = a / (a + b), b / (a + b)
    return 1.0 / (wa**2 / (c.n - 1) + wb**2 / (v.n - 1))


# ---------------------------------------------------------------------------------------------
# Comparisons


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
    method on each arm's ratio of means. The relative lift's standard error comes from the delta
    method and gets the same boundary as the absolute one, so both are time-uniform in
    sequential mode; fixed intervals use Student's t with Welch–Satterthwaite degrees of freedom
    (normal for ratio metrics). CUPED is applied when both arms carry a covariate. Chance to win and
    expected loss (of shipping the variant, in metric units) come from the normal posterior of
    the absolute difference under `prior` (flat when None).
    """
    _check_arguments(metric_type, alpha, method, sequential_tuning_n, prior)
    for control, variant in pairs:
        _check_fields(control, variant, metric_type)
    controls, variants = [p[0] for p in pairs], [p[1] for p in pairs]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        c, v = _arms(_columns(controls), metric_type), _arms(_columns(variants), metric_type)
        raw_var = c.var / c.n + v.var / v.n
        c, v, theta = _cuped(c, v)
        total_n = c.n + v.n
        df = np.full_like(total_n, np.inf) if metric_type == "ratio" else _welch_df(c, v)
        boundary = _Boundary(method, alpha, sequential_tuning_n)
        se_abs = np.sqrt(c.var / c.n + v.var / v.n)
        absolute = _interval(v.mean - c.mean, se_abs, boundary, total_n, df)
        se_rel = np.sqrt(v.var / v.n / c.mean**2 + v.mean**2 * (c.var / c.n) / c.mean**4)
        relative = _interval(v.mean / c.mean - 1.0, se_rel, boundary, total_n, df)
        chance, loss = _posterior(absolute.estimate, se_abs, prior)
        reduction = 1.0 - se_abs**2 / raw_var
    columns = zip(pairs, c.problem.tolist(), v.problem.tolist(), absolute.rows(), relative.rows(),
                  *map(_floats, (c.mean, v.mean, chance, loss, theta, reduction)))
    common = dict(metric_type=metric_type, method=method, alpha=alpha)
    return [_comparison(*row, **common) for row in columns]


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
    return special.ndtr(z), sd * density - mean * special.ndtr(-z)


def _comparison(
    pair: tuple[ArmStats, ArmStats], problem_c: int, problem_v: int,
    absolute: tuple[Estimate, bool], relative: tuple[Estimate, bool],
    mean_c: float | None, mean_v: float | None, chance: float | None, loss: float | None,
    theta: float | None, reduction: float | None, **common: Any,
) -> Comparison:
    """Assemble one row of a batch: not_enough_data with the first reason found, else the full result."""
    control, variant = pair
    base = dict(control=control.name, variant=variant.name, n_control=int(control.n), n_variant=int(variant.n),
                **common)
    reason = _shortage(control, variant, problem_c, problem_v, *absolute)
    if reason:
        return Comparison(status="not_enough_data", reason=reason, **base)
    relative_ok = relative[1]
    return Comparison(
        status="ok",
        reason="" if relative_ok else f"relative lift undefined (control mean {mean_c:g}); absolute reported",
        control_mean=mean_c,
        variant_mean=mean_v,
        absolute=absolute[0],
        relative=relative[0] if relative_ok else Estimate(),
        chance_to_win=chance,
        expected_loss=loss,
        cuped=Cuped(theta, reduction) if control.has_covariate else None,
        **base,
    )


def _shortage(control: ArmStats, variant: ArmStats, problem_c: int, problem_v: int,
              absolute: Estimate, finite: bool) -> str:
    """Why a pair cannot be compared yet ("" when it can)."""
    for arm, code in ((control, problem_c), (variant, problem_v)):
        if code:
            return f"arm {arm.name!r} " + _ARM_PROBLEMS[code].format(n=arm.n)
    if absolute.se == 0:
        return "both arms have zero variance; nothing to compare yet"
    if not finite:
        return "sums are beyond floating-point range"
    return ""


# ---------------------------------------------------------------------------------------------
# Experiment-level checks and summaries


def srm_check(
    arms: Sequence[ArmStats], expected_shares: Sequence[float] | None = None, threshold: float = SRM_THRESHOLD
) -> SrmResult:
    """Chi-square test of the arms' unit counts against the configured allocation.

    Shares come from `expected_shares`, else from every arm's `expected_share`, else equal; they
    are normalised. Fewer than two arms, or no units yet, leave nothing to test (ok, p None).
    """
    shares = np.asarray(_shares(arms, expected_shares), dtype=float)
    counts = np.array([a.n for a in arms], dtype=float)
    if len(arms) < 2 or counts.sum() == 0:
        return SrmResult(chi2=0.0, p_value=None, df=max(len(arms) - 1, 0), ok=True, threshold=threshold)
    chi2, p = sps.chisquare(counts, counts.sum() * shares / shares.sum())
    return SrmResult(chi2=float(chi2), p_value=float(p), df=len(arms) - 1, ok=bool(p >= threshold), threshold=threshold)


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


_CORRECTIONS = {"bh": "fdr_bh", "holm": "holm"}


def adjust_pvalues(p_values: Sequence[float | None], method: Correction = "bh") -> list[float | None]:
    """Multiple-testing adjustment (Benjamini–Hochberg or Holm) over the p-values that exist.

    None and NaN entries (comparisons without enough data) are passed through untouched and do
    not count as tests.
    """
    if method not in _CORRECTIONS:
        raise InvalidStats("method", f"must be one of {tuple(_CORRECTIONS)}, got {method!r}")
    present = [i for i, p in enumerate(p_values) if p is not None and not math.isnan(p)]
    out = list(p_values)
    if present:
        adjusted = multipletests([p_values[i] for i in present], method=_CORRECTIONS[method])[1]
        for i, p in zip(present, adjusted):
            out[i] = float(p)
    return out


def non_inferiority(
    comparison: Comparison, margin: float, higher_is_better: bool = True, name: str = "guardrail"
) -> GuardrailResult:
    """Guardrail check: is the variant shown to be no worse than `margin` (relative, e.g. 0.02)?

    Passes when the relative interval's bound on the bad side stays within the margin; fails when
    even its good-side bound is beyond it (harm larger than the margin is established); otherwise
    inconclusive. Uses the comparison's own interval, so sequential comparisons give an
    always-valid guardrail; the two-sided (1−α) interval makes this a one-sided α/2 test.
    """
    if not margin >= 0:
        raise InvalidStats("margin", f"must be >= 0, got {margin!r}")
    rel = comparison.relative
    base = dict(name=name, variant=comparison.variant, margin=margin)
    if comparison.status != "ok" or rel.ci_lower is None or rel.ci_upper is None:
        why = comparison.reason or "relative lift unavailable"
        return GuardrailResult(verdict="inconclusive", passed=False, bound=None, reason=f"not enough data: {why}",
                               **base)
    sign = 1.0 if higher_is_better else -1.0
    bad, good = (rel.ci_lower, rel.ci_upper) if higher_is_better else (rel.ci_upper, rel.ci_lower)
    if sign * bad > -margin:
        verdict: Verdict = "passed"
        reason = f"worst plausible change {bad:+.2%} is within the {margin:.2%} margin"
    elif sign * good < -margin:
        verdict = "failed"
        reason = f"even the best plausible change {good:+.2%} is worse than the {margin:.2%} margin"
    else:
        verdict = "inconclusive"
        reason = f"worst plausible change {bad:+.2%} could exceed the {margin:.2%} margin; keep collecting"
    return GuardrailResult(verdict=verdict, passed=verdict == "passed", bound=bad, reason=reason, **base)


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
    return IncrementalValue(status=comp.status, reason=comp.reason, users_exposed=int(users_exposed),
                            per_user=comp.absolute, total=comp.absolute.scaled(float(users_exposed)))


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
    return [LiftPoint(label, comp.status, comp.n_control, comp.n_variant, comp.relative)
            for (label, _, _), comp in zip(series, comps)]


def recommend(
    comparisons: Sequence[Comparison],
    guardrails: Sequence[GuardrailResult] = (),
    srm: SrmResult | None = None,
    correction: Correction = "holm",
    higher_is_better: bool = True,
) -> Recommendation:
    """Turn the primary metric's comparisons, guardrails and SRM into one plain-words action.

    Order matters: a broken split invalidates everything (investigate); a failed guardrail stops
    the test; a primary win after multiple-testing correction ships, unless a guardrail of that
    variant is still inconclusive; a significant loss stops; anything else keeps running.
    """
    if srm is not None and not srm.ok:
        return Recommendation("investigate", f"sample ratio mismatch (p = {srm.p_value:.2g}): the traffic split is "
                              "not what was configured, so no result can be trusted; check assignment and logging")
    failed = [g for g in guardrails if g.verdict == "failed"]
    if failed:
        return Recommendation("stop", "; ".join(f"guardrail {g.name!r} failed for {g.variant!r}: {g.reason}"
                                                for g in failed))
    adjusted = adjust_pvalues([c.absolute.p_value if c.status == "ok" else None for c in comparisons], correction)
    def gain(c: Comparison) -> float:
        return (c.absolute.estimate or 0.0) * (1.0 if higher_is_better else -1.0)

    significant = [(c, p) for c, p in zip(comparisons, adjusted) if p is not None and p <= c.alpha]
    winners = [(c, p) for c, p in significant if gain(c) > 0]
    losers = [(c, p) for c, p in significant if gain(c) < 0]
    if winners:
        best, p = max(winners, key=lambda cp: gain(cp[0]))
        pending = [g for g in guardrails if g.variant == best.variant and g.verdict != "passed"]
        if pending:
            names = ", ".join(repr(g.name) for g in pending)
            return Recommendation("keep_running", f"{best.variant!r} wins on the primary metric (adjusted p = {p:.2g}) "
                                  f"but guardrail {names} is not yet shown non-inferior")
        return Recommendation("ship", f"{best.variant!r} beats {best.control!r} on the primary metric "
                              f"({_describe(best)}, adjusted p = {p:.2g})")
    if losers:
        names = ", ".join(f"{c.variant!r} ({_describe(c)})" for c, _ in losers)
        return Recommendation("stop", f"significantly worse than control after correction: {names}")
    short = [c.variant for c in comparisons if c.status != "ok"]
    if short:
        return Recommendation("keep_running", f"not enough data yet for {', '.join(map(repr, short))}")
    return Recommendation("keep_running", "no significant difference yet; keep collecting data")


def _describe(c: Comparison) -> str:
    rel = c.relative.estimate
    return f"relative lift {rel:+.2%}" if rel is not None else f"absolute difference {c.absolute.estimate:+.4g}"


# ---------------------------------------------------------------------------------------------
# Small helpers


def _num(x: Any) -> float | None:
    """A plain float, or None for NaN/±inf (so nothing non-JSON leaks out)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _floats(a: np.ndarray) -> list[float | None]:
    """`_num` over an array, vectorised."""
    return np.where(np.isfinite(a), a, None).tolist()


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return _num(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
