"""Experiments panel (analytical): every experiment's status, traffic, SRM health and verdict;
per experiment the variants' lifts with always-valid intervals, guardrails, corrected verdicts,
cumulative lift, segments and a recommendation. Numbers from `metrics.experiments`."""

from __future__ import annotations

from typing import Any

import polars as pl
import streamlit as st

from metrics import experiments, stats
from metrics.filters import Filters
from metrics.queries import explain
from momento import formatting as fmt
from momento.kpis import METRICS
from momento.lake import ground_truth as truth
from momento.scenario import Experiment
from pages import analytics, charts, pauses, tables, ui
from pages.cache import scenario, settings
from pages.explain import how_computed

ACTION_STYLE = {"ship": st.success, "stop": st.error, "investigate": st.error, "keep_running": st.info}
ACTION_WORDS = {"ship": "Ship", "stop": "Stop", "investigate": "Investigate", "keep_running": "Keep running"}


def options() -> experiments.Options:
    """The reader's analysis settings: CUPED, the kind of interval, the multiple-testing correction."""
    with st.expander("Analysis options"):
        cols = st.columns(3)
        cuped = cols[0].toggle("CUPED (pre-period covariate)", value=True, key="exp_cuped")
        methods: list[stats.Method] = ["sequential", "fixed"]
        corrections: list[stats.Correction] = ["bh", "holm"]
        method = cols[1].radio(
            "Intervals",
            methods,
            horizontal=True,
            key="exp_method",
            format_func={"sequential": "Always valid (sequential)", "fixed": "Fixed horizon"}.get,
            help="Sequential intervals stay valid while you watch the results every day.",
        )
        correction = cols[2].radio(
            "Multiple testing",
            corrections,
            horizontal=True,
            key="exp_correction",
            format_func={"bh": "Benjamini–Hochberg", "holm": "Holm"}.get,
        )
    return experiments.Options(cuped=cuped, method=method, correction=correction)


def experiment_list(frame: pl.DataFrame, filters: Filters, opts: experiments.Options) -> None:
    listing = experiments.experiment_list(frame, scenario(), filters, opts)
    tables.table(
        listing,
        "experiments",
        {
            "experiment": "Experiment",
            "experience": "Experience",
            "journey": "Journey",
            "status": "Status",
            "primary_metric": "Primary metric",
            "users": tables.count("Users"),
            "traffic": "Users per arm",
            "srm_p": tables.decimal("SRM p", 4),
            "srm_ok": st.column_config.CheckboxColumn("Split OK"),
            "best_variant": "Best variant",
            "lift": tables.percent("Lift (primary)", signed=True),
            "verdict": "Verdict",
            "action": "Recommendation",
            "reason": tables.text("Why"),
        },
    )


def recommendation(report: experiments.ExperimentReport) -> None:
    rec = report.recommendation
    ACTION_STYLE[rec.action](f"**{ACTION_WORDS[rec.action]}** — {rec.reason}")
    srm = report.srm
    if srm.p_value is None:
        st.caption("Sample-ratio check: not enough users yet.")
    elif srm.ok:
        st.caption(
            f"Sample-ratio check passed (χ² = {fmt.number(srm.chi2, 2)}, p = {fmt.significant(srm.p_value)}): "
            "the split matches the configured allocation."
        )
    else:
        st.error(
            f"Sample-ratio mismatch (χ² = {fmt.number(srm.chi2, 1)}, p = {fmt.significant(srm.p_value, 2)}): "
            "the users per arm do not match the configured allocation, so no result can be trusted until it "
            "is explained."
        )


def arms_table(report: experiments.ExperimentReport) -> None:
    columns: dict[str, tables.Spec] = {
        "arm": "Arm",
        "users": tables.count("Users"),
        "share": tables.percent("Share"),
        "expected_share": tables.percent("Configured"),
    }
    for name in report.arms.columns[4:]:
        m = METRICS[name]
        columns[name] = {
            "share": tables.percent(m.label, 2),
            "money": tables.money(m.label),
            "money_per_order": tables.money(m.label),
            "score": tables.decimal(m.label, 1),
        }[m.unit]
    tables.table(report.arms, f"arms_{report.experiment.id}", columns)


RESULT_ORDER = (
    "metric",
    "label",
    "variant",
    "role",
    "lift",
    "lift_lower",
    "lift_upper",
    "truth",
    "p_value",
    "p_adjusted",
    "chance_to_win",
    "verdict",
    "cuped",
    "variance_reduction",
    "control_mean",
    "variant_mean",
    "absolute",
    "n_control",
    "n_variant",
    "note",
)


P_HELP = {
    "sequential": "Always-valid p-value: the smallest alpha at which the always-valid interval excludes zero. It "
    "stays valid however often you look, so it is larger than a fixed-horizon p-value and reaches "
    "1 while the interval still straddles zero (then chance to win may still be far from 50%).",
    "fixed": "Fixed-horizon p-value (Welch's t-test): valid once, at the planned sample size.",
}


def results_table(results: pl.DataFrame, experiment_id: str, method: str) -> None:
    shown = results.select([c for c in RESULT_ORDER if c in results.columns])
    p_label = "Always-valid p" if method == "sequential" else "p"
    tables.table(
        shown,
        f"results_{experiment_id}",
        {
            "metric": None,
            "label": "Metric",
            "role": "Role",
            "variant": "Variant",
            "n_control": tables.count("Control users"),
            "n_variant": tables.count("Variant users"),
            "control_mean": tables.decimal("Control", 4),
            "variant_mean": tables.decimal("Variant", 4),
            "absolute": tables.decimal("Difference", 4),
            "lift": tables.percent("Lift", signed=True),
            "lift_lower": tables.percent("Lift low", signed=True),
            "lift_upper": tables.percent("Lift high", signed=True),
            "p_value": tables.decimal(p_label, 4, P_HELP[method]),
            "p_adjusted": tables.decimal(
                f"{p_label} adjusted",
                4,
                "Adjusted across the experiment's primary and "
                "secondary metrics × variants (one family, the correction chosen above).",
            ),
            "chance_to_win": tables.percent("Chance to win"),
            "cuped": st.column_config.CheckboxColumn("CUPED"),
            "variance_reduction": tables.percent("Variance cut"),
            "truth": tables.percent("True lift", signed=True),
            "verdict": "Verdict",
            "note": "Note",
        },
    )


def guardrails(report: experiments.ExperimentReport) -> None:
    if not report.guardrails:
        st.caption("No guardrail metric configured.")
        return
    frame = pl.DataFrame(
        [
            {
                "metric": METRICS[g.name].label,
                "variant": g.variant,
                "verdict": g.verdict,
                "margin": g.margin,
                "worst_plausible": g.bound,
                "reason": g.reason,
            }
            for g in report.guardrails
        ],
        schema={
            "metric": pl.String,
            "variant": pl.String,
            "verdict": pl.String,
            "margin": pl.Float64,
            "worst_plausible": pl.Float64,
            "reason": pl.String,
        },
    )
    tables.table(
        frame,
        f"guardrails_{report.experiment.id}",
        {
            "metric": "Guardrail",
            "variant": "Variant",
            "verdict": "Verdict",
            "margin": tables.percent("Margin"),
            "worst_plausible": tables.percent("Worst plausible change", signed=True),
            "reason": tables.text("Why"),
        },
    )


def detail(
    frame: pl.DataFrame, experiment: Experiment, filters: Filters, opts: experiments.Options, stats: dict[str, Any]
) -> None:
    report = experiments.analyse(frame, experiment, opts)
    st.subheader(f"{experiment.id} · {scenario().experience_by_id[experiment.experience].name}")
    st.caption(f"Hypothesis: {experiment.hypothesis}")
    if not report.has_data:
        ui.no_data(f"No user exposed in this experiment for {ui.describe(filters)} yet.")
        return
    recommendation(report)
    arms_table(report)
    lake = settings().lake  # the ground truth is a local backfill's file
    known = experiments.true_lifts(
        truth.load(lake.path) if lake.is_local and filters == Filters() else None, experiment.id
    )
    results = experiments.with_truth(report.results, known)
    if known.height:
        st.caption(
            "True lift: the effect the simulator really applied to the backfilled history (its ground "
            "truth), next to the estimate; shown without filters, where the populations match."
        )
    st.markdown(
        f"**Per variant** — relative lift vs `{experiment.arms[0].name}` with "
        f"{'always-valid' if opts.method == 'sequential' else 'fixed-horizon'} "
        f"{fmt.percent(1 - opts.alpha, 0)} intervals; verdicts corrected across metrics × variants "
        f"({'Benjamini–Hochberg' if opts.correction == 'bh' else 'Holm'})."
    )
    results_table(results, experiment.id, opts.method)
    ui.chart(charts.lift_intervals(results, "Relative lift per metric"))
    how_computed(explain(experiments.STATS, metrics=experiments.roles(experiment), **stats), *analytics.source())
    st.markdown("**Guardrails** (non-inferiority)")
    guardrails(report)
    power_plan(report, experiments.days_observed(frame, experiment, stats["as_of"]))
    pauses.pause_control(experiment)
    names = list(experiments.roles(experiment))
    metric_name = st.selectbox(
        "Metric for the trend and the segments",
        names,
        key=f"exp_metric_{experiment.id}",
        format_func=lambda n: METRICS[n].label,
    )
    left, right = st.columns(2)
    with left:
        daily = analytics.days(filters, experiment.id, metric_name)
        lift = experiments.cumulative_lift(
            analytics.run(experiments.CUMULATIVE, **daily), experiment, metric_name, opts
        )
        if lift.drop_nulls("lift").height:
            ui.chart(
                charts.lift_over_time(
                    lift,
                    f"Cumulative lift: {METRICS[metric_name].label}",
                    known.filter(pl.col("metric") == metric_name),
                )
            )
        else:
            ui.no_data("Not enough users in both arms yet for a cumulative lift.")
        how_computed(explain(experiments.CUMULATIVE, metrics=(metric_name,), **daily), *analytics.source())
    with right:
        segment_table(experiments.segments(frame, experiment, metric_name, opts), experiment.id)


def power_plan(report: experiments.ExperimentReport, days: float | None) -> None:
    """What the experiment can detect now, and when it would detect its target effect."""
    plan = experiments.plans(report, days)
    st.markdown("**Power and duration**")
    st.write(experiments.plan_sentence(report.experiment, plan))
    tables.table(
        plan,
        f"power_{report.experiment.id}",
        {
            "variant": "Variant",
            "method": "Interval",
            "mde": tables.decimal("Detectable now (absolute)", 4),
            "mde_relative": tables.percent(
                "Detectable now",
                1,
                "Minimum detectable effect at 80% power with the users so far, relative to |control mean|.",
            ),
            "units": tables.count("Users so far"),
            "units_per_day": tables.decimal("Users per day", 1),
            "units_needed": tables.count(
                "Users needed", "Users (both arms) at which the target effect is detected with 80% power."
            ),
            "days_to_detect": tables.decimal("Days to go", 1),
            "note": tables.text("Note"),
        },
    )


def segment_table(segments: experiments.SegmentReport, experiment_id: str) -> None:
    """Per-segment lifts, adjusted for the number of cells looked at (no fishing)."""
    st.caption(
        f"{segments.looked_at} segment × variant cells looked at; p-values adjusted by Benjamini–Hochberg "
        f"across them and intervals at the matching level ({fmt.percent(1 - segments.adjusted_alpha, 1)}); "
        f"{segments.flagged} flagged (adjusted interval clear of zero)."
    )
    tables.table(
        segments.frame,
        f"segments_{experiment_id}",
        {
            "segment": "Segment",
            "variant": "Variant",
            "n_control": tables.count("Control users"),
            "n_variant": tables.count("Variant users"),
            "control_mean": tables.decimal("Control", 4),
            "variant_mean": tables.decimal("Variant", 4),
            "lift": tables.percent("Lift", signed=True),
            "lift_lower": tables.percent("Lift low (adjusted)", signed=True),
            "lift_upper": tables.percent("Lift high (adjusted)", signed=True),
            "p_adjusted": tables.decimal("p adjusted (BH)", 4),
            "flagged": st.column_config.CheckboxColumn("Flagged"),
            "note": "Note",
        },
    )


@st.fragment(run_every=ui.REFRESH_SECONDS)
def live() -> None:
    filters = ui.filters()
    opts = options()
    with ui.panel("Experiments"):
        sc = scenario()
        stats = analytics.stats(filters)
        frame = analytics.run(experiments.STATS, **stats)
        analytics.source_note()
        if not frame.height:
            ui.no_data(
                f"No user exposed in any experiment for {ui.describe(filters)}. Widen the filters, or run "
                "`momento backfill` / `momento demo` to fill the lake."
            )
            how_computed(explain(experiments.STATS, **stats), *analytics.source())
            return
        experiment_list(frame, filters, opts)
        ids = [x.id for x in experiments.in_view(sc, filters)]
        if not ids:
            ui.no_data(f"No experiment runs on the journey {filters.journey!r}.")
            return
        chosen = st.selectbox("Experiment", ids, key="experiment_view")
        detail(frame, sc.experiment_by_id[chosen], filters, opts, stats)


ui.header("Experiments", "Every experiment's lift with always-valid intervals, guardrails and a recommendation.")
live()
