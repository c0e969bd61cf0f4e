"""Every chart of the cockpit, built from the frames `metrics/` returns (Altair; no Streamlit).

Numbers and dates in axes and tooltips follow the cockpit's pt-BR conventions (`momento.
formatting`): `pt_br` sets the chart's number locale, and time formats are day/month/year.
"""

from __future__ import annotations

from typing import TypeAlias, cast

import altair as alt
import polars as pl

from metrics.model_quality import Calibration
from momento.formatting import CURRENCY, DECIMAL, THOUSANDS

Spec: TypeAlias = (
    alt.Chart
    | alt.LayerChart
    | alt.FacetChart
    | alt.ConcatChart
    | alt.HConcatChart
    | alt.VConcatChart
    | alt.RepeatChart
)
"""A top-level chart (what Streamlit's `altair_chart` shows)."""

DAY, DATE, MINUTE = "%d/%m", "%d/%m/%Y", "%d/%m %H:%M"
"""Time formats: an axis of days, a tooltip's day, a time of day."""

LOCALE = alt.Locale(
    number=alt.NumberLocale(decimal=DECIMAL, thousands=THOUSANDS, grouping=[3], currency=[f"{CURRENCY} ", ""])
)

VERDICT_COLORS = alt.Scale(
    domain=["better", "worse", "no difference yet", "not enough data", "see guardrails"],
    range=["#2a9d5c", "#d1495b", "#4c78a8", "#9d9d9d", "#b279a2"],
)
POLICY_VERDICT_COLORS = alt.Scale(
    domain=["better", "worse", "cannot tell", "not supported"], range=["#2a9d5c", "#d1495b", "#9d9d9d", "#f28e2b"]
)
FAILURE_COLORS = alt.Scale(domain=[True, False], range=["#d62728", "#7f7f7f"])


def pt_br(spec: Spec) -> Spec:
    """`spec` with pt-BR number formatting (1.234,5) in its axes, labels and tooltips."""
    return spec.configure(locale=LOCALE)


def time_axis(field: str = "bucket", title: str = "Time (UTC)", bucket_s: int | None = None) -> alt.X:
    """A readable time x-axis; with `bucket_s`, labels show days for hourly-or-coarser buckets
    and hours and minutes below that."""
    labels = alt.Undefined if bucket_s is None else DAY if bucket_s >= 3600 else MINUTE
    return alt.X(f"{field}:T", title=title, axis=alt.Axis(labelAngle=0, labelOverlap=True, format=labels))


def _day_axis(field: str = "day") -> alt.X:
    """An axis of days: one tick a day at most, so a short period does not repeat a day's label."""
    return alt.X(f"{field}:T", title="Day (UTC)", axis=alt.Axis(format=DAY, labelAngle=0, tickCount="day"))


# -- analytics ------------------------------------------------------------------------------


def _readable(lower: pl.Series, upper: pl.Series) -> alt.Scale:
    """A lift scale that keeps the later, informative intervals readable: the first days'
    intervals are very wide, so the domain covers the last half of the bounds (clamped)."""
    half = len(lower) // 2
    # float columns: their min and max are floats (polars types them as any Python value)
    low, high = cast(float | None, lower[half:].min()), cast(float | None, upper[half:].max())
    if low is None or high is None:
        return alt.Scale()
    pad = max((high - low) * 0.25, 0.02)
    return alt.Scale(domain=[min(low - pad, 0.0), max(high + pad, 0.0)], clamp=True)


def lift_over_time(
    frame: pl.DataFrame, title: str, truth: pl.DataFrame | None = None
) -> alt.LayerChart | alt.FacetChart:
    """Cumulative relative lift per variant (line) with its always-valid interval (band), a zero
    rule, and the true effect (dashed) when the simulator's ground truth is known."""
    rows = frame.drop_nulls("lift").sort("day")
    axis = alt.Axis(format="+.0%", title="Relative lift vs control")
    scale = _readable(rows["lift_lower"], rows["lift_upper"])
    base = alt.Chart(rows).encode(
        x=_day_axis(),
        color=alt.Color("variant:N", title="Variant"),
        tooltip=[
            alt.Tooltip("day:T", title="Day", format=DATE),
            alt.Tooltip("variant:N", title="Variant"),
            alt.Tooltip("lift:Q", title="Lift", format="+.2%"),
            alt.Tooltip("lift_lower:Q", title="Lower", format="+.2%"),
            alt.Tooltip("lift_upper:Q", title="Upper", format="+.2%"),
            alt.Tooltip("n_control:Q", title="Control users", format=","),
            alt.Tooltip("n_variant:Q", title="Variant users", format=","),
        ],
    )
    layers = [
        base.mark_area(opacity=0.18).encode(y=alt.Y("lift_lower:Q", axis=axis, scale=scale), y2="lift_upper:Q"),
        base.mark_line(point=True).encode(y=alt.Y("lift:Q", axis=axis, scale=scale)),
        base.mark_rule(strokeDash=[2, 2]).encode(y=alt.datum(0), color=alt.value("gray")),
    ]
    if truth is not None and truth.height:
        layers.append(
            alt.Chart(truth)
            .mark_rule(strokeDash=[6, 4])
            .encode(
                y=alt.Y("truth:Q", scale=scale),
                color=alt.Color("variant:N"),
                tooltip=[alt.Tooltip("variant:N"), alt.Tooltip("truth:Q", title="True effect", format="+.2%")],
            )
        )
    return alt.layer(*layers).properties(title=title, height=280)


def lift_intervals(frame: pl.DataFrame, title: str) -> alt.LayerChart | alt.FacetChart:
    """Relative lift of each metric × variant with its interval, coloured by verdict, and the true
    effect as a black cross when a `truth` column is present."""
    rows = frame.drop_nulls("lift").with_columns(row=pl.col("label") + " · " + pl.col("variant"))
    tooltip = [
        alt.Tooltip("label:N", title="Metric"),
        alt.Tooltip("variant:N", title="Variant"),
        alt.Tooltip("lift:Q", title="Lift", format="+.2%"),
        alt.Tooltip("lift_lower:Q", title="Lower", format="+.2%"),
        alt.Tooltip("lift_upper:Q", title="Upper", format="+.2%"),
        alt.Tooltip("p_adjusted:Q", title="Adjusted p", format=".3f"),
        alt.Tooltip("verdict:N", title="Verdict"),
    ]
    axis = alt.Axis(format="+.0%", title="Relative lift vs control, with its interval")
    base = alt.Chart(rows).encode(
        y=alt.Y("row:N", sort=None, title=None, axis=alt.Axis(labelLimit=320)), tooltip=tooltip
    )
    color = alt.Color("verdict:N", title="Verdict", scale=VERDICT_COLORS)
    layers = [
        base.mark_rule(strokeWidth=4).encode(x=alt.X("lift_lower:Q", axis=axis), x2="lift_upper:Q", color=color),
        base.mark_point(filled=True, size=80).encode(x="lift:Q", color=color),
        base.mark_rule(strokeDash=[2, 2]).encode(x=alt.datum(0), color=alt.value("gray")),
    ]
    if "truth" in rows.columns and rows["truth"].drop_nulls().len():
        layers.append(
            base.mark_point(shape="cross", size=140, filled=True, color="black").encode(
                x="truth:Q",
                tooltip=[
                    alt.Tooltip("row:N", title="Metric"),
                    alt.Tooltip("truth:Q", title="True effect", format="+.2%"),
                ],
            )
        )
    return alt.layer(*layers).properties(title=title, height=alt.Step(34))


def incremental_revenue(frame: pl.DataFrame, grain: str) -> alt.LayerChart:
    """Incremental revenue per bucket (bars) with its running total (line)."""
    axis = time_axis("bucket", f"{grain.capitalize()} (UTC)")
    money_axis = alt.Axis(format=",.0f")
    tooltip = [
        alt.Tooltip("bucket:T", title=grain.capitalize(), format=f"{DATE} %H:%M"),
        alt.Tooltip("incremental_revenue:Q", title="Added (R$)", format=",.0f"),
        alt.Tooltip("cumulative_incremental:Q", title="Running total (R$)", format=",.0f"),
    ]
    bars = (
        alt.Chart(frame)
        .mark_bar(opacity=0.6)
        .encode(x=axis, y=alt.Y("incremental_revenue:Q", title="Revenue added (R$)", axis=money_axis), tooltip=tooltip)
    )
    line = (
        alt.Chart(frame)
        .mark_line(point=alt.OverlayMarkDef(color="#e4572e"), color="#e4572e")
        .encode(
            x=axis, y=alt.Y("cumulative_incremental:Q", title="Running total (R$)", axis=money_axis), tooltip=tooltip
        )
    )
    return (
        alt.layer(bars, line)
        .resolve_scale(y="independent")
        .properties(title="Revenue added by personalisation vs the holdout", height=280)
    )


def revenue_per_user(frame: pl.DataFrame, grain: str) -> alt.Chart:
    """Revenue per exposed and per holdout user per bucket."""
    per_user = frame.unpivot(
        index="bucket",
        on=["revenue_per_exposed", "revenue_per_holdout"],
        variable_name="group",
        value_name="revenue_per_user",
    ).with_columns(pl.col("group").replace({"revenue_per_exposed": "Exposed", "revenue_per_holdout": "Holdout"}))
    return (
        alt.Chart(per_user)
        .mark_line(point=True)
        .encode(
            x=time_axis("bucket", f"{grain.capitalize()} (UTC)"),
            y=alt.Y("revenue_per_user:Q", title="Revenue per user (R$)", axis=alt.Axis(format=",.2f")),
            color=alt.Color("group:N", title="Group"),
            tooltip=[
                alt.Tooltip("bucket:T", title=grain.capitalize(), format=f"{DATE} %H:%M"),
                "group:N",
                alt.Tooltip("revenue_per_user:Q", title="Revenue per user (R$)", format=",.2f"),
            ],
        )
        .properties(title="Revenue per user, exposed vs holdout", height=240)
    )


def waterfall(frame: pl.DataFrame, title: str) -> alt.LayerChart:
    """A journey's stages from traffic to conversion, as bars labelled with their share."""
    chart = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            y=alt.Y("label:N", sort=list(frame["label"]), title=None, axis=alt.Axis(labelLimit=260)),
            x=alt.X("decisions:Q", title="Decisions", axis=alt.Axis(format=",d")),
            color=alt.Color(
                "kind:N",
                title="Stage",
                scale=alt.Scale(domain=["eligibility", "serving", "outcome"], range=["#4c78a8", "#72b7b2", "#54a24b"]),
            ),
            tooltip=[
                alt.Tooltip("label:N", title="Stage"),
                alt.Tooltip("decisions:Q", title="Decisions", format=","),
                alt.Tooltip("share:Q", title="Share of traffic", format=".1%"),
            ],
        )
        .properties(title=title, height=34 * frame.height)
    )
    labels = chart.mark_text(align="left", dx=4).encode(text=alt.Text("share:Q", format=".1%"), color=alt.value("gray"))
    return chart + labels


# -- engine health --------------------------------------------------------------------------


def latency(series: pl.DataFrame, bucket_s: int, budget_ms: float) -> alt.LayerChart:
    """p50/p95/p99 decision latency per bucket against the budget (dashed)."""
    long = series.unpivot(
        index="bucket", on=["p50_ms", "p95_ms", "p99_ms"], variable_name="percentile", value_name="ms"
    ).with_columns(pl.col("percentile").str.replace("_ms", ""))
    lines = (
        alt.Chart(long)
        .mark_line(point=False)
        .encode(
            time_axis(bucket_s=bucket_s),
            alt.Y("ms:Q", title="Decision latency (ms)"),
            alt.Color("percentile:N", title="Percentile", sort=["p50", "p95", "p99"]),
            tooltip=[
                alt.Tooltip("bucket:T", title="From", format=MINUTE),
                "percentile:N",
                alt.Tooltip("ms:Q", format=".2f"),
            ],
        )
    )
    budget = (
        alt.Chart(pl.DataFrame({"ms": [budget_ms]}))
        .mark_rule(strokeDash=[6, 4], color="#d62728")
        .encode(y="ms:Q", tooltip=[alt.Tooltip("ms:Q", title="Budget (ms)")])
    )
    return (lines + budget).properties(height=280)


def throughput(series: pl.DataFrame, events: pl.DataFrame, bucket_s: int) -> alt.Chart:
    """Events and decisions per second per bucket."""
    rates = pl.concat(
        [
            events.select("bucket", pl.lit("events").alias("stream"), pl.col("events_per_s").alias("per_s")),
            series.select(
                "bucket", pl.lit("decisions").alias("stream"), (pl.col("decisions") / float(bucket_s)).alias("per_s")
            ),
        ]
    )
    return (
        alt.Chart(rates)
        .mark_line()
        .encode(
            time_axis(bucket_s=bucket_s),
            alt.Y("per_s:Q", title="Per second"),
            alt.Color("stream:N", title=None),
            tooltip=[
                alt.Tooltip("bucket:T", title="From", format=MINUTE),
                "stream:N",
                alt.Tooltip("per_s:Q", title="per second", format=",.2f"),
            ],
        )
        .properties(height=240)
    )


def error_rates(series: pl.DataFrame, bucket_s: int) -> alt.Chart:
    """Error and fallback rates per bucket."""
    rates = series.select(
        "bucket", pl.col("error_rate").alias("errors"), pl.col("fallback_rate").alias("fallbacks")
    ).unpivot(index="bucket", variable_name="rate")
    return (
        alt.Chart(rates)
        .mark_line()
        .encode(
            time_axis(bucket_s=bucket_s),
            alt.Y("value:Q", title="Share of decisions", axis=alt.Axis(format="%")),
            alt.Color("rate:N", title=None),
            tooltip=[
                alt.Tooltip("bucket:T", title="From", format=MINUTE),
                "rate:N",
                alt.Tooltip("value:Q", format=".2%"),
            ],
        )
        .properties(height=240)
    )


def breakdown(frame: pl.DataFrame) -> alt.Chart:
    """Share of decisions per error or fallback code, engine failures in red."""
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            alt.X("rate:Q", title="Share of all decisions", axis=alt.Axis(format="%")),
            alt.Y("code:N", title=None, sort="-x"),
            alt.Color("failure:N", title="Engine failure", scale=FAILURE_COLORS),
            tooltip=[
                "code:N",
                "meaning:N",
                alt.Tooltip("decisions:Q", format=","),
                alt.Tooltip("rate:Q", format=".2%"),
            ],
        )
        .properties(height=alt.Step(26))
    )


def reliability(cal: Calibration) -> alt.LayerChart:
    """Observed outcome rate against the mean score per bin, with Wilson intervals, and the diagonal."""
    top = float(max(cast(float, cal.bins["ci_upper"].max()), cast(float, cal.bins["mean_score"].max())))
    diagonal = (
        alt.Chart(pl.DataFrame({"x": [0.0, top], "y": [0.0, top]}))
        .mark_line(strokeDash=[4, 4], color="#7f7f7f")
        .encode(x="x:Q", y="y:Q")
    )
    base = alt.Chart(cal.bins).encode(
        alt.X("mean_score:Q", title="Predicted probability (bin mean)", axis=alt.Axis(format="%"))
    )
    bars = base.mark_errorbar().encode(
        alt.Y("ci_lower:Q", title="Observed rate", axis=alt.Axis(format="%")), alt.Y2("ci_upper:Q")
    )
    points = base.mark_circle(size=70).encode(
        alt.Y("observed_rate:Q"),
        tooltip=[
            alt.Tooltip("bin:Q", title="Decile"),
            alt.Tooltip("n:Q", format=","),
            alt.Tooltip("mean_score:Q", title="Predicted", format=".2%"),
            alt.Tooltip("observed_rate:Q", title="Observed", format=".2%"),
        ],
    )
    return (diagonal + bars + points).properties(height=280, title="Reliability (perfect calibration on the dashes)")


# -- governance -----------------------------------------------------------------------------


def consent_rate(daily: pl.DataFrame) -> alt.Chart:
    """The consent rate of decisions per day."""
    return (
        alt.Chart(daily)
        .mark_line(point=True)
        .encode(
            _day_axis(),
            alt.Y("consent_rate:Q", title="Consent rate", axis=alt.Axis(format="%"), scale=alt.Scale(zero=False)),
            tooltip=[
                alt.Tooltip("day:T", format=DATE),
                alt.Tooltip("consent_rate:Q", format=".1%"),
                alt.Tooltip("decisions:Q", format=","),
            ],
        )
        .properties(height=220, title="Consent rate of decisions by day")
    )


def withdrawals(daily: pl.DataFrame) -> alt.Chart:
    """Consent withdrawals and opt-outs per day, side by side."""
    counts = daily.unpivot(index="day", on=["withdrawals", "opt_outs"], variable_name="event", value_name="count")
    return (
        alt.Chart(counts)
        .mark_bar()
        .encode(
            _day_axis(),
            alt.Y("count:Q", title="Events", axis=alt.Axis(tickMinStep=1, format=",d")),
            alt.Color("event:N", title=None),
            xOffset="event:N",
            tooltip=[alt.Tooltip("day:T", format=DATE), "event:N", alt.Tooltip("count:Q", format=",")],
        )
        .properties(height=220, title="Consent withdrawals and opt-outs by day")
    )


def saturation(shown: pl.DataFrame, top: int) -> alt.Chart:
    """User-days per number of exposures per day (the last bar: `top` or more), per channel."""
    return (
        alt.Chart(shown)
        .mark_bar()
        .encode(
            alt.X(
                "exposures:O",
                title=f"Exposures per user per day ({top} means {top} or more)",
                axis=alt.Axis(labelAngle=0),
            ),
            alt.Y("user_days:Q", title="User-days (log scale)", scale=alt.Scale(type="symlog")),
            alt.Color("channel:N", title="Channel"),
            alt.XOffset("channel:N"),
            tooltip=[
                "channel:N",
                alt.Tooltip("exposures:O", title="Exposures per day"),
                alt.Tooltip("user_days:Q", title="User-days", format=","),
            ],
        )
        .properties(height=240)
    )


def parity(groups: pl.DataFrame, rate: str, title: str, dimension: str) -> alt.Chart:
    """One rate per group of `dimension` (bars)."""
    return (
        alt.Chart(groups)
        .mark_bar()
        .encode(
            alt.X(f"{rate}:Q", title=title, axis=alt.Axis(format="%")),
            alt.Y("grp:N", title=dimension.replace("_", " ").capitalize()),
            tooltip=[
                alt.Tooltip("grp:N", title=dimension),
                alt.Tooltip(f"{rate}:Q", format=".1%"),
                alt.Tooltip("decisions:Q", format=","),
            ],
        )
        .properties(height=alt.Step(28))
    )


def policy_values(
    frame: pl.DataFrame, logging_value: float, title: str, axis_format: str
) -> alt.LayerChart | alt.FacetChart:
    """Each candidate policy's estimated value with its interval, coloured by verdict, against the
    logging policy's on-policy value (the dashed line)."""
    rows = frame.drop_nulls("value")
    tooltip = [
        alt.Tooltip("candidate:N", title="Candidate"),
        alt.Tooltip("value:Q", title="Value", format=axis_format),
        alt.Tooltip("ci_lower:Q", title="Lower", format=axis_format),
        alt.Tooltip("ci_upper:Q", title="Upper", format=axis_format),
        alt.Tooltip("ess:Q", title="Effective decisions", format=",.0f"),
        alt.Tooltip("verdict:N", title="Verdict"),
    ]
    base = alt.Chart(rows).encode(
        y=alt.Y("candidate:N", sort=None, title=None, axis=alt.Axis(labelLimit=320)), tooltip=tooltip
    )
    color = alt.Color("verdict:N", title="Verdict vs logging", scale=POLICY_VERDICT_COLORS)
    axis = alt.Axis(format=axis_format, title="Estimated value per decision, with its 95% interval")
    return alt.layer(
        base.mark_rule(strokeWidth=4).encode(x=alt.X("ci_lower:Q", axis=axis), x2="ci_upper:Q", color=color),
        base.mark_point(filled=True, size=80).encode(x="value:Q", color=color),
        base.mark_rule(strokeDash=[4, 3]).encode(x=alt.datum(logging_value), color=alt.value("gray")),
    ).properties(title=title, height=alt.Step(30))
