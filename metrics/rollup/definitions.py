"""The rollups' definitions: every SQL text that turns raw rows into per-user facts and facts
into the sufficient statistics pages read, written once from the KPI catalogue.

Three kinds of SQL, each a constant text over fixed relation names (the inputs are bound by
the caller as views; user values are always bound parameters):

- *facts* (`facts_sql`): raw rows `in_events`, `in_exposures`, `in_decisions` -> rows of the
  state tables (`STATE`): a user's events per hour, a unit's first exposure or decision, ...;
- *partials* (`partials_sql`): the one irregular fact — the events of a unit's first hour from
  its first exposure (or decision) on, read from raw rows for the units it is asked about;
- *contributions* (`contributions_sql`): state tables -> rows of an aggregate table (`AGGREGATES`),
  increments of every metric's sums per bucket and *change day*, so that the statistics of the
  units that entered between days S and E, as of day E, are the sum of the rows with cohort_day
  in [S, E] and change_day <= E.

The operational aggregates (`OPERATIONS`: the Engine health and Governance pages) need no units:
each decision or event counts once in its UTC hour. They still come from per-user state
(`decision_ops`, `event_ops`: counts per user, hour and the aggregates' keys), so that an erased
user's counts are retracted like every other contribution. Latency is kept as a histogram over
fixed log-spaced buckets (`LATENCY_BUCKETS_PER_DECADE`), whose counts are exact and whose
percentiles carry the relative error `LATENCY_RELATIVE_ERROR`.

Units and definitions (see docs/architecture.md, "Rollups"):
- an experiment's unit is a user with an exposure in it (holdout excluded): arm, element and
  channel of the first exposure (ties by exposure id), segment of the user's first decision;
- the executive view's unit is a user the engine reached, per scope (all journeys, or one):
  group (holdout or exposed), channel and segment of the first decision;
- outcomes count from the first exposure (or decision) on; windowed metrics over whole UTC days
  after its day; the CUPED covariate over the `pre_days` whole UTC days before its day.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from typing import Literal

import pyarrow as pa

from metrics.arm_stats import stat_fields
from metrics.rollup.state import Additive, Aggregate, Column, Pick, StateTable, key, summed
from momento.kpis import CAPPED, CLICK_EVENTS, ELIGIBLE, FALLBACK, MEASURES, METRICS, PERSONALISED, Metric
from momento.lake.schema import UTC_TS
from momento.sql import sql_list

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
ALL_JOURNEYS = "*"
"""The scope of the executive view over every journey (the others are journey ids)."""

USER_MEASURES = tuple(n for n, m in MEASURES.items() if m.source == "events" and not m.element)
ELEMENT_MEASURES = tuple(n for n, m in MEASURES.items() if m.source == "events" and m.element)
EXPOSURE_MEASURES = tuple(n for n, m in MEASURES.items() if m.source == "exposures")
DECISION_MEASURES = tuple(n for n, m in MEASURES.items() if m.source == "decisions")

EXPOSED_METRICS = tuple(m for m in METRICS.values() if "exposed" in m.population)
REACHED_METRICS = tuple(m for m in METRICS.values() if "reached" in m.population)

_STR, _BIG, _INT = pa.string(), pa.int64(), pa.int32()


def col(measure: str) -> str:
    """The state column holding measure `measure`."""
    return f"m_{measure}"


def hour_of(ts: str) -> str:
    """SQL: the UTC hour (hours since the epoch) of a timestamp."""
    return f"(epoch_us({ts}) // {HOUR_US})"


def day_of(ts: str) -> str:
    """SQL: the UTC day (days since the epoch) of a timestamp."""
    return f"CAST(epoch_us({ts}) // {DAY_US} AS INTEGER)"


# ---------------------------------------------------------------------------------------------
# State tables

_SPAN = (Column("first_ts", UTC_TS, "min"), Column("last_ts", UTC_TS, "max"))

USER_HOURS = Additive(
    "user_hours", (key("user_id", _STR), key("hour", _BIG)), summed([col(m) for m in USER_MEASURES]) + _SPAN
)
PLACEMENT_HOURS = Additive(
    "placement_hours",
    (key("user_id", _STR), key("placement", _STR), key("hour", _BIG)),
    summed([col(m) for m in ELEMENT_MEASURES]) + _SPAN,
)
EXPOSURE_FIRSTS = Pick(
    "exposure_firsts",
    (key("experiment_id", _STR), key("user_id", _STR)),
    (
        Column("first_ts", UTC_TS),
        Column("first_id", _STR),
        Column("arm", _STR),
        Column("placement", _STR),
        Column("channel", _STR),
    ),
    (("first_ts", False), ("first_id", False)),
)
EXPOSURE_HOURS = Additive(
    "exposure_hours",
    (key("experiment_id", _STR), key("user_id", _STR), key("hour", _BIG)),
    summed([col(m) for m in EXPOSURE_MEASURES]),
)
DECISION_FIRSTS = Pick(
    "decision_firsts",
    (key("scope", _STR), key("user_id", _STR)),
    (
        Column("first_ts", UTC_TS),
        Column("first_id", _STR),
        Column("arm", _STR),
        Column("channel", _STR),
        Column("segment", _STR),
    ),
    (("first_ts", False), ("first_id", False)),
)
DECISION_HOURS = Additive(
    "decision_hours",
    (key("scope", _STR), key("user_id", _STR), key("hour", _BIG)),
    summed([col(m) for m in DECISION_MEASURES]),
)
PARTIALS = Pick(
    "partials",
    (key("family", _STR), key("unit", _STR), key("user_id", _STR)),
    (Column("first_ts", UTC_TS), *(Column(col(m), pa.float64()) for m in (*USER_MEASURES, *ELEMENT_MEASURES))),
    (("run_id", True),),
)
"""The first hour of each unit from its first exposure or decision on (`family`: exposed, whose
`unit` is the experiment, or reached, whose `unit` is the scope); recomputed whole, newest wins."""

LATENCY_BUCKETS_PER_DECADE = 20
"""Latency histogram resolution: bucket k holds latencies in (10^((k-1)/20), 10^(k/20)] µs (bucket 0:
at most 1 µs), so every power of ten (1 ms, 10 ms, 100 ms) is a bucket edge."""
LATENCY_RELATIVE_ERROR = 10 ** (1 / (2 * LATENCY_BUCKETS_PER_DECADE)) - 1
"""A percentile read as its bucket's geometric midpoint is within this relative error (5.9%) of
the exact nearest-rank percentile: the exact value lies in the same bucket."""


def latency_bucket(latency_us: str) -> str:
    """SQL: the histogram bucket of a latency in µs (NULL stays NULL)."""
    return (
        f"CASE WHEN {latency_us} <= 1 THEN 0 "
        f"ELSE CAST(ceil(log10({latency_us}) * {LATENCY_BUCKETS_PER_DECADE}) AS INTEGER) END"
    )


def latency_value(bucket: str) -> str:
    """SQL: the latency (µs) a bucket stands for: its geometric midpoint (1 µs for bucket 0)."""
    return f"CASE WHEN {bucket} = 0 THEN 1.0 ELSE pow(10, ({bucket} - 0.5) / {LATENCY_BUCKETS_PER_DECADE}) END"


def within_budget(bucket: str, budget_us: str) -> str:
    """SQL: whether a bucket lies within a budget (µs): its upper edge is at most the budget. Exactly
    the latencies within the budget when the budget is a bucket edge (10 ms is); otherwise the
    bucket straddling it is left out (a lower bound)."""
    return f"{bucket} <= floor(log10({budget_us}) * {LATENCY_BUCKETS_PER_DECADE} + 1e-9)"


_OPS_KEYS = (key("hour", _BIG), key("journey", _STR), key("channel", _STR), key("segment", _STR))
DECISION_OPS = Additive(
    "decision_ops",
    (
        key("user_id", _STR),
        *_OPS_KEYS,
        key("error_code", _STR),
        key("fallback_reason", _STR),
        key("latency_bucket", _INT),
    ),
    (Column("decisions", _BIG, "sum"), Column("consented", _BIG, "sum")),
)
"""A user's decisions per hour, journey, channel, segment, error code (errors only), fallback
reason (fallbacks only) and latency bucket; and how many had consent."""
EVENT_OPS = Additive(
    "event_ops",
    (key("user_id", _STR), key("hour", _BIG), key("channel", _STR), key("segment", _STR)),
    (
        Column("events", _BIG, "sum"),
        Column("consent_events", _BIG, "sum"),
        Column("withdrawals", _BIG, "sum"),
        Column("opt_outs", _BIG, "sum"),
    ),
)
"""A user's events per hour (of event time), channel and segment; consent changes and opt-outs
(`consent_events`), consent withdrawals, opt-outs."""

SERVED_DECISIONS = Additive(
    "served_decisions",
    (
        key("user_id", _STR),
        key("decision_id", _STR),
        key("day", _INT),
        key("journey", _STR),
        key("channel", _STR),
        key("segment", _STR),
        key("serving", _STR),
    ),
    (Column("decisions", _BIG, "sum"),),
)
"""A user's decisions with the journey funnel's attributes (day, journey, channel, segment and
serving class: `SERVING_SQL`); a decision delivered twice counts twice, as in the raw table."""
DECISION_LINKS = Additive(
    "decision_links",
    (key("user_id", _STR), key("decision_id", _STR)),
    (Column("exposures", _BIG, "sum"), Column("clicks", _BIG, "sum"), Column("purchases", _BIG, "sum")),
)
"""What followed a user's decision: exposures, clicks and purchases that carry its id (from
whichever batch they arrive in, before or after the decision)."""

FACTS: tuple[StateTable, ...] = (
    USER_HOURS,
    PLACEMENT_HOURS,
    EXPOSURE_FIRSTS,
    EXPOSURE_HOURS,
    DECISION_FIRSTS,
    DECISION_HOURS,
    DECISION_OPS,
    EVENT_OPS,
    SERVED_DECISIONS,
    DECISION_LINKS,
)
"""State tables made from raw rows alone (additive, or first-by-time)."""
STATE: tuple[StateTable, ...] = (*FACTS, PARTIALS)
USER_TABLES: tuple[StateTable, ...] = (DECISION_OPS, EVENT_OPS, EXPOSURE_FIRSTS, DECISION_LINKS)
"""State tables that between them hold every user with a row in the rollups (where an erasure
looks for its subjects)."""


def _sum(measure: str) -> str:
    m = MEASURES[measure]
    total = "count(*)" if m.value == "1" else f"sum({m.value})"
    where = m.predicate() if m.source == "events" else m.where
    return (
        f"CAST(coalesce({total} FILTER (WHERE {where}), 0) AS DOUBLE) AS {col(measure)}"
        if where != "TRUE"
        else f"CAST(coalesce({total}, 0) AS DOUBLE) AS {col(measure)}"
    )


def _types(measures: Sequence[str]) -> str:
    return sql_list(sorted({t for n in measures for t in MEASURES[n].event_types}) or ["-"])


SERVING_SQL = f"""CASE WHEN NOT d.consent THEN 'no_consent'
             WHEN {CAPPED} THEN 'capped'
             WHEN d.arm = 'holdout' THEN 'holdout'
             WHEN NOT {ELIGIBLE} THEN 'blocked'
             WHEN {FALLBACK} THEN 'fallback'
             WHEN {PERSONALISED} THEN 'model'
             ELSE 'fixed' END"""
"""A decision's serving class, in the order governance decides them (`metrics.journeys.SERVING`)."""

_EXPOSED = "f.experiment_id IS NOT NULL AND f.arm IS NOT NULL AND f.arm <> 'holdout'"
_SCOPED = (
    f"(SELECT '{ALL_JOURNEYS}' AS scope, d.* FROM in_decisions d "
    f"UNION ALL SELECT d.journey AS scope, d.* FROM in_decisions d) d"
)


@functools.cache
def facts_sql(table: str) -> str:
    """SQL: the raw input rows (`in_events`, `in_exposures`, `in_decisions`) as rows of state
    table `table`, merged within the batch (one row per key)."""
    user_measures = ", ".join(_sum(m) for m in USER_MEASURES)
    element_measures = ", ".join(_sum(m) for m in ELEMENT_MEASURES)
    span = "min(e.ts) AS first_ts, max(e.ts) AS last_ts"
    sql = {
        "user_hours": f"SELECT e.user_id, {hour_of('e.ts')} AS hour, {user_measures}, {span} FROM in_events e "
        f"WHERE e.event_type IN ({_types(USER_MEASURES)}) GROUP BY e.user_id, hour",
        "placement_hours": f"SELECT e.user_id, e.placement, {hour_of('e.ts')} AS hour, {element_measures}, {span} "
        f"FROM in_events e WHERE e.event_type IN ({_types(ELEMENT_MEASURES)}) "
        f"AND e.placement IS NOT NULL GROUP BY e.user_id, e.placement, hour",
        "exposure_firsts": EXPOSURE_FIRSTS.merged_sql(
            f"(SELECT f.experiment_id, f.user_id, f.ts AS first_ts, f.exposure_id AS first_id, f.arm, f.placement, "
            f"f.channel FROM in_exposures f WHERE {_EXPOSED})"
        ),
        "exposure_hours": f"SELECT f.experiment_id, f.user_id, {hour_of('f.ts')} AS hour, "
        f"{', '.join(_sum(m) for m in EXPOSURE_MEASURES)} FROM in_exposures f WHERE {_EXPOSED} "
        f"GROUP BY f.experiment_id, f.user_id, hour",
        "decision_firsts": DECISION_FIRSTS.merged_sql(
            f"(SELECT d.scope, d.user_id, d.ts AS first_ts, d.decision_id AS first_id, d.arm, d.channel, d.segment "
            f"FROM {_SCOPED})"
        ),
        "decision_hours": f"SELECT d.scope, d.user_id, {hour_of('d.ts')} AS hour, "
        f"{', '.join(_sum(m) for m in DECISION_MEASURES)} FROM {_SCOPED} "
        f"GROUP BY d.scope, d.user_id, hour",
        "decision_ops": f"SELECT d.user_id, {hour_of('d.ts')} AS hour, d.journey, d.channel, d.segment, "
        "CASE WHEN d.status = 'error' THEN coalesce(d.error_code, 'unknown') END AS error_code, "
        "CASE WHEN d.fallback THEN coalesce(d.fallback_reason, 'unknown') END AS fallback_reason, "
        f"{latency_bucket('d.latency_us')} AS latency_bucket, count(*) AS decisions, "
        "count(*) FILTER (WHERE d.consent) AS consented FROM in_decisions d GROUP BY ALL",
        "served_decisions": f"SELECT d.user_id, d.decision_id, {day_of('d.ts')} AS day, d.journey, d.channel, "
        f"d.segment, {SERVING_SQL} AS serving, count(*) AS decisions FROM in_decisions d GROUP BY ALL",
        "decision_links": "SELECT user_id, decision_id, sum(exposures) AS exposures, sum(clicks) AS clicks, "
        "sum(purchases) AS purchases FROM (SELECT x.user_id, x.decision_id, 1 AS exposures, 0 AS clicks, "
        "0 AS purchases FROM in_exposures x WHERE x.decision_id IS NOT NULL UNION ALL "
        f"SELECT e.user_id, e.decision_id, 0, CASE WHEN e.event_type IN ({sql_list(CLICK_EVENTS)}) "
        "THEN 1 ELSE 0 END, CASE WHEN e.event_type = 'purchase' THEN 1 ELSE 0 END FROM in_events e "
        f"WHERE e.decision_id IS NOT NULL AND e.event_type IN ({sql_list((*CLICK_EVENTS, 'purchase'))})) "
        "GROUP BY user_id, decision_id",
        "event_ops": f"SELECT e.user_id, {hour_of('e.ts')} AS hour, e.channel, e.segment, count(*) AS events, "
        "count(*) FILTER (WHERE e.event_type IN ('consent_change', 'opt_out')) AS consent_events, "
        "count(*) FILTER (WHERE e.event_type = 'consent_change' AND e.consent = false) AS withdrawals, "
        "count(*) FILTER (WHERE e.event_type = 'opt_out') AS opt_outs FROM in_events e GROUP BY ALL",
    }
    return sql[table]


@functools.cache
def partials_sql(events: Literal["events", "in_events"]) -> str:
    """SQL: for each row of `anchors` (family, unit, user_id, first_ts, placement), the measures of
    its user's events in `events` from `first_ts` to the end of that hour. `$lo`/`$hi` bound the
    events' time (so only the files of those hours are read) and `$upper` their load time (only
    rows a watermark covers)."""
    sums = [_sum(m) for m in USER_MEASURES]
    sums += [
        f"CAST(count(*) FILTER (WHERE {MEASURES[m].predicate()} AND e.placement = a.placement) AS DOUBLE) AS {col(m)}"
        for m in ELEMENT_MEASURES
    ]
    return f"""SELECT a.family, a.unit, a.user_id, a.first_ts, {", ".join(sums)}
FROM anchors a LEFT JOIN (
    SELECT * FROM {events}
    WHERE ts >= $lo AND ts < $hi AND (loaded_at IS NULL OR loaded_at <= $upper)
      AND event_type IN ({_types((*USER_MEASURES, *ELEMENT_MEASURES))})
) e ON e.user_id = a.user_id AND e.ts >= a.first_ts
   AND e.ts < make_timestamptz(({hour_of("a.first_ts")} + 1) * {HOUR_US})
GROUP BY a.family, a.unit, a.user_id, a.first_ts"""


# ---------------------------------------------------------------------------------------------
# Aggregates: metric increments per bucket and change day


def stat_columns(metrics: Sequence[Metric]) -> tuple[Column, ...]:
    return tuple(
        Column(f"{m.name}__{f}", _BIG if f == "n" else pa.float64(), "sum") for m in metrics for f in stat_fields(m)
    )


EXPERIMENT_STATS = Aggregate(
    "experiment_stats",
    (
        key("experiment_id", _STR),
        key("arm", _STR),
        key("segment", _STR),
        key("channel", _STR),
        key("cohort_day", _INT),
        key("change_day", _INT),
    ),
    (Column("exposed__users", _BIG, "sum"), *stat_columns(EXPOSED_METRICS)),
)
EXECUTIVE_STATS = Aggregate(
    "executive_stats",
    (
        key("scope", _STR),
        key("grp", _STR),
        key("segment", _STR),
        key("channel", _STR),
        key("cohort_day", _INT),
        key("change_day", _INT),
    ),
    (Column("users", _BIG, "sum"), *stat_columns(REACHED_METRICS)),
)
EXECUTIVE_REVENUE = Aggregate(
    "executive_revenue",
    (
        key("scope", _STR),
        key("grp", _STR),
        key("segment", _STR),
        key("channel", _STR),
        key("cohort_day", _INT),
        key("hour", _BIG),
    ),
    (Column("revenue", pa.float64(), "sum"),),
)
HEALTH_OPS = Aggregate(
    "health_ops",
    (*_OPS_KEYS, key("error_code", _STR), key("fallback_reason", _STR)),
    (Column("decisions", _BIG, "sum"), Column("consented", _BIG, "sum")),
)
LATENCY_HISTOGRAM = Aggregate(
    "latency_histogram", (*_OPS_KEYS, key("latency_bucket", _INT)), (Column("decisions", _BIG, "sum"),)
)
EVENT_COUNTS = Aggregate(
    "event_counts",
    (key("hour", _BIG), key("channel", _STR), key("segment", _STR)),
    (
        Column("events", _BIG, "sum"),
        Column("consent_events", _BIG, "sum"),
        Column("withdrawals", _BIG, "sum"),
        Column("opt_outs", _BIG, "sum"),
    ),
)
JOURNEY_FUNNEL = Aggregate(
    "journey_funnel",
    (key("day", _INT), key("journey", _STR), key("channel", _STR), key("segment", _STR), key("serving", _STR)),
    (
        Column("decisions", _BIG, "sum"),
        Column("exposed", _BIG, "sum"),
        Column("clicked", _BIG, "sum"),
        Column("converted", _BIG, "sum"),
    ),
)
"""Decisions per day and funnel attributes, and how many of them were seen, clicked, converted."""
OPERATIONS: tuple[Aggregate, ...] = (HEALTH_OPS, LATENCY_HISTOGRAM, EVENT_COUNTS)
"""Hourly operational counts: each decision (event) in its hour, from the per-user state."""
AGGREGATES: tuple[Aggregate, ...] = (EXPERIMENT_STATS, EXECUTIVE_STATS, EXECUTIVE_REVENUE, *OPERATIONS, JOURNEY_FUNNEL)


def _operations_state(aggregate: Aggregate) -> StateTable:
    """The per-user state an operational aggregate sums."""
    return EVENT_OPS if aggregate is EVENT_COUNTS else DECISION_OPS


def _fold_keys(table: StateTable) -> tuple[str, ...]:
    if any(table is _operations_state(a) for a in OPERATIONS):
        return ()
    if table is SERVED_DECISIONS or table is DECISION_LINKS:
        return ("user_id", "decision_id")
    return ("user_id",)


FOLD_KEYS: dict[str, tuple[str, ...]] = {t.name: _fold_keys(t) for t in STATE}
"""Per state table, the keys of the rows whose contributions are computed together: a fold reads,
of a table's committed rows, those sharing these keys with a row of the batch (and every row of
the users it forgets); the others contribute the same before and after, and cancel out.
- `()`: the operational counts (`_operations_sql`) sum the rows one by one, so a fold's
  increments are the batch's rows alone and it reads only the forgotten users' rows;
- `(user_id, decision_id)`: the journey funnel counts each decision from its own rows;
- `(user_id,)`: a user's units join their rows across the tables."""


def _operations_sql(aggregate: Aggregate) -> str:
    """The contributions of the per-user operational state to `aggregate`: its counts summed over
    users, each row signed by its side."""
    state = _operations_state(aggregate)
    keys = ", ".join(c.name for c in aggregate.keys)
    values = ", ".join(f"CAST(sum(s.side * s.{c.name}) AS BIGINT) AS {c.name}" for c in aggregate.values)
    return f"WITH s AS (SELECT * FROM {state.name})\nSELECT {keys}, {values} FROM s GROUP BY {keys}"


def _value(m: Metric, measure: str, running: str) -> str:
    """A unit's value of `m` from the running sum of `measure` (NULL-safe)."""
    raw = f"coalesce({running}, 0)"
    return f"CASE WHEN {raw} > 0 THEN 1.0 ELSE 0.0 END" if m.type == "proportion" else raw


@functools.cache
def _family_sql(family: str, pre_days: int) -> dict[str, str]:
    """The contributions SQL of the exposed or reached family: its stats and (reached) revenue."""
    exposed = family == "exposed"
    metrics = EXPOSED_METRICS if exposed else REACHED_METRICS
    unit = ("experiment_id",) if exposed else ("scope",)
    ukey = ", ".join(("side", *unit, "user_id"))
    dims = ("arm", "segment", "channel") if exposed else ("grp", "segment", "channel")
    measures = tuple(dict.fromkeys(n for m in metrics for n in m.measures))
    zero = dict.fromkeys(measures, "0.0")
    if exposed:
        units = f"""SELECT x.side, x.experiment_id, x.user_id, x.first_ts, x.arm, x.placement, x.channel,
           coalesce(s.segment, 'unknown') AS segment, {day_of("x.first_ts")} AS cohort_day,
           {hour_of("x.first_ts")} AS first_hour
    FROM exposure_firsts x
    LEFT JOIN decision_firsts s ON s.side = x.side AND s.scope = '{ALL_JOURNEYS}' AND s.user_id = x.user_id"""
    else:
        units = f"""SELECT r.side, r.scope, r.user_id, r.first_ts, CAST(NULL AS VARCHAR) AS placement, r.channel,
           CASE WHEN r.arm = 'holdout' THEN 'holdout' ELSE 'exposed' END AS grp,
           coalesce(r.segment, 'unknown') AS segment, {day_of("r.first_ts")} AS cohort_day,
           {hour_of("r.first_ts")} AS first_hour
    FROM decision_firsts r"""

    def part(source: str, values: dict[str, str], join: str, day: str) -> str:
        columns = ", ".join(f"{values.get(n, '0.0')} AS {col(n)}" for n in measures)
        return f"SELECT {', '.join(f'u.{k}' for k in ('side', *unit, 'user_id'))}, {day} AS day, {columns}\n    FROM {source} {join}"

    parts = [part("units u", zero, "", "u.cohort_day")]  # the entry day exists for every unit
    user_m = {n: f"h.{col(n)}" for n in measures if n in USER_MEASURES}
    if user_m:
        parts.append(
            part(
                "units u",
                user_m,
                "JOIN user_hours h ON h.side = u.side AND h.user_id = u.user_id AND h.hour > u.first_hour",
                "CAST(h.hour // 24 AS INTEGER)",
            )
        )
    element_m = {n: f"p.{col(n)}" for n in measures if n in ELEMENT_MEASURES}
    if element_m:
        parts.append(
            part(
                "units u",
                element_m,
                "JOIN placement_hours p ON p.side = u.side AND p.user_id = u.user_id "
                "AND p.placement = u.placement AND p.hour > u.first_hour",
                "CAST(p.hour // 24 AS INTEGER)",
            )
        )
    exposure_m = {n: f"x.{col(n)}" for n in measures if n in EXPOSURE_MEASURES}
    if exposure_m:
        parts.append(
            part(
                "units u",
                exposure_m,
                "JOIN exposure_hours x ON x.side = u.side AND x.experiment_id = u.experiment_id "
                "AND x.user_id = u.user_id",
                "CAST(x.hour // 24 AS INTEGER)",
            )
        )
    decision_m = {n: f"h.{col(n)}" for n in measures if n in DECISION_MEASURES}
    if decision_m:
        parts.append(
            part(
                "units u",
                decision_m,
                "JOIN decision_hours h ON h.side = u.side AND h.scope = u.scope AND h.user_id = u.user_id",
                "CAST(h.hour // 24 AS INTEGER)",
            )
        )
    partial_m = {n: f"p.{col(n)}" for n in measures if n in USER_MEASURES or n in ELEMENT_MEASURES}
    if partial_m:
        parts.append(
            part(
                "units u",
                partial_m,
                f"JOIN partials p ON p.side = u.side AND p.family = '{family}' AND p.unit = u.{unit[0]} "
                "AND p.user_id = u.user_id AND p.first_ts = u.first_ts",
                "u.cohort_day",
            )
        )

    daily = ", ".join(f"sum({col(n)}) AS {col(n)}" for n in measures)
    running_cols = []
    # Spelt out in every OVER: a named window refined by a frame (`OVER (w ROWS ...)`) is DuckDB's
    # and not Spark's, so it is the one form that does not transpile.
    per_unit = f"PARTITION BY {ukey} ORDER BY day"
    for m in metrics:
        start = m.window.start_day
        for n in m.measures:
            masked = col(n) if not start else f"CASE WHEN day >= cohort_day + {start} THEN {col(n)} ELSE 0.0 END"
            running_cols.append(
                f"sum({masked}) OVER ({per_unit} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS c_{m.name}__{n}"
            )
            running_cols.append(
                f"coalesce(sum({masked}) OVER ({per_unit} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 "
                f"PRECEDING), 0.0) AS b_{m.name}__{n}"
            )
    cuped = [m for m in metrics if m.cuped]
    pre = ", ".join(f"sum(h.{col(m.numerator)}) AS x_{m.name}" for m in cuped)

    increments, windowed, values = [], [], []
    for m in metrics:
        v = _value(m, m.numerator, f"c_{m.name}__{m.numerator}")
        d = _value(m, m.denominator, f"c_{m.name}__{m.denominator}") if m.denominator else None
        v0 = _value(m, m.numerator, f"b_{m.name}__{m.numerator}")  # the value the day before
        d0 = _value(m, m.denominator, f"b_{m.name}__{m.denominator}") if m.denominator else None
        x = _value(m, m.numerator, f"p.x_{m.name}") if m.cuped else None
        if m.window.end_day is not None:
            windowed.append(m)
            continue
        stats = {
            "n": "CASE WHEN c.day = c.cohort_day THEN 1 ELSE 0 END",
            "sum": f"c.v_{m.name} - c.v0_{m.name}",
            "sum_squares": f"c.v_{m.name} * c.v_{m.name} - c.v0_{m.name} * c.v0_{m.name}",
        }
        if d is not None:
            stats |= {
                "denominator_sum": f"c.d_{m.name} - c.d0_{m.name}",
                "denominator_sum_squares": f"c.d_{m.name} * c.d_{m.name} - c.d0_{m.name} * c.d0_{m.name}",
                "sum_product": f"c.v_{m.name} * c.d_{m.name} - c.v0_{m.name} * c.d0_{m.name}",
            }
        if x is not None:
            entry = "CASE WHEN c.day = c.cohort_day THEN 1.0 ELSE 0.0 END"
            stats |= {
                "pre_sum": f"{entry} * {x}",
                "pre_sum_squares": f"{entry} * {x} * {x}",
                "sum_product": f"(c.v_{m.name} - c.v0_{m.name}) * {x}",
            }
        increments.append((m, stats, v, d))
        values += [f"{v} AS v_{m.name}", f"{v0} AS v0_{m.name}"]
        if d is not None:
            values += [f"{d} AS d_{m.name}", f"{d0} AS d0_{m.name}"]
    population = "exposed__users" if exposed else "users"
    select = [f"sum(c.side * CASE WHEN c.day = c.cohort_day THEN 1 ELSE 0 END) AS {population}"]
    for m in metrics:
        for f in stat_fields(m):
            found = next((stats[f] for mm, stats, _, _ in increments if mm is m), None)
            total = f"sum(c.side * ({found}))" if found is not None else "0"
            select.append(f"CAST({total} AS {'BIGINT' if f == 'n' else 'DOUBLE'}) AS {m.name}__{f}")
    bucket = ", ".join(f"c.{k}" for k in (*unit, *dims, "cohort_day"))
    ctes = [
        f"units AS (\n    {units}\n)",
        "parts AS (\n    " + "\n    UNION ALL\n    ".join(parts) + "\n)",
        f"daily AS (\n    SELECT p.*, u.cohort_day FROM (SELECT {ukey}, day, {daily} FROM parts GROUP BY {ukey}, day) p "
        f"JOIN units u USING ({ukey})\n)",
        f"running AS (\n    SELECT {ukey}, day, cohort_day, {', '.join(running_cols)} FROM daily\n)",
        f"valued AS (\n    SELECT {ukey}, day, cohort_day{''.join(', ' + v for v in values)} FROM running\n)",
        f"changes AS (\n    SELECT u.*, v.day{''.join(', v.' + c.split(' AS ')[1] for c in values)}\n"
        f"    FROM valued v JOIN units u USING ({ukey})\n)",
    ]
    if cuped:
        ctes.append(
            f"pre AS (\n    SELECT u.side, u.{unit[0]}, u.user_id, {pre}\n    FROM units u JOIN user_hours h "
            f"ON h.side = u.side AND h.user_id = u.user_id AND h.hour >= (u.cohort_day - {pre_days}) * 24 "
            f"AND h.hour < u.cohort_day * 24\n    GROUP BY u.side, u.{unit[0]}, u.user_id\n)"
        )
    else:
        ctes.append(f"pre AS (SELECT {ukey} FROM units)")
    stats_select = (
        f"SELECT {bucket}, c.day AS change_day,\n    "
        + ",\n    ".join(select)
        + f"\nFROM changes c LEFT JOIN pre p USING ({ukey})\nGROUP BY {bucket}, c.day"
    )
    blocks = [stats_select]
    for m in windowed:
        w = m.window
        in_window = f"day >= cohort_day + {w.start_day} AND day < cohort_day + {w.end_day}"
        sums = ", ".join(f"sum(CASE WHEN {in_window} THEN {col(n)} ELSE 0.0 END) AS w_{n}" for n in m.measures)
        v = _value(m, m.numerator, f"s.w_{m.numerator}")
        fields = {"n": "1", "sum": v, "sum_squares": f"{v} * {v}"}
        if m.denominator:
            dv = _value(m, m.denominator, f"s.w_{m.denominator}")
            fields |= {"denominator_sum": dv, "denominator_sum_squares": f"{dv} * {dv}", "sum_product": f"{v} * {dv}"}
        if m.cuped:
            x = _value(m, m.numerator, f"p.x_{m.name}")
            fields |= {"pre_sum": x, "pre_sum_squares": f"{x} * {x}", "sum_product": f"{v} * {x}"}
        columns = [f"CAST(0 AS BIGINT) AS {population}"]
        for other in metrics:
            for f in stat_fields(other):
                expr = f"sum(c.side * ({fields[f]}))" if other is m else "0"
                columns.append(f"CAST({expr} AS {'BIGINT' if f == 'n' else 'DOUBLE'}) AS {other.name}__{f}")
        blocks.append(
            f"SELECT {bucket}, c.cohort_day + {w.end_day} AS change_day,\n    "
            + ",\n    ".join(columns)
            + f"\nFROM units c JOIN (SELECT {ukey}, {sums} FROM daily GROUP BY {ukey}) s USING ({ukey}) "
            f"LEFT JOIN pre p USING ({ukey})\nGROUP BY {bucket}, c.cohort_day + {w.end_day}"
        )
    out = {
        ("experiment_stats" if exposed else "executive_stats"): "WITH "
        + ",\n".join(ctes)
        + "\n"
        + "\nUNION ALL\n".join(blocks)
    }
    if not exposed:
        revenue = col("revenue")
        revenue = col("revenue")
        bucket_r = "u.scope, u.grp, u.segment, u.channel, u.cohort_day"
        out["executive_revenue"] = f"""WITH units AS (
    {units}
)
SELECT {bucket_r}, h.hour, sum(u.side * h.{revenue}) AS revenue
FROM units u JOIN user_hours h ON h.side = u.side AND h.user_id = u.user_id AND h.hour > u.first_hour
WHERE h.{revenue} <> 0
GROUP BY {bucket_r}, h.hour
UNION ALL
SELECT {bucket_r}, u.first_hour AS hour, sum(u.side * p.{revenue}) AS revenue
FROM units u JOIN partials p ON p.side = u.side AND p.family = 'reached' AND p.unit = u.scope AND p.user_id = u.user_id
   AND p.first_ts = u.first_ts
WHERE p.{revenue} <> 0
GROUP BY {bucket_r}, u.first_hour"""
    return out


_FUNNEL_SQL = """WITH d AS (SELECT * FROM served_decisions), l AS (SELECT * FROM decision_links)
SELECT d.day, d.journey, d.channel, d.segment, d.serving,
       CAST(sum(d.side * d.decisions) AS BIGINT) AS decisions,
       CAST(coalesce(sum(d.side * d.decisions) FILTER (WHERE l.exposures > 0), 0) AS BIGINT) AS exposed,
       CAST(coalesce(sum(d.side * d.decisions) FILTER (WHERE l.exposures > 0 AND l.clicks > 0), 0) AS BIGINT) AS clicked,
       CAST(coalesce(sum(d.side * d.decisions) FILTER (WHERE l.exposures > 0 AND l.purchases > 0), 0) AS BIGINT)
           AS converted
FROM d LEFT JOIN l ON l.side = d.side AND l.user_id = d.user_id AND l.decision_id = d.decision_id
GROUP BY d.day, d.journey, d.channel, d.segment, d.serving"""
"""The journey funnel's contributions: each decision once, in its day and serving class, with
whether an exposure, a click and a purchase carrying its id followed (by the same user)."""


def contributions_sql(aggregate: str, pre_days: int, state: Literal["", "cur_", "both_"] = "") -> str:
    """SQL: the rows of aggregate table `aggregate` that the units in the state tables contribute,
    read from the relations named `<state><table>` (e.g. `cur_user_hours`). Every state row
    carries a `side` (+1, or -1 for the state before a fold): contributions are counted with
    their side's sign, so one evaluation over both states gives a fold's increments."""
    operations = {a.name: a for a in OPERATIONS}
    if aggregate == JOURNEY_FUNNEL.name:
        body = _FUNNEL_SQL
    elif aggregate in operations:
        body = _operations_sql(operations[aggregate])
    else:
        body = _family_sql("exposed" if aggregate == "experiment_stats" else "reached", pre_days)[aggregate]
    if not state:
        return body
    aliases = ",\n".join(f"{t.name} AS (SELECT * FROM {state}{t.name})" for t in STATE)
    return f"WITH {aliases},\n{body.removeprefix('WITH ')}"


def definitions_hash(pre_days: int) -> str:
    """A digest of every rollup SQL text: rollups written under other definitions are rebuilt."""
    texts = [facts_sql(t.name) for t in FACTS] + [partials_sql("events")]
    texts += [contributions_sql(a.name, pre_days) for a in AGGREGATES] + list(ANCHOR_SQL.values())
    return hashlib.sha256("\n;\n".join(texts).encode()).hexdigest()[:16]


ANCHOR_SQL: dict[str, str] = {
    "exposed": "SELECT 'exposed' AS family, experiment_id AS unit, user_id, first_ts, placement FROM exposure_firsts",
    "reached": "SELECT 'reached' AS family, scope AS unit, user_id, first_ts, CAST(NULL AS VARCHAR) AS placement "
    "FROM decision_firsts",
}
"""The units whose first hour needs a partial: (family, unit, user_id, first_ts, placement)."""

TABLE_NAMES: Callable[[str], str] = "rollup_{}".format
"""The lake's name of a state or aggregate table."""
