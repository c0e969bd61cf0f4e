"""Benchmark: off-policy evaluation of 10 candidate policies on 1M logged decisions (target < 2 s).

A synthetic log shaped like Momento's: K actions (`--actions`, default 5), the 17 features of
`decisioning.features.FEATURE_NAMES`, a softmax logging policy with 10% uniform exploration,
the full logging distribution logged, conversion-like rewards. Ten candidates: uniform, a
greedy, a softmax and an epsilon-greedy policy on another score, the logging policy itself and
each action alone (cut at ten). Each stage is timed `--repeats` times and the table shows medians; the target is on
the total: validating the log, fitting the cross-fitted outcome model once, validating the
candidates, evaluating each (IPS, SNIPS, DM, DR and the diagnostics) and comparing each with
the logging policy (DR). Timed apart: comparing the candidates with one of them, the
percentile bootstrap (an option) of one evaluation, and building the Policy lab's own ten
candidates from the logged context (`metrics.ope_candidates`: the rules, the bandit's Thompson
probabilities and greedy choice, the propensity model replayed by SGD, uniform, each action).
The load average and each stage's CPU time are printed: on a shared machine the wall time
includes waiting for a CPU, the CPU time does not.

    python bench/ope.py [--decisions 1000000] [--actions 5] [--repeats 3] [--bootstrap 200] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from decisioning.features import FEATURE_NAMES
from metrics.ope import compare, evaluate
from metrics.ope_candidates import PolicyShape, build
from metrics.ope_data import BanditLog, Candidate
from metrics.ope_models import fit_outcome_model

TARGET_SECONDS = 2.0
CANDIDATES = 10


def _softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    probabilities: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return probabilities


def make_log(n: int, k: int, seed: int) -> tuple[dict[str, Any], list[tuple[str, np.ndarray]]]:
    """The log's columns and the candidates' (name, probabilities), all synthetic."""
    rng = np.random.default_rng(seed)
    d = len(FEATURE_NAMES)
    x = np.column_stack([np.ones(n), rng.random((n, 3)), rng.integers(0, 2, (n, d - 4))]).astype(np.float64)
    logging = 0.9 * _softmax(x @ rng.normal(0, 0.5, (d, k))) + 0.1 / k
    action = (logging.cumsum(axis=1) >= rng.random((n, 1))).argmax(axis=1)
    rate = 1.0 / (1.0 + np.exp(3.0 - x @ rng.normal(0, 0.3, (d, k))))
    reward = (rng.random(n) < rate[np.arange(n), action]).astype(np.float64)
    columns = dict(
        actions=tuple(f"variant_{j}" for j in range(k)),
        action=action,
        propensity=logging[np.arange(n), action],
        reward=reward,
        time=np.sort(rng.integers(0, 28 * 86_400, n)),
        context=x,
        logging=logging,
        policy="the rules",
    )
    other = x @ rng.normal(0, 0.5, (d, k))
    candidates = [
        ("uniform", np.full((n, k), 1.0 / k)),
        ("greedy", np.eye(k)[other.argmax(axis=1)]),
        ("soft", _softmax(other)),
        ("epsilon-greedy", 0.8 * np.eye(k)[other.argmax(axis=1)] + 0.2 / k),
        ("logging", logging),
    ]
    candidates += [(f"always {j}", np.eye(k)[np.full(n, j)]) for j in range(k)]
    return columns, candidates[:CANDIDATES]


Timing = tuple[float, float]
"""Median wall-clock and median CPU seconds of a stage's runs."""


def _timed(work: Callable[[], Any], repeats: int) -> tuple[Timing, Any]:
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = work()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return (statistics.median(walls), statistics.median(cpus)), result


def _row(stage: str, timing: Timing, note: str = "") -> None:
    print(f"{stage:<52} {timing[0] * 1e3:>10.0f} {timing[1] * 1e3:>8.0f}{note}")


def main(argv: list[str] | None = None) -> int:
    """Time every stage and print the table (met or MISSED for the target); returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--actions", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="runs per stage (median reported)")
    parser.add_argument("--bootstrap", type=int, default=200, help="replicates in the bootstrap row (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="100k decisions, one run, no bootstrap (a smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.decisions, args.repeats, args.bootstrap = 100_000, 1, 0
    columns, raw = make_log(args.decisions, args.actions, args.seed)
    r = args.repeats
    rows: list[tuple[str, Timing]] = []
    timing, log = _timed(lambda: BanditLog(**columns), r)
    rows.append(("validate the log", timing))
    timing, outcome = _timed(lambda: fit_outcome_model(log), r)
    rows.append(("fit the outcome model once (5 time folds)", timing))
    timing, candidates = _timed(lambda: [Candidate(name, p) for name, p in raw], r)
    rows.append((f"validate {len(raw)} candidates", timing))
    timing, evaluations = _timed(lambda: [evaluate(log, c, outcome) for c in candidates], r)
    rows.append((f"evaluate {len(raw)}: 4 estimators, diagnostics, vs logging", timing))
    total: Timing = (sum(t[0] for _, t in rows), sum(t[1] for _, t in rows))
    print(
        f"{args.decisions:,} decisions, {args.actions} actions, {len(FEATURE_NAMES)} features, "
        f"median of {r} runs; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n"
    )
    print(f"{'stage':<52} {'median ms':>10} {'CPU ms':>8}")
    for stage, timing in rows:
        _row(stage, timing)
    _row(
        "total",
        total,
        f"   target < {TARGET_SECONDS:.0f} s: {'met' if total[0] < TARGET_SECONDS else 'MISSED'}"
        f" (CPU time: {'met' if total[1] < TARGET_SECONDS else 'MISSED'})",
    )
    timing, _ = _timed(lambda: [compare(log, c, candidates[0], outcome) for c in candidates[1:]], r)
    _row(f"(apart) compare {len(raw) - 1} with {candidates[0].name} (DR)", timing)
    shape = PolicyShape(columns["actions"], columns["actions"][0], ((columns["actions"][1], 0.1),))
    kinds = ("uniform", "rules", "thompson", "greedy", "propensity", *(f"variant:{a}" for a in columns["actions"]))
    timing, _ = _timed(lambda: build(log, shape, kinds), r)
    _row(f"(apart) build the lab's {len(kinds)} candidates from context", timing)
    if args.bootstrap:
        timing, _ = _timed(
            lambda: evaluate(log, candidates[2], outcome, interval="bootstrap", n_bootstrap=args.bootstrap), r
        )
        _row(f"(apart) evaluate 1, bootstrap x{args.bootstrap}", timing)
    print(f"\noutcome model cross-fitted R² {outcome.r_squared:.3f}\n")
    print(f"{'candidate':<14} {'DR':>8} {'SNIPS':>8} {'ESS':>10} {'max w':>7}  verdict vs logging")
    for e in evaluations:
        d = e.diagnostics
        print(
            f"{e.name:<14} {e.values['dr'].estimate:>8.4f} {e.values['snips'].estimate:>8.4f} "
            f"{d.effective_sample_size:>10,.0f} {d.max_weight:>7.1f}  {e.versus_logging.verdict}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
