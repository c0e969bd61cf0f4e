"""The tactical view: each journey's path from eligible traffic to conversion.

Every decision of a journey falls in exactly one *serving* class, in the order governance
applies: no consent, frequency-capped, global holdout, blocked by another governance rule,
then — for the eligible ones — served by a fallback (failure), by a personalisation policy
(the model), or a fixed arm variant (e.g. the control). Exposed, clicked and converted count
the eligible decisions that were seen, clicked (a click linked by decision_id), and led to a
purchase linked by decision_id. The counts per day, journey, channel, segment and class come
from the rollups (`journey_funnel`, kept from per-user state of decisions and of what followed
them: `metrics.rollup`), plus the live tail, or from every raw row; the waterfall is their
running difference, so its stages always add up.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from metrics.arm_stats import arm_stats
from metrics.experiments import arm_rows
from metrics.filters import Filters
from metrics.rollup.definitions import DAY_US
from metrics.rollup.read import Aggregates, aggregates, run_on
from metrics.sql.query import Query, Statement
from momento.kpis import metric
from momento.lake.warehouse import Warehouse
from momento.scenario import Experiment, Scenario

SERVING = ("no_consent", "capped", "holdout", "blocked", "fallback", "model", "fixed")
"""Serving classes, in the order governance decides them (`metrics.rollup.definitions.SERVING_SQL`)."""
SERVING_LABELS = {
    "no_consent": "No consent",
    "capped": "Frequency-capped",
    "holdout": "Global holdout",
    "blocked": "Other governance block",
    "fallback": "Fallback (failure)",
    "model": "Personalised by a policy",
    "fixed": "Fixed arm variant",
}
SERVED = ("fallback", "model", "fixed")
"""The eligible classes: the engine was allowed to personalise these decisions."""

_DAY = f"CAST(epoch_us(CAST({{ts}} AS TIMESTAMPTZ)) // {DAY_US} AS INTEGER)"
FUNNEL_SQL = f"""SELECT journey, serving, CAST(sum(decisions) AS BIGINT) AS decisions,
       CAST(sum(exposed) AS BIGINT) AS exposed, CAST(sum(clicked) AS BIGINT) AS clicked,
       CAST(sum(converted) AS BIGINT) AS converted
FROM journey_funnel
WHERE ($f_start IS NULL OR day >= {_DAY.format(ts="$f_start")}) AND ($f_end IS NULL OR day < {_DAY.format(ts="$f_end")})
  AND ($f_channel IS NULL OR channel = $f_channel) AND ($f_segment IS NULL OR segment = $f_segment)
  AND ($f_journey IS NULL OR journey = $f_journey)
GROUP BY journey, serving HAVING sum(decisions) <> 0
ORDER BY journey, serving"""


FUNNEL = Query(
    "journeys.funnel",
    "Decisions per journey and serving class (no consent, capped, holdout, blocked, fallback, personalised, fixed), "
    "with how many were exposed, clicked and led to a purchase: read from the rollups (journey_funnel: counts per "
    "UTC day of the decision, journey, channel, segment and class).",
    lambda filters: Statement(FUNNEL_SQL, filters.params()),
    metrics=("eligible_share",),
    method="Counts, exact. Each waterfall stage is the sum of the serving classes it keeps, so the stages add up; "
    "shares are over the journey's traffic, CTR = clicked / exposed decisions. A decision is exposed, clicked "
    "or converted when an exposure, click or purchase of the same user carries its decision id.",
    over="aggregates",
)


def load_funnel(warehouse: Warehouse, filters: Filters, pre_days: int) -> pl.DataFrame:
    """Decisions, exposed, clicked and converted per journey and serving class, from the rollups
    plus the live tail (or raw: `metrics.rollup.read`)."""
    return funnel_frame(aggregates(warehouse, pre_days), filters)


def funnel_frame(aggregates: Aggregates, filters: Filters) -> pl.DataFrame:
    """`FUNNEL` over `aggregates`."""
    return run_on(aggregates, FUNNEL.statement(filters))


@dataclass(frozen=True)
class Journey:
    """One journey's funnel."""

    id: str
    name: str
    placement: str
    experience: str
    experiment: Experiment | None
    waterfall: pl.DataFrame
    """stage, label, kind (eligibility / serving / outcome), decisions, share (of all traffic)."""
    serving: pl.DataFrame
    """Per serving class: decisions, exposed, clicked, converted, CTR and conversion per exposure."""

    @property
    def traffic(self) -> int:
        return int(self.waterfall["decisions"][0]) if self.waterfall.height else 0


def _count(frame: pl.DataFrame, classes: tuple[str, ...], column: str = "decisions") -> int:
    return int(frame.filter(pl.col("serving").is_in(list(classes)))[column].sum() or 0)


def journey(funnel: pl.DataFrame, scenario: Scenario, journey_id: str) -> Journey:
    """The waterfall and serving table of `journey_id` from `load_funnel`'s frame."""
    placement = next(p for p in scenario.placements if p.journey == journey_id)
    experience = scenario.experience_by_placement[placement.id]
    rows = funnel.filter(pl.col("journey") == journey_id)
    everything = SERVING
    consented = SERVING[1:]
    not_capped = SERVING[2:]
    stages = [
        ("traffic", "Traffic (decisions)", "eligibility", _count(rows, everything)),
        ("consented", "Consented", "eligibility", _count(rows, consented)),
        ("not_capped", "Not capped", "eligibility", _count(rows, not_capped)),
        ("eligible", "Eligible (not holdout, no block)", "eligibility", _count(rows, SERVED)),
        ("model", "Served by model", "serving", _count(rows, ("model",))),
        ("fixed", "Served a fixed arm variant", "serving", _count(rows, ("fixed",))),
        ("fallback", "Served a fallback", "serving", _count(rows, ("fallback",))),
        ("exposed", "Exposed", "outcome", _count(rows, SERVED, "exposed")),
        ("clicked", "Clicked", "outcome", _count(rows, SERVED, "clicked")),
        ("converted", "Converted", "outcome", _count(rows, SERVED, "converted")),
    ]
    traffic = stages[0][3]
    waterfall = pl.DataFrame(
        [
            {"stage": s, "label": label, "kind": kind, "decisions": n, "share": n / traffic if traffic else None}
            for s, label, kind, n in stages
        ],
        schema={"stage": pl.String, "label": pl.String, "kind": pl.String, "decisions": pl.Int64, "share": pl.Float64},
    )
    serving = (
        pl.DataFrame({"serving": list(SERVING)})
        .join(rows.select("serving", "decisions", "exposed", "clicked", "converted"), on="serving", how="left")
        .fill_null(0)
        .with_columns(
            pl.col("serving").replace_strict(SERVING_LABELS).alias("label"),
            pl.when(pl.col("exposed") > 0).then(pl.col("clicked") / pl.col("exposed")).alias("ctr"),
            pl.when(pl.col("exposed") > 0).then(pl.col("converted") / pl.col("exposed")).alias("conversion"),
        )
        .select("serving", "label", "decisions", "exposed", "clicked", "converted", "ctr", "conversion")
    )
    return Journey(
        journey_id,
        scenario.journey_by_id[journey_id].name,
        placement.id,
        experience.name,
        scenario.experiment_by_experience.get(experience.id),
        waterfall,
        serving,
    )


REVENUE_METRIC = "revenue_per_user"
"""The one metric `revenue_per_exposed_user` reads from `experiments.load_stats`' frame."""


def revenue_per_exposed_user(stats_frame: pl.DataFrame, experiment: Experiment) -> pl.DataFrame:
    """Revenue per exposed user of the journey's experiment, per arm and for all arms together
    (`experiments.load_stats`' frame: users exposed to the element, revenue after exposure)."""
    m = metric(REVENUE_METRIC)
    rows = arm_rows(stats_frame, experiment)[()]
    arms = {arm.name: arm_stats(rows[arm.name], m, arm.name) for arm in experiment.arms}
    out = [
        {"arm": name, "users": a.n, "revenue": a.sum, "revenue_per_user": a.sum / a.n if a.n else None}
        for name, a in arms.items()
    ]
    users, revenue = sum(a.n for a in arms.values()), sum(a.sum for a in arms.values())
    out.append(
        {"arm": "all arms", "users": users, "revenue": revenue, "revenue_per_user": revenue / users if users else None}
    )
    return pl.DataFrame(
        out, schema={"arm": pl.String, "users": pl.Int64, "revenue": pl.Float64, "revenue_per_user": pl.Float64}
    )


def overview(funnel: pl.DataFrame, scenario: Scenario) -> pl.DataFrame:
    """One row per journey: its experience, traffic, eligible traffic (count and share),
    exposed, clicked, converted; the answer to "how much traffic is eligible for each"."""
    rows = []
    for j in scenario.journeys:
        view = journey(funnel, scenario, j.id)
        stage = dict(zip(view.waterfall["stage"], view.waterfall["decisions"]))
        traffic = stage.get("traffic", 0)
        rows.append(
            {
                "journey": j.id,
                "name": j.name,
                "experience": view.experience,
                "traffic": traffic,
                "eligible": stage["eligible"],
                "eligible_share": stage["eligible"] / traffic if traffic else None,
                "personalised": stage["model"],
                "exposed": stage["exposed"],
                "clicked": stage["clicked"],
                "converted": stage["converted"],
                "ctr": stage["clicked"] / stage["exposed"] if stage["exposed"] else None,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "journey": pl.String,
            "name": pl.String,
            "experience": pl.String,
            "traffic": pl.Int64,
            "eligible": pl.Int64,
            "eligible_share": pl.Float64,
            "personalised": pl.Int64,
            "exposed": pl.Int64,
            "clicked": pl.Int64,
            "converted": pl.Int64,
            "ctr": pl.Float64,
        },
    )
