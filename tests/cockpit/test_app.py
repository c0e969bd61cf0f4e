"""app.py in Streamlit's AppTest: navigation reaches every page without an exception, every
page carries the freshness badge and the engine's status, and the sidebar's filters are read
from a shared URL, reach the page and survive page switches. (The widgets write the URL in the
browser, so the URL following them is checked by tests/e2e/test_browser.py.)
"""

from __future__ import annotations

from datetime import date

import pytest

from metrics import health
from metrics.filters import Filters
from metrics.rollup.read import aggregates
from momento.lake.warehouse import Warehouse
from momento.settings import load_settings
from tests.support.cockpit import settled

PAGES = [
    "pages/executive.py",
    "pages/journeys.py",
    "pages/experiments.py",
    "pages/engine_health.py",
    "pages/governance.py",
]
TITLES = ["Executive", "Journeys", "Experiments", "Engine health", "Governance"]
HEALTH = "pages/engine_health.py"
BUDGET_MS = load_settings({}).decision_budget_ms


def _visit_every_page(at) -> None:
    for page, title in zip(PAGES, TITLES):
        settled(at.switch_page(page).run())
        assert not at.exception, (page, [e.value for e in at.exception])
        assert any(title in t.value for t in at.title), (page, [t.value for t in at.title])
        assert any("engine unreachable" in m.value for m in at.markdown), page  # live status on every page


def _filters_caption(at) -> str:
    return next(c.value for c in at.caption if "Showing:" in c.value)


def test_every_page_on_a_backfilled_lake(run_page, small_lake):
    at = run_page(None, small_lake)
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value.startswith("Executive")  # the default page
    assert any("Newest event" in m.value for m in at.markdown)  # the freshness badge
    assert [w.label for w in at.sidebar.selectbox] == ["Channel", "Segment", "Journey"]
    assert at.sidebar.date_input[0].label == "Date range (UTC)"
    _visit_every_page(at)
    assert len(at.get("vega_lite_chart")) > 0


@pytest.mark.parametrize("which", ["empty", "missing"])
def test_every_page_without_data(run_page, empty_lake, tmp_path, which):
    at = run_page(None, empty_lake if which == "empty" else tmp_path / "no-such-lake")
    assert not at.exception, [e.value for e in at.exception]
    assert at.info or at.warning  # the empty state says so
    _visit_every_page(at)


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
@pytest.mark.parametrize("page", PAGES)
def test_a_damaged_lake_is_a_message_on_every_page(run_page, corrupt_lake, missing_file_lake, page, damage):
    at = run_page(page, corrupt_lake if damage == "corrupt" else missing_file_lake)
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert errors and all("cannot be read" in e for e in errors)
    assert any("engine unreachable" in m.value for m in at.markdown)  # the header still works


def test_a_shared_url_sets_the_sidebar(run_page, small_lake):
    at = run_page(None, small_lake, query={"channel": "app", "journey": "cart", "dates": ["2026-06-01", "2026-06-12"]})
    assert not at.exception
    assert at.selectbox(key="channel").value == "app"
    assert at.selectbox(key="journey").value == "cart"
    assert at.date_input(key="dates").value == (date(2026, 6, 1), date(2026, 6, 12))
    assert _filters_caption(at).endswith("Showing: 01/06/2026 – 12/06/2026, channel = app, journey = cart")


def test_sidebar_choices_reach_every_page(run_page, small_lake, metric_values, pt_br, bundled_scenario):
    at = run_page(None, small_lake)
    assert _filters_caption(at).endswith("Showing: no filter")
    at.selectbox(key="segment").select("returning")
    at.selectbox(key="journey").select("browse").run()
    assert not at.exception
    assert _filters_caption(at).endswith("Showing: segment = returning, journey = browse")
    for page in PAGES[1:]:
        settled(at.switch_page(page).run())
        assert not at.exception, page
        assert at.selectbox(key="segment").value == "returning", page
        assert _filters_caption(at).endswith("Showing: segment = returning, journey = browse"), page
    wh = Warehouse(small_lake)
    try:
        expected = health.summary(
            aggregates(wh, bundled_scenario.business.pre_period_days),
            Filters(segment="returning", journey="browse"),
            BUDGET_MS,
        ).decisions
    finally:
        wh.close()
    settled(at.switch_page(HEALTH).run())
    assert metric_values(at)["Decisions"] == pt_br(f"{expected:,}")
    at.selectbox(key="journey").select(None).run()
    assert _filters_caption(at).endswith("Showing: segment = returning")


def test_nonsense_in_the_url_is_ignored(run_page, small_lake):
    at = run_page(
        None,
        small_lake,
        query={"channel": "fax", "dates": ["yesterday", "2026-13-45"], "segment": "'; DROP TABLE decisions; --"},
    )
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="channel").value is None and at.selectbox(key="segment").value is None
    assert _filters_caption(at).endswith("Showing: no filter")
