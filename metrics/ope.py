"""Off-policy evaluation: what a candidate policy would have earned on traffic already served.

The logging policy μ chose action a_i in context x_i with a logged probability μ(a_i|x_i) and
reward r_i followed. A candidate π_e is given by its probabilities π_e(a|x_i) at the logged
contexts. With the importance weight w_i = π_e(a_i|x_i) / μ(a_i|x_i) and an outcome model
q̂(x, a) (`metrics.ope_models`, cross-fitted), the estimators of V(π_e) = E[Σ_a π_e(a|x) r(x, a)]:

- IPS, inverse propensity scoring (Horvitz & Thompson, JASA 1952): (1/n) Σ w_i r_i. Unbiased
  wherever μ > 0 on π_e's actions; its variance grows with the weights.
- SNIPS, self-normalised IPS (Swaminathan & Joachims, "The self-normalized estimator for
  counterfactual learning", NeurIPS 2015): Σ w_i r_i / Σ w_i. Biased by O(1/n), usually far less
  variable, and blind to a constant error in the propensities' scale.
- DM, the direct method: (1/n) Σ_i Σ_a π_e(a|x_i) q̂(x_i, a). No weights at all, but only as
  right as the outcome model: its bias is the model's and no interval here covers it.
- DR, doubly robust (Dudík, Langford & Li, "Doubly robust policy evaluation and learning", ICML
  2011): (1/n) Σ_i [Σ_a π_e(a|x_i) q̂(x_i, a) + w_i (r_i − q̂(x_i, a_i))]. Unbiased with the
  logged (exact) propensities whatever q̂ is; a good q̂ shrinks the variance.

Every estimator here is a ratio of sample means V̂ = Σu_i / Σv_i (v ≡ 1 except SNIPS, v = w),
so one rule gives every interval: the influence function (u_i − V̂ v_i) / v̄ (the delta method
for SNIPS; exact for the others), standard error sqrt(Σφ_i² / (n(n − 1))), normal 95% interval.
A difference of two policies on the same log uses the difference of their influence functions
row by row (paired), so what the two share cancels. The percentile bootstrap is an option: rows
are resampled with a fixed seed, the same rows for every column, so paired differences stay paired.

What the intervals account for: the sampling of decisions (contexts, the logging policy's
draws, rewards), treating decisions as independent. What they do not: the outcome model's own
estimation error (second order for DR thanks to cross-fitting and exact propensities; first
order for DM, whose bias is not covered at all), decisions of one visitor being correlated
(intervals are then somewhat too narrow), and a world that changes between logging and use.

Before any verdict, the diagnostics: the effective sample size (Σw)²/Σw² of the weights, the
largest weight, the mean weight with its interval (it must be 1 when the propensities are right
and μ covers π_e: the off-policy counterpart of a sample-ratio check), and, where the logging
distribution is logged, the support check: the share of π_e's probability on actions μ gave less
than a floor, averaged over decisions.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from numbers import Integral
from typing import Literal, cast, get_args

import numpy as np
from scipy import special

from metrics.ope_data import PROPENSITY_FLOOR, BanditLog, Candidate, FloatArray, InvalidBanditLog
from metrics.ope_models import OutcomeModel
from metrics.stats import Estimate

Estimator = Literal["ips", "snips", "dm", "dr"]
Interval = Literal["clt", "bootstrap"]
Verdict = Literal["better", "worse", "cannot tell", "not supported"]

MAX_UNSUPPORTED_SHARE = 0.05
"""A candidate putting more of its probability than this on actions the logging policy gave less
than the floor is not supported: the log holds (almost) no evidence about those choices."""

MIN_EFFECTIVE_DECISIONS = 200.0
"""Below this effective sample size a few heavy weights decide the estimate and the normal
interval is not to be trusted: not supported."""

WEIGHT_CHECK_P = 0.001
"""A mean importance weight whose difference from 1 has a p-value below this flags the log
(strict, like the sample-ratio check: it is computed for every candidate on every view).

With right propensities E[w] = Σ π_e(a|x) over the actions μ can take: 1 under full support, so
a mean below 1 also reveals candidate mass where μ is 0, which the support check sees only where
distributions are logged. A wrong log whose weights happen to average 1 for this candidate (a
uniform candidate against propensities misreported as uniform) slips through; the single-action
candidates a page evaluates catch most such logs."""

DEFAULT_BOOTSTRAP = 1_000
_BOOTSTRAP_CELLS = 4_000_000  # resampled rows held in memory at once (chunks of replicates)


@dataclass(frozen=True)
class Diagnostics:
    """How far the log can speak for a candidate.

    `unsupported_share` is None when no decision carries its logging distribution;
    `distribution_share` is the share of decisions that do (the support check reads those).
    """

    n: int
    effective_sample_size: float
    max_weight: float
    mean_weight: Estimate
    weights_consistent: bool
    unsupported_share: float | None
    distribution_share: float
    support_floor: float


@dataclass(frozen=True)
class PolicyComparison:
    """A candidate against a baseline (the logging policy or another candidate) on one log.

    `difference` is candidate − baseline with its interval and p-value, from the paired
    influence functions (or the paired bootstrap); `effective_decisions` the smaller of the two
    effective sample sizes (n for the logging policy).
    """

    candidate: str
    baseline: str
    estimator: Estimator
    alpha: float
    interval: Interval
    candidate_value: Estimate
    baseline_value: Estimate
    difference: Estimate
    effective_decisions: float
    verdict: Verdict
    reason: str


@dataclass(frozen=True)
class PolicyEvaluation:
    """One candidate's estimated value by every estimator the inputs allow, with diagnostics.

    `values` holds ips and snips, plus dm and dr when an outcome model was given; `supported`
    is False when the diagnostics say the log cannot judge the candidate, `reason` says why;
    `versus_logging` compares it with the logging policy's on-policy value (one estimator).
    """

    name: str
    alpha: float
    interval: Interval
    values: Mapping[Estimator, Estimate]
    diagnostics: Diagnostics
    supported: bool
    reason: str
    versus_logging: PolicyComparison


# ---------------------------------------------------------------------------------------------
# Ratio terms: every estimate is Σu / Σv (v None means v ≡ 1).

_Ratio = tuple[FloatArray, FloatArray | None]


@dataclass(frozen=True)
class _Terms:
    weight: FloatArray
    ratios: dict[Estimator, _Ratio]


def _terms(log: BanditLog, probabilities: FloatArray, outcome: OutcomeModel | None) -> _Terms:
    """Importance weights and each estimator's (u, v) columns for one candidate."""
    weight = _at_chosen(log, probabilities) / log.propensity
    gain = weight * log.reward
    ratios: dict[Estimator, _Ratio] = {"ips": (gain, None), "snips": (gain, weight)}
    if outcome is not None:
        q = outcome.predictions
        direct = np.einsum("ij,ij->i", probabilities, q)
        ratios["dm"] = (direct, None)
        ratios["dr"] = (direct + gain - weight * _at_chosen(log, q), None)
    return _Terms(weight, ratios)


def _at_chosen(log: BanditLog, table: FloatArray) -> FloatArray:
    """table[i, a_i] for every decision."""
    return np.take(np.ascontiguousarray(table).ravel(), log.chosen)


def _point(ratio: _Ratio) -> float:
    """Σu / Σv: NaN for SNIPS when no logged action has candidate probability (Σw = 0)."""
    u, v = ratio
    total = float(v.sum()) if v is not None else len(u)
    return float(u.sum()) / total if total else math.nan


def _influence(ratio: _Ratio) -> FloatArray:
    """(u − V̂·v) / v̄: the estimator's influence function at each row."""
    u, v = ratio
    value = _point(ratio)
    if v is None:
        return u - value
    phi: FloatArray = (u - value * v) / v.mean()
    return phi


@dataclass(frozen=True)
class _Options:
    alpha: float
    interval: Interval
    n_bootstrap: int
    seed: int


def _estimates(ratios: list[_Ratio], contrasts: list[tuple[int, int]], opts: _Options) -> list[Estimate]:
    """One Estimate per ratio, then one per (i, j) contrast ratio_i − ratio_j (with a p-value vs 0).

    Both methods work on columns, one per ratio: the influence function at each row (CLT) or the
    ratio in each bootstrap replicate; a contrast is the difference of two columns, so it is
    paired either way.
    """
    points = [_point(r) for r in ratios]
    summarise: Callable[[float, FloatArray, bool, float], Estimate]
    with np.errstate(divide="ignore", invalid="ignore"):  # SNIPS with Σw = 0: NaN, reported as None
        if opts.interval == "clt":
            draws, summarise = [_influence(r) for r in ratios], _normal
        else:
            draws, summarise = list(_replicates(ratios, opts).T), _percentile
        columns = [(points[i], draws[i], False) for i in range(len(ratios))]
        columns += [(points[i] - points[j], draws[i] - draws[j], True) for i, j in contrasts]
        return [_finite(summarise(estimate, column, test, opts.alpha)) for estimate, column, test in columns]


def _normal(estimate: float, phi: FloatArray, test: bool, alpha: float) -> Estimate:
    """Normal interval with se = sqrt(Σφ² / (n(n − 1))) from the influence function φ."""
    n = len(phi)
    se = math.sqrt(float(np.einsum("i,i->", phi, phi)) / (n * (n - 1))) if n > 1 else math.nan
    half = float(special.ndtri(1.0 - alpha / 2.0)) * se
    return Estimate(estimate, estimate - half, estimate + half, _normal_p(estimate, se) if test else None, se)


def _normal_p(difference: float, se: float) -> float:
    """Two-sided normal p-value of a difference from 0 (exactly 0 with no spread: 1)."""
    if se > 0:
        return float(2.0 * special.ndtr(-abs(difference) / se))
    return math.nan if math.isnan(se) else float(difference == 0)


def _percentile(estimate: float, replicates: FloatArray, test: bool, alpha: float) -> Estimate:
    """Percentile interval; the p-value is twice the share of replicates on the far side of 0.

    Replicates where the ratio is undefined (SNIPS: no resampled row with weight) are left out.
    """
    replicates = replicates[np.isfinite(replicates)]
    if len(replicates) < 2:
        return Estimate(estimate)
    lower, upper = np.quantile(replicates, [alpha / 2.0, 1.0 - alpha / 2.0])
    tail = min(float((replicates <= 0).mean()), float((replicates >= 0).mean()))
    return Estimate(
        estimate, float(lower), float(upper), min(1.0, 2.0 * tail) if test else None, float(replicates.std(ddof=1))
    )


def _replicates(ratios: list[_Ratio], opts: _Options) -> FloatArray:
    """(n_bootstrap, ratios) values of each ratio on rows resampled with replacement.

    The same resamples serve every column (and, with the same seed and n, every call). They are
    drawn in chunks as row counts (np.bincount of uniform indices), so a replicate of Σu/Σv is a
    matrix product. The outcome model is held fixed, not refitted.
    """
    n = len(ratios[0][0])
    u = np.column_stack([r[0] for r in ratios])
    v = np.column_stack([r[1] if r[1] is not None else np.ones(n) for r in ratios])
    rng = np.random.default_rng(opts.seed)
    chunk = max(1, _BOOTSTRAP_CELLS // n)
    replicates = []
    for start in range(0, opts.n_bootstrap, chunk):
        b = min(chunk, opts.n_bootstrap - start)
        draws = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        counts = np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        replicates.append((counts @ u) / (counts @ v))
    return np.vstack(replicates)


def _finite(e: Estimate) -> Estimate:
    """NaN or infinite parts become None, as in the statistics engine."""

    def keep(x: float | None) -> float | None:
        return None if x is None or not math.isfinite(x) else float(x)

    return Estimate(keep(e.estimate), keep(e.ci_lower), keep(e.ci_upper), keep(e.p_value), keep(e.se))


# ---------------------------------------------------------------------------------------------
# Diagnostics and support


def _diagnostics(log: BanditLog, probabilities: FloatArray, weight: FloatArray, floor: float) -> Diagnostics:
    total, squares = float(weight.sum()), float(np.einsum("i,i->", weight, weight))
    mean = _normal(total / log.n, weight - total / log.n, False, 0.05)
    p_value = _normal_p(total / log.n - 1.0, mean.se if mean.se is not None else math.nan)
    unsupported, share = None, 0.0
    if log.logging is not None:
        known = ~np.isnan(log.logging[:, 0])  # NaN rows are NaN throughout and never below the floor
        share = float(known.mean())
        if share > 0:
            unsupported = float(probabilities[log.logging < floor].sum() / known.sum())
    return Diagnostics(
        n=log.n,
        effective_sample_size=total**2 / squares if squares > 0 else 0.0,
        max_weight=float(weight.max()),
        mean_weight=_finite(dataclasses.replace(mean, p_value=p_value)),
        weights_consistent=not p_value < WEIGHT_CHECK_P,
        unsupported_share=unsupported,
        distribution_share=share,
        support_floor=floor,
    )


def _unsupported_reason(name: str, d: Diagnostics, policy: str) -> str:
    """Why the log cannot judge the candidate ('' when it can), the thresholds named."""
    if d.unsupported_share is not None and d.unsupported_share > MAX_UNSUPPORTED_SHARE:
        return (
            f"{d.unsupported_share:.0%} of {name}'s choices go to actions {policy} gave less than "
            f"{d.support_floor:.0%} (at most {MAX_UNSUPPORTED_SHARE:.0%} allowed)"
        )
    if d.effective_sample_size < MIN_EFFECTIVE_DECISIONS:
        return (
            f"only {d.effective_sample_size:,.0f} effective decisions for {name} "
            f"(at least {MIN_EFFECTIVE_DECISIONS:,.0f} needed)"
        )
    if not d.weights_consistent:
        w = d.mean_weight
        return (
            f"importance weights for {name} average {w.estimate:.3f} [{w.ci_lower:.3f}, {w.ci_upper:.3f}], "
            f"not 1 (p = {w.p_value:.2g}): the logged propensities do not describe how {policy} chose, "
            f"or {name} takes actions {policy} never took"
        )
    return ""


# ---------------------------------------------------------------------------------------------
# Public API


def evaluate(
    log: BanditLog,
    candidate: Candidate,
    outcome: OutcomeModel | None = None,
    *,
    estimator: Estimator | None = None,
    alpha: float = 0.05,
    interval: Interval = "clt",
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    support_floor: float = PROPENSITY_FLOOR,
) -> PolicyEvaluation:
    """Estimate `candidate`'s value on `log` by IPS and SNIPS, and DM and DR when `outcome` is given,
    and compare it with the logging policy by `estimator` (default DR with an outcome model, else SNIPS).

    Fit the outcome model once per log (`fit_outcome_model`) and pass it for every candidate.
    """
    opts = _options(alpha, interval, n_bootstrap, seed)
    chosen = _estimator(estimator, outcome)
    _check(log, candidate, outcome, support_floor)
    terms = _terms(log, candidate.probabilities, outcome)
    names = list(terms.ratios)
    m = len(names)
    estimates = _estimates([terms.ratios[e] for e in names] + [(log.reward, None)], [(names.index(chosen), m)], opts)
    values = dict(zip(names, estimates[:m]))
    diagnostics = _diagnostics(log, candidate.probabilities, terms.weight, support_floor)
    reason = _unsupported_reason(candidate.name, diagnostics, log.policy)
    versus = _judged(
        candidate.name,
        log.policy,
        chosen,
        opts,
        [values[chosen], *estimates[m:]],
        diagnostics.effective_sample_size,
        reason,
    )
    return PolicyEvaluation(candidate.name, alpha, opts.interval, values, diagnostics, not reason, reason, versus)


def on_policy_value(
    log: BanditLog,
    *,
    alpha: float = 0.05,
    interval: Interval = "clt",
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> Estimate:
    """The logging policy's own value: the mean logged reward, with its interval."""
    return _estimates([(log.reward, None)], [], _options(alpha, interval, n_bootstrap, seed))[0]


def compare(
    log: BanditLog,
    candidate: Candidate,
    baseline: Candidate,
    outcome: OutcomeModel | None = None,
    *,
    estimator: Estimator | None = None,
    alpha: float = 0.05,
    interval: Interval = "clt",
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    support_floor: float = PROPENSITY_FLOOR,
) -> PolicyComparison:
    """`candidate` against another candidate, `baseline`, on the same log, with a verdict.

    (Against the logging policy: `evaluate(...).versus_logging`.) Not supported when either
    fails the diagnostics (thresholds above); otherwise better or worse when the difference's
    interval excludes 0 (higher reward is better), else cannot tell.
    """
    opts = _options(alpha, interval, n_bootstrap, seed)
    chosen = _estimator(estimator, outcome)
    ratios, reasons, ess = [], [], []
    for policy in (candidate, baseline):
        _check(log, policy, outcome, support_floor)
        terms = _terms(log, policy.probabilities, outcome)
        diagnostics = _diagnostics(log, policy.probabilities, terms.weight, support_floor)
        ratios.append(terms.ratios[chosen])
        reasons.append(_unsupported_reason(policy.name, diagnostics, log.policy))
        ess.append(diagnostics.effective_sample_size)
    return _judged(
        candidate.name,
        baseline.name,
        chosen,
        opts,
        _estimates(ratios, [(0, 1)], opts),
        min(ess),
        "; ".join(r for r in reasons if r),
    )


def _judged(
    candidate: str,
    baseline: str,
    estimator: Estimator,
    opts: _Options,
    estimates: list[Estimate],
    effective: float,
    unsupported: str,
) -> PolicyComparison:
    """The comparison with its verdict, from [candidate value, baseline value, difference]."""
    value, base, d = estimates
    verdict: Verdict
    if unsupported:
        verdict, reason = "not supported", unsupported
    elif d.ci_lower is None or d.ci_upper is None or d.estimate is None:
        verdict, reason = "cannot tell", "the difference has no interval (too few decisions)"
    else:
        span = f"{d.estimate:+.4g} [{d.ci_lower:+.4g}, {d.ci_upper:+.4g}]"
        if d.ci_lower > 0:
            verdict, reason = "better", f"{candidate} beats {baseline} by {span}"
        elif d.ci_upper < 0:
            verdict, reason = "worse", f"{candidate} trails {baseline} by {span}"
        else:
            verdict, reason = "cannot tell", f"the difference {span} includes 0"
    return PolicyComparison(
        candidate, baseline, estimator, opts.alpha, opts.interval, value, base, d, effective, verdict, reason
    )


_VERDICT_WORDS: dict[Verdict, str] = {
    "better": "a clear gain",
    "worse": "a clear loss",
    "cannot tell": "too close to call",
    "not supported": "",
}


def summary(comparison: PolicyComparison, *, verb: str = "earned", value_format: str = "{:.3g}") -> str:
    """One sentence for the page, e.g. "The propensity model would have converted 6.1% [5.7%, 6.5%]
    against 5.2% for the rules (a clear gain); 38k effective decisions."

    Names read best with their article ("the rules"); `value_format` formats values ("{:.1%}"
    for rates, "BRL {:,.2f}" for revenue).
    """
    c = comparison
    if c.verdict == "not supported":
        return _capital(f"the log cannot judge {c.candidate}: {c.reason}.")
    v, b = c.candidate_value, c.baseline_value

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else value_format.format(x)

    return _capital(
        f"{c.candidate} would have {verb} {fmt(v.estimate)} [{fmt(v.ci_lower)}, {fmt(v.ci_upper)}] "
        f"against {fmt(b.estimate)} for {c.baseline} ({_VERDICT_WORDS[c.verdict]}); "
        f"{_compact(c.effective_decisions)} effective decisions."
    )


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _compact(x: float) -> str:
    """38k, 1.2M, 850: counts as a person says them."""
    if x >= 999_500:
        return f"{x / 1e6:.1f}M"
    if x >= 9_995:
        return f"{x / 1e3:.0f}k"
    if x >= 999.5:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


# ---------------------------------------------------------------------------------------------
# Argument checks


def _options(alpha: float, interval: str, n_bootstrap: int, seed: int) -> _Options:
    if not 0.0 < alpha < 1.0:
        raise InvalidBanditLog("alpha", f"must be in (0, 1), got {alpha!r}")
    if interval not in get_args(Interval):
        raise InvalidBanditLog("interval", f"must be one of {get_args(Interval)}, got {interval!r}")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, Integral) or n_bootstrap < 2:
        raise InvalidBanditLog("n_bootstrap", f"must be an integer >= 2, got {n_bootstrap!r}")
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise InvalidBanditLog("seed", f"must be an integer >= 0, got {seed!r}")
    return _Options(alpha, cast(Interval, interval), int(n_bootstrap), int(seed))


def _estimator(estimator: str | None, outcome: OutcomeModel | None) -> Estimator:
    """The estimator asked for, or DR when there is an outcome model and SNIPS when not."""
    if estimator is None:
        return "dr" if outcome is not None else "snips"
    if estimator not in get_args(Estimator):
        raise InvalidBanditLog("estimator", f"must be one of {get_args(Estimator)}, got {estimator!r}")
    if estimator in ("dm", "dr") and outcome is None:
        raise InvalidBanditLog("outcome", f"the {estimator} estimator needs an outcome model (fit_outcome_model)")
    return cast(Estimator, estimator)


def _check(log: BanditLog, candidate: Candidate, outcome: OutcomeModel | None, floor: float) -> None:
    if candidate.probabilities.shape != (log.n, log.k):
        raise InvalidBanditLog(
            f"candidate {candidate.name!r}: probabilities",
            f"must be ({log.n}, {log.k}) like the log, got {candidate.probabilities.shape}",
        )
    if outcome is not None and outcome.predictions.shape != (log.n, log.k):
        raise InvalidBanditLog(
            "outcome.predictions", f"must be ({log.n}, {log.k}) like the log, got {outcome.predictions.shape}"
        )
    if not 0.0 <= floor <= 1.0:
        raise InvalidBanditLog("support_floor", f"must be in [0, 1], got {floor!r}")
