"""Off-policy estimators: hand-computed values, an independent row-by-row implementation, and
simulated contextual bandits whose true policy values are known."""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pytest
from scipy import special
from scipy import stats as sps

from metrics.ope import (
    MAX_UNSUPPORTED_SHARE,
    MIN_EFFECTIVE_DECISIONS,
    PolicyComparison,
    compare,
    evaluate,
    on_policy_value,
    summary,
)
from metrics.ope_data import BanditLog, Candidate, InvalidBanditLog, check_propensities
from metrics.ope_models import OutcomeModel, fit_outcome_model
from metrics.stats import Estimate

Z = sps.norm.ppf(0.975)

# --- fixed inputs, computed by hand -----------------------------------------------------------
# Four decisions over two actions. Candidate probabilities of the chosen actions 1, .5, 1, .5 over
# propensities .5, .25, .25, .8 give weights 2, 2, 4, .625; rewards 1, 0, 2, 1.


def hand_log() -> BanditLog:
    return BanditLog(
        actions=("a", "b"),
        action=[0, 1, 1, 0],
        propensity=[0.5, 0.25, 0.25, 0.8],
        reward=[1.0, 0.0, 2.0, 1.0],
        time=[1, 2, 3, 4],
        context=np.zeros((4, 0)),
        logging=[[0.5, 0.5], [0.75, 0.25], [0.75, 0.25], [0.8, 0.2]],
        policy="the rules",
    )


HAND_CANDIDATE = Candidate("the model", [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.5, 0.5]])
HAND_OUTCOME = OutcomeModel(
    predictions=np.array([[0.8, 0.2], [0.5, 0.5], [1.0, 1.5], [0.9, 0.3]]),
    folds=np.array([0, 0, 1, 1]),
    ridge=1.0,
    r_squared=math.nan,
)


def test_estimators_on_fixed_inputs_match_hand_computed_values():
    result = evaluate(hand_log(), HAND_CANDIDATE, HAND_OUTCOME)
    v = result.values
    # IPS = (2 + 0 + 8 + .625) / 4; φ = w·r − IPS, Σφ² = 40.16796875
    assert v["ips"].estimate == pytest.approx(2.65625)
    assert v["ips"].se == pytest.approx(math.sqrt(40.16796875 / 12))
    assert v["ips"].ci_lower == pytest.approx(2.65625 - Z * math.sqrt(40.16796875 / 12))
    # SNIPS = 10.625 / 8.625; φ = w·(r − SNIPS) / mean(w)
    assert v["snips"].estimate == pytest.approx(85 / 69)
    assert v["snips"].se == pytest.approx(math.sqrt(3.3867217632093642 / 12))
    # DM = mean of Σ_a π q̂ = (0.8 + 0.5 + 1.5 + 0.6) / 4; Σφ² = .0025 + .1225 + .4225 + .0625
    assert v["dm"].estimate == pytest.approx(0.85)
    assert v["dm"].se == pytest.approx(math.sqrt(0.61 / 12))
    # DR terms 0.8 + 2·0.2, 0.5 + 2·(−0.5), 1.5 + 4·0.5, 0.6 + .625·0.1
    assert v["dr"].estimate == pytest.approx(1.215625)
    assert v["dr"].se == pytest.approx(math.sqrt(8.4679296875 / 12))
    d = result.diagnostics
    assert d.effective_sample_size == pytest.approx(8.625**2 / 24.390625)
    assert d.max_weight == 4.0
    assert d.mean_weight.estimate == pytest.approx(8.625 / 4)
    assert d.distribution_share == 1.0
    assert d.unsupported_share == 0.0  # no candidate mass where logging gave < 1%
    versus = result.versus_logging  # DR against the mean reward 1.0, paired: Σ(φ_dr − φ_log)² = 2.4679296875
    assert versus.estimator == "dr" and versus.baseline == "the rules"
    assert versus.baseline_value.estimate == pytest.approx(1.0)
    assert versus.difference.estimate == pytest.approx(0.215625)
    assert versus.difference.se == pytest.approx(math.sqrt(2.4679296875 / 12))
    assert versus.difference.p_value == pytest.approx(2 * sps.norm.sf(0.215625 / math.sqrt(2.4679296875 / 12)))
    assert versus.verdict == "not supported" and "effective decisions" in versus.reason  # 3 of 200 needed
    assert not result.supported and result.reason == versus.reason


def test_support_share_on_fixed_inputs():
    # floor .3: logging gave .25, .25 and .2 to action b in rows 1-3, where the candidate puts .5, 1, .5
    d = evaluate(hand_log(), HAND_CANDIDATE, support_floor=0.3).diagnostics
    assert d.unsupported_share == pytest.approx((0 + 0.5 + 1.0 + 0.5) / 4)
    assert d.support_floor == 0.3


def test_on_policy_value_is_the_mean_reward():
    value = on_policy_value(hand_log())
    assert value.estimate == 1.0
    assert value.se == pytest.approx(np.std([1.0, 0.0, 2.0, 1.0], ddof=1) / 2)
    assert value.p_value is None


# --- an independent implementation, one row at a time -------------------------------------------


def loop_estimates(action, propensity, reward, pi, q):
    """IPS, SNIPS, DM, DR and their standard errors from plain loops over the rows.

    The standard errors are the textbook ones times sqrt(n / (n − 1)) (sample variances)."""
    n, k = len(pi), len(pi[0])
    w = [pi[i][action[i]] / propensity[i] for i in range(n)]
    ips_terms = [w[i] * reward[i] for i in range(n)]
    direct = [sum(pi[i][a] * q[i][a] for a in range(k)) for i in range(n)]
    dr_terms = [direct[i] + w[i] * (reward[i] - q[i][action[i]]) for i in range(n)]

    def mean_and_se(terms):
        m = sum(terms) / n
        return m, math.sqrt(sum((t - m) ** 2 for t in terms) / (n - 1) / n)

    snips = sum(ips_terms) / sum(w)
    snips_var = sum((w[i] * (reward[i] - snips)) ** 2 for i in range(n)) / sum(w) ** 2
    out = {
        "ips": mean_and_se(ips_terms),
        "snips": (snips, math.sqrt(snips_var * n / (n - 1))),
        "dm": mean_and_se(direct),
        "dr": mean_and_se(dr_terms),
    }
    ess = sum(w) ** 2 / sum(x * x for x in w)
    return out, w, dr_terms, ess


def random_inputs(rng, n, k, d=3):
    mu = rng.dirichlet(np.ones(k), n) * 0.9 + 0.1 / k
    action = np.array([rng.choice(k, p=row) for row in mu])
    log = BanditLog(
        actions=tuple("abcdef"[:k]),
        action=action,
        propensity=mu[np.arange(n), action],
        reward=rng.gamma(2.0, 1.0, n) * (rng.random(n) < 0.3),
        time=rng.random(n),
        context=rng.normal(size=(n, d)),
        logging=mu,
    )
    return log, Candidate("pi", rng.dirichlet(np.ones(k) * 0.5, n))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_estimators_match_a_row_by_row_implementation(seed):
    rng = np.random.default_rng(seed)
    log, pi = random_inputs(rng, 400, 4)
    outcome = fit_outcome_model(log, n_folds=4)
    result = evaluate(log, pi, outcome)
    expected, w, dr_terms, ess = loop_estimates(
        log.action.tolist(),
        log.propensity.tolist(),
        log.reward.tolist(),
        pi.probabilities.tolist(),
        outcome.predictions.tolist(),
    )
    for name, (value, se) in expected.items():
        assert result.values[name].estimate == pytest.approx(value, rel=1e-10)
        assert result.values[name].se == pytest.approx(se, rel=1e-10)
        assert result.values[name].ci_upper == pytest.approx(value + Z * se, rel=1e-10)
    assert result.diagnostics.effective_sample_size == pytest.approx(ess, rel=1e-10)
    assert result.diagnostics.max_weight == pytest.approx(max(w))
    assert result.diagnostics.mean_weight.se == pytest.approx(np.std(w, ddof=1) / math.sqrt(len(w)))
    thin = [sum(pi.probabilities[i][a] for a in range(4) if log.logging[i][a] < 0.05) for i in range(400)]
    assert evaluate(log, pi, support_floor=0.05).diagnostics.unsupported_share == pytest.approx(sum(thin) / 400)
    # the difference with the logging policy: paired, row by row
    n, r = 400, log.reward.tolist()
    diff = [dr_terms[i] - r[i] for i in range(n)]
    m = sum(diff) / n
    versus = result.versus_logging.difference
    assert versus.estimate == pytest.approx(m, rel=1e-10)
    assert versus.se == pytest.approx(math.sqrt(sum((t - m) ** 2 for t in diff) / (n - 1) / n), rel=1e-10)


def test_candidate_against_candidate_matches_a_row_by_row_difference():
    rng = np.random.default_rng(4)
    log, pi = random_inputs(rng, 300, 3)
    other = Candidate("other", rng.dirichlet(np.ones(3), 300))
    outcome = fit_outcome_model(log)
    q = outcome.predictions
    terms = []
    for p in (pi.probabilities, other.probabilities):
        _, _, dr_terms, _ = loop_estimates(
            log.action.tolist(), log.propensity.tolist(), log.reward.tolist(), p.tolist(), q.tolist()
        )
        terms.append(dr_terms)
    diff = [a - b for a, b in zip(*terms)]
    m = sum(diff) / 300
    result = compare(log, pi, other, outcome)
    assert result.difference.estimate == pytest.approx(m, rel=1e-10)
    assert result.difference.se == pytest.approx(math.sqrt(sum((t - m) ** 2 for t in diff) / 299 / 300), rel=1e-10)
    assert result.candidate_value.estimate == pytest.approx(sum(terms[0]) / 300)
    assert result.baseline_value.estimate == pytest.approx(sum(terms[1]) / 300)
    snips = compare(log, pi, other, estimator="snips")  # SNIPS difference: paired linearisations
    w = [pi.probabilities[i, log.action[i]] / log.propensity[i] for i in range(300)]
    v = [other.probabilities[i, log.action[i]] / log.propensity[i] for i in range(300)]
    r = log.reward
    s1, s2 = sum(a * b for a, b in zip(w, r)) / sum(w), sum(a * b for a, b in zip(v, r)) / sum(v)
    phi = [w[i] * (r[i] - s1) / (sum(w) / 300) - v[i] * (r[i] - s2) / (sum(v) / 300) for i in range(300)]
    assert snips.difference.estimate == pytest.approx(s1 - s2, rel=1e-10)
    assert snips.difference.se == pytest.approx(math.sqrt(sum(p * p for p in phi) / 299 / 300), rel=1e-10)


def test_a_policy_against_itself_differs_by_exactly_nothing():
    rng = np.random.default_rng(5)
    log, _ = random_inputs(rng, 500, 3)
    pi = Candidate("pi", 0.5 * log.logging + 0.5 / 3)
    result = compare(log, pi, dataclasses.replace(pi, name="a copy"), fit_outcome_model(log))
    assert result.difference == Estimate(0.0, 0.0, 0.0, 1.0, 0.0)
    assert result.verdict == "cannot tell"


def test_the_logging_policy_as_candidate_reproduces_the_on_policy_value():
    rng = np.random.default_rng(6)
    log, _ = random_inputs(rng, 500, 4)
    result = evaluate(log, Candidate("itself", log.logging))
    assert result.values["ips"].estimate == pytest.approx(log.reward.mean())
    assert result.values["snips"].estimate == pytest.approx(log.reward.mean())
    assert result.diagnostics.effective_sample_size == pytest.approx(500)
    assert result.versus_logging.difference.estimate == pytest.approx(0.0, abs=1e-12)


# --- bootstrap ---------------------------------------------------------------------------------


def loop_bootstrap(u, v, reps, seed, alpha=0.05):
    """Percentile interval of Σu/Σv over resampled rows, one replicate at a time."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(reps):
        rows = rng.integers(0, len(u), len(u))
        values.append(u[rows].sum() / v[rows].sum())
    return np.quantile(values, [alpha / 2, 1 - alpha / 2])


def test_bootstrap_matches_a_replicate_by_replicate_bootstrap_and_the_clt():
    rng = np.random.default_rng(7)
    log, pi = random_inputs(rng, 3_000, 4)
    boot = evaluate(log, pi, interval="bootstrap", n_bootstrap=2_000, seed=11)
    clt = evaluate(log, pi)
    w = pi.probabilities[np.arange(log.n), log.action] / log.propensity
    for name, v in (("ips", np.ones(log.n)), ("snips", w)):
        lo, hi = loop_bootstrap(w * log.reward, v, 2_000, seed=99)
        width = hi - lo
        got = boot.values[name]
        assert got.ci_lower == pytest.approx(lo, abs=0.08 * width)  # Monte Carlo error of two bootstraps
        assert got.ci_upper == pytest.approx(hi, abs=0.08 * width)
        assert got.estimate == clt.values[name].estimate
        assert got.se == pytest.approx(clt.values[name].se, rel=0.1)
        assert got.ci_lower == pytest.approx(clt.values[name].ci_lower, abs=0.1 * width)


def test_bootstrap_is_fixed_by_its_seed_and_pairs_differences():
    rng = np.random.default_rng(8)
    log, pi = random_inputs(rng, 2_000, 3)
    outcome = fit_outcome_model(log)
    first, again = (evaluate(log, pi, outcome, interval="bootstrap", n_bootstrap=300) for _ in range(2))
    other_seed = evaluate(log, pi, outcome, interval="bootstrap", n_bootstrap=300, seed=1)
    assert first == again
    assert first.values["dr"].ci_lower != other_seed.values["dr"].ci_lower
    versus = first.versus_logging
    unpaired_se = math.hypot(versus.candidate_value.se, versus.baseline_value.se)
    assert versus.difference.se < unpaired_se  # the same resamples on both sides: what they share cancels
    assert versus.difference.p_value is not None and 0 <= versus.difference.p_value <= 1


# --- simulated contextual bandits with known truth --------------------------------------------


def softmax(scores):
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@dataclasses.dataclass
class World:
    """A contextual bandit: 4 Gaussian features, 4 actions, logistic rewards.

    Contexts are drawn from a fixed population of 50,000 visitors, so a policy's true value is
    exactly its mean expected reward over the population. The logging policy is a softmax of one
    score mixed with 15% uniform exploration. Candidates: a softmax leaning towards the truly best
    action, a greedy choice on an unrelated score with 10% exploration, and a contrarian leaning
    towards the worst."""

    k: int = 4
    d: int = 4

    def __post_init__(self):
        rng = np.random.default_rng(2026)
        self.intercept = np.array([-1.6, -1.2, -1.0, -1.4])
        self.theta, self.phi, self.psi = (rng.normal(0, s, (self.d, self.k)) for s in (0.7, 0.8, 1.0))
        x = self.population = rng.normal(size=(50_000, self.d))
        self.truth = {name: float((pi * self.rates(x)).sum(axis=1).mean()) for name, pi in self.candidates(x).items()}
        self.truth["the rules"] = float((self.logging(x) * self.rates(x)).sum(axis=1).mean())

    def rates(self, x):
        return special.expit(self.intercept + x @ self.theta)

    def logging(self, x, phi=None):
        return 0.85 * softmax(x @ (self.phi if phi is None else phi)) + 0.15 / self.k

    def candidates(self, x):
        logit = self.intercept + x @ self.theta
        greedy = np.eye(self.k)[(x @ self.psi).argmax(axis=1)]
        return {
            "the model": softmax(3.0 * logit),
            "greedy": 0.9 * greedy + 0.1 / self.k,
            "the contrarian": softmax(-3.0 * logit),
        }

    def log(self, rng, n, logged_phi=None):
        """n decisions; `logged_phi` logs the propensities of another logging score than the one used."""
        x = self.population[rng.integers(0, len(self.population), n)]
        mu = self.logging(x)
        action = (mu.cumsum(axis=1) >= rng.random((n, 1))).argmax(axis=1)
        reward = (rng.random(n) < self.rates(x)[np.arange(n), action]).astype(float)
        logged = mu if logged_phi is None else self.logging(x, logged_phi)
        log = BanditLog(
            actions=("a", "b", "c", "d"),
            action=action,
            propensity=logged[np.arange(n), action],
            reward=reward,
            time=np.arange(n),
            context=x,
            logging=logged,
            policy="the rules",
        )
        return log, [Candidate(name, pi) for name, pi in self.candidates(x).items()]


@functools.cache
def world() -> World:
    return World()


NAMES = ("the model", "greedy", "the contrarian")


def replicate(reps, n, seed, logged_phi=None):
    """One list of evaluations (a candidate each, in NAMES order) per simulated log."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(reps):
        log, candidates = world().log(rng, n, logged_phi)
        outcome = fit_outcome_model(log)
        rows.append([evaluate(log, c, outcome) for c in candidates])
    return rows


def errors_and_coverage(rows, name, estimator):
    """Per log: the estimate's error against the truth and whether the interval covers it."""
    values = [r[NAMES.index(name)].values[estimator] for r in rows]
    truth = world().truth[name]
    error = np.array([v.estimate for v in values]) - truth
    covered = np.array([v.ci_lower <= truth <= v.ci_upper for v in values])
    return error, covered


@pytest.fixture(scope="module")
def honest_runs():
    return replicate(reps=400, n=3_000, seed=31)


@pytest.mark.parametrize("estimator", ["dr", "snips", "ips"])
def test_intervals_cover_the_true_value_and_estimators_are_unbiased(honest_runs, estimator):
    errors = []
    for name in NAMES:
        error, covered = errors_and_coverage(honest_runs, name, estimator)
        assert 0.90 <= covered.mean() <= 0.99, (name, covered.mean())
        errors.append(error)
    per_log = np.mean(errors, axis=0)  # the candidates share each log: their errors are averaged per log
    assert abs(per_log.mean()) <= 2 * per_log.std(ddof=1) / np.sqrt(len(per_log)), per_log.mean()


def test_the_direct_method_interval_ignores_the_outcome_model_bias(honest_runs):
    """A linear model of logistic rewards: DM is tight and off, the reason DR is the default."""
    error, covered = errors_and_coverage(honest_runs, "the model", "dm")
    assert covered.mean() < 0.5 and abs(error.mean()) > 10 * error.std(ddof=1) / np.sqrt(len(error))


def test_the_weight_check_rarely_fires_on_honest_logs(honest_runs):
    flagged = np.mean([not e.diagnostics.weights_consistent for r in honest_runs for e in r])
    assert flagged <= 0.01
    assert np.mean([e.supported for r in honest_runs for e in r]) >= 0.99


def test_dr_is_tighter_than_ips_when_the_outcome_model_explains_something(honest_runs):
    ips = np.mean([r[0].values["ips"].se for r in honest_runs])
    dr = np.mean([r[0].values["dr"].se for r in honest_runs])
    assert dr < 0.9 * ips


def test_wrong_propensities_are_caught_by_the_weight_check_not_by_the_integrity_check():
    """A logging policy logs 1/K instead of its softmax probabilities, with a matching uniform
    distribution: every row sums to 1 and matches its propensity, so the integrity check sees
    nothing; the estimates are far off, but the importance weights no longer average 1, and the
    page says 'not supported' instead of a verdict."""
    uniform = np.zeros_like(world().phi)
    rows = replicate(reps=60, n=3_000, seed=32, logged_phi=uniform)
    log, _ = world().log(np.random.default_rng(0), 3_000, logged_phi=uniform)
    assert check_propensities(log.action, log.propensity, log.logging).problems == 0
    for estimator in ("ips", "snips", "dr"):
        error, covered = errors_and_coverage(rows, "the model", estimator)
        assert covered.mean() < 0.5 and abs(error.mean()) > 10 * error.std(ddof=1) / np.sqrt(len(error))
    verdicts = [e.versus_logging for r in rows for e in r]
    assert np.mean([v.verdict == "not supported" for v in verdicts]) >= 0.9
    assert "importance weights" in verdicts[0].reason and "average" in verdicts[0].reason


# --- verdicts and the sentence --------------------------------------------------------------------


def test_a_clearly_better_and_a_clearly_worse_candidate_get_their_verdicts():
    log, (model, greedy, contrarian) = world().log(np.random.default_rng(40), 20_000)
    outcome = fit_outcome_model(log)
    truth = world().truth
    assert truth["the model"] > truth["greedy"] > truth["the rules"] > truth["the contrarian"]
    better, worse = (evaluate(log, c, outcome).versus_logging for c in (model, contrarian))
    assert better.verdict == "better" and better.difference.ci_lower > 0 and "beats the rules" in better.reason
    assert worse.verdict == "worse" and worse.difference.ci_upper < 0 and "trails the rules" in worse.reason
    assert compare(log, model, greedy, outcome).verdict == "better"
    assert compare(log, greedy, model, outcome, estimator="snips").verdict == "worse"


def test_a_candidate_the_logging_policy_never_tried_is_not_supported():
    rng = np.random.default_rng(41)
    n = 5_000
    rules = np.eye(3)[rng.integers(0, 2, n)]  # deterministic rules that never show action c
    action = rules.argmax(axis=1)
    log = BanditLog(
        actions=("a", "b", "c"),
        action=action,
        propensity=np.ones(n),
        reward=rng.random(n),
        time=np.arange(n),
        context=rng.normal(size=(n, 2)),
        logging=rules,
        policy="the rules",
    )
    always_c = evaluate(log, Candidate("always c", np.eye(3)[np.full(n, 2)]))
    assert always_c.diagnostics.unsupported_share == 1.0 and not always_c.supported
    assert always_c.versus_logging.verdict == "not supported"
    assert f"at most {MAX_UNSUPPORTED_SHARE:.0%}" in always_c.reason
    mostly_rules = 0.97 * rules + 0.03 * np.eye(3)[np.full(n, 2)]  # 3% on c: within the limit
    mostly = evaluate(log, Candidate("mostly the rules", mostly_rules))
    assert mostly.diagnostics.unsupported_share == pytest.approx(0.03)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("interval", ["clt", "bootstrap"])
def test_degenerate_inputs_give_missing_numbers_not_errors(interval):
    n = 400
    rules = np.eye(3)[np.arange(n) % 2]  # never action c
    log = BanditLog(
        actions=("a", "b", "c"),
        action=rules.argmax(axis=1),
        propensity=np.ones(n),
        reward=np.ones(n),
        time=np.arange(n),
        context=np.zeros((n, 0)),
        logging=rules,
    )
    always_c = evaluate(
        log, Candidate("always c", np.eye(3)[np.full(n, 2)]), fit_outcome_model(log), interval=interval, n_bootstrap=50
    )
    assert always_c.values["snips"] == Estimate()  # no weight anywhere: undefined
    assert always_c.values["ips"].estimate == 0.0
    assert always_c.diagnostics.effective_sample_size == 0.0 and not always_c.supported
    single = BanditLog(actions=("a", "b"), action=[1], propensity=[0.5], reward=[1.0], time=[0], context=[[1.0]])
    alone = evaluate(single, Candidate("b", [[0.0, 1.0]]), interval=interval, n_bootstrap=50)
    assert alone.values["ips"].estimate == 2.0 and alone.values["ips"].se in (None, 0.0)
    assert alone.versus_logging.verdict == "not supported"


def test_too_few_effective_decisions_is_not_supported():
    rng = np.random.default_rng(42)
    log, pi = random_inputs(rng, 150, 3)
    result = evaluate(log, pi)
    assert result.diagnostics.effective_sample_size < MIN_EFFECTIVE_DECISIONS
    assert result.versus_logging.verdict == "not supported" and "at least 200 needed" in result.reason


def comparison(verdict="better", **changes):
    base = PolicyComparison(
        candidate="the propensity model",
        baseline="the rules",
        estimator="dr",
        alpha=0.05,
        interval="clt",
        candidate_value=Estimate(0.061, 0.057, 0.065, None, 0.002),
        baseline_value=Estimate(0.052, 0.05, 0.054),
        difference=Estimate(0.009, 0.005, 0.013, 0.0001, 0.002),
        effective_decisions=38_212.4,
        verdict=verdict,
        reason="the propensity model beats the rules by +0.009 [+0.005, +0.013]",
    )
    return dataclasses.replace(base, **changes)


def test_summary_sentence():
    assert summary(comparison(), verb="converted", value_format="{:.1%}") == (
        "The propensity model would have converted 6.1% [5.7%, 6.5%] against 5.2% for the rules (a clear gain); "
        "38k effective decisions."
    )
    assert summary(comparison("cannot tell", effective_decisions=1_234.0), value_format="BRL {:,.2f}") == (
        "The propensity model would have earned BRL 0.06 [BRL 0.06, BRL 0.07] against BRL 0.05 for the rules "
        "(too close to call); 1.2k effective decisions."
    )
    worse = summary(comparison("worse", effective_decisions=2_500_000.0))
    assert worse.endswith("(a clear loss); 2.5M effective decisions.")
    assert summary(comparison("not supported", reason="only 120 effective decisions for x (at least 200 needed)")) == (
        "The log cannot judge the propensity model: only 120 effective decisions for x (at least 200 needed)."
    )


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda log: evaluate(log, Candidate("short", [[1.0, 0.0]] * 3)), "candidate 'short': probabilities"),
        (
            lambda log: evaluate(log, HAND_CANDIDATE, dataclasses.replace(HAND_OUTCOME, predictions=np.zeros((4, 3)))),
            "outcome.predictions",
        ),
        (lambda log: evaluate(log, HAND_CANDIDATE, alpha=1.0), "alpha"),
        (lambda log: evaluate(log, HAND_CANDIDATE, interval="jackknife"), "interval"),
        (lambda log: evaluate(log, HAND_CANDIDATE, interval="bootstrap", n_bootstrap=1), "n_bootstrap"),
        (lambda log: evaluate(log, HAND_CANDIDATE, seed=-1), "seed"),
        (lambda log: evaluate(log, HAND_CANDIDATE, support_floor=2.0), "support_floor"),
        (lambda log: evaluate(log, HAND_CANDIDATE, estimator="dr"), "outcome"),
        (lambda log: compare(log, HAND_CANDIDATE, HAND_CANDIDATE, estimator="best"), "estimator"),
        (lambda log: on_policy_value(log, alpha=0.0), "alpha"),
    ],
)
def test_bad_arguments_raise_naming_the_field(call, field):
    with pytest.raises(InvalidBanditLog) as err:
        call(hand_log())
    assert err.value.field == field and str(err.value).startswith(field)
