"""Benchmark: the statistics engine's throughput, and `momento analyze` as a program.

Engine: a cockpit page recomputes every experiment × metric × variant cell on load, so the
engine must do thousands per second. Each case compares 1,000 synthetic cells (`--cells`),
batched through `compare_many` and one at a time through `compare`, repeated `--repeats` times;
the table shows the median and how many times slower than the fastest case it is.

CLI: the cold start of `momento analyze` on the README's two-arm proportion
request (median of `--starts` processes, target < 0.4 s), the `--jsonl` throughput on
`--lines` two-arm proportion requests in one process (target >= 5,000 analyses/s), and
`metrics.analyze.analyze` called in process, request by request, on `--in-process` of them. With `--baseline PATH` (a
checkout of an earlier commit, e.g. `git archive <commit> | tar -x -C PATH`) the same runs are
made on it, interleaved with this checkout's so both see the same machine load, and the table
compares them; a checkout without `--jsonl` is charged one process per request. Child processes
may write bytecode caches, as an installed program does (the first, discarded, start writes them).

    python bench/stats.py [--only engine|cli] [--cells 1000] [--repeats 5] [--seed 0]
                          [--starts 15] [--lines 20000] [--in-process 300] [--baseline PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from metrics.stats import ArmStats, compare, compare_many  # noqa: E402

Pairs = list[tuple[ArmStats, ArmStats]]


def _mean_arm(rng: np.random.Generator, name: str, n: int, cuped: bool) -> ArmStats:
    mean, sd, rho = rng.uniform(5, 50), rng.uniform(5, 40), 0.6
    s, ss = n * mean, n * (sd**2 + mean**2)
    if not cuped:
        return ArmStats(name, n, s, ss)
    pre_mean = mean * 0.9
    return ArmStats(
        name,
        n,
        s,
        ss,
        pre_sum=n * pre_mean,
        pre_sum_squares=n * (sd**2 + pre_mean**2),
        sum_product=n * (rho * sd * sd + mean * pre_mean),
    )


def _proportion_arm(rng: np.random.Generator, name: str, n: int) -> ArmStats:
    k = float(rng.binomial(n, rng.uniform(0.02, 0.3)))
    return ArmStats(name, n, k, k)


def _ratio_arm(rng: np.random.Generator, name: str, n: int) -> ArmStats:
    orders, aov, sd_orders, sd_rev = rng.uniform(0.3, 2.0), rng.uniform(20, 80), 1.0, 60.0
    rev = orders * aov
    return ArmStats(
        name,
        n,
        n * rev,
        n * (sd_rev**2 + rev**2),
        denominator_sum=n * orders,
        denominator_sum_squares=n * (sd_orders**2 + orders**2),
        sum_product=n * (0.7 * sd_rev * sd_orders + rev * orders),
    )


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


def engine_table(cells: int, repeats: int, seed: int) -> None:
    """Comparisons per second for every metric kind, method and path."""
    rows = []
    for kind, (metric_type, _) in ARMS.items():
        pairs = make_cells(kind, cells, seed)
        for method in ("fixed", "sequential"):
            for batched in (True, False):
                median = statistics.median(time_case(pairs, metric_type, method, batched, repeats))
                rows.append((kind, method, "compare_many" if batched else "compare", median))
    fastest = min(r[3] for r in rows)
    print(f"{cells} cells per run, median of {repeats} runs\n")
    print(f"{'metric':<14} {'method':<11} {'path':<13} {'median ms':>10} {'comparisons/s':>14} {'x fastest':>10}")
    for kind, method, path, median in rows:
        print(
            f"{kind:<14} {method:<11} {path:<13} {median * 1e3:>10.1f} {cells / median:>14,.0f} "
            f"{median / fastest:>10.2f}"
        )


# ---------------------------------------------------------------------------------------------
# `momento analyze` as a program

README_REQUEST = {
    "metric_type": "proportion",
    "variants": [
        {"name": "control", "n": 10_000, "sum": 500, "sum_squares": 500},
        {"name": "treatment", "n": 10_000, "sum": 580, "sum_squares": 580},
    ],
}

IN_PROCESS = """import json, sys, time
from metrics.analyze import analyze
texts = sys.stdin.read().splitlines()
start = time.perf_counter()
for text in texts:
    analyze(text)
print(json.dumps(time.perf_counter() - start))
"""


def proportion_requests(lines: int, seed: int) -> list[str]:
    """Two-arm proportion requests (default method), arms of 1,000 to 100,000 units."""
    rng = np.random.default_rng(seed)
    out = []
    for n_c, n_v, p in zip(
        rng.integers(1_000, 100_000, lines), rng.integers(1_000, 100_000, lines), rng.uniform(0.02, 0.3, lines)
    ):
        k_c, k_v = int(rng.binomial(n_c, p)), int(rng.binomial(n_v, p * rng.uniform(0.9, 1.15)))
        out.append(
            json.dumps(
                {
                    "metric_type": "proportion",
                    "variants": [
                        {"name": "control", "n": int(n_c), "sum": k_c},
                        {"name": "treatment", "n": int(n_v), "sum": k_v},
                    ],
                }
            )
        )
    return out


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


class Timing(NamedTuple):
    """Wall-clock and CPU (user + system) seconds of one child process."""

    wall: float
    cpu: float


def _run(root: Path, args: list[str], text: str) -> tuple[Timing, subprocess.CompletedProcess[str]]:
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args], cwd=root, input=text, capture_output=True, text=True, env=_child_env(), check=False
    )
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    return Timing(wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime), done


def _cli(root: Path) -> list[str]:
    """How `momento` is run from the checkout at `root` (cli/main.py; momento/cli.py before)."""
    return ["-m", "cli.main" if (root / "cli" / "main.py").is_file() else "momento.cli"]


def cold_start(root: Path) -> Timing:
    """One `momento analyze` process on the README request."""
    timing, done = _run(root, [*_cli(root), "analyze"], json.dumps(README_REQUEST))
    if done.returncode != 0 or "comparisons" not in done.stdout:
        raise RuntimeError(f"momento analyze failed in {root}: {done.stderr.strip()[-400:]}")
    return timing


def jsonl_rate(root: Path, requests: list[str]) -> Timing | None:
    """Analyses per wall-clock and per CPU second through `analyze --jsonl` (start-up included);
    None for a checkout without --jsonl."""
    timing, done = _run(root, [*_cli(root), "analyze", "--jsonl"], "\n".join(requests) + "\n")
    if done.returncode == 2 and "--jsonl" in done.stderr:
        return None
    answers = done.stdout.splitlines()
    if done.returncode != 0 or len(answers) != len(requests) or '"error"' in answers[0]:
        raise RuntimeError(f"analyze --jsonl failed in {root}: {done.stderr.strip()[-400:]}")
    return Timing(len(requests) / timing.wall, len(requests) / timing.cpu)


def in_process_rate(root: Path, requests: list[str]) -> float:
    """Analyses per second calling `metrics.analyze.analyze` request by request in one process."""
    _, done = _run(root, ["-c", IN_PROCESS], "\n".join(requests))
    if done.returncode != 0:
        raise RuntimeError(f"in-process analyze failed in {root}: {done.stderr.strip()[-400:]}")
    return len(requests) / float(done.stdout)


def cli_table(starts: int, lines: int, in_process_lines: int, seed: int, baseline: Path | None) -> None:
    """Cold start and throughput of `momento analyze`, for this checkout and optionally a baseline.
    Wall-clock figures are what a user waits; CPU figures (user + system time of the child) are
    far less sensitive to other jobs on a shared machine."""
    roots = {"after": ROOT} | ({"before": baseline} if baseline else {})
    for root in roots.values():
        cold_start(root)  # writes the bytecode caches; not counted
    starts_of: dict[str, list[Timing]] = {name: [] for name in roots}
    floor: list[Timing] = []
    for _ in range(starts):
        for name, root in roots.items():  # interleaved: both see the same load
            starts_of[name].append(cold_start(root))
        floor.append(_run(ROOT, ["-c", "import numpy, pydantic_core"], "")[0])
    requests = proportion_requests(lines, seed)
    cold = {
        name: Timing(statistics.median(t.wall for t in ts), statistics.median(t.cpu for t in ts))
        for name, ts in starts_of.items()
    }
    jsonl = {name: jsonl_rate(root, requests) for name, root in roots.items()}
    in_process = {name: in_process_rate(root, requests[:in_process_lines]) for name, root in roots.items()}

    def rate(name: str, pick: int) -> str:
        measured = jsonl[name]
        if measured is None:
            return f"{1 / cold[name][pick]:,.1f} (no --jsonl: a process each)"
        return f"{measured[pick]:,.0f}"

    rows = [
        ("cold start, median wall s (target < 0.4)", {n: f"{v.wall:.3f}" for n, v in cold.items()}),
        (
            "cold start, wall range s",
            {n: f"{min(t.wall for t in ts):.3f}-{max(t.wall for t in ts):.3f}" for n, ts in starts_of.items()},
        ),
        ("cold start, median CPU s", {n: f"{v.cpu:.3f}" for n, v in cold.items()}),
        (
            "  floor: python -c 'import numpy, pydantic_core', wall / CPU s",
            {
                n: f"{statistics.median(t.wall for t in floor):.3f} / {statistics.median(t.cpu for t in floor):.3f}"
                for n in roots
            },
        ),
        (f"--jsonl, {lines:,} requests: analyses per wall s (>= 5,000)", {n: rate(n, 0) for n in roots}),
        (f"--jsonl, {lines:,} requests: analyses per CPU s", {n: rate(n, 1) for n in roots}),
        (
            f"analyze() in process, {in_process_lines:,} requests: analyses/s",
            {n: f"{v:,.0f}" for n, v in in_process.items()},
        ),
    ]
    names = list(roots)[::-1]
    print(f"{starts} starts per checkout (interleaved), load average {os.getloadavg()[0]:.2f} at the end\n")
    print(f"{'':<58}" + "".join(f"{name:>36}" for name in names))
    for label, values in rows:
        print(f"{label:<58}" + "".join(f"{values[name]:>36}" for name in names))


def main(argv: list[str] | None = None) -> int:
    """Run the engine and/or CLI benchmarks and print their tables; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("engine", "cli"), default=None, help="run one of the two tables")
    parser.add_argument("--cells", type=int, default=1_000, help="experiment × metric × variant cells per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs per case (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--starts", type=int, default=15, help="cold starts per checkout (median reported)")
    parser.add_argument("--lines", type=int, default=20_000, help="requests piped through analyze --jsonl")
    parser.add_argument("--in-process", type=int, default=300, help="requests for the in-process analyze() rate")
    parser.add_argument("--baseline", type=Path, default=None, help="an earlier checkout to compare with")
    args = parser.parse_args(argv)
    if args.only != "cli":
        engine_table(args.cells, args.repeats, args.seed)
    if args.only != "engine":
        if args.only is None:
            print()
        cli_table(args.starts, args.lines, args.in_process, args.seed, args.baseline)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
