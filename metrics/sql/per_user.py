"""SQL written from the KPI catalogue: raw rows -> one row per user with each metric's value
-> the sufficient statistics the statistics engine takes.

Every panel builds its *units* (who is analysed, from when: an experiment's exposed users, the
users the engine reached) and hands them here, so a metric is counted the same way everywhere.
The text is composed only from the catalogue's constants; user values are bound parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from momento.kpis import MEASURES, Measure, Metric, Source, Window
from metrics.sql import user_key, utc_day
from momento.sql import sql_list
from metrics.stats import ArmStats


def _column(name: str, window: Window | None) -> str:
    """Per-unit column of measure `name` in `window` (None: the pre-period)."""
    return f"m_{name}__{window.key if window else 'pre'}"


def _measures(metrics: Sequence[Metric], source: Source) -> dict[str, tuple[Measure, Window]]:
    """Column -> (measure, window) for the post-period measures of `metrics` from `source`."""
    return {_column(name, m.window): (MEASURES[name], m.window)
            for m in metrics for name in m.measures if MEASURES[name].source == source}


def _aggregate(measure: Measure, condition: str = "TRUE") -> str:
    where = " AND ".join(c for c in (measure.predicate(), condition) if c != "TRUE") or "TRUE"
    total = "count(*)" if measure.value == "1" else f"sum({measure.value})"
    return total if where == "TRUE" else f"{total} FILTER (WHERE {where})"


def _window_predicate(window: Window) -> str:
    start = f"e.ts >= u.first_ts + INTERVAL {window.start_hours} HOUR" if window.start_hours else "e.ts >= u.first_ts"
    return start if window.end_hours is None else f"{start} AND e.ts < u.first_ts + INTERVAL {window.end_hours} HOUR"


def _event_columns(metrics: Sequence[Metric]) -> dict[str, str]:
    """Column -> aggregate over the joined (u, e) rows: each events measure after the first
    exposure, in its metric's window."""
    return {col: _aggregate(measure, _window_predicate(window))
            for col, (measure, window) in _measures(metrics, "events").items()}


def _pre_columns(metrics: Sequence[Metric]) -> dict[str, str]:
    """Column -> aggregate over the joined (u, e) rows: each CUPED covariate (the numerator's
    events measure) before the first exposure; the join keeps only `$pre_days` of it."""
    return {_column(m.numerator, None): _aggregate(MEASURES[m.numerator], "e.ts < u.first_ts")
            for m in metrics if m.cuped}


def unit_columns(metrics: Sequence[Metric], source: Literal["exposures", "decisions"]) -> str:
    """Aggregates of the `source` measures of `metrics`, for the query that builds the units
    grouped per unit (alias `f` for exposures, `d` for decisions; a leading comma included;
    empty when none is needed)."""
    return _select({col: _aggregate(measure) for col, (measure, _) in _measures(metrics, source).items()})


Ref = Callable[[Source, str], str]
"""Where a measure's column is read: (its source, the column name) -> a SQL expression."""


def _at(aliases: Mapping[Source, str]) -> Ref:
    return lambda source, column: f"{aliases[source]}.{column}"


def _value(m: Metric, measure: str, window: Window | None, as_of: str, ref: Ref) -> str:
    raw = f"coalesce({ref(MEASURES[measure].source, _column(measure, window))}, 0)"
    value = f"CAST({raw} > 0 AS INTEGER)" if m.type == "proportion" else raw
    if window is not None and window.end_hours is not None:
        value = f"CASE WHEN {as_of} >= u.first_ts + INTERVAL {window.end_hours} HOUR THEN {value} END"
    return value


def _values(metrics: Sequence[Metric], as_of: str, ref: Ref) -> str:
    """Per-user value columns `v_<metric>` (plus `d_<metric>` denominator, `x_<metric>` covariate)."""
    parts = {}
    for m in metrics:
        parts[f"v_{m.name}"] = _value(m, m.numerator, m.window, as_of, ref)
        if m.denominator is not None:
            parts[f"d_{m.name}"] = _value(m, m.denominator, m.window, as_of, ref)
        if m.cuped:
            parts[f"x_{m.name}"] = _value(m, m.numerator, None, as_of, ref)
    return _select(parts)


_AS_OF = """as_of AS (
    SELECT least(coalesce($f_end, 'infinity'::TIMESTAMPTZ),
                 coalesce((SELECT max(ts) FROM events), now()::TIMESTAMPTZ) + INTERVAL 1 MICROSECOND) AS t
)"""


def _select(columns: Mapping[str, str]) -> str:
    return "".join(f",\n        {expr} AS {col}" for col, expr in columns.items())


def _events(metrics: Sequence[Metric]) -> str:
    """The events the metrics need, as a CTE body (only their event types are read)."""
    types = sorted({t for m in metrics for n in m.measures for t in MEASURES[n].event_types})
    return (f"SELECT {user_key('events')} AS uid, ts, event_type, placement, revenue, margin, nps_score FROM events "
            f"WHERE event_type IN ({sql_list(types or ['-'])})")


def per_user_sql(units: str, metrics: Sequence[Metric], keys: Sequence[str] = ("uid",)) -> str:
    """SQL returning one row per unit of `units` with the metrics' per-user value columns
    `v_<metric>` (and `d_<metric>` denominators, `x_<metric>` CUPED covariates) and `as_of`.

    `units` is a query with one row per unit (identified by its columns `keys`) and columns `uid`
    (the user's `user_key`), `first_ts`, `placement` (the element analysed, NULL when none) and
    the `unit_columns(metrics, ...)` of its source, plus whatever the caller groups by later.
    Events (matched on `uid`) count from `first_ts` up to the analysis time (the filter's end, or
    just after the newest event), and in the `$pre_days` before `first_ts` for CUPED covariates.
    Parameters: `$f_end`, `$pre_days`.
    """
    post, pre = _event_columns(metrics), _pre_columns(metrics)
    since = "e.ts >= u.first_ts - to_days(CAST($pre_days AS INTEGER))" if pre else "e.ts >= u.first_ts"
    ctes = [_numbered(units, keys), _AS_OF, f"facts AS (\n    {_events(metrics)}\n)",
            f"outcomes AS (\n    SELECT u.unit_no{_select(post | pre)}\n    {_JOIN} AND {since}\n    GROUP BY ALL\n)"]
    return (f"WITH {(',' + chr(10)).join(ctes)}\n"
            f"SELECT u.* EXCLUDE (unit_no), a.t AS as_of{_values(metrics, 'a.t', _PER_USER)}\n"
            f"FROM units u CROSS JOIN as_of a LEFT JOIN outcomes o USING (unit_no)")


def _numbered(units: str, keys: Sequence[str]) -> str:
    """The units CTE (materialised: computed once), each with an integer `unit_no`, the hash of
    the columns `keys` identifying it: joining and partitioning on one integer is cheaper than on
    several columns, and hashing cheaper than numbering the rows."""
    return f"units AS MATERIALIZED (\nSELECT hash({', '.join(keys)}) AS unit_no, * FROM (\n{units}\n))"


_PER_USER = _at({"events": "o", "exposures": "u", "decisions": "u"})
"""Per-user values read events measures from the outcomes, the others from the units."""
_JOIN = "FROM units u JOIN facts e ON e.uid = u.uid AND e.ts < (SELECT t FROM as_of)"


def cumulative_sql(units: str, m: Metric, group: str, unit_days: str | None = None,
                   keys: Sequence[str] = ("uid",)) -> str:
    """SQL of metric `m`'s sufficient statistics per `group` value and UTC day, *as of the end
    of each day*: the units first exposed by then, with their outcomes up to then (`units` as
    for `per_user_sql`, with a `group` column). When `m` has exposure measures, `unit_days`
    gives them per unit and day: columns `keys` (identifying a unit, as for `per_user_sql`),
    `day` and the `unit_columns(...)`.

    A unit's value only changes on days it has activity, so the sums are built from changes: a
    unit enters on its first day (value 0, plus its covariate), and each active day adds new −
    old value (new² − old², ...) to every sum; running totals over the days then give each
    day's statistics without a units × days grid. A windowed metric's unit enters once it has
    matured, with its final value. Parameters: `$f_end`, `$pre_days`.
    """
    if any(MEASURES[n].source == "decisions" for n in m.measures):
        raise ValueError(f"metric {m.name!r} counts decisions, which have no history to follow day by day")
    pre = _pre_columns([m])
    ctes = [_numbered(units, keys), _AS_OF, f"facts AS (\n    {_events([m])}\n)",
            f"pre AS (\n    SELECT u.unit_no{_select(pre)}\n    {_JOIN}\n"
            f"      AND e.ts >= u.first_ts - to_days(CAST($pre_days AS INTEGER)) AND e.ts < u.first_ts\n"
            f"    GROUP BY ALL\n)" if pre else "pre AS (SELECT u.unit_no FROM units u)"]
    covariate = _value(m, m.numerator, None, "", _at({"events": "p"})) if m.cuped else None
    if m.window.end_hours is not None:
        ctes.append(f"outcomes AS (\n    SELECT u.unit_no{_select(_event_columns([m]))}\n"
                    f"    {_JOIN} AND e.ts >= u.first_ts\n    GROUP BY ALL\n)")
        value = _value(m, m.numerator, m.window, "a.t", _at({"events": "o"}))
        matured = f"u.first_ts + INTERVAL {m.window.end_hours} HOUR"
        stat = {"n": "1", "sum": value, "sum_squares": f"{value} * {value}"}
        if covariate:
            stat |= {"pre_sum": covariate, "pre_sum_squares": f"{covariate} * {covariate}",
                     "sum_product": f"{value} * {covariate}"}
        ctes.append(f"changes AS (\n    SELECT u.{group}, {utc_day(matured)} AS day{_prefixed(m, stat)}\n"
                    f"    FROM units u CROSS JOIN as_of a LEFT JOIN outcomes o USING (unit_no) "
                    f"LEFT JOIN pre p USING (unit_no)\n    WHERE {matured} <= a.t\n)")
        return _running(ctes, m, group)
    events, exposures = _event_columns([m]), _measures([m], "exposures")
    parts = [f"SELECT u.unit_no, {utc_day('e.ts')} AS day{_select(events)}\n    {_JOIN} AND e.ts >= u.first_ts\n"
             f"    GROUP BY ALL"]
    if exposures:
        if unit_days is None:
            raise ValueError(f"metric {m.name!r} counts exposures: give them per unit and day (unit_days)")
        matches = " AND ".join(f"x.{k} = u.{k}" for k in keys)
        parts.append(f"SELECT u.unit_no, x.day{''.join(f', x.{c}' for c in exposures)}\n"
                     f"    FROM (\n{unit_days}\n    ) x JOIN units u ON {matches}")
    columns = [*events, *exposures]
    running = "".join(f", {c} AS {c}__today, sum({c}) OVER (PARTITION BY unit_no ORDER BY day) AS {c}" for c in columns)
    ctes += [
        f"increments AS (\n    SELECT unit_no, day{''.join(f', coalesce(sum({c}), 0) AS {c}' for c in columns)}\n"
        f"    FROM (\n    " + "\n    UNION ALL BY NAME\n    ".join(parts) + "\n    ) GROUP BY ALL\n)",
        f"running AS (SELECT unit_no, day{running} FROM increments)",
    ]
    after: Ref = lambda _, column: f"r.{column}"  # noqa: E731
    before: Ref = lambda _, column: f"(r.{column} - r.{column}__today)"  # noqa: E731
    new, old = (_value(m, m.numerator, m.window, "", ref) for ref in (after, before))
    stat = {"sum": f"{new} - {old}", "sum_squares": f"{new} * {new} - {old} * {old}"}
    if m.denominator is not None:
        dnew, dold = (_value(m, m.denominator, m.window, "", ref) for ref in (after, before))
        stat |= {"denominator_sum": f"{dnew} - {dold}", "denominator_sum_squares": f"{dnew} * {dnew} - {dold} * {dold}",
                 "sum_product": f"{new} * {dnew} - {old} * {dold}"}
    if covariate:
        stat["sum_product"] = f"({new} - {old}) * {covariate}"
    entry = {"n": "1"}
    if covariate:
        entry |= {"pre_sum": covariate, "pre_sum_squares": f"{covariate} * {covariate}"}
    ctes.append(f"""changes AS (
    SELECT u.{group}, r.day{_prefixed(m, stat)}
    FROM running r JOIN units u USING (unit_no) LEFT JOIN pre p USING (unit_no)
    UNION ALL BY NAME
    SELECT u.{group}, {utc_day('u.first_ts')} AS day{_prefixed(m, entry)}
    FROM units u LEFT JOIN pre p USING (unit_no)
)""")
    return _running(ctes, m, group)


def _prefixed(m: Metric, columns: Mapping[str, str]) -> str:
    return _select({f"{m.name}__{k}": v for k, v in columns.items()})


def _running(ctes: list[str], m: Metric, group: str) -> str:
    """Sum the `changes` per group and day, then running totals over every day of the period."""
    fields = stat_names(m)
    last_day = utc_day("t - INTERVAL 1 MICROSECOND")
    ctes += [
        f"days AS (\n    SELECT CAST(range AS DATE) AS day FROM range((SELECT min({utc_day('first_ts')}) FROM units), "
        f"(SELECT {last_day} + 1 FROM as_of), INTERVAL 1 DAY)\n)",
        f"per_day AS (SELECT {group}, day{''.join(f', sum({f}) AS {f}' for f in fields)} FROM changes GROUP BY ALL)",
        f"grid AS (SELECT g.{group}, d.day FROM (SELECT DISTINCT {group} FROM units) g CROSS JOIN days d)",
    ]
    running = "".join(f",\n    CAST(sum(coalesce(p.{f}, 0)) OVER (PARTITION BY g.{group} ORDER BY g.day) AS "
                      f"{'BIGINT' if f.endswith('__n') else 'DOUBLE'}) AS {f}" for f in fields)
    return (f"WITH {(',' + chr(10)).join(ctes)}\n"
            f"SELECT g.{group}, g.day{running}\n"
            f"FROM grid g LEFT JOIN per_day p ON p.{group} = g.{group} AND p.day = g.day\n"
            f"ORDER BY g.day, g.{group}")


def stats_columns(metrics: Sequence[Metric]) -> str:
    """Aggregates over per-user rows giving each metric's `ArmStats` fields as
    `<metric>__<field>` (a leading comma included); GROUP BY what the statistics are per.
    Users whose windowed metric has not matured yet (NULL value) are left out of its sums."""
    parts = []
    for m in metrics:
        v, d, x = f"v_{m.name}", f"d_{m.name}", f"x_{m.name}"
        sums = {"sum": v, "sum_squares": f"{v} * {v}"}
        if m.type == "ratio":
            sums |= {"denominator_sum": d, "denominator_sum_squares": f"{d} * {d}", "sum_product": f"{v} * {d}"}
        elif m.cuped:
            sums |= {"pre_sum": x, "pre_sum_squares": f"{x} * {x}", "sum_product": f"{v} * {x}"}
        only = f" FILTER (WHERE {v} IS NOT NULL)" if m.window.end_hours is not None else ""
        parts.append(f"count({v}) AS {m.name}__n")
        parts += [f"CAST(coalesce(sum({expr}){only}, 0) AS DOUBLE) AS {m.name}__{name}" for name, expr in sums.items()]
    return "".join(f",\n    {p}" for p in parts)


def stat_names(m: Metric) -> list[str]:
    """The `<metric>__<field>` columns `stats_columns` produces for `m` (all additive sums)."""
    if m.type == "ratio":
        wanted = ("n", "sum", "sum_squares", "denominator_sum", "denominator_sum_squares", "sum_product")
    elif m.cuped:
        wanted = ("n", "sum", "sum_squares", "pre_sum", "pre_sum_squares", "sum_product")
    else:
        wanted = ("n", "sum", "sum_squares")
    return [f"{m.name}__{f}" for f in wanted]


def arm_stats(row: Mapping[str, Any], m: Metric, name: str, *, cuped: bool = True,
              expected_share: float | None = None) -> ArmStats:
    """`ArmStats` of metric `m` from one aggregated row (as `stats_columns` names its fields);
    `cuped=False` drops the covariate so the comparison is unadjusted."""
    values = {f.split("__", 1)[1]: row.get(f) for f in stat_names(m)}
    if not cuped and m.cuped:
        for key in ("pre_sum", "pre_sum_squares", "sum_product"):
            del values[key]
    n = int(values.pop("n") or 0)
    return ArmStats(name, n, **{k: float(v or 0.0) for k, v in values.items()}, expected_share=expected_share)


def value_of(a: ArmStats) -> float | None:
    """The metric's value from its statistics: Σ/n (share or mean), or Σ/Σ for a ratio."""
    denominator = a.denominator_sum if a.denominator_sum is not None else a.n
    return a.sum / denominator if denominator else None
