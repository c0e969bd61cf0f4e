"""Experiments from the lake to a decision.

The rollups (`metrics.rollup`) hold every metric's sufficient statistics per experiment, arm,
segment, channel, day of first exposure and change day (the population is the users exposed in
the experiment; outcomes count from each user's first exposure; the CUPED covariate is the same
metric over the pre-period's days). Those sums add up, so per-arm, per-segment, per-day and
as-of-each-day views are sums of the same small frame, whatever the filter. The statistics engine
then gives per-variant lifts with always-valid intervals, the sample-ratio check, guardrails with
non-inferiority margins, verdicts corrected for multiple testing across metrics × variants, and a
recommendation with its reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import polars as pl

from metrics import power as planning
from metrics import stats
from metrics.arm_stats import arm_stats, stat_names, value_of
from metrics.filters import Filters
from metrics.rollup.read import EXAMPLE_AS_OF, Aggregates, aggregates, period_params, run_on
from metrics.sql.query import Query, Statement
from momento import formatting as fmt
from momento.kpis import METRICS, Metric, metric
from momento.lake.warehouse import Warehouse
from momento.scenario import Experiment, Scenario

EXPERIMENT_STATS = "experiment_stats"

Role = Literal["primary", "secondary", "guardrail"]
Verdict = Literal["better", "worse", "no difference yet", "not enough data"]


def _exposed(names: Sequence[str]) -> list[Metric]:
    chosen = [metric(name) for name in dict.fromkeys(names)]
    for m in chosen:
        if "exposed" not in m.population:
            raise ValueError(f"metric {m.name!r} is not measured on an experiment's exposed users")
    return chosen


def scenario_metrics(scenario: Scenario) -> tuple[str, ...]:
    """Every metric some experiment of the scenario uses, in catalogue order."""
    used = {name for x in scenario.experiments for name in roles(x)}
    return tuple(name for name in METRICS if name in used)


EXPERIMENT_METRICS = tuple(name for name, m in METRICS.items() if "exposed" in m.population)
"""The catalogue's metrics an experiment can be judged on (measured on its exposed users)."""

COMPARISON_METHOD = (
    "Per variant against control: the difference of means (Welch), the relative lift by the delta method "
    "(ratio metrics such as CTR and AOV by the delta method too), CUPED with the same metric over the pre-period; "
    "always-valid intervals (an asymptotic confidence sequence, valid under continuous peeking) or fixed-horizon "
    "ones; p-values adjusted across metrics × variants (Benjamini–Hochberg, or Holm); chance to win by a normal "
    "approximation; the split checked by a chi-square sample-ratio test; guardrails as non-inferiority with "
    "their margin."
)

_IN_VIEW = """($experiment IS NULL OR experiment_id = $experiment)
  AND ($f_channel IS NULL OR channel = $f_channel) AND ($f_segment IS NULL OR segment = $f_segment)
  AND ($first_day IS NULL OR cohort_day >= $first_day) AND cohort_day <= $last_day AND change_day <= $last_day"""
"""The units that entered in the filter's period (on the channel and in the segment of their first
exposure and decision), as of its end: the rows of `experiment_stats` to add up."""


def _columns(names: Sequence[str]) -> list[str]:
    return ["exposed__users", *(c for m in _exposed(names) for c in stat_names(m))]


def stats_sql(metric_names: tuple[str, ...]) -> str:
    """SQL over the rollups' `experiment_stats`: `metric_names`' statistics per experiment, arm,
    segment and UTC day of first exposure, as of the filter's end."""
    sums = ",\n       ".join(f"sum({c}) AS {c}" for c in _columns(metric_names))
    return f"""SELECT experiment_id, arm, segment, DATE '1970-01-01' + cohort_day AS day,
       {sums}
FROM experiment_stats
WHERE {_IN_VIEW}
GROUP BY experiment_id, arm, segment, cohort_day
ORDER BY experiment_id, arm, segment, day"""


def cumulative_sql(metric_name: str) -> str:
    """SQL over the rollups' `experiment_stats`: one metric's statistics per arm as of the end of
    each day, from the first day a unit entered to the filter's end (the increments of each change
    day, added up day after day)."""
    columns = stat_names(_exposed([metric_name])[0])
    sums = ", ".join(f"sum({c}) AS {c}" for c in columns)
    running = ",\n       ".join(
        f"CAST(sum(coalesce(c.{c}, 0)) OVER (PARTITION BY a.arm ORDER BY d.day) AS "
        f"{'BIGINT' if c.endswith('__n') else 'DOUBLE'}) AS {c}"
        for c in columns
    )
    return f"""WITH changes AS (
    SELECT arm, change_day, {sums}
    FROM experiment_stats WHERE {_IN_VIEW}
    GROUP BY arm, change_day
),
days AS (
    SELECT range AS day FROM range((SELECT min(cohort_day) FROM experiment_stats WHERE {_IN_VIEW}), $last_day + 1)
)
SELECT a.arm, DATE '1970-01-01' + CAST(d.day AS INTEGER) AS day,
       {running}
FROM (SELECT DISTINCT arm FROM changes) a CROSS JOIN days d
LEFT JOIN changes c ON c.arm = a.arm AND c.change_day = d.day
ORDER BY day, a.arm"""


def _stats(
    filters: Filters, pre_days: int, metric_names: tuple[str, ...], as_of: datetime, experiment_id: str | None = None
) -> Statement:
    return Statement(
        stats_sql(tuple(metric_names)),
        {**filters.params(), **period_params(filters, as_of), "experiment": experiment_id},
    )


STATS = Query(
    "experiments.stats",
    "Sufficient statistics of each metric per experiment, arm, segment and UTC day of first exposure, read from "
    "the rollups (experiment_stats: the increments of the users exposed in each experiment, by day of first "
    "exposure and day of change): the units that entered in the period, as of its end.",
    _stats,
    example={"pre_days": 14, "metric_names": EXPERIMENT_METRICS, "as_of": EXAMPLE_AS_OF},
    metrics=EXPERIMENT_METRICS,
    method=COMPARISON_METHOD,
    over="aggregates",
)


def _cumulative(filters: Filters, experiment_id: str, metric_name: str, pre_days: int, as_of: datetime) -> Statement:
    return Statement(
        cumulative_sql(metric_name), {**filters.params(), **period_params(filters, as_of), "experiment": experiment_id}
    )


CUMULATIVE = Query(
    "experiments.cumulative",
    "One experiment's statistics of one metric per arm as of the end of each day (outcomes up to that day), "
    "read from the rollups' experiment_stats.",
    _cumulative,
    example={
        "experiment_id": "exp_home_showcase",
        "metric_name": "conversion_rate",
        "pre_days": 14,
        "as_of": EXAMPLE_AS_OF,
    },
    metrics=EXPERIMENT_METRICS,
    method=f"{COMPARISON_METHOD} Computed again as of each day: the sequential interval holds on every day at once, "
    "so the whole curve can be read.",
    over="aggregates",
)


def stats_frame(
    aggregates: Aggregates,
    filters: Filters,
    pre_days: int,
    metric_names: Sequence[str],
    experiment_id: str | None = None,
) -> pl.DataFrame:
    """`STATS` over `aggregates`."""
    return run_on(
        aggregates,
        STATS.statement(
            filters,
            pre_days=pre_days,
            metric_names=tuple(metric_names),
            as_of=aggregates.source.as_of,
            experiment_id=experiment_id,
        ),
    )


def load_stats(
    warehouse: Warehouse, filters: Filters, pre_days: int, metric_names: Sequence[str], experiment_id: str | None = None
) -> pl.DataFrame:
    """Sufficient statistics of `metric_names` per experiment, arm, segment and UTC day of first
    exposure (one row each; every column but the keys is an additive sum), from the rollups plus
    the live tail (or raw: `metrics.rollup.read`); only `experiment_id`'s rows when given."""
    return stats_frame(aggregates(warehouse, pre_days), filters, pre_days, metric_names, experiment_id)


def cumulative_frame(
    aggregates: Aggregates, filters: Filters, experiment_id: str, metric_name: str, pre_days: int
) -> pl.DataFrame:
    """`CUMULATIVE` over `aggregates`."""
    return run_on(
        aggregates,
        CUMULATIVE.statement(
            filters,
            experiment_id=experiment_id,
            metric_name=metric_name,
            pre_days=pre_days,
            as_of=aggregates.source.as_of,
        ),
    )


def load_cumulative(
    warehouse: Warehouse, filters: Filters, experiment_id: str, metric_name: str, pre_days: int
) -> pl.DataFrame:
    """Sufficient statistics of one metric per arm *as of the end of each day* of the experiment."""
    return cumulative_frame(aggregates(warehouse, pre_days), filters, experiment_id, metric_name, pre_days)


# ---------------------------------------------------------------------------------------------
# Analysis (pure: frames in, results out)


@dataclass(frozen=True)
class Options:
    """How to analyse: always-valid (sequential) intervals by default, CUPED on, BH correction."""

    alpha: float = 0.05
    method: stats.Method = "sequential"
    cuped: bool = True
    correction: Literal["bh", "holm"] = "bh"


def roles(experiment: Experiment) -> dict[str, Role]:
    """The experiment's metrics in order: primary, secondary, then guardrails."""
    out: dict[str, Role] = {experiment.primary_metric: "primary"}
    for name in experiment.secondary_metrics:
        out.setdefault(name, "secondary")
    for guard in experiment.guardrails:
        out.setdefault(guard.metric, "guardrail")
    for name in out:
        metric(name)
    return out


def _sums(frame: pl.DataFrame, by: Sequence[str]) -> pl.DataFrame:
    value_columns = [c for c in frame.columns if "__" in c]
    return frame.group_by(list(by), maintain_order=True).agg(pl.col(value_columns).sum())


def arm_rows(
    frame: pl.DataFrame, experiment: Experiment, by: Sequence[str] = ()
) -> dict[Any, dict[str, dict[str, Any]]]:
    """Per group of `by` (a tuple key; () for the whole experiment), per configured arm: the
    summed statistics row (zeros for an arm with no users yet)."""
    rows = frame.filter(pl.col("experiment_id") == experiment.id) if "experiment_id" in frame.columns else frame
    summed = _sums(rows, [*by, "arm"]) if rows.height else None
    zero = {c: 0 for c in frame.columns if "__" in c}
    out: dict[Any, dict[str, dict[str, Any]]] = {}
    if summed is not None:
        for row in summed.iter_rows(named=True):
            key = tuple(row[b] for b in by)
            out.setdefault(key, {})[row["arm"]] = row
    if not by:
        out.setdefault((), {})
    for groups in out.values():
        for arm in experiment.arms:
            groups.setdefault(arm.name, zero)
    return out


def _stats_of(
    rows: Mapping[str, Mapping[str, Any]], m: Metric, experiment: Experiment, cuped: bool
) -> dict[str, stats.ArmStats]:
    return {
        arm.name: arm_stats(rows[arm.name], m, arm.name, cuped=cuped, expected_share=arm.share)
        for arm in experiment.arms
    }


def _verdict(c: stats.Comparison, adjusted: float | None, m: Metric, alpha: float) -> Verdict:
    if c.status != "ok" or adjusted is None:
        return "not enough data"
    if adjusted > alpha:
        return "no difference yet"
    gain = (c.absolute.estimate or 0.0) * (1 if m.higher_is_better else -1)
    return "better" if gain > 0 else "worse"


@dataclass(frozen=True)
class ExperimentReport:
    """Everything the Experiments page shows for one experiment."""

    experiment: Experiment
    options: Options
    users: int
    arms: pl.DataFrame
    """arm, users, share, expected_share, then the (unadjusted) mean of every experiment metric."""
    results: pl.DataFrame
    """One row per metric × variant: means, lifts with intervals, p-values (raw and adjusted
    across metrics × variants), chance to win, CUPED, verdict."""
    comparisons: dict[tuple[str, str], stats.Comparison]
    srm: stats.SrmResult
    guardrails: list[stats.GuardrailResult]
    recommendation: stats.Recommendation

    @property
    def has_data(self) -> bool:
        return self.users > 0


def analyse(frame: pl.DataFrame, experiment: Experiment, options: Options = Options()) -> ExperimentReport:
    """The full analysis of `experiment` from `load_stats`' frame."""
    rows = arm_rows(frame, experiment)[()]
    metric_roles = roles(experiment)
    control = experiment.arms[0].name
    variants = [arm.name for arm in experiment.arms[1:]]
    comparisons: dict[tuple[str, str], stats.Comparison] = {}
    per_metric: dict[str, dict[str, stats.ArmStats]] = {}
    for name in metric_roles:
        m = METRICS[name]
        arms = per_metric[name] = _stats_of(rows, m, experiment, options.cuped)
        pairs = [(arms[control], arms[v]) for v in variants]
        compared = stats.compare_many(pairs, m.type, options.alpha, options.method)
        comparisons.update({(name, v): c for v, c in zip(variants, compared)})
    tested = [key for key in comparisons if metric_roles[key[0]] != "guardrail"]
    p_values = [comparisons[k].absolute.p_value for k in tested]
    adjusted = dict(zip(tested, stats.adjust_pvalues(p_values, options.correction)))
    users = {arm.name: int(rows[arm.name]["exposed__users"]) for arm in experiment.arms}
    srm = stats.srm_check(
        [stats.ArmStats(a.name, users[a.name], 0.0, 0.0) for a in experiment.arms], [a.share for a in experiment.arms]
    )
    guardrails = [
        stats.non_inferiority(comparisons[(g.metric, v)], g.margin, METRICS[g.metric].higher_is_better, g.metric)
        for g in experiment.guardrails
        for v in variants
    ]
    primary = METRICS[experiment.primary_metric]
    recommendation = stats.recommend(
        [comparisons[(primary.name, v)] for v in variants],
        [adjusted[(primary.name, v)] for v in variants],
        guardrails,
        srm,
        primary.higher_is_better,
    )
    total = sum(users.values())
    arms_table = pl.DataFrame(
        [
            {
                "arm": a.name,
                "users": users[a.name],
                "share": users[a.name] / total if total else None,
                "expected_share": a.share,
                **{name: value_of(per_metric[name][a.name]) for name in metric_roles},
            }
            for a in experiment.arms
        ],
        schema_overrides=dict.fromkeys(metric_roles, pl.Float64) | {"share": pl.Float64},
    )
    results = pl.DataFrame(
        [_result_row(key, comparisons[key], metric_roles[key[0]], adjusted.get(key), options) for key in comparisons],
        schema=_RESULT_SCHEMA,
    )
    return ExperimentReport(
        experiment, options, total, arms_table, results, comparisons, srm, guardrails, recommendation
    )


_RESULT_SCHEMA = {
    "metric": pl.String,
    "label": pl.String,
    "role": pl.String,
    "unit": pl.String,
    "variant": pl.String,
    "n_control": pl.Int64,
    "n_variant": pl.Int64,
    "control_mean": pl.Float64,
    "variant_mean": pl.Float64,
    "absolute": pl.Float64,
    "lift": pl.Float64,
    "lift_lower": pl.Float64,
    "lift_upper": pl.Float64,
    "p_value": pl.Float64,
    "p_adjusted": pl.Float64,
    "chance_to_win": pl.Float64,
    "cuped": pl.Boolean,
    "variance_reduction": pl.Float64,
    "verdict": pl.String,
    "note": pl.String,
}


def _result_row(
    key: tuple[str, str], c: stats.Comparison, role: Role, adjusted: float | None, options: Options
) -> dict[str, Any]:
    m = METRICS[key[0]]
    verdict = _verdict(c, adjusted, m, options.alpha) if role != "guardrail" else "see guardrails"
    return {
        "metric": m.name,
        "label": m.label,
        "role": role,
        "unit": m.unit,
        "variant": key[1],
        "n_control": c.n_control,
        "n_variant": c.n_variant,
        "control_mean": c.control_mean,
        "variant_mean": c.variant_mean,
        "absolute": c.absolute.estimate,
        "lift": c.relative.estimate,
        "lift_lower": c.relative.ci_lower,
        "lift_upper": c.relative.ci_upper,
        "p_value": c.absolute.p_value,
        "p_adjusted": adjusted,
        "chance_to_win": c.chance_to_win if m.higher_is_better or c.chance_to_win is None else 1.0 - c.chance_to_win,
        "cuped": c.cuped is not None,
        "variance_reduction": c.cuped.variance_reduction if c.cuped else None,
        "verdict": verdict,
        "note": c.reason,
    }


@dataclass(frozen=True)
class SegmentReport:
    """One metric's lift per segment × variant, adjusted for how many cells were looked at."""

    frame: pl.DataFrame
    """segment, variant, users, means, the BH-adjusted p-value, the lift with its interval at the
    false-coverage-rate level, and `flagged` when that interval excludes zero."""
    looked_at: int
    flagged: int
    adjusted_alpha: float


def segments(
    frame: pl.DataFrame, experiment: Experiment, metric_name: str, options: Options = Options()
) -> SegmentReport:
    """Lift of every variant on one metric within each segment, all segments × variants one family
    (`stats.segment_effects`: Benjamini–Hochberg, intervals at the matching FCR level)."""
    m = metric(metric_name)
    control = experiment.arms[0].name
    variants = [a.name for a in experiment.arms[1:]]
    cells: list[tuple[str, stats.ArmStats, stats.ArmStats]] = []
    keys: list[tuple[str, str]] = []
    for (segment,), rows in sorted(arm_rows(frame, experiment, ["segment"]).items()):
        arms = _stats_of(rows, m, experiment, options.cuped)
        for v in variants:
            cells.append((f"{segment} · {v}", arms[control], arms[v]))
            keys.append((segment, v))
    analysis = stats.segment_effects(cells, m.type, options.alpha, options.method)
    out = [
        {
            "segment": segment,
            "variant": v,
            "n_control": e.comparison.n_control,
            "n_variant": e.comparison.n_variant,
            "control_mean": e.comparison.control_mean,
            "variant_mean": e.comparison.variant_mean,
            "lift": e.comparison.relative.estimate,
            "lift_lower": e.adjusted_relative.ci_lower,
            "lift_upper": e.adjusted_relative.ci_upper,
            "p_adjusted": e.adjusted_p_value,
            "flagged": e.flagged,
            "note": e.comparison.reason,
        }
        for (segment, v), e in zip(keys, analysis.effects)
    ]
    table = pl.DataFrame(
        out,
        schema={
            "segment": pl.String,
            "variant": pl.String,
            "n_control": pl.Int64,
            "n_variant": pl.Int64,
            "control_mean": pl.Float64,
            "variant_mean": pl.Float64,
            "lift": pl.Float64,
            "lift_lower": pl.Float64,
            "lift_upper": pl.Float64,
            "p_adjusted": pl.Float64,
            "flagged": pl.Boolean,
            "note": pl.String,
        },
    )
    return SegmentReport(table, analysis.looked_at, analysis.flagged, analysis.adjusted_alpha)


def days_observed(frame: pl.DataFrame, experiment: Experiment, as_of: datetime) -> float | None:
    """Days from the start (UTC) of the experiment's first day of exposure to `as_of`: the span
    over which its traffic arrived (None before anyone is exposed)."""
    rows = frame.filter(pl.col("experiment_id") == experiment.id) if frame.height else frame
    if not rows.height:
        return None
    first = rows["day"].min()
    start = datetime(first.year, first.month, first.day, tzinfo=as_of.tzinfo)  # type: ignore[union-attr]
    return max((as_of - start).total_seconds() / 86_400, 1 / 24)


_PLAN_SCHEMA = {
    "variant": pl.String,
    "method": pl.String,
    "mde": pl.Float64,
    "mde_relative": pl.Float64,
    "units": pl.Int64,
    "units_per_day": pl.Float64,
    "units_needed": pl.Float64,
    "days_to_detect": pl.Float64,
    "note": pl.String,
}


def plans(report: ExperimentReport, days: float | None, power: float = planning.DEFAULT_POWER) -> pl.DataFrame:
    """Power and duration of the primary metric per variant, for the analysis' method: the effect
    detectable now and the days until the experiment's `target_effect` would be
    (`metrics.power.plan` from each comparison's own variance and traffic over `days`)."""
    x = report.experiment
    out: list[dict[str, Any]] = []
    for v in (a.name for a in x.arms[1:]):
        row: dict[str, Any] = {"variant": v, "method": report.options.method}
        if days is None:
            out.append(row | {"note": "no user exposed yet"})
            continue
        p = planning.plan(report.comparisons[(x.primary_metric, v)], days, power, x.target_effect)
        row |= {"units": p.units, "units_per_day": p.units_per_day, "note": p.reason}
        horizon = p.sequential if report.options.method == "sequential" else p.fixed
        if horizon is not None:
            row |= {
                "mde": horizon.mde,
                "mde_relative": horizon.mde_relative,
                "units_needed": horizon.units_needed,
                "days_to_detect": horizon.days_to_detect,
            }
        out.append(row)
    return pl.DataFrame(out, schema=_PLAN_SCHEMA)


def plan_sentence(experiment: Experiment, plan: pl.DataFrame, power: float = planning.DEFAULT_POWER) -> str:
    """One sentence per experiment: what it can detect now and when it would detect its target."""
    target = fmt.percent(experiment.target_effect, 0)
    parts = []
    for row in plan.iter_rows(named=True):
        if row["mde"] is None:
            parts.append(f"{row['variant']}: no plan yet ({row['note'] or 'not enough data'})")
            continue
        now = (
            f"±{fmt.percent(row['mde_relative'])}"
            if row["mde_relative"] is not None
            else f"±{fmt.number(row['mde'], 4)} (absolute)"
        )
        if row["days_to_detect"] is None:
            when = row["note"]
        elif row["days_to_detect"] == 0:
            when = f"a {target} change would already be detected with {fmt.percent(power, 0)} power"
        else:
            when = (
                f"a {target} change would be detected with {fmt.percent(power, 0)} power in about "
                f"{fmt.number(row['days_to_detect'], 1)} more days at today's traffic"
            )
        parts.append(f"{row['variant']} can detect {now} now; {when}")
    return f"{METRICS[experiment.primary_metric].label}: " + "; ".join(parts) + "."


def cumulative_lift(
    daily: pl.DataFrame, experiment: Experiment, metric_name: str, options: Options = Options()
) -> pl.DataFrame:
    """Relative lift of every variant with its interval as of each day (`load_cumulative`'s
    frame). Sequential intervals hold at every day at once, so the whole curve can be read."""
    m = metric(metric_name)
    control = experiment.arms[0].name
    days = sorted(daily["day"].unique().to_list()) if daily.height else []
    by_day = arm_rows(daily, experiment, ["day"]) if daily.height else {}
    out = []
    for variant in (a.name for a in experiment.arms[1:]):
        series = []
        for day in days:
            arms = _stats_of(by_day[(day,)], m, experiment, options.cuped)
            series.append((day.isoformat(), arms[control], arms[variant]))
        for day, point in zip(days, stats.cumulative(series, m.type, options.alpha, options.method)):
            out.append(
                {
                    "day": day,
                    "variant": variant,
                    "n_control": point.n_control,
                    "n_variant": point.n_variant,
                    "lift": point.relative.estimate,
                    "lift_lower": point.relative.ci_lower,
                    "lift_upper": point.relative.ci_upper,
                    "status": point.status,
                }
            )
    return pl.DataFrame(
        out,
        schema={
            "day": pl.Date,
            "variant": pl.String,
            "n_control": pl.Int64,
            "n_variant": pl.Int64,
            "lift": pl.Float64,
            "lift_lower": pl.Float64,
            "lift_upper": pl.Float64,
            "status": pl.String,
        },
    )


def journey_of(scenario: Scenario, experiment: Experiment) -> str:
    """The journey whose element the experiment tests."""
    return scenario.placement_by_id[scenario.experience_by_id[experiment.experience].placement].journey


def in_view(scenario: Scenario, filters: Filters) -> list[Experiment]:
    """The experiments of the filtered journey (all when no journey is picked)."""
    return [x for x in scenario.experiments if filters.journey is None or journey_of(scenario, x) == filters.journey]


def experiment_list(
    frame: pl.DataFrame, scenario: Scenario, filters: Filters = Filters(), options: Options = Options()
) -> pl.DataFrame:
    """One row per experiment (of the filtered journey): status, traffic, SRM health, the best
    variant's lift on the primary metric, and the recommendation."""
    out = []
    for x in in_view(scenario, filters):
        experience = scenario.experience_by_id[x.experience]
        report = analyse(frame, x, options)
        primary = report.results.filter(pl.col("metric") == x.primary_metric).sort("p_value", nulls_last=True)
        best = primary.row(0, named=True) if primary.height else {}
        out.append(
            {
                "experiment": x.id,
                "experience": experience.name,
                "journey": journey_of(scenario, x),
                "status": x.status,
                "primary_metric": METRICS[x.primary_metric].label,
                "users": report.users,
                "traffic": " / ".join(f"{r['arm']} {r['users']:,}" for r in report.arms.iter_rows(named=True)),
                "srm_p": report.srm.p_value,
                "srm_ok": report.srm.ok,
                "best_variant": best.get("variant"),
                "lift": best.get("lift"),
                "verdict": best.get("verdict"),
                "action": report.recommendation.action,
                "reason": report.recommendation.reason,
            }
        )
    return pl.DataFrame(
        out,
        schema={
            "experiment": pl.String,
            "experience": pl.String,
            "journey": pl.String,
            "status": pl.String,
            "primary_metric": pl.String,
            "users": pl.Int64,
            "traffic": pl.String,
            "srm_p": pl.Float64,
            "srm_ok": pl.Boolean,
            "best_variant": pl.String,
            "lift": pl.Float64,
            "verdict": pl.String,
            "action": pl.String,
            "reason": pl.String,
        },
    )


_TRUTH_SCHEMA = pl.Schema({"metric": pl.String, "variant": pl.String, "truth": pl.Float64})


def true_lifts(truth: Mapping[str, Any] | None, experiment_id: str) -> pl.DataFrame:
    """The relative effects the simulator really applied to `experiment_id` (its ground-truth
    document, `momento.lake.ground_truth.load`), one row per metric × variant; empty when
    there is no ground truth (a lake fed by live traffic only)."""
    metrics = ((truth or {}).get("experiments", {}).get(experiment_id) or {}).get("metrics", {})
    rows = [
        {"metric": name, "variant": variant, "truth": effect.get("relative")}
        for name, entry in metrics.items()
        for variant, effect in entry.get("effects", {}).items()
    ]
    return pl.DataFrame(rows, schema=_TRUTH_SCHEMA)


def with_truth(results: pl.DataFrame, lifts: pl.DataFrame) -> pl.DataFrame:
    """`results` with a `truth` column (the true relative lift, null where unknown)."""
    return results.join(lifts.cast(_TRUTH_SCHEMA), on=["metric", "variant"], how="left")
