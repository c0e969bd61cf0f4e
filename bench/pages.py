"""Benchmark: time to the first complete render of each cockpit page on a large lake.

Each page runs through Streamlit's AppTest (the whole script, its fragments' first run, every
query and chart) on a backfilled lake of about 1M and 10M events. Lakes are built once with
the backfill library function and kept in `--cache` (default /tmp/momento-bench-lakes/).

- cold: empty Streamlit caches and a new warehouse (a fresh DuckDB), as on a cockpit's first
  visit after start (Python's module imports excluded: one untimed render comes first);
- warm: the same session rendered again while its cached queries are fresh, as on a page
  switch or a rerun.

Each figure is the median of `--runs` renders. Target at 10M events: every page ready in under
2 s warm and 5 s cold.

    python bench/pages.py [--sizes 1M,10M] [--runs 3] [--cache DIR]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from pathlib import Path

# Run from a checkout without installing; and drop bench/ from the path, where this file would
# shadow the cockpit's `pages` package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]
import streamlit as st  # noqa: E402
import streamlit.logger  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from momento.scenario import load_scenario  # noqa: E402
from decisioning.simulator.backfill import backfill  # noqa: E402
from momento.lake.warehouse import Warehouse  # noqa: E402
from momento.settings import PROJECT_ROOT, load_settings  # noqa: E402

PAGES = ("executive", "journeys", "experiments", "engine_health", "governance")
DAYS = 28
USERS = {"1M": 51_000, "10M": 510_000}
"""Users whose 28 days of history make about 1M and 10M events with the bundled scenario."""
TARGET_WARM_S, TARGET_COLD_S = 2.0, 5.0


def _lake(cache: Path, size: str) -> tuple[Path, int]:
    """The cached lake of `size` (built on first use) and its event count."""
    root = cache / f"lake-{size}"
    if not (root / "events" / "_delta_log").is_dir():
        print(f"building the {size} lake in {root} (once) ...", flush=True)
        scenario = load_scenario(load_settings().scenario)
        backfill(root, scenario, days=DAYS, users=USERS[size], seed=7, progress=True)
    wh = Warehouse(root)
    try:
        return root, int(wh.scalar("SELECT count(*) FROM events"))
    finally:
        wh.close()


def _down_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _render(at: AppTest) -> tuple[float, int]:
    started = time.perf_counter()
    at.run()
    return time.perf_counter() - started, len(at.exception)


def _fresh(page: str) -> AppTest:
    """The app opened on `page` with empty caches and a new warehouse."""
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=600)
    return at.switch_page(f"pages/{page}.py")


def time_page(page: str, runs: int) -> tuple[float, float, int]:
    """Median cold and warm render seconds of `page`, and the exceptions it showed. One untimed
    render first, so Python's first imports of the page's libraries are not counted as cold."""
    _render(_fresh(page))
    cold, warm, exceptions = [], [], 0
    for _ in range(runs):
        at = _fresh(page)
        seconds, errors = _render(at)
        cold.append(seconds)
        exceptions += errors
        seconds, errors = _render(at)
        warm.append(seconds)
        exceptions += errors
    return statistics.median(cold), statistics.median(warm), exceptions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,10M", help="comma-separated lake sizes (1M, 10M)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pages", default=",".join(PAGES), help="comma-separated pages")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/momento-bench-lakes"))
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    pages = [p.strip() for p in args.pages.split(",") if p.strip()]
    if set(sizes) - set(USERS) or set(pages) - set(PAGES) or args.runs < 1:
        print(f"bench/pages.py: sizes among {', '.join(USERS)}, pages among {', '.join(PAGES)}, --runs >= 1",
              file=sys.stderr)
        return 2
    streamlit.logger.set_log_level("error")  # AppTest's bare-mode warnings, once per render
    args.cache.mkdir(parents=True, exist_ok=True)
    os.environ["MOMENTO_SERVICE_URL"] = _down_url()  # no engine: its probe answers at once
    rows = []
    for size in sizes:
        lake, events = _lake(args.cache, size)
        os.environ["MOMENTO_LAKE"] = str(lake)
        for page in pages:
            cold, warm, exceptions = time_page(page, args.runs)
            rows.append((size, events, page, cold, warm, exceptions))
            print(f"  {size} {page}: cold {cold:.2f} s, warm {warm:.2f} s", file=sys.stderr, flush=True)
    print(f"\nTime to first complete render (AppTest, median of {args.runs}); target at 10M events: "
          f"warm < {TARGET_WARM_S:g} s, cold < {TARGET_COLD_S:g} s\n")
    print(f"{'lake':>5} {'events':>11}  {'page':<14} {'cold s':>7} {'warm s':>7} {'warm/cold':>9}  {'target':<6} errors")
    failed = False
    for size, events, page, cold, warm, exceptions in rows:
        met = warm < TARGET_WARM_S and cold < TARGET_COLD_S and exceptions == 0
        failed |= size == "10M" and not met
        print(f"{size:>5} {events:>11,}  {page:<14} {cold:>7.2f} {warm:>7.2f} {warm / cold:>9.2f}  "
              f"{'met' if met else 'MISSED':<6} {exceptions}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
