"""Experiments panel (analytical): every experiment's status, traffic, SRM health and verdict;
per experiment the variants' lifts with always-valid intervals, guardrails, corrected verdicts,
cumulative lift, segments and a recommendation. Numbers from `metrics.experiments`."""

from __future__ import annotations

import polars as pl
import streamlit as st

from momento.scenario import Experiment
from momento.lake import ground_truth as truth
from metrics import experiments
from metrics.filters import Filters
from momento.kpis import METRICS
from pages import analytics, ui

MONEY = "R$ %.2f"
ACTION_STYLE = {"ship": st.success, "stop": st.error, "investigate": st.error, "keep_running": st.info}
ACTION_WORDS = {"ship": "Ship", "stop": "Stop", "investigate": "Investigate", "keep_running": "Keep running"}


def options() -> experiments.Options:
    """The reader's analysis settings: CUPED, the kind of interval, the multiple-testing correction."""
    with st.expander("Analysis options"):
        cols = st.columns(3)
        cuped = cols[0].toggle("CUPED (pre-period covariate)", value=True, key="exp_cuped")
        method = cols[1].radio("Intervals", ["sequential", "fixed"], horizontal=True, key="exp_method",
                               format_func={"sequential": "Always valid (sequential)",
                                            "fixed": "Fixed horizon"}.get,
                               help="Sequential intervals stay valid while you watch the results every day.")
        correction = cols[2].radio("Multiple testing", ["bh", "holm"], horizontal=True, key="exp_correction",
                                   format_func={"bh": "Benjamini–Hochberg", "holm": "Holm"}.get)
    return experiments.Options(cuped=cuped, method=method, correction=correction)


def experiment_list(frame: pl.DataFrame, filters: Filters, opts: experiments.Options) -> None:
    listing = experiments.experiment_list(frame, ui.scenario(), filters, opts)
    ui.table(listing, "experiments", column_config={
        "experiment": "Experiment", "experience": "Experience", "journey": "Journey", "status": "Status",
        "primary_metric": "Primary metric", "users": st.column_config.NumberColumn("Users", format="%d"),
        "traffic": "Users per arm", "srm_p": st.column_config.NumberColumn("SRM p", format="%.4f"),
        "srm_ok": st.column_config.CheckboxColumn("Split OK"), "best_variant": "Best variant",
        "lift": st.column_config.NumberColumn("Lift (primary)", format="percent"), "verdict": "Verdict",
        "action": "Recommendation", "reason": st.column_config.TextColumn("Why", width="large"),
    })


def recommendation(report: experiments.ExperimentReport) -> None:
    rec = report.recommendation
    ACTION_STYLE[rec.action](f"**{ACTION_WORDS[rec.action]}** — {rec.reason}")
    srm = report.srm
    if srm.p_value is None:
        st.caption("Sample-ratio check: not enough users yet.")
    elif srm.ok:
        st.caption(f"Sample-ratio check passed (χ² = {srm.chi2:.2f}, p = {srm.p_value:.3g}): the split matches "
                   "the configured allocation.")
    else:
        st.error(f"Sample-ratio mismatch (χ² = {srm.chi2:.1f}, p = {srm.p_value:.2g}): the users per arm do not "
                 "match the configured allocation, so no result can be trusted until it is explained.")


def arms_table(report: experiments.ExperimentReport) -> None:
    config = {"arm": "Arm", "users": st.column_config.NumberColumn("Users", format="%d"),
              "share": st.column_config.NumberColumn("Share", format="percent"),
              "expected_share": st.column_config.NumberColumn("Configured", format="percent")}
    for name in report.arms.columns[4:]:
        m = METRICS[name]
        config[name] = st.column_config.NumberColumn(m.label, format=_format(m.unit))
    ui.table(report.arms, f"arms_{report.experiment.id}", column_config=config)


def _format(unit: str) -> str:
    return {"share": "percent", "money": MONEY, "money_per_order": MONEY, "score": "%.1f"}[unit]


RESULT_ORDER = ("metric", "label", "variant", "role", "lift", "lift_lower", "lift_upper", "truth", "p_value",
                "p_adjusted", "chance_to_win", "verdict", "cuped", "variance_reduction", "control_mean", "variant_mean",
                "absolute", "n_control", "n_variant", "note")


def results_table(results: pl.DataFrame, experiment_id: str) -> None:
    shown = results.select([c for c in RESULT_ORDER if c in results.columns])
    ui.table(shown, f"results_{experiment_id}", column_config={
        "metric": None, "label": "Metric", "role": "Role", "variant": "Variant",
        "n_control": st.column_config.NumberColumn("Control users", format="%d"),
        "n_variant": st.column_config.NumberColumn("Variant users", format="%d"),
        "control_mean": st.column_config.NumberColumn("Control", format="%.4f"),
        "variant_mean": st.column_config.NumberColumn("Variant", format="%.4f"),
        "absolute": st.column_config.NumberColumn("Difference", format="%.4f"),
        "lift": st.column_config.NumberColumn("Lift", format="percent"),
        "lift_lower": st.column_config.NumberColumn("Lift low", format="percent"),
        "lift_upper": st.column_config.NumberColumn("Lift high", format="percent"),
        "p_value": st.column_config.NumberColumn("p", format="%.4f"),
        "p_adjusted": st.column_config.NumberColumn("p adjusted", format="%.4f"),
        "chance_to_win": st.column_config.NumberColumn("Chance to win", format="percent"),
        "cuped": st.column_config.CheckboxColumn("CUPED"),
        "variance_reduction": st.column_config.NumberColumn("Variance cut", format="percent"),
        "truth": st.column_config.NumberColumn("True lift", format="percent"),
        "verdict": "Verdict", "note": "Note",
    })


def guardrails(report: experiments.ExperimentReport) -> None:
    if not report.guardrails:
        st.caption("No guardrail metric configured.")
        return
    frame = pl.DataFrame([{"metric": METRICS[g.name].label, "variant": g.variant, "verdict": g.verdict,
                           "margin": g.margin, "worst_plausible": g.bound, "reason": g.reason}
                          for g in report.guardrails],
                         schema={"metric": pl.String, "variant": pl.String, "verdict": pl.String,
                                 "margin": pl.Float64, "worst_plausible": pl.Float64, "reason": pl.String})
    ui.table(frame, f"guardrails_{report.experiment.id}", column_config={
        "metric": "Guardrail", "variant": "Variant", "verdict": "Verdict",
        "margin": st.column_config.NumberColumn("Margin", format="percent"),
        "worst_plausible": st.column_config.NumberColumn("Worst plausible change", format="percent"),
        "reason": st.column_config.TextColumn("Why", width="large"),
    })


def detail(frame: pl.DataFrame, experiment: Experiment, filters: Filters, opts: experiments.Options) -> None:
    report = experiments.analyse(frame, experiment, opts)
    st.subheader(f"{experiment.id} · {ui.scenario().experience_by_id[experiment.experience].name}")
    st.caption(f"Hypothesis: {experiment.hypothesis}")
    if not report.has_data:
        ui.no_data(f"No user exposed in this experiment for {ui.describe(filters)} yet.")
        return
    recommendation(report)
    arms_table(report)
    known = experiments.true_lifts(truth.load(ui.settings().lake) if filters == Filters() else None, experiment.id)
    results = experiments.with_truth(report.results, known)
    if known.height:
        st.caption("True lift: the effect the simulator really applied to the backfilled history (its ground "
                   "truth), next to the estimate; shown without filters, where the populations match.")
    st.markdown(f"**Per variant** — relative lift vs `{experiment.arms[0].name}` with "
                f"{'always-valid' if opts.method == 'sequential' else 'fixed-horizon'} "
                f"{1 - opts.alpha:.0%} intervals; verdicts corrected across metrics × variants "
                f"({'Benjamini–Hochberg' if opts.correction == 'bh' else 'Holm'}).")
    results_table(results, experiment.id)
    ui.chart(analytics.lift_intervals(results, "Relative lift per metric"))
    st.markdown("**Guardrails** (non-inferiority)")
    guardrails(report)
    names = list(experiments.roles(experiment))
    metric_name = st.selectbox("Metric for the trend and the segments", names, key=f"exp_metric_{experiment.id}",
                               format_func=lambda n: METRICS[n].label)
    left, right = st.columns(2)
    with left:
        daily = analytics.days_for(filters, experiment.id, metric_name)
        lift = experiments.cumulative_lift(daily, experiment, metric_name, opts)
        if lift.drop_nulls("lift").height:
            ui.chart(analytics.lift_over_time(lift, f"Cumulative lift: {METRICS[metric_name].label}",
                                           known.filter(pl.col("metric") == metric_name)))
        else:
            ui.no_data("Not enough users in both arms yet for a cumulative lift.")
    with right:
        by_segment = experiments.segments(frame, experiment, metric_name, opts)
        ui.table(by_segment, f"segments_{experiment.id}", column_config={
            "segment": "Segment", "variant": "Variant",
            "n_control": st.column_config.NumberColumn("Control users", format="%d"),
            "n_variant": st.column_config.NumberColumn("Variant users", format="%d"),
            "control_mean": st.column_config.NumberColumn("Control", format="%.4f"),
            "variant_mean": st.column_config.NumberColumn("Variant", format="%.4f"),
            "lift": st.column_config.NumberColumn("Lift", format="percent"),
            "lift_lower": st.column_config.NumberColumn("Lift low", format="percent"),
            "lift_upper": st.column_config.NumberColumn("Lift high", format="percent"),
            "p_value": st.column_config.NumberColumn("p", format="%.4f"), "note": "Note",
        })


@st.fragment(run_every=ui.REFRESH_SECONDS)
def live() -> None:
    filters = ui.filters()
    opts = options()
    with ui.panel("Experiments"):
        sc = ui.scenario()
        frame = analytics.stats_for(filters)
        if not frame.height:
            ui.no_data(f"No user exposed in any experiment for {ui.describe(filters)}. Widen the filters, or run "
                       "`momento backfill` / `momento demo` to fill the lake.")
            return
        experiment_list(frame, filters, opts)
        ids = [x.id for x in experiments.in_view(sc, filters)]
        if not ids:
            ui.no_data(f"No experiment runs on the journey {filters.journey!r}.")
            return
        chosen = st.selectbox("Experiment", ids, key="experiment_view")
        detail(frame, sc.experiment_by_id[chosen], filters, opts)


ui.header("Experiments", "Every experiment's lift with always-valid intervals, guardrails and a recommendation.")
live()
