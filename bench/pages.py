"""Benchmark: every cockpit page on a large live lake, first render and live refresh.

For each size (`--sizes`, default 10M,30M,100M events) a lake built once with the streaming
backfill (`bench/backfill.py --keep`, reused when present in `--lakes`), its rollups caught up
(`momento rollup`, timed), then, as in production, the decisioning service writing to it, the
live simulator driving the service at the demo's rate, and the rollup job following it
(`momento rollup --follow`), so the lake's snapshot moves during the timed renders. Each page
runs through Streamlit's AppTest (the whole script, its fragments' first run, every query and
chart):

- first render: empty Streamlit caches and a new warehouse, as on a cockpit's first visit
  (what a running cockpit does once, not per visitor, excluded: Python's module imports, as one
  untimed render comes first, and Streamlit's scan of the installed packages for components);
- filled: from the start of the first render until every panel shows its numbers (a panel whose
  first result takes longer than the cockpit waits says it is being computed and fills in on a
  later redraw; here the page is redrawn every 0.25 s until none does);
- live refresh: the same session rendered again `--refresh` seconds later (the panels' refresh
  period), when the service has appended rows and the rollup job may have committed a run.

Each figure is the median of `--runs`. The table adds the ratio of each page's time at the
largest size to the smallest, and the cockpit's resident memory (this process, which hosts the
AppTest sessions: current and peak). Targets at 100M: first render < 3 s, live refresh < 1 s,
100M / 10M <= 1.5, cockpit RSS < 1.5 GB.

    python bench/pages.py --sizes 10M --runs 1      # quick: one size (lake built if missing)
    python bench/pages.py                           # 10M, 30M and 100M
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Run from a checkout without installing; and drop bench/ from the path, where this file would
# shadow the cockpit's `pages` package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]
import streamlit as st  # noqa: E402
import streamlit.logger  # noqa: E402
from streamlit.components.v2.component_manager import BidiComponentManager  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from cli.processes import exit_on_sigterm, free_loopback_port, service_command, wait_until_healthy  # noqa: E402
from momento.lake.warehouse import Warehouse  # noqa: E402
from momento.settings import PROJECT_ROOT  # noqa: E402
from pages.ui import PANEL_FAILED, PENDING  # noqa: E402

PAGES = ("executive", "journeys", "experiments", "engine_health", "governance")
SIZES = ("10M", "30M", "100M")
DEMO_RATE = 5.0
"""Live sessions per second, as `momento demo` drives the service."""
TARGET_FIRST_S, TARGET_REFRESH_S, TARGET_RATIO, TARGET_RSS_MB = 3.0, 1.0, 1.5, 1536
FILL_POLL_S = 0.25


def _lake(lakes: Path, size: str) -> Path:
    """The lake of `size` in `lakes`, built by bench/backfill.py (which prints its rate and
    peak memory) when it is not there yet."""
    root = lakes / size
    if not (root / "events" / "_delta_log").is_dir():
        print(f"building the {size} lake in {root} (once) ...", file=sys.stderr, flush=True)
        subprocess.run(
            [sys.executable, str(_HERE / "backfill.py"), "--sizes", size, "--keep", str(lakes)],
            cwd=PROJECT_ROOT,
            check=True,
        )
    return root


def _events(lake: Path) -> int:
    wh = Warehouse(lake)
    try:
        return int(wh.scalar("SELECT count(*) FROM events"))
    finally:
        wh.close()


def _momento(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


class Live:
    """The service on the lake, the simulator driving it and the rollup job following it."""

    def __init__(self, lake: Path, rate: float) -> None:
        port = free_loopback_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "MOMENTO_LAKE": str(lake), "MOMENTO_SERVICE_URL": self.url}
        self.log = open(lake.parent / f"{lake.name}-live.log", "a")  # noqa: SIM115 (closed in stop)
        self.processes: list[subprocess.Popen] = []
        self.processes.append(self._spawn(service_command("127.0.0.1", port), env))
        wait_until_healthy(self.url, self.processes[0])
        self.processes.append(self._spawn(_momento("simulate", "--url", self.url, "--rate", str(rate)), env))
        self.processes.append(self._spawn(_momento("rollup", "--follow"), env))

    def _spawn(self, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        return subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=self.log, stderr=self.log)

    def stop(self) -> None:
        """Stop the simulator and the rollup job first, the service last (it flushes its writer)."""
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.log.close()


def _render(at: AppTest) -> tuple[float, int]:
    """Seconds to run `at`, and the failures it showed: exceptions and panels that could not be
    drawn (printed)."""
    started = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - started
    failed = [str(e.value) for e in at.exception] + [
        str(e.value) for e in at.error if any(t in e.value for t in PANEL_FAILED)
    ]
    for failure in failed:
        print(f"    failure: {failure[:300]}", file=sys.stderr, flush=True)
    return seconds, len(failed)


@functools.cache
def _components() -> BidiComponentManager:
    """The installed packages' Streamlit components, discovered once: a Streamlit server scans
    every installed package's metadata for them when it starts (~0.35 s here), an AppTest on its
    first run; a visitor's first render does not pay it."""
    manager = BidiComponentManager()
    manager.discover_and_register_components(start_file_watching=False)
    return manager


def _fresh(page: str) -> AppTest:
    """The app opened on `page` with empty caches and a new warehouse, as a running cockpit
    serves a new visitor (the server's start-up work, `_components`, done once)."""
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=600)
    at._bidi_component_manager = _components()  # AppTest keeps it per instance; no public setter
    return at.switch_page(f"pages/{page}.py")


def _filled(at: AppTest, started: float) -> float:
    """Seconds from `started` until no panel of `at` says it is being computed (`PENDING`),
    redrawing every `FILL_POLL_S` (a browser redraws every `REFRESH_SECONDS`: a viewer sees the
    panels at most that much later)."""
    while any(PENDING in str(e.value) for e in at.info):
        time.sleep(FILL_POLL_S)
        at.run()
    return time.perf_counter() - started


def time_page(page: str, runs: int, refresh: float) -> tuple[float, float, float, int]:
    """Median first-render, all-panels-filled and live-refresh seconds of `page`, and the
    exceptions it showed."""
    _filled(_fresh(page).run(), time.perf_counter())
    first, filled, live, exceptions = [], [], [], 0
    for _ in range(runs):
        at = _fresh(page)
        started = time.perf_counter()
        seconds, errors = _render(at)
        first.append(seconds)
        filled.append(_filled(at, started))
        time.sleep(refresh)
        again, more = _render(at)
        live.append(again)
        exceptions += errors + more
    return statistics.median(first), statistics.median(filled), statistics.median(live), exceptions


def _rss_mb() -> tuple[float, float]:
    """This process's resident memory now and at its peak (MB)."""
    with open("/proc/self/status") as status:
        now = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return now / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated lake sizes (10M, 30M, 100M)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pages", default=",".join(PAGES), help="comma-separated pages")
    parser.add_argument(
        "--lakes",
        type=Path,
        default=Path("/tmp/momento-lakes"),
        help="where the lakes are built once and reused (<dir>/<size>)",
    )
    parser.add_argument("--rate", type=float, default=DEMO_RATE, help="live sessions per second during the renders")
    parser.add_argument("--refresh", type=float, default=5.0, help="seconds between a first render and its refresh")
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    pages = [p.strip() for p in args.pages.split(",") if p.strip()]
    if set(sizes) - set(SIZES) or set(pages) - set(PAGES) or args.runs < 1:
        print(
            f"bench/pages.py: sizes among {', '.join(SIZES)}, pages among {', '.join(PAGES)}, --runs >= 1",
            file=sys.stderr,
        )
        return 2
    streamlit.logger.set_log_level("error")  # AppTest's bare-mode warnings, once per render
    args.lakes.mkdir(parents=True, exist_ok=True)
    rows, setup = [], []
    for size in sizes:
        lake = _lake(args.lakes, size)
        env = {**os.environ, "MOMENTO_LAKE": str(lake)}
        started = time.perf_counter()
        subprocess.run(_momento("rollup"), cwd=PROJECT_ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        catch_up = time.perf_counter() - started
        live = Live(lake, args.rate)
        os.environ.update(MOMENTO_LAKE=str(lake), MOMENTO_SERVICE_URL=live.url)
        try:
            for page in pages:
                first, filled, refresh, exceptions = time_page(page, args.runs, args.refresh)
                rows.append((size, page, first, filled, refresh, exceptions))
                print(
                    f"  {size} {page}: first {first:.2f} s, filled {filled:.2f} s, live refresh {refresh:.2f} s",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            live.stop()
        setup.append((size, _events(lake), catch_up, *_rss_mb()))
    print(
        f"\nCockpit pages on a live lake (AppTest, median of {args.runs}; the simulator at {args.rate:g} sessions/s "
        f"and the rollup job following during the renders). Targets at 100M: first < {TARGET_FIRST_S:g} s, "
        f"refresh < {TARGET_REFRESH_S:g} s, largest / smallest <= {TARGET_RATIO:g}, RSS < {TARGET_RSS_MB:,} MB\n"
    )
    print(f"{'lake':>5} {'events':>12} {'rollup catch-up s':>18} {'cockpit RSS MB (now / peak)':>28}")
    for size, events, catch_up, now, peak in setup:
        print(f"{size:>5} {events:>12,} {catch_up:>18.1f} {now:>15,.0f} / {peak:,.0f}")
    print(f"\n{'lake':>5}  {'page':<14} {'first s':>8} {'filled s':>9} {'refresh s':>10}  errors")
    for size, page, first, filled, refresh, exceptions in rows:
        print(f"{size:>5}  {page:<14} {first:>8.2f} {filled:>9.2f} {refresh:>10.2f}  {exceptions}")
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        times = {(size, page): (first, refresh) for size, page, first, _, refresh, _ in rows}
        print(f"\n{'page':<14} {large + ' / ' + small + ' first':>16} {'refresh':>8}")
        for page in pages:
            (f0, r0), (f1, r1) = times[small, page], times[large, page]
            print(f"{page:<14} {f1 / f0:>16.2f} {r1 / r0:>8.2f}")
    print(
        f"\nload average (1, 5, 15 min) at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
        f"on {os.cpu_count()} cores"
    )
    return 1 if any(exceptions for *_, exceptions in rows) else 0


if __name__ == "__main__":
    exit_on_sigterm()  # a plain `kill` stops what the benchmark started
    sys.exit(main())
