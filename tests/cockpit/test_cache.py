"""pages/cache.py: the cockpit's one cache. A quiet lake is never queried twice however often the
pages redraw; a new version of the lake is shown within a few redraws (one snapshot is read for
`SNAPSHOT_SECONDS`, and the aggregates are renewed in the background)."""

from __future__ import annotations

import shutil
import time
from typing import Any

from metrics import health
from metrics.filters import Filters
from metrics.rollup.read import aggregates
from momento.lake.warehouse import Warehouse
from momento.lake.writer import LakeWriter
from momento.settings import load_settings
from pages import cache
from pages.cache import SNAPSHOT_SECONDS

PAGES = [
    "pages/executive.py",
    "pages/journeys.py",
    "pages/experiments.py",
    "pages/engine_health.py",
    "pages/governance.py",
]
HEALTH = "pages/engine_health.py"
BUDGET_MS = load_settings({}).decision_budget_ms


def test_a_quiet_lake_is_never_queried_twice(run_page, small_lake, statements_run):
    at = run_page(None, small_lake)
    assert statements_run, "the first page read nothing from the lake"
    for page in PAGES:
        at.switch_page(page).run()  # the rollups' aggregates of this snapshot are shared with the pages before
        assert not at.exception, page
        statements_run.clear()
        at.run()  # a redraw, as the live fragments do every few seconds
        assert not at.exception, page
        assert statements_run == [], f"{page} queried the unchanged lake again"


def test_a_new_version_is_shown_within_a_few_redraws(
    run_page, small_lake, tmp_path, statements_run, metric_values, pt_br, bundled_scenario
):
    lake = tmp_path / "lake"
    shutil.copytree(small_lake, lake)
    at = run_page(HEALTH, lake)
    wh = Warehouse(lake)
    before = health.summary(aggregates(wh, bundled_scenario.business.pre_period_days), Filters(), BUDGET_MS).decisions
    user = wh.scalar("SELECT user_id FROM decisions GROUP BY user_id ORDER BY count(*) DESC LIMIT 1")
    assert metric_values(at)["Decisions"] == pt_br(f"{before:,}")
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        writer.erase_user(user, requested_by="test")
    after = health.summary(
        aggregates(Warehouse(lake), bundled_scenario.business.pre_period_days), Filters(), BUDGET_MS
    ).decisions
    assert after < before
    time.sleep(SNAPSHOT_SECONDS)  # the cockpit reads one snapshot for that long
    statements_run.clear()
    deadline = time.monotonic() + 30
    while metric_values(at)["Decisions"] != pt_br(f"{after:,}") and time.monotonic() < deadline:
        at.run()  # the first redraw starts the renewal; the next ones show it once it is done
        assert not at.exception
        time.sleep(0.2)
    assert statements_run, "the new version was not read"
    assert metric_values(at)["Decisions"] == pt_br(f"{after:,}")
    wh.close()


def test_the_panels_of_a_run_share_one_wait_for_first_results(monkeypatch):
    """A page with four slow panels waits FIRST_WAIT_SECONDS for all of them, not four times."""
    monkeypatch.setattr(cache, "FIRST_WAIT_SECONDS", 0.2)
    cache.new_run()
    assert 0.1 < cache._first_wait() <= 0.2
    time.sleep(0.25)
    assert cache._first_wait() == 0.0  # spent: the later panels of the run do not wait
    cache.new_run()
    assert cache._first_wait() > 0.1  # the next run waits again


def test_the_history_scans_run_on_a_duckdb_of_their_own_with_one_thread(run_page, rolled_up_lake, monkeypatch):
    """A scan of every decision (the models in use) must not hold every core while the page's
    quick panels are drawn, nor fill their cache of file data with the history."""
    ran_on: dict[str, tuple[Any, ...]] = {}
    query = Warehouse.query

    def recording(self: Warehouse, sql: str, params: Any = None) -> Any:
        settings = "SELECT current_setting('threads'), current_setting('enable_external_file_cache')"
        ran_on.setdefault(sql, (id(self), *self.cursor().execute(settings).fetchone()))
        return query(self, sql, params)

    monkeypatch.setattr(Warehouse, "query", recording)
    at = run_page(HEALTH, rolled_up_lake)
    assert not at.exception
    scan = ran_on[health.MODELS.statement(Filters()).sql]
    assert scan[1:] == (cache.SCAN_THREADS, False)
    rollup_reads = {on for sql, on in ran_on.items() if "FROM rollup_" in sql}
    assert rollup_reads, "the page read no rollup"
    assert {(database, cached) for database, _, cached in rollup_reads} == {(id(cache.warehouse()), True)}
