"""Engine health from the lake: decision latency, throughput, errors and fallbacks by code,
writer lag, model versions in use, and the latency SLO with its error-budget burn rate.

Every number comes from `decisions` and `events` through the warehouse, the cockpit's filters
bound as parameters. The service's live counters (writer queue depth, queue-full rejections)
are not in the lake: `backpressure` reads them from the service's Prometheus text. No
Streamlit here, so tests check these functions against an independent computation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import polars as pl
from prometheus_client.parser import text_string_to_metric_families

from metrics.filters import Filters
from metrics.sql.query import Query, Statement
from momento.lake.warehouse import Warehouse
from momento.codes import FAILURES, sentence

SLO_TARGET = 0.99
"""Share of decisions that must finish within the decision budget."""

SLO_WINDOWS: dict[str, int] = {"1 h": 3_600, "6 h": 21_600, "24 h": 86_400}
"""Burn-rate windows (multi-window alerting), each ending at the newest decision."""

BUCKETS = (10, 60, 300, 900, 3_600, 21_600, 86_400)
MAX_POINTS = 400
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

_DECISIONS = Filters.where("d", channel=True, segment=True, journey=True)
_EVENTS = Filters.where("e", channel=True, segment=True)
_QUANTILES = "quantile_cont(d.latency_us, [0.5, 0.95, 0.99])"

_SUMMARY_SQL = f"""
SELECT count(*) AS decisions, min(d.ts) AS first_ts, max(d.ts) AS last_ts, {_QUANTILES} AS q,
       count(*) FILTER (WHERE d.status = 'error') AS errors,
       count(*) FILTER (WHERE d.fallback) AS fallbacks,
       count(*) FILTER (WHERE d.latency_us <= $budget_us) AS within_budget
FROM decisions d WHERE {_DECISIONS}
"""

# Buckets by integer arithmetic on microseconds: exact, time-zone free, and several times faster
# than date_trunc/time_bucket on a TIMESTAMPTZ (which go through ICU).
_BUCKET = "make_timestamptz(epoch_us({alias}.ts) // ($bucket_s::BIGINT * 1000000) * ($bucket_s::BIGINT * 1000000))"

_OVER_TIME_SQL = f"""
SELECT {_BUCKET.format(alias="d")} AS bucket, count(*) AS decisions,
       {_QUANTILES} AS q,
       count(*) FILTER (WHERE d.status = 'error') AS errors,
       count(*) FILTER (WHERE d.fallback) AS fallbacks,
       count(*) FILTER (WHERE d.latency_us <= $budget_us) AS within_budget
FROM decisions d WHERE {_DECISIONS}
GROUP BY bucket ORDER BY bucket
"""

_EVENTS_OVER_TIME_SQL = f"""
SELECT {_BUCKET.format(alias="e")} AS bucket, count(*) AS events
FROM events e WHERE {_EVENTS}
GROUP BY bucket ORDER BY bucket
"""

_BURN_SQL = f"""
WITH f AS (SELECT d.ts, d.latency_us FROM decisions d WHERE {_DECISIONS}),
     newest AS (SELECT max(ts) AS ts FROM f)
SELECT {", ".join(
    f"count(*) FILTER (WHERE f.ts > newest.ts - to_seconds({s})) AS n_{i}, "
    f"count(*) FILTER (WHERE f.ts > newest.ts - to_seconds({s}) AND f.latency_us <= $budget_us) AS good_{i}"
    for i, s in enumerate(SLO_WINDOWS.values()))}
FROM f, newest
"""

# Breakdowns: the column and the condition come from this table, never from the caller.
_BREAKDOWNS = {
    "error": ("d.error_code", "d.status = 'error'"),
    "fallback": ("d.fallback_reason", "d.fallback"),
}

_BREAKDOWN_SQL = """
SELECT coalesce({column}, 'unknown') AS code, count(*) AS decisions,
       (SELECT count(*) FROM decisions d WHERE {where}) AS total
FROM decisions d WHERE {where} AND {condition}
GROUP BY code ORDER BY decisions DESC, code
"""

# A learning policy's version is its model then `.<update>` (decisioning.policies.Policy):
# one row per model, with how many of its updates served and the one serving last.
_MODELS_SQL = f"""
WITH versions AS (
    SELECT d.policy, d.model_version, count(*) AS decisions, min(d.ts) AS first_seen, max(d.ts) AS last_seen
    FROM decisions d WHERE {_DECISIONS} GROUP BY ALL
)
SELECT policy, coalesce(regexp_replace(model_version, '[.][0-9]+$', ''), '(none)') AS model,
       arg_max(model_version, last_seen) AS latest_version, count(model_version) AS versions,
       sum(decisions)::BIGINT AS decisions, min(first_seen) AS first_seen, max(last_seen) AS last_seen
FROM versions GROUP BY policy, model ORDER BY policy, last_seen DESC
"""

_NEWEST_RECEIVED_SQL = "SELECT max(received_at) FROM events"

# The newest `$window_s` of each stream up to `$until` (NULL: up to its newest row, so the
# result depends on the lake's snapshot only and the cockpit can cache it until the lake moves).
_ARRIVALS_SQL = """
SELECT 'decisions' AS stream, ts AS at FROM decisions
WHERE ts > coalesce($until, (SELECT max(ts) FROM decisions)) - to_seconds($window_s)
  AND ($until IS NULL OR ts <= $until)
UNION ALL
SELECT 'events' AS stream, received_at AS at FROM events
WHERE received_at > coalesce($until, (SELECT max(received_at) FROM events)) - to_seconds($window_s)
  AND ($until IS NULL OR received_at <= $until)
"""

_LATENCY_METHOD = ("Percentiles by linear interpolation between the two nearest decisions (DuckDB's quantile_cont) "
                   "of the in-process decision time; rates are counts over all filtered decisions.")
_SLO_METHOD = ("Attainment = decisions within the budget / decisions; burn rate = (1 − attainment) / (1 − target): "
               "1× spends the error budget exactly over the window (multi-window burn rates as in the SRE workbook).")


def _ms(microseconds: float | None) -> float | None:
    return None if microseconds is None else microseconds / 1000.0


def _burn(good: int, total: int, target: float) -> float | None:
    """How fast the error budget burns: 1.0 spends exactly the budget over the window."""
    return None if total == 0 else (1.0 - good / total) / (1.0 - target)


@dataclass(frozen=True)
class Summary:
    """The headline health numbers for the filtered decisions."""

    decisions: int
    first_ts: datetime | None
    last_ts: datetime | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    errors: int
    fallbacks: int
    within_budget: int
    budget_ms: float
    slo_target: float = SLO_TARGET

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.decisions if self.decisions else None

    @property
    def fallback_rate(self) -> float | None:
        return self.fallbacks / self.decisions if self.decisions else None

    @property
    def attainment(self) -> float | None:
        """Share of decisions within the budget (the SLI)."""
        return self.within_budget / self.decisions if self.decisions else None

    @property
    def burn_rate(self) -> float | None:
        return _burn(self.within_budget, self.decisions, self.slo_target)

    @property
    def budget_remaining(self) -> float | None:
        """Share of the period's error budget not yet spent (negative when overspent)."""
        burn = self.burn_rate
        return None if burn is None else 1.0 - burn


def _summary_statement(filters: Filters, budget_ms: float) -> Statement:
    return Statement(_SUMMARY_SQL, {**filters.params(), "budget_us": budget_ms * 1000.0})


SUMMARY = Query(
    "health.summary", "Decisions, latency percentiles, errors, fallbacks and decisions within the budget.",
    _summary_statement, example={"budget_ms": 10.0},
    metrics=("latency_p50_p95_p99", "error_rate", "fallback_rate"), method=f"{_LATENCY_METHOD} {_SLO_METHOD}")


def summary(wh: Warehouse, filters: Filters, budget_ms: float, slo_target: float = SLO_TARGET) -> Summary:
    """Decisions, latency percentiles, error/fallback counts and SLO attainment."""
    row = SUMMARY.run(wh, filters, budget_ms=budget_ms).row(0, named=True)
    q = row["q"] or [None, None, None]
    return Summary(
        decisions=row["decisions"], first_ts=row["first_ts"], last_ts=row["last_ts"],
        p50_ms=_ms(q[0]), p95_ms=_ms(q[1]), p99_ms=_ms(q[2]),
        errors=row["errors"], fallbacks=row["fallbacks"], within_budget=row["within_budget"],
        budget_ms=budget_ms, slo_target=slo_target,
    )


def bucket_seconds(first: datetime | None, last: datetime | None) -> int:
    """The smallest time bucket that draws the span `first`..`last` in at most MAX_POINTS points."""
    if first is None or last is None:
        return BUCKETS[1]
    span = (last - first).total_seconds()
    return next((b for b in BUCKETS if span / b <= MAX_POINTS), BUCKETS[-1])


def _over_time_statement(filters: Filters, bucket_s: int, budget_ms: float) -> Statement:
    return Statement(_OVER_TIME_SQL, {**filters.params(), "bucket_s": bucket_s, "budget_us": budget_ms * 1000.0})


OVER_TIME = Query(
    "health.latency_over_time", "Per time bucket: decisions, latency percentiles, errors, fallbacks, within budget.",
    _over_time_statement, example={"bucket_s": 3_600, "budget_ms": 10.0},
    metrics=("latency_p50_p95_p99", "error_rate", "fallback_rate"),
    method=f"{_LATENCY_METHOD} Buckets are whole multiples of the bucket length since the epoch (UTC).")


def latency_over_time(
    wh: Warehouse, filters: Filters, bucket_s: int, budget_ms: float, slo_target: float = SLO_TARGET
) -> pl.DataFrame:
    """Per time bucket: decisions, p50/p95/p99 latency (ms), error and fallback rates, SLO burn."""
    frame = OVER_TIME.run(wh, filters, bucket_s=bucket_s, budget_ms=budget_ms)
    if frame.is_empty():
        return frame.drop("q").with_columns(
            pl.lit(None, pl.Float64).alias(name)
            for name in ("p50_ms", "p95_ms", "p99_ms", "error_rate", "fallback_rate", "attainment", "burn_rate")
        )
    n = pl.col("decisions")
    return frame.with_columns(
        *(pl.col("q").list.get(i).truediv(1000.0).alias(name) for i, name in enumerate(("p50_ms", "p95_ms", "p99_ms"))),
        (pl.col("errors") / n).alias("error_rate"),
        (pl.col("fallbacks") / n).alias("fallback_rate"),
        (pl.col("within_budget") / n).alias("attainment"),
        ((1.0 - pl.col("within_budget") / n) / (1.0 - slo_target)).alias("burn_rate"),
    ).drop("q")


def _events_over_time_statement(filters: Filters, bucket_s: int) -> Statement:
    return Statement(_EVENTS_OVER_TIME_SQL, {**filters.params(), "bucket_s": bucket_s})


EVENTS_OVER_TIME = Query(
    "health.events_over_time", "Events per time bucket (by event time).", _events_over_time_statement,
    example={"bucket_s": 3_600}, metrics=("events_per_second",),
    method="Events per second = events in the bucket / the bucket's length; events have no journey, so the "
           "journey filter does not apply.")


def events_over_time(wh: Warehouse, filters: Filters, bucket_s: int) -> pl.DataFrame:
    """Events per time bucket (by event time) and the mean events per second in it. Events have
    no journey (most are not caused by a decision), so the journey filter does not apply."""
    frame = EVENTS_OVER_TIME.run(wh, filters, bucket_s=bucket_s)
    return frame.with_columns((pl.col("events") / float(bucket_s)).alias("events_per_s"))


def _burn_statement(filters: Filters, budget_ms: float) -> Statement:
    return Statement(_BURN_SQL, {**filters.params(), "budget_us": budget_ms * 1000.0})


BURN = Query(
    "health.burn_rates", "Decisions and decisions within the budget over the last 1 h, 6 h and 24 h of decisions.",
    _burn_statement, example={"budget_ms": 10.0}, method=_SLO_METHOD)


def burn_rates(
    wh: Warehouse, filters: Filters, budget_ms: float, slo_target: float = SLO_TARGET
) -> pl.DataFrame:
    """Burn rate over the last 1 h, 6 h and 24 h of decisions (ending at the newest one).

    Read as in the SRE workbook: a burn of 14 over 1 h, or 6 over 6 h, spends a month's error
    budget in days and deserves a page; below 1 the budget lasts."""
    row = BURN.run(wh, filters, budget_ms=budget_ms).row(0)
    windows = list(SLO_WINDOWS)
    totals, goods = row[0::2], row[1::2]
    return pl.DataFrame(
        {
            "window": windows,
            "decisions": [int(t or 0) for t in totals],
            "within_budget": [int(g or 0) for g in goods],
            "attainment": [None if not t else g / t for t, g in zip(totals, goods)],
            "burn_rate": [_burn(g or 0, t or 0, slo_target) for t, g in zip(totals, goods)],
        },
        schema={"window": pl.String, "decisions": pl.Int64, "within_budget": pl.Int64,
                "attainment": pl.Float64, "burn_rate": pl.Float64},
    )


def _breakdown_query(name: str, kind: str, description: str, metric: str) -> Query:
    column, condition = _BREAKDOWNS[kind]
    sql = _BREAKDOWN_SQL.format(column=column, condition=condition, where=_DECISIONS)
    return Query(name, description, lambda filters: Statement(sql, filters.params()), metrics=(metric,),
                 method="Share = the code's decisions / all filtered decisions.")


ERRORS = _breakdown_query("health.errors_by_code", "error",
                          "Decisions that errored, by error code, and all filtered decisions.", "error_rate")
FALLBACKS = _breakdown_query("health.fallbacks_by_reason", "fallback",
                             "Decisions served the default, by reason, and all filtered decisions.", "fallback_rate")


def _breakdown(wh: Warehouse, filters: Filters, query: Query) -> pl.DataFrame:
    counts = query.run(wh, filters)
    return counts.with_columns(
        (pl.col("decisions") / pl.col("total")).alias("rate"),
        pl.col("code").map_elements(sentence, return_dtype=pl.String).alias("meaning"),
        pl.col("code").is_in([str(c) for c in FAILURES]).alias("failure"),
    ).drop("total")


def errors_by_code(wh: Warehouse, filters: Filters) -> pl.DataFrame:
    """Decisions that errored, by error code: count, rate over all filtered decisions, meaning."""
    return _breakdown(wh, filters, ERRORS)


def fallbacks_by_reason(wh: Warehouse, filters: Filters) -> pl.DataFrame:
    """Decisions that fell back to the default, by reason; `failure` marks engine faults as
    opposed to deliberate governance (consent, caps)."""
    return _breakdown(wh, filters, FALLBACKS)


MODELS = Query(
    "health.model_versions", "Per policy and model: the version serving last, versions served, decisions, "
    "first and last seen.", lambda filters: Statement(_MODELS_SQL, filters.params()),
    method="A learning policy's version is its model then `.<update>`: versions = online updates that served; "
           "share = the model's decisions / its policy's decisions.")


def model_versions(wh: Warehouse, filters: Filters) -> pl.DataFrame:
    """Models in use per policy: the version serving last, how many versions (online updates)
    served, decisions, share of the policy's decisions, first/last seen."""
    frame = MODELS.run(wh, filters)
    return frame.with_columns((pl.col("decisions") / pl.col("decisions").sum().over("policy")).alias("share"))


NEWEST = Query(
    "health.newest_received", "When the newest event reached the lake.",
    lambda filters: Statement(_NEWEST_RECEIVED_SQL, {}),
    method="Writer lag = now − the newest arrival; the freshness badge reads it (live under 30 s).")


def newest_received(wh: Warehouse) -> datetime | None:
    """When the newest event reached the lake (None: no events yet)."""
    frame = NEWEST.run(wh, Filters())
    return frame.item(0, 0) if frame.height else None


def writer_lag(newest: datetime | None, now: datetime | None = None) -> float | None:
    """Seconds between `now` and `newest_received` (None: no events)."""
    if newest is None:
        return None
    return max(0.0, ((now or datetime.now(timezone.utc)) - newest).total_seconds())


@dataclass(frozen=True)
class Throughput:
    """Decisions and events per second over the last `window_s` seconds."""

    decisions_per_s: float
    events_per_s: float
    window_s: float


def _arrivals_statement(filters: Filters, window_s: float, until: datetime | None = None) -> Statement:
    return Statement(_ARRIVALS_SQL, {"window_s": window_s, "until": until})


ARRIVALS = Query(
    "health.arrivals", "When each decision (by decision time) and event (by arrival) of the newest window was made.",
    _arrivals_statement, example={"window_s": 60.0}, metrics=("events_per_second",),
    method="Per second now = the rows of the last window before now / the window's length.")


def arrivals(wh: Warehouse, window_s: float = 60.0, until: datetime | None = None) -> pl.DataFrame:
    """The times of the decisions and events in the `window_s` before `until` (None: before each
    stream's newest row, an answer that changes only when the lake does): stream, at."""
    return ARRIVALS.run(wh, Filters(), window_s=window_s, until=until)


def throughput_at(recent: pl.DataFrame, now: datetime, window_s: float = 60.0) -> Throughput:
    """Decisions and events per second over the `window_s` before `now`, from `arrivals`' rows."""
    end = (now - _EPOCH) // timedelta(microseconds=1)
    start = end - round(window_s * 1_000_000)
    at = pl.col("at").dt.epoch("us")
    counts = dict(recent.filter((at > start) & (at <= end)).group_by("stream").len().iter_rows())
    return Throughput(counts.get("decisions", 0) / window_s, counts.get("events", 0) / window_s, window_s)


def throughput_now(wh: Warehouse, window_s: float = 60.0, now: datetime | None = None) -> Throughput:
    """Live throughput: decisions (by decision time) and events (by arrival) in the last window."""
    now = now or datetime.now(timezone.utc)
    return throughput_at(arrivals(wh, window_s, until=now), now, window_s)


# -- the service's live counters ----------------------------------------------------------

BACKPRESSURE_METRICS: dict[str, str] = {
    "queue_depth": "momento_writer_queue_rows",
    "queue_limit": "momento_writer_queue_limit_rows",
    "queue_full_rejections": "momento_writer_queue_full_rejections_total",
    "refused_requests": "momento_backpressure_rejections_total",
    "committed_rows": "momento_writer_committed_rows_total",
    "flush_errors": "momento_writer_flush_errors_total",
}
"""Field -> Prometheus sample name in the service's /metrics (decisioning/telemetry.py)."""


@dataclass(frozen=True)
class Backpressure:
    """The writer's queue as the service reports it (None: the service does not export it)."""

    queue_depth: float | None = None
    queue_limit: float | None = None
    queue_full_rejections: float | None = None
    refused_requests: float | None = None  # requests answered 503 because the queue was full
    committed_rows: float | None = None
    flush_errors: float | None = None

    @property
    def fill(self) -> float | None:
        """How full the queue is (0..1)."""
        if self.queue_depth is None or not self.queue_limit:
            return None
        return self.queue_depth / self.queue_limit


def backpressure(text: str) -> Backpressure:
    """Parse the service's Prometheus exposition text into the writer's back-pressure numbers.

    Raises ValueError for text that is not Prometheus exposition format."""
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name] = samples.get(sample.name, 0.0) + sample.value
    return Backpressure(**{field: samples.get(name) for field, name in BACKPRESSURE_METRICS.items()})
