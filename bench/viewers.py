"""Many viewers: `--viewers` headless browsers on the live cockpit for `--minutes`.

Backfills a small lake under /tmp (3 days, 2,000 users), starts the service, the simulator at
the demo's 5 sessions a second and the cockpit (`momento cockpit`), then opens `--viewers`
Chromium sessions (Debian's `chromium`, one browser, a context each, driven by playwright).
Each viewer goes round the five pages: open the page, wait until it is drawn (the sidebar's
filters, a chart, and Streamlit no longer running the script: the refresh time), then stay
`--dwell` seconds while the page's panels refresh themselves, and on to the next page. Any
Streamlit exception box on a page is counted. The cockpit's RSS (Streamlit's process) is
sampled every 5 s. Prints per page the refreshes, median and p95 refresh time and the
exceptions, and the cockpit's RSS.

    python bench/viewers.py [--viewers 20] [--minutes 5] [--dwell 5] [--quick]   # --quick: 3 viewers, 1 minute
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx
import numpy as np
from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cli.processes import free_loopback_port, wait_until_healthy  # noqa: E402
from decisioning.simulator.backfill import backfill  # noqa: E402
from momento.scenario import load_scenario  # noqa: E402
from momento.settings import load_settings  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGES = {
    "executive": "",
    "journeys": "journeys",
    "experiments": "experiments",
    "engine_health": "engine_health",
    "governance": "governance",
}
CHART = '[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg'
EXCEPTION = '[data-testid="stException"]'
FILTERS = '[data-testid="stSidebar"] [data-testid="stSelectbox"]'
NOT_RUNNING = (
    "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
    " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')"
)
READY_TIMEOUT_MS = 120_000


def rss_mb(pid: int) -> float:
    """A process's resident set size in MB (NaN once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Tally:
    """Refresh times and exceptions per page, and what went wrong."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = defaultdict(list)
        self.exceptions: dict[str, int] = defaultdict(int)
        self.failures: list[str] = []


async def _viewer(browser, url: str, index: int, deadline: float, dwell: float, tally: Tally) -> None:
    context = await browser.new_context(viewport={"width": 1440, "height": 1000})
    tab = await context.new_page()
    names = list(PAGES)
    step = index  # the viewers start on different pages
    try:
        while time.monotonic() < deadline:
            name = names[step % len(names)]
            step += 1
            began, clock = time.perf_counter(), time.strftime("%H:%M:%S")
            waiting_for = "the page"
            try:
                await tab.goto(f"{url}/{PAGES[name]}")
                waiting_for = "the sidebar's filters"
                await tab.locator(FILTERS).first.wait_for(state="visible", timeout=READY_TIMEOUT_MS)
                waiting_for = "a chart"
                await tab.locator(CHART).first.wait_for(state="visible", timeout=READY_TIMEOUT_MS)
                waiting_for = "the end of the script run"
                await tab.wait_for_function(NOT_RUNNING, timeout=READY_TIMEOUT_MS)
            except Exception as exc:  # a page that never got ready: counted, and the viewer goes on
                shown = await tab.locator(EXCEPTION).count()
                tally.failures.append(
                    f"{clock} viewer {index} {name}, waiting for {waiting_for}: {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0]}; exceptions shown: {shown}"
                )
                continue
            tally.seconds[name].append(time.perf_counter() - began)
            await tab.wait_for_timeout(dwell * 1000)  # the panels refresh themselves meanwhile
            tally.exceptions[name] += await tab.locator(EXCEPTION).count()
    finally:
        await context.close()


async def _view(url: str, viewers: int, seconds: float, dwell: float) -> Tally:
    tally = Tally()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(_viewer(browser, url, i, deadline, dwell, tally) for i in range(viewers)))
        await browser.close()
    return tally


def _wait_for_cockpit(url: str, process: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/_stcore/health", timeout=1.0).status_code == httpx.codes.OK:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the cockpit at {url} did not answer within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--dwell", type=float, default=5.0, help="seconds on a page after it is drawn")
    parser.add_argument("--quick", action="store_true", help="3 viewers for 1 minute")
    args = parser.parse_args(argv)
    viewers, minutes = (3, 1.0) if args.quick else (args.viewers, args.minutes)
    if not Path(CHROMIUM).exists():
        print(f"no Chromium at {CHROMIUM}: `make chromium` installs Debian's", file=sys.stderr)
        return 2
    python = [sys.executable, "-m", "cli.main"]
    with tempfile.TemporaryDirectory(prefix="momento-viewers-") as tmp:
        lake = Path(tmp) / "lake"
        backfill(lake, load_scenario(load_settings().scenario), days=3, users=2_000, seed=11, progress=False)
        service_port, cockpit_port = free_loopback_port(), free_loopback_port()
        service_url, cockpit_url = f"http://127.0.0.1:{service_port}", f"http://127.0.0.1:{cockpit_port}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MOMENTO_")},
            "MOMENTO_LAKE": str(lake),
            "MOMENTO_SERVICE_URL": service_url,
            "MOMENTO_COCKPIT_PORT": str(cockpit_port),
        }
        commands = {
            "service": [*python, "serve", "--port", str(service_port)],
            "simulator": [*python, "simulate", "--url", service_url, "--rate", "5"],
            "cockpit": [*python, "cockpit", "--port", str(cockpit_port)],
        }
        processes: dict[str, subprocess.Popen] = {}
        rss: list[float] = []
        try:
            for name, command in commands.items():
                with (Path(tmp) / f"{name}.log").open("wb") as log:
                    processes[name] = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
                if name == "service":
                    wait_until_healthy(service_url, processes[name])
            _wait_for_cockpit(cockpit_url, processes["cockpit"])
            cockpit = processes["cockpit"].pid
            rss.append(rss_mb(cockpit))

            async def run() -> Tally:
                async def sample() -> None:
                    while True:
                        await asyncio.sleep(5.0)
                        rss.append(rss_mb(cockpit))

                sampler = asyncio.create_task(sample())
                try:
                    return await _view(cockpit_url, viewers, minutes * 60, args.dwell)
                finally:
                    sampler.cancel()

            started = time.monotonic()
            tally = asyncio.run(run())
            elapsed = time.monotonic() - started
        finally:
            for name in reversed(list(processes)):
                process = processes[name]
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        process.wait(60)
                    except subprocess.TimeoutExpired:
                        process.kill()
    print(f"{viewers} viewers for {elapsed / 60:.1f} minutes, {args.dwell:g} s on each page after it is drawn")
    print(f"\n{'page':<15} {'refreshes':>9} {'median s':>9} {'p95 s':>7} {'max s':>7} {'exceptions':>10}")
    for name in PAGES:
        seconds = np.array(tally.seconds[name]) if tally.seconds[name] else np.array([np.nan])
        print(
            f"{name:<15} {len(tally.seconds[name]):>9} {np.median(seconds):>9.2f} "
            f"{np.percentile(seconds, 95):>7.2f} {np.max(seconds):>7.2f} {tally.exceptions[name]:>10}"
        )
    print(
        f"\ncockpit RSS: {rss[0]:.0f} MB before the viewers, median {np.nanmedian(rss):.0f} MB, "
        f"max {np.nanmax(rss):.0f} MB ({len(rss)} samples); pages never ready: {len(tally.failures)}"
    )
    for failure in tally.failures[:10]:
        print("  ", failure)
    ok = not tally.failures and not any(tally.exceptions.values())
    print("verdict:", "no exception, every page drawn" if ok else "exceptions or pages never drawn (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
