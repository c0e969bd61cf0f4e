"""The KPI catalogue: every business metric the cockpit shows, defined once, as data.

The analysis unit is the user. A metric is built from *measures*: additive per-user sums over
the user's events counted from the user's first exposure (or first decision) on, or in a window
of calendar days after it, and, for CUPED, over the whole UTC days of the pre-period before the
day of the first exposure; over the exposures of the element analysed; or over the user's
decisions (coverage, eligibility). From this catalogue `metrics.rollup.definitions` writes the
SQL that turns raw rows into per-user facts and those into the sufficient statistics the
statistics engine takes, so every panel counts a metric the same way, from rollups or from raw.

Operational metrics (latency, error and fallback rates, events/s, model quality) are computed
by `metrics.health` and `metrics.model_quality`; `OPERATIONAL` lists them with a pointer so the
catalogue stays one list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import polars as pl

from momento.codes import POLICY_NAMES, Code
from momento.sql import sql_list

MetricType = Literal["proportion", "mean", "ratio"]
Unit = Literal["share", "money", "money_per_order", "score"]
Source = Literal["events", "exposures", "decisions"]

# ---------------------------------------------------------------------------------------------
# Decision predicates (SQL over the decisions alias `d`), shared by every panel.

GOVERNANCE_BLOCKS: tuple[Code, ...] = (
    Code.NO_CONSENT,
    Code.FREQUENCY_CAP,
    Code.BOUGHT_TODAY,
    Code.OUT_OF_STOCK,
    Code.CHANNEL_NOT_SERVED,
    Code.EXPERIENCE_INACTIVE,
)
"""Fallback reasons that mean governance, not a failure, kept the decision from personalising."""

CAPPED = f"coalesce(d.fallback_reason, '') = '{Code.FREQUENCY_CAP.value}'"
BLOCKED = f"(d.fallback AND coalesce(d.fallback_reason, '') IN ({sql_list(GOVERNANCE_BLOCKS)}))"
ELIGIBLE = f"(d.arm <> 'holdout' AND d.consent AND NOT {BLOCKED})"
"""A decision the engine was allowed to personalise: not holdout, consented, no governance block."""
PERSONALISED = f"(d.status = 'ok' AND NOT d.fallback AND d.policy IN ({sql_list(POLICY_NAMES)}))"
"""A decision a personalisation policy actually chose (no fallback, no error): the one definition
of "personalised" every panel counts (coverage, the journeys' waterfall, governance parity). The
global holdout never reaches a policy, so its decisions are never personalised."""
FALLBACK = "(d.fallback OR d.status <> 'ok')"
"""A decision that served the default because of a fallback or an error."""


# ---------------------------------------------------------------------------------------------
# Measures and metrics


@dataclass(frozen=True)
class Measure:
    """An additive per-user quantity: Σ `value` over the user's rows that match `where`.

    source "events": the user's events (alias `e`) of one of `event_types`; `where` may use the
    unit (alias `u`: `user_id`, `first_ts`, `placement`). "exposures": the exposures (alias `f`)
    of the element analysed, from the first one on. "decisions": the user's decisions in the
    period (alias `d`). Exposure and decision measures are aggregated by the query that builds
    the units (`unit_columns`), events ones by `per_user_sql`.
    """

    label: str
    event_types: tuple[str, ...] = ()
    value: str = "1"
    where: str = "TRUE"
    source: Source = "events"
    element: bool = False
    """Counted on the element analysed only (an event whose `placement` is the unit's)."""

    def predicate(self) -> str:
        if self.source != "events":
            return self.where
        return f"e.event_type IN ({sql_list(self.event_types)}) AND {self.where}"


CLICK_EVENTS = ("click", "email_click")
"""Events that are a click on a personalised element (a push or e-mail *open* is its exposure)."""

MEASURES: dict[str, Measure] = {
    "orders": Measure("orders", ("purchase",)),
    "revenue": Measure("revenue (BRL)", ("purchase",), "coalesce(e.revenue, 0)"),
    "net_margin": Measure(
        "margin net of discounts and returns (BRL)",
        ("purchase", "return"),
        "CASE WHEN e.event_type = 'purchase' THEN coalesce(e.margin, 0) ELSE -abs(coalesce(e.margin, 0)) END",
    ),
    "returns": Measure("returns", ("return",)),
    "clicks": Measure("clicks on the element", CLICK_EVENTS, element=True),
    "exposures": Measure("exposures of the element", source="exposures"),
    "nps_points": Measure(
        "NPS points (+100 promoter, −100 detractor)",
        ("nps_response",),
        "CASE WHEN e.nps_score >= 9 THEN 100 WHEN e.nps_score <= 6 THEN -100 ELSE 0 END",
        "e.nps_score IS NOT NULL",
    ),
    "nps_responses": Measure("NPS responses", ("nps_response",), where="e.nps_score IS NOT NULL"),
    "opt_outs": Measure("opt-outs", ("opt_out",)),
    "visits": Measure("page views", ("page_view",)),
    "decisions": Measure("decisions", source="decisions"),
    "personalised": Measure("personalised decisions", source="decisions", where=PERSONALISED),
    "eligible": Measure("eligible decisions", source="decisions", where=ELIGIBLE),
}


@dataclass(frozen=True)
class Window:
    """Where outcomes count, in UTC calendar days after the day of the user's first exposure:
    days first + `start_day` up to (not including) first + `end_day` (end None: up to now; start
    0 counts from the first exposure itself, not from the start of its day).

    A metric with an end is *mature* for a user only once the as-of time is past the start of
    day first + `end_day`; before, the user's value is missing (not zero), so young users do not
    drag the metric down. Whole days keep every number a sum of per-day parts (rollups)."""

    start_day: int = 0
    end_day: int | None = None

    @property
    def key(self) -> str:
        return f"d{self.start_day}_{self.end_day if self.end_day is not None else 'end'}"


Population = Literal["exposed", "reached"]


@dataclass(frozen=True)
class Metric:
    """One business metric, per user.

    proportion: share of users whose `numerator` is > 0; mean: average `numerator` per user;
    ratio: Σ numerator / Σ denominator over users (its variance by the delta method).
    `population`: "exposed" = users exposed to an experiment's element, outcomes after their
    first exposure; "reached" = users who got any decision in the period, outcomes after
    their first decision (the executive view, exposed vs global holdout).
    """

    name: str
    label: str
    unit: Unit
    type: MetricType
    numerator: str
    denominator: str | None = None
    higher_is_better: bool = True
    window: Window = field(default_factory=Window)
    cuped: bool = False
    population: tuple[Population, ...] = ("exposed", "reached")
    description: str = ""

    def __post_init__(self) -> None:
        for measure in (self.numerator, self.denominator):
            if measure is not None and measure not in MEASURES:
                raise ValueError(f"metric {self.name!r}: unknown measure {measure!r}")
        if self.window.end_day is not None and any(MEASURES[n].source != "events" for n in self.measures):
            raise ValueError(f"metric {self.name!r}: only event measures can have a window end")
        if (self.type == "ratio") != (self.denominator is not None):
            raise ValueError(f"metric {self.name!r}: ratio metrics, and only they, have a denominator")
        if self.cuped and (self.type == "ratio" or MEASURES[self.numerator].source != "events"):
            raise ValueError(f"metric {self.name!r}: CUPED applies to proportions and means of events only")

    @property
    def measures(self) -> tuple[str, ...]:
        return (self.numerator,) if self.denominator is None else (self.numerator, self.denominator)


_WEEK = Window(1, 8)

METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "conversion_rate",
            "Conversion rate",
            "share",
            "proportion",
            "orders",
            cuped=True,
            description="Share of users with at least one purchase after their first exposure.",
        ),
        Metric(
            "revenue_per_user",
            "Revenue per user",
            "money",
            "mean",
            "revenue",
            cuped=True,
            population=("exposed",),
            description="Purchase revenue after the first exposure, per exposed user (non-buyers count as 0).",
        ),
        Metric(
            "arpu",
            "ARPU",
            "money",
            "mean",
            "revenue",
            cuped=True,
            population=("reached",),
            description="Average revenue per user reached by the engine, from the user's first decision in the period.",
        ),
        Metric(
            "aov",
            "Average order value",
            "money_per_order",
            "ratio",
            "revenue",
            "orders",
            description="Revenue per order (Σ revenue / Σ orders over users; delta-method variance).",
        ),
        Metric(
            "ctr",
            "Click-through rate",
            "share",
            "ratio",
            "clicks",
            "exposures",
            population=("exposed",),
            description="Clicks on the personalised element per exposure of it.",
        ),
        Metric(
            "margin_per_user",
            "Margin per user",
            "money",
            "mean",
            "net_margin",
            cuped=True,
            description="Margin net of discount cost, minus the margin of returned orders, per user.",
        ),
        Metric(
            "return_rate",
            "Return rate",
            "share",
            "ratio",
            "returns",
            "orders",
            higher_is_better=False,
            description="Returns per order placed after the first exposure.",
        ),
        Metric(
            "retention_7d",
            "7-day retention",
            "share",
            "proportion",
            "visits",
            window=_WEEK,
            description="Share of users who came back (a page view) on one of the 7 calendar days (UTC) after "
            "the day of their first exposure; counted once those 7 days are over.",
        ),
        Metric(
            "opt_out_rate",
            "Opt-out rate",
            "share",
            "proportion",
            "opt_outs",
            higher_is_better=False,
            description="Share of users who opted out of messages after their first exposure.",
        ),
        Metric(
            "nps",
            "NPS",
            "score",
            "ratio",
            "nps_points",
            "nps_responses",
            description="Net promoter score of the responses after the first exposure (−100..100).",
        ),
        Metric(
            "coverage",
            "Coverage",
            "share",
            "proportion",
            "personalised",
            population=("reached",),
            description="Share of users reached by the engine who received at least one personalised decision.",
        ),
        Metric(
            "eligible_share",
            "Eligible traffic",
            "share",
            "ratio",
            "eligible",
            "decisions",
            population=("reached",),
            description="Share of decisions the engine was allowed to personalise (not holdout, consented, "
            "no frequency cap or other governance block); per experience on the Journeys page.",
        ),
    )
}


@dataclass(frozen=True)
class OpsMetric:
    """A metric of the engine's health, implemented elsewhere; listed to keep one catalogue."""

    name: str
    label: str
    unit: str
    higher_is_better: bool
    implemented_in: str
    description: str


OPERATIONAL: dict[str, OpsMetric] = {
    m.name: m
    for m in (
        OpsMetric(
            "latency_p50_p95_p99",
            "Decision latency percentiles",
            "ms",
            False,
            "metrics.health",
            "In-process decision time (decisions.latency_us) percentiles over time.",
        ),
        OpsMetric(
            "error_rate", "Error rate", "share", False, "metrics.health", "Decisions with status 'error', by code."
        ),
        OpsMetric(
            "fallback_rate",
            "Fallback rate",
            "share",
            False,
            "metrics.health",
            "Decisions served the default, by reason.",
        ),
        OpsMetric(
            "events_per_second", "Events per second", "events/s", True, "metrics.health", "Ingestion throughput."
        ),
        OpsMetric(
            "model_auc",
            "Model AUC",
            "score",
            True,
            "metrics.model_quality",
            "AUC of the propensity model's scores against the outcomes that followed.",
        ),
        OpsMetric(
            "model_calibration",
            "Model calibration",
            "score",
            True,
            "metrics.model_quality",
            "Reliability bins and Brier score of the propensity model.",
        ),
        OpsMetric(
            "model_vs_rules_lift",
            "Model vs rules lift",
            "share",
            True,
            "metrics.model_quality",
            "Lift of model-driven over rule-driven decisions.",
        ),
    )
}


def metric(name: str) -> Metric:
    """The catalogue entry `name` (KeyError names the known metrics)."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r} (known: {', '.join(METRICS)})") from None


def catalogue() -> pl.DataFrame:
    """The whole catalogue as a table, for the cockpit and the docs."""
    rows = [
        dict(
            name=m.name,
            label=m.label,
            unit=m.unit,
            type=m.type,
            definition=" / ".join(MEASURES[name].label for name in m.measures),
            higher_is_better=m.higher_is_better,
            window=m.window.key,
            cuped=m.cuped,
            implemented_in="momento.kpis",
            description=m.description,
        )
        for m in METRICS.values()
    ]
    rows += [
        dict(
            name=o.name,
            label=o.label,
            unit=o.unit,
            type="operational",
            definition="",
            higher_is_better=o.higher_is_better,
            window="",
            cuped=False,
            implemented_in=o.implemented_in,
            description=o.description,
        )
        for o in OPERATIONAL.values()
    ]
    return pl.DataFrame(rows)
