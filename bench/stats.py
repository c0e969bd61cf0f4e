"""Benchmark: how many experiment comparisons per second the statistics engine sustains.

A cockpit page recomputes every experiment × metric × variant cell on load, so the engine must
do thousands per second. Each case compares 1,000 synthetic cells (`--cells`), batched through
`compare_many` and one at a time through `compare`, repeated `--repeats` times; the table shows
the median and how many times slower than the fastest case it is.

    python bench/stats.py [--cells 1000] [--repeats 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from metrics.stats import ArmStats, compare, compare_many  # noqa: E402

Pairs = list[tuple[ArmStats, ArmStats]]


def _mean_arm(rng: np.random.Generator, name: str, n: int, cuped: bool) -> ArmStats:
    mean, sd, rho = rng.uniform(5, 50), rng.uniform(5, 40), 0.6
    s, ss = n * mean, n * (sd**2 + mean**2)
    if not cuped:
        return ArmStats(name, n, s, ss)
    pre_mean = mean * 0.9
    return ArmStats(name, n, s, ss, pre_sum=n * pre_mean, pre_sum_squares=n * (sd**2 + pre_mean**2),
                    sum_product=n * (rho * sd * sd + mean * pre_mean))


def _proportion_arm(rng: np.random.Generator, name: str, n: int) -> ArmStats:
    k = float(rng.binomial(n, rng.uniform(0.02, 0.3)))
    return ArmStats(name, n, k, k)


def _ratio_arm(rng: np.random.Generator, name: str, n: int) -> ArmStats:
    orders, aov, sd_orders, sd_rev = rng.uniform(0.3, 2.0), rng.uniform(20, 80), 1.0, 60.0
    rev = orders * aov
    return ArmStats(name, n, n * rev, n * (sd_rev**2 + rev**2), denominator_sum=n * orders,
                    denominator_sum_squares=n * (sd_orders**2 + orders**2),
                    sum_product=n * (0.7 * sd_rev * sd_orders + rev * orders))


ARMS: dict[str, tuple[str, Callable[[np.random.Generator, str, int], ArmStats]]] = {
    "mean": ("mean", lambda rng, name, n: _mean_arm(rng, name, n, cuped=False)),
    "mean + CUPED": ("mean", lambda rng, name, n: _mean_arm(rng, name, n, cuped=True)),
    "proportion": ("proportion", _proportion_arm),
    "ratio": ("ratio", _ratio_arm),
}


def make_cells(kind: str, cells: int, seed: int) -> Pairs:
    """`cells` control/variant pairs of one kind, with arm sizes from 1,000 to 100,000."""
    rng = np.random.default_rng(seed)
    build = ARMS[kind][1]
    sizes = rng.integers(1_000, 100_000, size=cells)
    return [(build(rng, "control", int(n)), build(rng, "variant", int(n))) for n in sizes]


def time_case(pairs: Pairs, metric_type: str, method: str, batched: bool, repeats: int) -> list[float]:
    """Wall-clock seconds of each repeat."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        if batched:
            compare_many(pairs, metric_type, method=method)  # type: ignore[arg-type]
        else:
            for control, variant in pairs:
                compare(control, variant, metric_type, method=method)  # type: ignore[arg-type]
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    """Run every case and print the table; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1_000, help="experiment × metric × variant cells per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs per case (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = []
    for kind, (metric_type, _) in ARMS.items():
        pairs = make_cells(kind, args.cells, args.seed)
        for method in ("fixed", "sequential"):
            for batched in (True, False):
                median = statistics.median(time_case(pairs, metric_type, method, batched, args.repeats))
                rows.append((kind, method, "compare_many" if batched else "compare", median))
    fastest = min(r[3] for r in rows)
    print(f"{args.cells} cells per run, median of {args.repeats} runs\n")
    print(f"{'metric':<14} {'method':<11} {'path':<13} {'median ms':>10} {'comparisons/s':>14} {'x fastest':>10}")
    for kind, method, path, median in rows:
        print(f"{kind:<14} {method:<11} {path:<13} {median * 1e3:>10.1f} {args.cells / median:>14,.0f} "
              f"{median / fastest:>10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
