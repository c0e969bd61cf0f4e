"""Engine health: decision latency, throughput, errors and fallbacks by code, writer lag, model
versions in use, and the latency SLO with its error-budget burn rate.

Decisions, errors, fallbacks, latency and events over time come from the rollups' hourly
operational aggregates (`health_ops`, `latency_histogram`, `event_counts`: `metrics.rollup`), the
rollups plus the live tail or every raw row (`Aggregates.source` says which), so a refresh costs
the new rows: counts are exact, latency percentiles are read from a histogram over fixed
log-spaced buckets within a stated relative error (`LATENCY_RELATIVE_ERROR`). The newest
window (throughput now, writer lag) and the model versions read the lake. The service's live
counters (writer queue depth, queue-full rejections) are not in the lake: `backpressure` reads
them from the service's Prometheus text. No Streamlit here, so tests check these functions
against an independent computation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl
from prometheus_client.parser import text_string_to_metric_families

from metrics.filters import Filters
from metrics.rollup.definitions import HOUR_US, LATENCY_RELATIVE_ERROR, latency_value, within_budget
from metrics.rollup.read import Aggregates, run_on
from metrics.sql.query import Query, Statement
from momento.codes import FAILURES, sentence
from momento.lake.warehouse import Warehouse

SLO_TARGET = 0.99
"""Share of decisions that must finish within the decision budget."""

SLO_WINDOWS: dict[str, int] = {"1 h": 1, "6 h": 6, "24 h": 24}
"""Burn-rate windows (multi-window alerting) in whole UTC hours, each ending with the hour of the
newest decision."""

BUCKETS = (3_600, 21_600, 86_400)
"""Time buckets of the charts: whole hours, as the aggregates keep them."""
MAX_POINTS = 400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
QUANTILES = (0.5, 0.95, 0.99)

_HOUR = f"epoch_us(CAST({{ts}} AS TIMESTAMPTZ)) // {HOUR_US}"
_PERIOD = (
    f"($f_start IS NULL OR hour >= {_HOUR.format(ts='$f_start')}) "
    f"AND ($f_end IS NULL OR hour < {_HOUR.format(ts='$f_end')})"
)
_DECISIONS = (
    f"{_PERIOD} AND ($f_channel IS NULL OR channel = $f_channel) "
    "AND ($f_segment IS NULL OR segment = $f_segment) AND ($f_journey IS NULL OR journey = $f_journey)"
)
"""The filter over an aggregate's hour (whole UTC days are whole hours: exact), channel, segment
and journey."""
_EVENTS = f"{_PERIOD} AND ($f_channel IS NULL OR channel = $f_channel) AND ($f_segment IS NULL OR segment = $f_segment)"
_SLOT = "hour * 3600 // $bucket_s"
"""A chart's time bucket: the hour's start in seconds, in whole multiples of the bucket length."""


def _latency_sql(over_time: bool) -> str:
    """Per time bucket (`over_time`; else one slot for the whole period): decisions, errors, fallbacks, the bucket of each percentile (nearest rank: the
    first bucket whose running count reaches ceil(q·n)) as its latency, and decisions within the
    budget (`within_budget`)."""
    picks = ", ".join(f"min(b) FILTER (WHERE c >= ceil({q} * total - 1e-9)) AS b{i}" for i, q in enumerate(QUANTILES))
    values = ", ".join(latency_value(f"p.b{i}") for i in range(len(QUANTILES)))
    slot = _SLOT if over_time else "0"
    return f"""WITH ops AS (
    SELECT {slot} AS slot, CAST(sum(decisions) AS BIGINT) AS decisions,
           CAST(coalesce(sum(decisions) FILTER (WHERE error_code IS NOT NULL), 0) AS BIGINT) AS errors,
           CAST(coalesce(sum(decisions) FILTER (WHERE fallback_reason IS NOT NULL), 0) AS BIGINT) AS fallbacks,
           min(hour) AS first_hour, max(hour) AS last_hour
    FROM health_ops WHERE {_DECISIONS} AND decisions <> 0
    GROUP BY slot
),
hist AS (
    SELECT {slot} AS slot, latency_bucket AS b, sum(decisions) AS n
    FROM latency_histogram WHERE {_DECISIONS} AND latency_bucket IS NOT NULL
    GROUP BY slot, b HAVING sum(decisions) <> 0
),
cum AS (
    SELECT slot, b, n, sum(n) OVER (PARTITION BY slot ORDER BY b) AS c, sum(n) OVER (PARTITION BY slot) AS total
    FROM hist
),
p AS (
    SELECT slot, {picks}, CAST(coalesce(sum(n) FILTER (WHERE {within_budget("b", "$budget_us")}), 0) AS BIGINT) AS within_budget
    FROM cum GROUP BY slot
)
SELECT o.slot, o.decisions, o.first_hour, o.last_hour,
       CASE WHEN p.b0 IS NOT NULL THEN [{values}] END AS q,
       o.errors, o.fallbacks, coalesce(p.within_budget, 0) AS within_budget
FROM ops o LEFT JOIN p USING (slot)
ORDER BY o.slot"""


_SUMMARY_SQL = _latency_sql(over_time=False)

_OVER_TIME_SQL = f"""SELECT make_timestamptz(t.slot * $bucket_s * 1000000) AS bucket, t.decisions, t.q, t.errors,
       t.fallbacks, t.within_budget
FROM ({_latency_sql(over_time=True)}) t
ORDER BY bucket"""

_EVENTS_OVER_TIME_SQL = f"""SELECT make_timestamptz({_SLOT} * $bucket_s * 1000000) AS bucket,
       CAST(sum(events) AS BIGINT) AS events
FROM event_counts WHERE {_EVENTS}
GROUP BY bucket HAVING sum(events) <> 0
ORDER BY bucket"""

_BURN_SQL = f"""WITH newest AS (
    SELECT max(hour) AS newest_hour FROM health_ops WHERE {_DECISIONS} AND decisions <> 0
),
h AS (
    SELECT hour, latency_bucket, decisions FROM latency_histogram
    WHERE {_DECISIONS} AND hour > (SELECT newest_hour FROM newest) - 24
)
SELECT {
    ", ".join(
        f"CAST(coalesce(sum(decisions) FILTER (WHERE hour > newest_hour - {hours}), 0) AS BIGINT) AS n_{i}, "
        f"CAST(coalesce(sum(decisions) FILTER (WHERE hour > newest_hour - {hours} "
        f"AND {within_budget('latency_bucket', '$budget_us')}), 0) AS BIGINT) AS good_{i}"
        for i, hours in enumerate(SLO_WINDOWS.values())
    )
}
FROM newest LEFT JOIN h ON TRUE"""

# Breakdowns: the column comes from this table, never from the caller.
_BREAKDOWNS = {"error": "error_code", "fallback": "fallback_reason"}

_BREAKDOWN_SQL = f"""SELECT {{column}} AS code, CAST(sum(decisions) AS BIGINT) AS decisions,
       (SELECT CAST(sum(decisions) AS BIGINT) FROM health_ops WHERE {_DECISIONS}) AS total
FROM health_ops WHERE {_DECISIONS} AND {{column}} IS NOT NULL
GROUP BY code HAVING sum(decisions) <> 0
ORDER BY decisions DESC, code"""

_RAW_DECISIONS = Filters.where("d", channel=True, segment=True, journey=True)

# A learning policy's version is its model then `.<update>` (decisioning.policies.Policy):
# one row per model, with how many of its updates served and the one serving last.
_MODELS_SQL = f"""
WITH versions AS (
    SELECT d.policy, d.model_version, count(*) AS decisions, min(d.ts) AS first_seen, max(d.ts) AS last_seen
    FROM decisions d WHERE {_RAW_DECISIONS} GROUP BY ALL
)
SELECT policy, coalesce(regexp_replace(model_version, '[.][0-9]+$', ''), '(none)') AS model,
       arg_max(model_version, last_seen) AS latest_version, count(model_version) AS versions,
       sum(decisions)::BIGINT AS decisions, min(first_seen) AS first_seen, max(last_seen) AS last_seen
FROM versions GROUP BY policy, model ORDER BY policy, last_seen DESC
"""

# `$events_from` / `$decisions_from`: a lower bound of the newest row's time from the Delta log
# (`Warehouse.newest_bound`, NULL when unknown). Filtering on it changes no result and lets the
# Parquet readers skip every older row group: the newest row costs the same at any history.
_EVENTS_FROM = "coalesce($events_from, TIMESTAMPTZ '-infinity')"
_DECISIONS_FROM = "coalesce($decisions_from, TIMESTAMPTZ '-infinity')"
_NEWEST_RECEIVED_SQL = f"SELECT max(received_at) FROM events WHERE received_at >= {_EVENTS_FROM}"

# The newest `$window_s` of each stream up to `$until` (NULL: up to its newest row, so the
# result depends on the lake's snapshot only and the cockpit can cache it until the lake moves).
_ARRIVALS_SQL = f"""
SELECT 'decisions' AS stream, ts AS at FROM decisions
WHERE ts > coalesce($until, (SELECT max(ts) FROM decisions WHERE ts >= {_DECISIONS_FROM})) - to_seconds($window_s)
  AND ($until IS NOT NULL OR ts >= {_DECISIONS_FROM} - to_seconds($window_s))
  AND ($until IS NULL OR ts <= $until)
UNION ALL
SELECT 'events' AS stream, received_at AS at FROM events
WHERE received_at > coalesce($until, (SELECT max(received_at) FROM events WHERE received_at >= {_EVENTS_FROM}))
    - to_seconds($window_s)
  AND ($until IS NOT NULL OR received_at >= {_EVENTS_FROM} - to_seconds($window_s))
  AND ($until IS NULL OR received_at <= $until)
"""

_LATENCY_METHOD = (
    "Read from the rollups' hourly aggregates (the latency histogram): counts are exact. Percentiles are nearest-rank "
    "(the latency of the ceil(q·n)-th fastest decision) read from a histogram of the in-process decision time over "
    "fixed log-spaced buckets (20 a decade), each bucket's geometric midpoint: within "
    f"{LATENCY_RELATIVE_ERROR:.1%} of the exact percentile. Decisions within the budget count the buckets up to it: "
    "exact when the budget is a bucket edge (any power of ten, e.g. 10 ms), at most one bucket short otherwise. "
    "Rates are counts over all filtered decisions; the period is whole UTC days, so whole hours."
)
_SLO_METHOD = (
    "Attainment = decisions within the budget / decisions; burn rate = (1 − attainment) / (1 − target): "
    "1× spends the error budget exactly over the window (multi-window burn rates as in the SRE workbook). "
    "Windows are whole UTC hours ending with the newest decision's hour."
)


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


def _budget(filters: Filters, budget_ms: float, **more: object) -> dict[str, object]:
    return {**filters.params(), "budget_us": budget_ms * 1000.0, **more}


def _hour_ts(hour: int | None) -> datetime | None:
    return None if hour is None else _EPOCH + timedelta(hours=hour)


SUMMARY = Query(
    "health.summary",
    "Decisions, latency percentiles, errors, fallbacks and decisions within the budget, from the "
    "rollups' hourly aggregates (health_ops, latency_histogram).",
    lambda filters, budget_ms: Statement(_SUMMARY_SQL, _budget(filters, budget_ms)),
    example={"budget_ms": 10.0},
    metrics=("latency_p50_p95_p99", "error_rate", "fallback_rate"),
    method=f"{_LATENCY_METHOD} {_SLO_METHOD}",
    over="aggregates",
)


def summary(aggregates: Aggregates, filters: Filters, budget_ms: float, slo_target: float = SLO_TARGET) -> Summary:
    """Decisions, latency percentiles, error/fallback counts and SLO attainment; `first_ts` and
    `last_ts` are the starts of the hours of the first and the newest decision."""
    frame = run_on(aggregates, SUMMARY.statement(filters, budget_ms=budget_ms))
    if not frame.height:
        return Summary(0, None, None, None, None, None, 0, 0, 0, budget_ms, slo_target)
    row = frame.row(0, named=True)
    q = row["q"] or [None, None, None]
    return Summary(
        decisions=row["decisions"],
        first_ts=_hour_ts(row["first_hour"]),
        last_ts=_hour_ts(row["last_hour"]),
        p50_ms=_ms(q[0]),
        p95_ms=_ms(q[1]),
        p99_ms=_ms(q[2]),
        errors=row["errors"],
        fallbacks=row["fallbacks"],
        within_budget=row["within_budget"],
        budget_ms=budget_ms,
        slo_target=slo_target,
    )


def bucket_seconds(first: datetime | None, last: datetime | None) -> int:
    """The smallest time bucket that draws the span `first`..`last` in at most MAX_POINTS points."""
    if first is None or last is None:
        return BUCKETS[0]
    span = (last - first).total_seconds()
    return next((b for b in BUCKETS if span / b <= MAX_POINTS), BUCKETS[-1])


OVER_TIME = Query(
    "health.latency_over_time",
    "Per time bucket: decisions, latency percentiles, errors, fallbacks, within budget, "
    "from the rollups' hourly aggregates.",
    lambda filters, bucket_s, budget_ms: Statement(_OVER_TIME_SQL, _budget(filters, budget_ms, bucket_s=bucket_s)),
    example={"bucket_s": 3_600, "budget_ms": 10.0},
    metrics=("latency_p50_p95_p99", "error_rate", "fallback_rate"),
    method=f"{_LATENCY_METHOD} Buckets are whole multiples of the bucket length since the epoch (UTC).",
    over="aggregates",
)


def latency_over_time(
    aggregates: Aggregates, filters: Filters, bucket_s: int, budget_ms: float, slo_target: float = SLO_TARGET
) -> pl.DataFrame:
    """Per time bucket (a whole number of hours): decisions, p50/p95/p99 latency (ms), error and
    fallback rates, SLO burn."""
    frame = run_on(aggregates, OVER_TIME.statement(filters, bucket_s=bucket_s, budget_ms=budget_ms))
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


EVENTS_OVER_TIME = Query(
    "health.events_over_time",
    "Events per time bucket (by event time), from the rollups' hourly event counts.",
    lambda filters, bucket_s: Statement(_EVENTS_OVER_TIME_SQL, {**filters.params(), "bucket_s": bucket_s}),
    example={"bucket_s": 3_600},
    metrics=("events_per_second",),
    method="Events per second = events in the bucket / the bucket's length; events have no journey, so the "
    "journey filter does not apply.",
    over="aggregates",
)


def events_over_time(aggregates: Aggregates, filters: Filters, bucket_s: int) -> pl.DataFrame:
    """Events per time bucket (by event time) and the mean events per second in it. Events have
    no journey (most are not caused by a decision), so the journey filter does not apply."""
    frame = run_on(aggregates, EVENTS_OVER_TIME.statement(filters, bucket_s=bucket_s))
    return frame.with_columns((pl.col("events") / float(bucket_s)).alias("events_per_s"))


BURN = Query(
    "health.burn_rates",
    "Decisions and decisions within the budget over the last 1, 6 and 24 whole hours of "
    "decisions, from the rollups' latency histogram.",
    lambda filters, budget_ms: Statement(_BURN_SQL, _budget(filters, budget_ms)),
    example={"budget_ms": 10.0},
    method=_SLO_METHOD,
    over="aggregates",
)


def burn_rates(
    aggregates: Aggregates, filters: Filters, budget_ms: float, slo_target: float = SLO_TARGET
) -> pl.DataFrame:
    """Burn rate over the last 1, 6 and 24 whole UTC hours of decisions (the newest decision's
    hour and those before it).

    Read as in the SRE workbook: a burn of 14 over 1 h, or 6 over 6 h, spends a month's error
    budget in days and deserves a page; below 1 the budget lasts."""
    row = run_on(aggregates, BURN.statement(filters, budget_ms=budget_ms)).row(0)
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
        schema={
            "window": pl.String,
            "decisions": pl.Int64,
            "within_budget": pl.Int64,
            "attainment": pl.Float64,
            "burn_rate": pl.Float64,
        },
    )


def _breakdown_query(name: str, kind: str, description: str, metric: str) -> Query:
    sql = _BREAKDOWN_SQL.format(column=_BREAKDOWNS[kind])
    return Query(
        name,
        description,
        lambda filters: Statement(sql, filters.params()),
        metrics=(metric,),
        method="Share = the code's decisions / all filtered decisions (exact counts from the rollups' "
        "hourly aggregates).",
        over="aggregates",
    )


ERRORS = _breakdown_query(
    "health.errors_by_code", "error", "Decisions that errored, by error code, and all filtered decisions.", "error_rate"
)
FALLBACKS = _breakdown_query(
    "health.fallbacks_by_reason",
    "fallback",
    "Decisions served the default, by reason, and all filtered decisions.",
    "fallback_rate",
)


def _breakdown(aggregates: Aggregates, filters: Filters, query: Query) -> pl.DataFrame:
    counts = run_on(aggregates, query.statement(filters))
    return counts.with_columns(
        (pl.col("decisions") / pl.col("total")).alias("rate"),
        pl.col("code").map_elements(sentence, return_dtype=pl.String).alias("meaning"),
        pl.col("code").is_in([str(c) for c in FAILURES]).alias("failure"),
    ).drop("total")


def errors_by_code(aggregates: Aggregates, filters: Filters) -> pl.DataFrame:
    """Decisions that errored, by error code: count, rate over all filtered decisions, meaning."""
    return _breakdown(aggregates, filters, ERRORS)


def fallbacks_by_reason(aggregates: Aggregates, filters: Filters) -> pl.DataFrame:
    """Decisions that fell back to the default, by reason; `failure` marks engine faults as
    opposed to deliberate governance (consent, caps)."""
    return _breakdown(aggregates, filters, FALLBACKS)


MODELS = Query(
    "health.model_versions",
    "Per policy and model: the version serving last, versions served, decisions, first and last seen.",
    lambda filters: Statement(_MODELS_SQL, filters.params()),
    method="A learning policy's version is its model then `.<update>`: versions = online updates that served; "
    "share = the model's decisions / its policy's decisions.",
)


def model_versions(wh: Warehouse, filters: Filters) -> pl.DataFrame:
    """Models in use per policy: the version serving last, how many versions (online updates)
    served, decisions, share of the policy's decisions, first/last seen."""
    frame = MODELS.run(wh, filters)
    return frame.with_columns((pl.col("decisions") / pl.col("decisions").sum().over("policy")).alias("share"))


_BOUNDS_METHOD = (
    "The newest rows are found through a lower bound of the newest time, read from the Delta log's "
    "per-file statistics: the same answer as a scan of every row, at the cost of the newest files only."
)


def bounds(wh: Warehouse) -> dict[str, datetime | None]:
    """The lower bounds of the newest decision and event times that `NEWEST` and `ARRIVALS` bind
    (`Warehouse.newest_bound`); shown with them in "How this is computed"."""
    return {
        "decisions_from": wh.newest_bound("decisions", "ts"),
        "events_from": wh.newest_bound("events", "received_at"),
    }


_EXAMPLE_BOUNDS = {
    "decisions_from": datetime(2026, 6, 13, 1, 59, tzinfo=UTC),
    "events_from": datetime(2026, 6, 13, 1, 59, tzinfo=UTC),
}

NEWEST = Query(
    "health.newest_received",
    "When the newest event reached the lake.",
    lambda filters, events_from=None, decisions_from=None: Statement(
        _NEWEST_RECEIVED_SQL, {"events_from": events_from}
    ),
    example=_EXAMPLE_BOUNDS,
    method="Writer lag = now − the newest arrival; the freshness badge reads it (live under 30 s). " + _BOUNDS_METHOD,
)


def newest_received(wh: Warehouse) -> datetime | None:
    """When the newest event reached the lake (None: no events yet)."""
    frame = NEWEST.run(wh, Filters(), events_from=wh.newest_bound("events", "received_at"))
    return frame.item(0, 0) if frame.height else None


def writer_lag(newest: datetime | None, now: datetime | None = None) -> float | None:
    """Seconds between `now` and `newest_received` (None: no events)."""
    if newest is None:
        return None
    return max(0.0, ((now or datetime.now(UTC)) - newest).total_seconds())


@dataclass(frozen=True)
class Throughput:
    """Decisions and events per second over the last `window_s` seconds."""

    decisions_per_s: float
    events_per_s: float
    window_s: float


def _arrivals_statement(
    filters: Filters,
    window_s: float,
    until: datetime | None = None,
    decisions_from: datetime | None = None,
    events_from: datetime | None = None,
) -> Statement:
    params = {"window_s": window_s, "until": until, "decisions_from": decisions_from, "events_from": events_from}
    return Statement(_ARRIVALS_SQL, params)


ARRIVALS = Query(
    "health.arrivals",
    "When each decision (by decision time) and event (by arrival) of the newest window was made.",
    _arrivals_statement,
    example={"window_s": 60.0, **_EXAMPLE_BOUNDS},
    metrics=("events_per_second",),
    method="Per second now = the rows of the last window before now / the window's length. " + _BOUNDS_METHOD,
)


def arrivals(wh: Warehouse, window_s: float = 60.0, until: datetime | None = None) -> pl.DataFrame:
    """The times of the decisions and events in the `window_s` before `until` (None: before each
    stream's newest row, an answer that changes only when the lake does): stream, at."""
    return ARRIVALS.run(wh, Filters(), window_s=window_s, until=until, **bounds(wh))


def throughput_at(recent: pl.DataFrame, now: datetime, window_s: float = 60.0) -> Throughput:
    """Decisions and events per second over the `window_s` before `now`, from `arrivals`' rows."""
    end = (now - _EPOCH) // timedelta(microseconds=1)
    start = end - round(window_s * 1_000_000)
    at = pl.col("at").dt.epoch("us")
    counts = dict(recent.filter((at > start) & (at <= end)).group_by("stream").len().iter_rows())
    return Throughput(counts.get("decisions", 0) / window_s, counts.get("events", 0) / window_s, window_s)


def throughput_now(wh: Warehouse, window_s: float = 60.0, now: datetime | None = None) -> Throughput:
    """Live throughput: decisions (by decision time) and events (by arrival) in the last window."""
    now = now or datetime.now(UTC)
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
