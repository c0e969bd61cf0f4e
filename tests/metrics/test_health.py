"""metrics/health.py against an independent polars/numpy computation over hand-made rows: counts
exactly, latency percentiles within the histogram's stated bound of the exact nearest-rank
percentile, read from raw rows and from the rollups alike."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from metrics import health
from metrics.filters import Filters
from metrics.rollup.definitions import LATENCY_RELATIVE_ERROR
from metrics.rollup.job import RollupJob
from metrics.rollup.read import aggregates
from momento.lake.warehouse import Warehouse
from momento.lake.writer import LakeWriter

T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
BUDGET_MS = 10.0
PRE_DAYS = 7
N = 3_000


def _decisions(rng: np.random.Generator) -> pl.DataFrame:
    status = rng.choice(["ok", "error"], N, p=[0.97, 0.03])
    fallback = (status == "error") | (rng.random(N) < 0.06)
    reason = np.where(
        status == "error",
        rng.choice(["model_error", "internal_error"], N),
        rng.choice(["no_consent", "frequency_cap", "budget_exceeded"], N),
    )
    return pl.DataFrame(
        {
            "decision_id": [f"d{i:05d}" for i in range(N)],
            "ts": [T0 + timedelta(seconds=float(s)) for s in np.sort(rng.uniform(0, 30 * 3600, N))],
            "user_id": [f"{u:032x}" for u in rng.integers(0, 400, N)],
            "journey": rng.choice(["browse", "cart"], N),
            "placement": "homepage_showcase",
            "channel": rng.choice(["web", "app"], N),
            "experience_id": "home_showcase",
            "arm": "treatment",
            "variant": "editorial",
            "policy": rng.choice(["thompson", "propensity"], N),
            "model_version": rng.choice(["m-1", "m-2", "learner-v1.0", "learner-v1.1", "learner-v1.12", None], N),
            "propensity": 0.5,
            "reasons": [["policy_thompson"]] * N,
            "fallback": fallback,
            "fallback_reason": [r if f else None for r, f in zip(reason, fallback)],
            "consent": True,
            "latency_us": np.round(rng.lognormal(np.log(2_000), 0.9, N)).astype(np.int64),
            "status": status,
            "error_code": [r if s == "error" else None for r, s in zip(reason, status)],
            "segment": rng.choice(["new", "returning"], N),
        }
    )


def _events(rng: np.random.Generator) -> pl.DataFrame:
    n = 5_000
    ts = [T0 + timedelta(seconds=float(s)) for s in np.sort(rng.uniform(0, 30 * 3600, n))]
    return pl.DataFrame(
        {
            "event_id": [f"e{i:05d}" for i in range(n)],
            "ts": ts,
            "received_at": [t + timedelta(seconds=2) for t in ts],
            "user_id": [f"{u:032x}" for u in rng.integers(0, 400, n)],
            "channel": rng.choice(["web", "app", "email"], n),
            "event_type": rng.choice(["page_view", "click", "purchase"], n),
            "segment": rng.choice(["new", "returning"], n),
        }
    )


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    rng = np.random.default_rng(5)
    root = tmp_path_factory.mktemp("health_lake")
    decisions, events = _decisions(rng), _events(rng)
    with LakeWriter(root, background=False, compact_every_seconds=None) as writer:
        writer.append("decisions", decisions[: N // 2])
        writer.append("events", events)
        writer.flush()
        RollupJob(root, PRE_DAYS).run_once()
        writer.append("decisions", decisions[N // 2 :])  # the live tail, folded on read
    wh = Warehouse(root)
    served = aggregates(wh, PRE_DAYS)
    assert served.source.mode == "rollups", served.source.reason
    assert served.source.tail_rows == N - N // 2
    yield wh, served, decisions, events
    wh.close()


@pytest.fixture(scope="module")
def empty():
    wh = Warehouse(Path("/nonexistent/momento-lake"))
    return wh, aggregates(wh, PRE_DAYS)


def nearest_rank(values: np.ndarray, q: float) -> float:
    """The exact nearest-rank percentile: the ceil(q·n)-th smallest value."""
    return float(np.sort(values)[int(np.ceil(q * len(values) - 1e-9)) - 1])


def assert_within_bound(estimate_ms: float | None, values_us: np.ndarray, q: float) -> None:
    exact = nearest_rank(values_us, q) / 1000
    assert estimate_ms is not None
    assert abs(estimate_ms / exact - 1) <= LATENCY_RELATIVE_ERROR + 1e-12, (q, estimate_ms, exact)


FILTERS = [
    Filters(),
    Filters(channel="web"),
    Filters(segment="returning", journey="cart"),
    Filters(start=date(2026, 6, 2), end=date(2026, 6, 2)),
]


def _apply(frame: pl.DataFrame, f: Filters) -> pl.DataFrame:
    if f.start_ts:
        frame = frame.filter(pl.col("ts") >= f.start_ts)
    if f.end_ts:
        frame = frame.filter(pl.col("ts") < f.end_ts)
    for column in ("channel", "segment", "journey"):
        value = getattr(f, column)
        if value is not None and column in frame.columns:
            frame = frame.filter(pl.col(column) == value)
    return frame


@pytest.mark.parametrize("filters", FILTERS, ids=str)
def test_summary_matches_numpy(lake, filters):
    _, served, decisions, _ = lake
    expected = _apply(decisions, filters)
    latency = expected["latency_us"].to_numpy()
    s = health.summary(served, filters, BUDGET_MS)
    assert s.decisions == expected.height > 0
    for q, got in zip((0.5, 0.95, 0.99), (s.p50_ms, s.p95_ms, s.p99_ms)):
        assert_within_bound(got, latency, q)
    assert s.first_ts == expected["ts"].min().replace(minute=0, second=0, microsecond=0)
    assert s.last_ts == expected["ts"].max().replace(minute=0, second=0, microsecond=0)
    assert s.errors == (expected["status"] == "error").sum()
    assert s.fallbacks == expected["fallback"].sum()
    assert s.error_rate == pytest.approx(s.errors / s.decisions)
    within = (latency <= BUDGET_MS * 1000).mean()
    assert s.attainment == pytest.approx(within)
    assert s.burn_rate == pytest.approx((1 - within) / (1 - health.SLO_TARGET))
    assert s.budget_remaining == pytest.approx(1 - s.burn_rate)


def test_latency_over_time_buckets_match_polars(lake):
    _, served, decisions, _ = lake
    got = health.latency_over_time(served, Filters(), 3600, BUDGET_MS)
    expected = (
        decisions.group_by(pl.col("ts").dt.truncate("1h").alias("bucket"))
        .agg(
            pl.len().alias("n"),
            pl.col("latency_us"),
            (pl.col("status") == "error").mean().alias("error_rate"),
            (pl.col("latency_us") <= BUDGET_MS * 1000).sum().alias("within"),
        )
        .sort("bucket")
    )
    assert got.height == expected.height == 30
    assert got["decisions"].to_list() == expected["n"].to_list()
    assert got["within_budget"].to_list() == expected["within"].to_list()  # 10 ms is a bucket edge: exact
    for p99, values in zip(got["p99_ms"], expected["latency_us"]):
        assert_within_bound(p99, values.to_numpy(), 0.99)
    np.testing.assert_allclose(got["error_rate"].to_numpy(), expected["error_rate"].to_numpy())
    assert [b.timestamp() for b in got["bucket"]] == [b.timestamp() for b in expected["bucket"]]


def test_events_over_time_is_events_per_second(lake):
    _, served, _, events = lake
    got = health.events_over_time(served, Filters(channel="email"), 3600)
    email = events.filter(pl.col("channel") == "email")
    assert got["events"].sum() == email.height
    assert got["events_per_s"].to_list() == pytest.approx([n / 3600 for n in got["events"].to_list()])


def test_bucket_seconds_keeps_charts_readable():
    assert health.bucket_seconds(T0, T0 + timedelta(minutes=30)) == 3_600
    assert health.bucket_seconds(T0, T0 + timedelta(hours=30)) == 3_600
    assert health.bucket_seconds(T0, T0 + timedelta(days=28)) == 21_600
    assert health.bucket_seconds(T0, T0 + timedelta(days=3_000)) == 86_400
    assert health.bucket_seconds(None, None) == 3_600


def test_errors_and_fallbacks_by_code(lake):
    _, served, decisions, _ = lake
    f = Filters(channel="app")
    expected = _apply(decisions, f)
    errors = health.errors_by_code(served, f)
    want = expected.filter(pl.col("status") == "error").group_by("error_code").len()
    assert dict(errors.select("code", "decisions").iter_rows()) == dict(want.iter_rows())
    assert errors["rate"].sum() == pytest.approx((expected["status"] == "error").mean())
    assert set(errors["failure"]) == {True}
    assert errors.filter(pl.col("code") == "model_error")["meaning"][0].startswith("The model raised")

    fallbacks = health.fallbacks_by_reason(served, f)
    want = expected.filter(pl.col("fallback")).group_by("fallback_reason").len()
    assert dict(fallbacks.select("code", "decisions").iter_rows()) == dict(want.iter_rows())
    failure = dict(fallbacks.select("code", "failure").iter_rows())
    assert failure["budget_exceeded"] is True and failure["no_consent"] is False


def test_burn_rates_windows_are_whole_hours_ending_with_the_newest_decisions(lake):
    _, served, decisions, _ = lake
    got = health.burn_rates(served, Filters(), BUDGET_MS)
    newest = decisions["ts"].max().replace(minute=0, second=0, microsecond=0)
    for row in got.iter_rows(named=True):
        hours = health.SLO_WINDOWS[row["window"]]
        window = decisions.filter(pl.col("ts") >= newest - timedelta(hours=hours - 1))
        good = (window["latency_us"] <= BUDGET_MS * 1000).sum()
        assert row["decisions"] == window.height
        assert row["burn_rate"] == pytest.approx((1 - good / window.height) / (1 - health.SLO_TARGET))


def test_model_versions_group_a_models_updates_per_policy(lake):
    wh, _, decisions, _ = lake
    got = health.model_versions(wh, Filters())
    assert got["decisions"].sum() == decisions.height
    sums = got.group_by("policy").agg(pl.col("share").sum())
    assert sums["share"].to_list() == pytest.approx([1.0, 1.0])
    model = pl.col("model_version").str.replace(r"\.\d+$", "").fill_null("(none)")
    want = (
        decisions.sort("ts")
        .group_by("policy", model.alias("model"))
        .agg(
            pl.len().alias("decisions"),
            pl.col("model_version").drop_nulls().n_unique().alias("versions"),
            pl.col("model_version").last().alias("latest_version"),
            pl.col("ts").max().alias("last_seen"),
        )
    )
    assert set(want["model"]) == {"m-1", "m-2", "learner-v1", "(none)"}
    assert want.filter(pl.col("model") == "learner-v1")["versions"].to_list() == [3, 3]
    columns = ["policy", "model", "latest_version", "versions", "decisions", "last_seen"]
    assert sorted(got.select(columns).rows()) == sorted(want.select(columns).rows())


def test_writer_lag_and_throughput_now(lake):
    wh, _, decisions, events = lake
    newest = events["received_at"].max()
    assert health.newest_received(wh) == newest
    assert health.writer_lag(health.newest_received(wh), now=newest + timedelta(seconds=42)) == pytest.approx(42)
    now = decisions["ts"].max()
    t = health.throughput_now(wh, window_s=600, now=now)
    since = now - timedelta(seconds=600)
    assert t.decisions_per_s == pytest.approx(
        decisions.filter((pl.col("ts") > since) & (pl.col("ts") <= now)).height / 600
    )
    arrived = events.filter((pl.col("received_at") > since) & (pl.col("received_at") <= now)).height
    assert t.events_per_s == pytest.approx(arrived / 600)


def test_the_newest_window_found_through_the_delta_log_bounds_equals_a_scan(lake):
    """`arrivals` with no `until` (the cockpit's form) binds lower bounds of the newest times read
    from the Delta log; the rows are those of a plain scan."""
    wh, _, decisions, events = lake
    assert all(bound is not None for bound in health.bounds(wh).values())
    got = health.arrivals(wh, window_s=600)
    for stream, frame, column in (("decisions", decisions, "ts"), ("events", events, "received_at")):
        since = frame[column].max() - timedelta(seconds=600)
        want = sorted(frame.filter(pl.col(column) > since)[column].to_list())
        assert sorted(got.filter(pl.col("stream") == stream)["at"].to_list()) == want, stream


def test_empty_or_missing_lake_gives_empty_answers_not_errors(empty):
    empty, nothing = empty
    s = health.summary(nothing, Filters(), BUDGET_MS)
    assert s.decisions == 0 and s.p99_ms is None and s.error_rate is None and s.burn_rate is None
    assert health.latency_over_time(nothing, Filters(), 3600, BUDGET_MS).is_empty()
    assert health.events_over_time(nothing, Filters(), 3600).is_empty()
    assert health.errors_by_code(nothing, Filters()).is_empty()
    assert health.burn_rates(nothing, Filters(), BUDGET_MS)["burn_rate"].to_list() == [None, None, None]
    assert health.newest_received(empty) is None and health.writer_lag(None) is None
    assert health.throughput_now(empty).events_per_s == 0


def test_a_filter_with_no_data_is_empty(lake):
    _, served, _, _ = lake
    f = Filters(start=date(2030, 1, 1), end=date(2030, 1, 2))
    assert health.summary(served, f, BUDGET_MS).decisions == 0
    assert health.latency_over_time(served, f, 3600, BUDGET_MS).is_empty()


def _exposition() -> str:
    """What the service's /metrics serves, made by prometheus_client itself."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

    registry = CollectorRegistry()
    queue = Gauge("momento_writer_queue_rows", "Rows buffered.", ["table"], registry=registry)
    queue.labels("events").set(1200)
    queue.labels("decisions").set(300)
    Gauge("momento_writer_queue_limit_rows", "Bound.", registry=registry).set(200_000)
    Counter("momento_writer_queue_full_rejections", "Refused appends.", registry=registry).inc(7)
    refused = Counter("momento_backpressure_rejections", "503s.", ["endpoint"], registry=registry)
    refused.labels("/v1/events").inc(2)
    refused.labels("/v1/decide").inc(1)
    Counter("momento_decisions", "Decisions.", ["policy"], registry=registry).labels("rules").inc(10)
    return generate_latest(registry).decode()


def test_backpressure_parses_prometheus_text():
    b = health.backpressure(_exposition())
    assert b.queue_depth == 1500 and b.queue_limit == 200_000 and b.queue_full_rejections == 7
    assert b.refused_requests == 3
    assert b.fill == pytest.approx(1500 / 200_000)
    assert b.committed_rows is None
    assert health.backpressure("").fill is None
