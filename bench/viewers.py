"""Many viewers: `--viewers` sessions on the live cockpit for `--minutes`.

Backfills a small lake under /tmp (3 days, 2,000 users), starts what `momento demo` runs (the
service, the simulator at the demo's 5 sessions a second, the rollup job following the lake, the
cockpit), then opens `--viewers` sessions, driven one of two ways (`--driver`):

- `chromium` (default): Debian's Chromium, one browser, a context per viewer, driven by
  playwright. Each viewer goes round the five pages: open the page, wait until it is drawn (the
  sidebar's filters, a chart, and Streamlit no longer running the script: the load time), stay
  `--dwell` seconds while the page's panels refresh themselves, and on to the next page. On a
  two-core machine the browsers' own rendering takes most of the CPU, so the times are the
  browsers' as much as the cockpit's.
- `protocol`: each viewer is a Streamlit session spoken to over its websocket as the browser
  speaks to it (`/_stcore/stream`: a run of the page, then the reruns of every fragment at the
  interval the cockpit asks for), without rendering: the cockpit's own cost for that many
  sessions. Load time: from asking for the page to the end of its run; refresh time: from a
  fragment's timer to the end of its rerun.

Any Streamlit exception box on a page, and any panel that says it could not be drawn, is
counted. The cockpit's RSS (Streamlit's process) is sampled every 5 s. Prints per page the
loads, median and p95 load time, the refreshes and their median and p95 (protocol), the
failures, and the cockpit's RSS.

    python bench/viewers.py [--viewers 20] [--minutes 5] [--dwell 5] [--driver protocol] [--quick]
    # --quick: 3 viewers, 1 minute
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
import websockets
from playwright.async_api import async_playwright
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cli.processes import exit_on_sigterm, free_loopback_port, wait_until_healthy  # noqa: E402
from decisioning.simulator.backfill import backfill  # noqa: E402
from momento.scenario import load_scenario  # noqa: E402
from momento.settings import load_settings  # noqa: E402
from pages.ui import PANEL_FAILED  # noqa: E402

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
    """Load and refresh times and exceptions per page, and what went wrong."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = defaultdict(list)
        self.refreshes: dict[str, list[float]] = defaultdict(list)
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


def _rerun(page: str, fragment_id: str = "") -> bytes:
    """What the browser sends to run `page` (a URL path; "" the default page), or one of its
    fragments on its timer."""
    message = BackMsg()
    message.rerun_script.page_name = page
    message.rerun_script.query_string = ""
    if fragment_id:
        message.rerun_script.fragment_id = fragment_id
        message.rerun_script.is_auto_rerun = True
    return message.SerializeToString()


async def _run(ws, request: bytes, name: str, tally: Tally, fragments: dict[str, float]) -> float:
    """Send `request` and read the cockpit's answer to the end of the run it asked for: seconds.
    Exceptions and failed panels are counted on `name`; the fragments the run asks to be rerun
    on a timer are put in `fragments` (id -> interval)."""
    began = time.perf_counter()
    await ws.send(request)
    while True:
        message = ForwardMsg()
        message.ParseFromString(await asyncio.wait_for(ws.recv(), READY_TIMEOUT_MS / 1000))
        kind = message.WhichOneof("type")
        if kind == "delta" and message.delta.WhichOneof("type") == "new_element":
            element = message.delta.new_element
            failed = element.WhichOneof("type") == "alert" and any(t in element.alert.body for t in PANEL_FAILED)
            if element.WhichOneof("type") == "exception" or failed:
                tally.exceptions[name] += 1
        elif kind == "auto_rerun":
            fragments[message.auto_rerun.fragment_id] = message.auto_rerun.interval
        elif kind == "script_finished" and message.script_finished in (
            ForwardMsg.FINISHED_SUCCESSFULLY,
            ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY,
            ForwardMsg.FINISHED_WITH_COMPILE_ERROR,
        ):  # FINISHED_EARLY_FOR_RERUN: the run that follows is read too
            return time.perf_counter() - began


async def _session(url: str, index: int, deadline: float, dwell: float, tally: Tally) -> None:
    """One viewer as a Streamlit session over its websocket (see the module docstring)."""
    names = list(PAGES)
    step = index
    while time.monotonic() < deadline:
        # As a browser's: no keep-alive pings of its own (a page cannot send any; the server's are
        # answered), and every message read off the socket as it comes, however many are queued.
        async with websockets.connect(
            url.replace("http://", "ws://") + "/_stcore/stream",
            subprotocols=["streamlit"],
            max_size=None,
            max_queue=None,
            ping_interval=None,
            open_timeout=READY_TIMEOUT_MS / 1000,
        ) as ws:
            while time.monotonic() < deadline:
                name = names[step % len(names)]
                step += 1
                clock, fragments = time.strftime("%H:%M:%S"), {}
                try:
                    tally.seconds[name].append(await _run(ws, _rerun(PAGES[name]), name, tally, fragments))
                    stay = time.monotonic() + dwell
                    due = {fragment: time.monotonic() + every for fragment, every in fragments.items()}
                    while due and min(due.values()) < stay:
                        fragment = min(due, key=due.__getitem__)
                        await asyncio.sleep(max(0.0, due[fragment] - time.monotonic()))
                        request = _rerun(PAGES[name], fragment)
                        tally.refreshes[name].append(await _run(ws, request, name, tally, {}))
                        due[fragment] = time.monotonic() + fragments[fragment]
                    await asyncio.sleep(max(0.0, stay - time.monotonic()))
                except TimeoutError:
                    tally.failures.append(f"{clock} viewer {index} {name}: no end of the run within 120 s")
                    break  # a new session: this one may still be running it
                except websockets.ConnectionClosed as closed:
                    tally.failures.append(f"{clock} viewer {index} {name}: the cockpit closed the session: {closed}")
                    break


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
    parser.add_argument("--driver", choices=("chromium", "protocol"), default="chromium", help="see above")
    parser.add_argument("--quick", action="store_true", help="3 viewers for 1 minute")
    args = parser.parse_args(argv)
    viewers, minutes = (3, 1.0) if args.quick else (args.viewers, args.minutes)
    if args.driver == "chromium" and not Path(CHROMIUM).exists():
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
            "rollups": [*python, "rollup", "--follow"],
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
                    if args.driver == "chromium":
                        return await _view(cockpit_url, viewers, minutes * 60, args.dwell)
                    tally = Tally()
                    deadline = time.monotonic() + minutes * 60
                    await asyncio.gather(
                        *(_session(cockpit_url, i, deadline, args.dwell, tally) for i in range(viewers))
                    )
                    return tally
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
    print(
        f"{viewers} viewers ({args.driver}) for {elapsed / 60:.1f} minutes, {args.dwell:g} s on each page "
        f"after it is drawn; load average at the end {', '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print(
        f"\n{'page':<15} {'loads':>6} {'median s':>9} {'p95 s':>7} {'max s':>7} "
        f"{'refreshes':>9} {'median s':>9} {'p95 s':>7} {'failures':>8}"
    )
    for name in PAGES:
        loads, refreshes = (np.array(tally.seconds[name] or [np.nan]), np.array(tally.refreshes[name] or [np.nan]))
        print(
            f"{name:<15} {len(tally.seconds[name]):>6} {np.median(loads):>9.2f} {np.percentile(loads, 95):>7.2f} "
            f"{np.max(loads):>7.2f} {len(tally.refreshes[name]):>9} {np.median(refreshes):>9.2f} "
            f"{np.percentile(refreshes, 95):>7.2f} {tally.exceptions[name]:>8}"
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
    exit_on_sigterm()  # a plain `kill` stops what the benchmark started
    sys.exit(main())
