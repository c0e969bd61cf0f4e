"""The whole system in a real headless Chromium: backfilled history, the service, the simulator
driving it live, the monitors (`momento watch`) and the cockpit. Every page renders its charts
with no Streamlit exception, a number moves as live data arrives, the sidebar's filters live in
the URL across page switches, an alert the watcher raised and an arm paused through the service
show on their pages, and each page's screenshot is saved in artifacts/screenshots/ (and copied to
docs/screenshots/ for the README when MOMENTO_UPDATE_SCREENSHOTS=1, so a test run leaves the
checkout clean).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from cli.processes import free_loopback_port
from decisioning.simulator.backfill import backfill
from momento.scenario import load_scenario
from momento.settings import PROJECT_ROOT

pytestmark = pytest.mark.e2e

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
    "policy_lab": "policy_lab",
    "engine_health": "engine_health",
    "governance": "governance",
}
"""Screenshot name -> URL path of the page (st.navigation derives it from the file name)."""
MONITORS = """
interval_s = 1

[[rules]]
name = "stale_lake"
kind = "freshness"
max_lag_s = 0.001  # below any writer lag: an alert open from the first evaluation, for the pages to show
"""
"""The watcher's rules in this system: one that always fires."""
ARTIFACTS = PROJECT_ROOT / "artifacts" / "screenshots"
DOCS = PROJECT_ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1440, "height": 1000}
CHART = '[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg'
EXCEPTION = '[data-testid="stException"]'


def _wait_for(url: str, process: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before answering {url}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer {url} within {timeout:.0f} s")


def _stop(process: subprocess.Popen) -> None:
    """Ask politely (SIGINT, as Ctrl-C), then insist; only the process this test started."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def system(tmp_path_factory) -> Iterator[dict[str, str]]:
    """Backfill, then start service, simulator and cockpit on free loopback ports; stop them all."""
    lake = tmp_path_factory.mktemp("e2e") / "lake"
    backfill(lake, load_scenario(PROJECT_ROOT / "data" / "scenario.toml"), days=3, users=2_000, seed=11, progress=False)
    service_port, cockpit_port = free_loopback_port(), free_loopback_port()
    service_url, cockpit_url = f"http://127.0.0.1:{service_port}", f"http://127.0.0.1:{cockpit_port}"
    env = {**os.environ, "MOMENTO_LAKE": str(lake), "MOMENTO_SERVICE_URL": service_url, "PYTHONUNBUFFERED": "1"}
    logs = tmp_path_factory.mktemp("e2e-logs")
    with contextlib.ExitStack() as stack:

        def start(name: str, command: list[str]) -> subprocess.Popen:
            log = stack.enter_context(open(logs / f"{name}.log", "w"))
            process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            stack.callback(_stop, process)  # stopped in reverse order of starting, before its log closes
            return process

        service = start("service", [sys.executable, "-m", "cli.main", "serve", "--port", str(service_port)])
        _wait_for(f"{service_url}/healthz", service, f"the service (log: {logs / 'service.log'})")
        start("simulator", [sys.executable, "-m", "cli.main", "simulate", "--url", service_url, "--rate", "5"])
        monitors = logs / "monitors.toml"
        monitors.write_text(MONITORS)
        start(
            "watcher", [sys.executable, "-m", "cli.main", "watch", "--monitors", str(monitors), "--metrics-port", "0"]
        )
        cockpit = start(
            "cockpit",
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.port",
                str(cockpit_port),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
            ],
        )
        _wait_for(f"{cockpit_url}/_stcore/health", cockpit, f"the cockpit (log: {logs / 'cockpit.log'})")
        yield {"cockpit": cockpit_url, "service": service_url}


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: `make chromium` installs Debian's"
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT, color_scheme="light")
    tab = context.new_page()
    yield tab
    context.close()


def _ready(tab, timeout_ms: int = 45_000) -> None:
    """The page has drawn its sidebar and charts, and Streamlit has finished running the script."""
    expect(tab.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]')).to_have_count(3, timeout=timeout_ms)
    tab.locator(CHART).first.wait_for(state="visible", timeout=timeout_ms)
    tab.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
        timeout=timeout_ms,
    )


def _screenshot(tab, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its main block, so grow the viewport to it."""
    height = tab.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    tab.set_viewport_size({"width": VIEWPORT["width"], "height": min(max(height, VIEWPORT["height"]), 12_000)})
    tab.wait_for_timeout(800)  # charts re-lay out to the new size
    tab.screenshot(path=str(path), full_page=True)
    tab.set_viewport_size(VIEWPORT)


def _metric(tab, label: str) -> str:
    metric = tab.locator('[data-testid="stMetric"]').filter(has=tab.get_by_text(label, exact=True)).first
    return metric.locator('[data-testid="stMetricValue"]').inner_text()


def test_a_shared_link_opens_the_same_view_and_filters_follow_page_switches(system, browser, page):
    # The first requests to a fresh cockpit are deep links, several at once (a team opening a
    # shared link): each must still get app.py's navigation and sidebar, not the bare page.
    others = [browser.new_context(viewport=VIEWPORT).new_page() for _ in range(3)]
    page.goto(f"{system['cockpit']}/engine_health?channel=app", wait_until="commit")
    for tab, path in zip(others, ("journeys", "governance", "experiments"), strict=True):
        tab.goto(f"{system['cockpit']}/{path}", wait_until="commit")
    for tab in others:
        _ready(tab)
        tab.context.close()
    _ready(page)
    sidebar = page.locator('[data-testid="stSidebar"]')
    channel = sidebar.locator('[data-testid="stSelectbox"]').filter(has_text="Channel")
    expect(channel.get_by_role("combobox")).to_have_value("app")
    expect(page.locator('[data-testid="stMain"] [data-testid="stCaptionContainer"]').first).to_contain_text(
        "Showing: channel = app"
    )
    channel.click()
    page.get_by_role("option", name="web", exact=True).click()
    page.wait_for_url(re.compile(r"[?&]channel=web"), timeout=15_000)
    _ready(page)
    sidebar.get_by_role("link", name="Governance").click()
    page.wait_for_url(re.compile(r"/governance\?(.*&)?channel=web"), timeout=15_000)
    _ready(page)
    expect(page.locator('[data-testid="stMain"] [data-testid="stCaptionContainer"]').first).to_contain_text(
        "Showing: channel = web"
    )
    expect(channel.get_by_role("combobox")).to_have_value("web")
    assert page.locator(EXCEPTION).count() == 0


def test_every_page_renders_and_is_screenshotted(system, page):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    update_docs = os.environ.get("MOMENTO_UPDATE_SCREENSHOTS") == "1"
    for name, path in PAGES.items():
        page.goto(f"{system['cockpit']}/{path}")
        _ready(page)
        assert page.locator(EXCEPTION).count() == 0, f"{name}: {page.locator(EXCEPTION).first.inner_text()}"
        shot = ARTIFACTS / f"{name}.png"
        _screenshot(page, shot)
        assert shot.stat().st_size > 20_000, f"{name}: the screenshot looks empty"
        if update_docs:
            shutil.copyfile(shot, DOCS / f"{name}.png")


def test_numbers_move_as_live_data_arrives(system, page):
    page.goto(f"{system['cockpit']}/engine_health")
    _ready(page)
    first = _metric(page, "Decisions")
    deadline = time.monotonic() + 30
    while _metric(page, "Decisions") == first:  # the live fragment redraws every few seconds
        assert time.monotonic() < deadline, f"'Decisions' stayed at {first} for 30 s while the simulator ran"
        page.wait_for_timeout(500)
    assert page.locator(EXCEPTION).count() == 0
    assert _metric(page, "API status") == "up"


def test_a_paused_arm_shows_on_the_experiments_and_alerts_pages(system, page):
    """Pausing an arm through the service's API (as the Experiments page's button does) reaches
    both pages: the Alerts page's live panel stops saying that no arm is paused, and the
    Experiments page marks the arm paused."""
    scenario = load_scenario(PROJECT_ROOT / "data" / "scenario.toml")
    experiment = scenario.experiments[0]
    default = scenario.experience_by_id[experiment.experience].default_variant
    arm = next(a.name for a in experiment.arms if a.variant != default)
    base = f"{system['service']}/v1/experiments/{experiment.id}/arms/{arm}"
    page.goto(f"{system['cockpit']}/alerts")
    none_paused = page.get_by_text("No arm is paused")
    expect(none_paused).to_be_visible(timeout=45_000)
    paused = httpx.post(f"{base}/pause", json={"by": "browser test", "reason": "e2e pause check"}, timeout=10)
    assert paused.status_code == 200, paused.text
    try:
        expect(none_paused).to_have_count(0, timeout=45_000)  # the live fragment redraws with the pause
        assert page.locator(EXCEPTION).count() == 0
        page.goto(f"{system['cockpit']}/experiments")
        _ready(page)
        expect(page.get_by_text(f"{arm} is paused").first).to_be_visible(timeout=45_000)
        assert page.locator(EXCEPTION).count() == 0
    finally:
        resumed = httpx.post(f"{base}/resume", json={"by": "browser test"}, timeout=10)
        assert resumed.status_code == 200, resumed.text


def test_an_alert_the_watcher_raised_shows_on_the_alerts_page(system, page):
    page.goto(f"{system['cockpit']}/alerts")
    expect(page.get_by_text("stale_lake").first).to_be_visible(timeout=45_000)  # the watcher's alert, from the lake
    expect(page.get_by_text("the newest event reached the lake").first).to_be_visible()
    assert page.locator(EXCEPTION).count() == 0
