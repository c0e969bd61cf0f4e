"""Rollups plus the live tail equal a full scan, on random lakes with late rows, duplicates,
erasures and a crashed run: counts exactly, sums to 1e-9 relative (metrics/rollup/); and every
number the Engine health and Journeys pages show, under every filter combination, equals the
same number computed from the raw rows (latency percentiles within the histogram's bound)."""

from __future__ import annotations

import contextlib
import itertools
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from metrics import compliance, health, journeys
from metrics.filters import Filters
from metrics.rollup import definitions as defs
from metrics.rollup.fold import fold
from metrics.rollup.job import RollupJob, latest_run
from metrics.rollup.read import MERGED, MERGED_SINCE, Aggregates, aggregates
from metrics.rollup.session import DuckSession
from momento.lake.warehouse import Warehouse
from momento.lake.writer import LakeWriter

sys.path.insert(0, str(Path(__file__).parent))
from random_lake import CHANNELS, PLACEMENTS, commit, stream, user

from tests.support import rollups

PRE_DAYS = 7


def check(lake: Path, expect_mode: str = "rollups") -> None:
    rollups.check(lake, PRE_DAYS, expect_mode)


@pytest.mark.parametrize("seed", range(4))
def test_rollups_plus_tail_equal_a_full_scan_before_and_after_every_run(tmp_path, seed):
    lake = tmp_path / "lake"
    job = RollupJob(lake, PRE_DAYS)
    batches = stream(seed, 6)
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        commit(writer, next(batches))
        job.run_once()
        check(lake)
        for batch in batches:
            commit(writer, batch)  # late rows included: the tail must fold them exactly
            check(lake)
            job.run_once()
            check(lake)


def test_the_rollups_without_their_tail_are_exact_as_of_their_run(tmp_path):
    """What a cockpit serves at once while it folds the tail in (`aggregates(..., tail=False)`)."""
    lake = tmp_path / "lake"
    batches = stream(7, 4)
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        for _ in range(3):
            commit(writer, next(batches))
        RollupJob(lake, PRE_DAYS).run_once()
        wh = Warehouse(lake, min_refresh_seconds=0.0)
        try:
            as_of_run = aggregates(wh, PRE_DAYS, max_tail_rows=-1)
            commit(writer, next(batches))  # a tail the read leaves out
            wh.refresh(force=True)
            served = aggregates(wh, PRE_DAYS, tail=False)
        finally:
            wh.close()
    assert served.source.mode == "rollups" and served.source.tail_rows is None
    assert served.source.as_of == as_of_run.source.as_of
    rollups.assert_same(served, as_of_run)


@contextlib.contextmanager
def _rolled_up_with_a_tail(lake: Path, seed: int) -> Iterator[tuple[LakeWriter, Iterator[dict]]]:
    """A lake whose first random batch is rolled up and whose second is the tail; its writer and
    the batches still to come."""
    batches = stream(seed, 3)
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        commit(writer, next(batches))
        RollupJob(lake, PRE_DAYS).run_once()
        commit(writer, next(batches))
        yield writer, batches


def test_a_fold_on_an_earlier_read_shows_the_read_its_committed_rows_came_from(tmp_path):
    """The cockpit's fold keeps the rows its quick read took from the rollups: "How this is
    computed" must still show the SQL that read them, not only the tail's."""
    lake = tmp_path / "lake"
    with _rolled_up_with_a_tail(lake, 8):
        wh = Warehouse(lake, min_refresh_seconds=0.0)
        try:
            quick = aggregates(wh, PRE_DAYS, tail=False)
            folded = aggregates(wh, PRE_DAYS, since=quick)
        finally:
            wh.close()
    full_read = {q.name for q, _ in quick.reads} & {q.name for q in MERGED.values()}
    assert full_read == {q.name for q in MERGED.values()}
    shown = [q.name for q, _ in folded.reads]
    assert full_read <= set(shown) and len(shown) == len(set(shown))
    assert folded.source.tail_rows and folded.committed is quick.committed  # nothing read twice


def test_a_read_since_an_earlier_one_adds_the_newer_runs_and_equals_a_full_scan(tmp_path):
    """What the cockpit does on every refresh (`since`): only the runs logged after the earlier
    read's are read while the job only folded; a compaction or an erasure makes it read all."""
    lake = tmp_path / "lake"
    job = RollupJob(lake, PRE_DAYS)
    batches = stream(13, 7)
    newer_runs = {q.name for q in MERGED_SINCE.values()}
    incremental = []
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        commit(writer, next(batches))
        job.run_once()
        wh = Warehouse(lake, min_refresh_seconds=0.0)
        try:
            earlier = aggregates(wh, PRE_DAYS)
            for step, batch in enumerate(batches):
                commit(writer, batch)
                if step == 3:
                    writer.erase_user(user(5))
                job.run_once()
                if step == 1:
                    job.compact()
                wh.refresh(force=True)
                later = aggregates(wh, PRE_DAYS, since=earlier)
                scanned = aggregates(wh, PRE_DAYS, max_tail_rows=-1)
                assert later.source.mode == "rollups" and scanned.source.mode == "raw"
                rollups.assert_same(later, scanned)
                incremental.append(any(q.name in newer_runs for q, _ in later.reads))
                assert {q.name for q in MERGED.values()} <= {q.name for q, _ in later.reads}
                earlier = later
        finally:
            wh.close()
    assert incremental == [True, False, True, False, True, True]  # after the compaction and the erasure: all


def test_an_erasure_is_exact_from_raw_until_folded_then_leaves_no_row_of_the_user(tmp_path):
    lake = tmp_path / "lake"
    job = RollupJob(lake, PRE_DAYS)
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        for batch in stream(11, 4):
            commit(writer, batch)
        job.run_once()
        writer.erase_user(user(3))
        check(lake, expect_mode="raw")  # an erasure logged after the watermark: raw until folded
        report = job.run_once()
        assert report.kind == "erase"
        check(lake)
    wh = Warehouse(lake, min_refresh_seconds=0.0)
    try:
        for table in defs.STATE:
            assert wh.scalar(f"SELECT count(*) FROM rollup_{table.name} WHERE user_id = $u", {"u": user(3)}) == 0
    finally:
        wh.close()
    files = list((lake / "rollups").rglob("*.parquet"))
    assert not any(user(3).encode() in p.read_bytes() for p in files)


def test_a_run_that_crashed_before_logging_is_never_counted_and_is_redone(tmp_path):
    lake = tmp_path / "lake"
    job = RollupJob(lake, PRE_DAYS)
    batches = stream(5, 3)
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        commit(writer, next(batches))
        job.run_once()
        commit(writer, next(batches))
        # A run that appended its rows but died before logging itself:
        wh = Warehouse(lake, min_refresh_seconds=0.0)
        last = latest_run(wh)
        assert last is not None
        batch = job._batch_since(wh, last, job._uppers(wh))
        cursor = wh.cursor()
        folded = fold(DuckSession(cursor), batch, PRE_DAYS, prior=True, existing=frozenset(wh.versions))
        cursor.close()
        wh.close()
        run_id = job._next_run_id(last)
        job._append({t: folded.state[t.name] for t in defs.STATE}, run_id)
        job._append({a: folded.increments[a.name] for a in defs.AGGREGATES}, run_id)
        check(lake)  # the orphan rows are invisible: rollups + tail still equal the scan
        job.run_once()
        check(lake)
        job.compact()
        check(lake)
        commit(writer, next(batches))
        check(lake)


@pytest.mark.parametrize("whole_share", [0.0, float("inf")], ids=["whole", "merge"])
def test_a_compaction_that_died_before_logging_itself_is_rolled_back_by_the_next_run(
    tmp_path, monkeypatch, whole_share
):
    lake = tmp_path / "lake"
    job = RollupJob(lake, PRE_DAYS, whole_share=whole_share)
    batches = stream(6, 3)
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        commit(writer, next(batches))
        job.run_once()
        commit(writer, next(batches))
        job.run_once()

        def killed(*args: object, **kwargs: object) -> None:
            raise RuntimeError("killed before logging itself")

        # every table replaced by its merged rows, then the compaction dies
        monkeypatch.setattr(job, "_log", killed)
        with pytest.raises(RuntimeError, match="killed"):
            job.compact()
        monkeypatch.undo()
        job.close()
        check(lake)  # readers stay on the versions the last logged run left
        commit(writer, next(batches))
        job.run_once()  # folds onto the state the replacements had removed
        check(lake)


def test_a_merge_after_a_whole_compaction_that_died_merges_what_readers_see(tmp_path, monkeypatch):
    """The dead compaction left every state table rewritten under a run never logged: a merge
    that replaced the newer rows of the tables as they stand would drop the base with them."""
    lake = tmp_path / "lake"
    with _rolled_up_with_a_tail(lake, 10) as (writer, batches):
        RollupJob(lake, PRE_DAYS).run_once()
        whole = RollupJob(lake, PRE_DAYS, whole_share=0.0)
        monkeypatch.setattr(whole, "_log", lambda *args, **kwargs: (_ for _ in ()).throw(RuntimeError("killed")))
        with pytest.raises(RuntimeError, match="killed"):
            whole.compact()
        whole.close()
        merging = RollupJob(lake, PRE_DAYS, whole_share=float("inf"))
        assert merging.compact() == "merge"
        merging.close()
        check(lake)
        commit(writer, next(batches))
        RollupJob(lake, PRE_DAYS).run_once()
        check(lake)


BUDGET_MS = 10.0
FILTERS = [
    Filters(start=span[0], end=span[1], channel=c, segment=s, journey=j)
    for span, c, s, j in itertools.product(
        [(None, None), (date(2026, 5, 23), date(2026, 5, 30))],
        [None, CHANNELS[0]],
        [None, "returning"],
        [None, PLACEMENTS["cart_cross_sell"][0]],
    )
]
"""Every combination of the filters the pages take (each one unset or set)."""

_SCANNED = f"""SELECT d.*, {defs.SERVING_SQL} AS serving,
       d.decision_id IN (SELECT decision_id FROM exposures) AS seen,
       d.decision_id IN (SELECT decision_id FROM events WHERE event_type IN ('click', 'email_click')) AS clicked,
       d.decision_id IN (SELECT decision_id FROM events WHERE event_type = 'purchase') AS converted
FROM decisions d"""


def _narrow(frame: pl.DataFrame, f: Filters) -> pl.DataFrame:
    frame = frame.with_columns(pl.col("ts").dt.convert_time_zone("UTC"))
    if f.start_ts is not None:
        frame = frame.filter((pl.col("ts") >= f.start_ts) & (pl.col("ts") < f.end_ts))
    for column in ("channel", "segment", "journey"):
        if getattr(f, column) is not None and column in frame.columns:
            frame = frame.filter(pl.col(column) == getattr(f, column))
    return frame


def _nearest_rank(values: np.ndarray, q: float) -> float:
    return float(np.sort(values)[int(np.ceil(q * len(values) - 1e-9)) - 1])


def check_pages(lake: Path) -> None:
    """Every number of the Engine health and Journeys pages, from the rollups + tail, under every
    filter combination, against the raw rows."""
    wh = Warehouse(lake, min_refresh_seconds=0.0)
    try:
        served = aggregates(wh, PRE_DAYS)
        assert served.source.mode == "rollups", served.source.reason
        decisions = wh.query(_SCANNED)
        events = wh.query("SELECT ts, channel, segment, event_type, consent FROM events")
    finally:
        wh.close()
    for f in FILTERS:
        _check_health(served, f, _narrow(decisions, f), _narrow(events, f))
        _check_funnel(served, f, _narrow(decisions, f))
        _check_consent(served, f, _narrow(decisions, f), _narrow(events, replace(f, journey=None)))


def _check_health(served: Aggregates, f: Filters, d: pl.DataFrame, e: pl.DataFrame) -> None:
    s = health.summary(served, f, BUDGET_MS)
    assert s.decisions == d.height, f
    if not d.height:
        return
    latency = d["latency_us"].to_numpy()
    assert s.errors == (d["status"] == "error").sum()
    assert s.fallbacks == d["fallback"].sum()
    assert s.within_budget == (latency <= BUDGET_MS * 1000).sum()  # 10 ms is a bucket edge: exact
    for q, got in zip((0.5, 0.95, 0.99), (s.p50_ms, s.p95_ms, s.p99_ms)):
        assert abs(got * 1000 / _nearest_rank(latency, q) - 1) <= defs.LATENCY_RELATIVE_ERROR + 1e-12, (f, q)
    assert s.first_ts == d["ts"].min().replace(minute=0, second=0, microsecond=0)
    errors = health.errors_by_code(served, f)
    want = d.filter(pl.col("status") == "error").group_by(pl.col("error_code").fill_null("unknown")).len()
    assert dict(errors.select("code", "decisions").iter_rows()) == dict(want.iter_rows())
    fallbacks = health.fallbacks_by_reason(served, f)
    want = d.filter(pl.col("fallback")).group_by(pl.col("fallback_reason").fill_null("unknown")).len()
    assert dict(fallbacks.select("code", "decisions").iter_rows()) == dict(want.iter_rows())
    hourly = health.latency_over_time(served, f, 3600, BUDGET_MS)
    want = d.group_by(pl.col("ts").dt.truncate("1h").alias("bucket")).agg(pl.len()).sort("bucket")
    assert hourly["decisions"].to_list() == want["len"].to_list()
    burns = health.burn_rates(served, f, BUDGET_MS)
    newest = d["ts"].max().replace(minute=0, second=0, microsecond=0)
    for row in burns.iter_rows(named=True):
        window = d.filter(pl.col("ts") >= newest - timedelta(hours=health.SLO_WINDOWS[row["window"]] - 1))
        assert row["decisions"] == window.height
    per_day = health.events_over_time(served, f, 86_400)
    assert per_day["events"].sum() == e.height


def _check_funnel(served: Aggregates, f: Filters, d: pl.DataFrame) -> None:
    got = journeys.funnel_frame(served, f)
    want = d.group_by("journey", "serving").agg(
        pl.len().alias("decisions"),
        pl.col("seen").sum().alias("exposed"),
        (pl.col("seen") & pl.col("clicked")).sum().alias("clicked"),
        (pl.col("seen") & pl.col("converted")).sum().alias("converted"),
    )
    assert sorted(got.rows()) == sorted(want.rows()), f


def _check_consent(served: Aggregates, f: Filters, d: pl.DataFrame, e: pl.DataFrame) -> None:
    got = compliance.consent_daily(served, f)
    day = pl.col("ts").dt.date().alias("day")
    decided = d.group_by(day).agg(pl.len().alias("decisions"), pl.col("consent").sum().alias("consented"))
    changes = (
        e.filter(pl.col("event_type").is_in(["consent_change", "opt_out"]))
        .group_by(day)
        .agg(
            ((pl.col("event_type") == "consent_change") & pl.col("consent").not_()).sum().alias("withdrawals"),
            (pl.col("event_type") == "opt_out").sum().alias("opt_outs"),
        )
    )
    want = decided.join(changes, on="day", how="full", coalesce=True).fill_null(0)
    columns = ["day", "decisions", "consented", "withdrawals", "opt_outs"]
    assert sorted(got.select(columns).rows()) == sorted(want.select(columns).rows()), f


def test_page_numbers_equal_the_raw_rows_under_every_filter_before_and_after_a_run(tmp_path):
    lake = tmp_path / "lake"
    job = RollupJob(lake, PRE_DAYS)
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        batches = stream(21, 4)
        commit(writer, next(batches))
        job.run_once()
        for batch in batches:
            commit(writer, batch)  # late rows and duplicates, in the live tail
            check_pages(lake)
            job.run_once()
        writer.erase_user(user(7))
        job.run_once()  # the erasure folded: the user gone from every number
        check_pages(lake)


@pytest.mark.parametrize("seed", range(2))
def test_a_rebuild_in_partitions_of_the_users_is_exact_and_later_runs_fold_onto_it(tmp_path, seed):
    lake = tmp_path / "lake"
    job = RollupJob(lake, PRE_DAYS, partition_rows=25)
    batches = stream(seed, 4)
    with LakeWriter(lake, background=False, compact_every_seconds=None) as writer:
        for batch in (next(batches), next(batches)):
            commit(writer, batch)
        assert job.run_once().kind == "rebuild"
        table = job.store.table(defs.TABLE_NAMES(defs.USER_HOURS.name))
        assert table is not None
        assert table.version() >= 2  # appended partition by partition
        for aggregate in defs.AGGREGATES:  # each appended once, added up over the partitions
            appended = job.store.table(defs.TABLE_NAMES(aggregate.name))
            assert appended is not None and len(appended.file_uris()) == 1, aggregate.name
        check(lake)
        for batch in batches:
            commit(writer, batch)
            job.run_once()
            check(lake)
