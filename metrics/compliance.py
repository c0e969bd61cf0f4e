"""Compliance, measured from the lake (the Governance page's numbers; the service's own guards
are `decisioning.guards`): consent and opt-outs, frequency saturation, personalisation and offer
parity across segments (with a chi-square test for disparity), the decisions' audit trail and the
erasure log.

The audit search takes what a person typed (a decision id, a pseudonymised user id, a reason
code) only as bound parameters; a parity dimension is an identifier and is accepted only from
`DIMENSIONS`. No Streamlit here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import stats as sps

from metrics.filters import Filters
from metrics.rollup.definitions import HOUR_US
from metrics.rollup.read import Aggregates, run_on
from metrics.sql import utc_day
from metrics.sql.query import Query, Statement
from momento.codes import Channel, sentence
from momento.formatting import percent, significant
from momento.kpis import PERSONALISED
from momento.lake.warehouse import Warehouse
from momento.sql import sql_list

DIMENSIONS = ("segment", "device", "region")
"""Attributes of a decision that parity is checked across."""

MESSAGE_CHANNELS: tuple[Channel, ...] = ("email", "push")
"""Channels that send the visitor a message (opt-outs are counted over the users they reached)."""
DISPARITY_P = 0.01
"""A difference between groups counts as a disparity when the chi-square p-value is below this
and the lowest group's rate is under FOUR_FIFTHS of the highest's (the four-fifths rule)."""
FOUR_FIFTHS = 0.8
SATURATION_CAP = 20
"""Exposures per user-day above this are drawn in one bar."""

_DECISIONS = Filters.where("d", channel=True, segment=True, journey=True)
_EVENTS = Filters.where("e", channel=True, segment=True)
_EXPOSURES = Filters.where("x", channel=True)

# Segment and journey live on the decision behind an exposure. The semi-join costs a pass over
# `decisions`, so it is only in the SQL when one of them is set; the other text still names
# both parameters (every bound parameter must appear in the statement).
_EXPOSURE_DECISION = {
    False: "$f_segment IS NULL AND $f_journey IS NULL",
    True: f"x.decision_id IN (SELECT d.decision_id FROM decisions d WHERE {_DECISIONS})",
}


def _exposure_sql(template: str, filters: Filters) -> str:
    narrowed = filters.segment is not None or filters.journey is not None
    return template.format(exposures=f"{_EXPOSURES} AND {_EXPOSURE_DECISION[narrowed]}")


# One scalar subquery per number: DuckDB runs several DISTINCT aggregates with FILTER in one
# scan several times slower than the separate scans.
_CONSENT_SQL = f"""
SELECT
  (SELECT count(*) FROM decisions d WHERE {_DECISIONS}) AS decisions,
  (SELECT count(*) FILTER (WHERE d.consent) FROM decisions d WHERE {_DECISIONS}) AS consented,
  -- distinct 64-bit hashes: exact up to a negligible collision chance, 3x faster than strings
  (SELECT count(DISTINCT hash(d.user_id)) FROM decisions d WHERE {_DECISIONS}) AS decided_users,
  (SELECT count(DISTINCT e.user_id) FROM events e
    WHERE {_EVENTS} AND e.event_type = 'consent_change' AND e.consent = false) AS withdrawn_users,
  (SELECT count(DISTINCT x.user_id) FROM exposures x
    WHERE {{exposures}} AND x.channel IN ({sql_list(MESSAGE_CHANNELS)})) AS messaged_users,
  (SELECT count(DISTINCT e.user_id) FROM events e WHERE {_EVENTS} AND e.event_type = 'opt_out') AS opted_out_users
"""

_HOURS = f"epoch_us(CAST({{ts}} AS TIMESTAMPTZ)) // {HOUR_US}"
_PERIOD = (
    f"($f_start IS NULL OR hour >= {_HOURS.format(ts='$f_start')}) "
    f"AND ($f_end IS NULL OR hour < {_HOURS.format(ts='$f_end')}) "
    "AND ($f_channel IS NULL OR channel = $f_channel) AND ($f_segment IS NULL OR segment = $f_segment)"
)
"""The filters over an hourly aggregate (whole UTC days are whole hours)."""

_CONSENT_DAILY_SQL = f"""
WITH dd AS (
  SELECT hour // 24 AS day_number, sum(decisions) AS decisions, sum(consented) AS consented
  FROM health_ops WHERE {_PERIOD} AND ($f_journey IS NULL OR journey = $f_journey)
  GROUP BY day_number HAVING sum(decisions) <> 0
), ee AS (
  SELECT hour // 24 AS day_number, sum(withdrawals) AS withdrawals, sum(opt_outs) AS opt_outs
  FROM event_counts WHERE {_PERIOD}
  GROUP BY day_number HAVING sum(consent_events) <> 0
)
SELECT DATE '1970-01-01' + CAST(day_number AS INTEGER) AS day,
       CAST(coalesce(dd.decisions, 0) AS BIGINT) AS decisions, CAST(coalesce(dd.consented, 0) AS BIGINT) AS consented,
       CAST(coalesce(ee.withdrawals, 0) AS BIGINT) AS withdrawals, CAST(coalesce(ee.opt_outs, 0) AS BIGINT) AS opt_outs
FROM dd FULL OUTER JOIN ee USING (day_number) ORDER BY day
"""

# A user-day is keyed by one 64-bit hash of (user, UTC day): grouping on it is twice as fast
# as on the 32-character id and a day, with a negligible chance of two user-days colliding.
_SATURATION_SQL = f"""
WITH per AS (
  SELECT x.channel, count(*) AS n
  FROM exposures x WHERE {{exposures}}
  GROUP BY x.channel, hash(x.user_id, {utc_day("x.ts")})
)
SELECT channel, n AS exposures, count(*) AS user_days FROM per GROUP BY ALL ORDER BY channel, exposures
"""

_PARITY_SQL = f"""
SELECT {{dimension}} AS grp,
       count(*) AS decisions,
       count(*) FILTER (WHERE {PERSONALISED}) AS personalised,
       count(*) FILTER (WHERE list_contains($offer_placements, d.placement)) AS offer_eligible,
       count(*) FILTER (WHERE list_contains($offer_placements, d.placement)
                         AND list_contains($offer_variants, d.variant)) AS offered
FROM decisions d
WHERE {_DECISIONS}
GROUP BY grp ORDER BY grp
"""

_AUDIT_SQL = f"""
SELECT d.ts, d.decision_id, d.user_id, d.journey, d.placement, d.channel, d.experiment_id, d.arm,
       d.variant, d.policy, d.model_version, d.propensity, d.reasons, d.fallback, d.fallback_reason,
       d.status, d.error_code, d.latency_us, d.consent, d.segment, d.device, d.region
FROM decisions d
WHERE {_DECISIONS}
  AND ($decision_id IS NULL OR starts_with(d.decision_id, $decision_id))
  AND ($user_id IS NULL OR starts_with(d.user_id, $user_id))
  AND ($reason IS NULL OR list_contains(d.reasons, $reason)
       OR d.fallback_reason = $reason OR d.error_code = $reason)
ORDER BY d.ts DESC, d.decision_id
LIMIT $limit
"""

_ERASURES_SQL = """
SELECT ts, erasure_id, subject_hash, rows_deleted, tables, requested_by FROM erasures ORDER BY ts DESC
"""


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True)
class Consent:
    """Consent and opt-out numbers for the filtered period."""

    decisions: int
    consented: int
    decided_users: int
    withdrawn_users: int
    messaged_users: int
    opted_out_users: int

    @property
    def consent_rate(self) -> float | None:
        """Share of decisions made for a visitor who consented to personalisation."""
        return _rate(self.consented, self.decisions)

    @property
    def withdrawal_rate(self) -> float | None:
        """Users who withdrew consent, over the users the engine decided for."""
        return _rate(self.withdrawn_users, self.decided_users)

    @property
    def opt_out_rate(self) -> float | None:
        """Share of users reached by e-mail or push who opted out."""
        return _rate(self.opted_out_users, self.messaged_users)


CONSENT = Query(
    "compliance.consent",
    "Decisions and those for a consenting visitor; users decided for, who withdrew consent, reached by e-mail or "
    "push, and who opted out.",
    lambda filters: Statement(_exposure_sql(_CONSENT_SQL, filters), filters.params()),
    method="Consent rate = consented decisions / decisions; withdrawals = users who withdrew / users decided for; "
    "opt-out rate = users who opted out / users reached by a message.",
)


def consent(wh: Warehouse, filters: Filters) -> Consent:
    """Consent rate of decisions, consent withdrawals and opt-outs among messaged users."""
    return Consent(*CONSENT.run(wh, filters).row(0))


CONSENT_DAILY = Query(
    "compliance.consent_daily",
    "Per UTC day: decisions, consented decisions, consent withdrawals and opt-outs, from "
    "the rollups' hourly aggregates (health_ops, event_counts).",
    lambda filters: Statement(_CONSENT_DAILY_SQL, filters.params()),
    method="Consent rate per day = consented decisions / decisions that day (exact counts).",
    over="aggregates",
)


def consent_daily(aggregates: Aggregates, filters: Filters) -> pl.DataFrame:
    """Per UTC day: decisions, consent rate, consent withdrawals and opt-outs (events have no
    journey: the journey filter narrows the decisions only)."""
    frame = run_on(aggregates, CONSENT_DAILY.statement(filters))
    return frame.with_columns(
        pl.when(pl.col("decisions") > 0).then(pl.col("consented") / pl.col("decisions")).alias("consent_rate")
    )


SATURATION = Query(
    "compliance.saturation",
    "How many user-days saw each number of exposures, per channel.",
    lambda filters: Statement(_exposure_sql(_SATURATION_SQL, filters), filters.params()),
    method="Mean, median, 95th percentile and maximum of exposures per user-day, weighted by user-days; over cap = "
    "user-days above the channel's daily frequency cap / user-days.",
)


def saturation(wh: Warehouse, filters: Filters) -> pl.DataFrame:
    """Distribution of exposures per user per day, by channel: (channel, exposures, user_days)."""
    return SATURATION.run(wh, filters)


def saturation_summary(distribution: pl.DataFrame, caps: Mapping[str, int]) -> pl.DataFrame:
    """Per channel: user-days, mean/median/p95/max exposures per user-day, and the share of
    user-days above the channel's frequency cap (None where the channel has no cap)."""
    rows = []
    for channel in distribution["channel"].unique(maintain_order=True).to_list():
        part = distribution.filter(pl.col("channel") == channel)
        values, weights = part["exposures"].to_numpy(), part["user_days"].to_numpy()
        total = int(weights.sum())
        cumulative = np.cumsum(weights) / total
        cap = caps.get(channel)
        rows.append(
            {
                "channel": channel,
                "user_days": total,
                "mean": float((values * weights).sum() / total),
                "median": float(values[np.searchsorted(cumulative, 0.5)]),
                "p95": float(values[np.searchsorted(cumulative, 0.95)]),
                "max": int(values.max()),
                "cap": cap,
                "over_cap": None if cap is None else float(weights[values > cap].sum() / total),
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "channel": pl.String,
            "user_days": pl.Int64,
            "mean": pl.Float64,
            "median": pl.Float64,
            "p95": pl.Float64,
            "max": pl.Int64,
            "cap": pl.Int64,
            "over_cap": pl.Float64,
        },
    )


@dataclass(frozen=True)
class Disparity:
    """A chi-square test of independence between group and a yes/no outcome."""

    measure: str
    chi2: float | None
    p_value: float | None
    dof: int | None
    cramers_v: float | None
    lowest_to_highest: float | None  # lowest group rate / highest group rate
    disparity: bool | None  # None: not enough data to test

    @property
    def verdict(self) -> str:
        if self.disparity is None:
            return "not enough data to test"
        p, ratio = significant(self.p_value, 2), percent(self.lowest_to_highest, 0)
        if self.disparity:
            return f"disparity: rates differ across groups (p = {p}) and the lowest is {ratio} of the highest"
        if self.p_value is not None and self.p_value < DISPARITY_P:
            return (
                f"groups differ statistically (p = {p}) but within the four-fifths rule "
                f"(lowest is {ratio} of the highest)"
            )
        return f"no significant difference across groups (p = {p})"


def disparity(measure: str, yes: Sequence[int], totals: Sequence[int]) -> Disparity:
    """Chi-square test on the groups × (yes, no) table; groups with no units are left out."""
    yes_arr, totals_arr = np.asarray(yes, dtype=float), np.asarray(totals, dtype=float)
    keep = totals_arr > 0
    yes_arr, totals_arr = yes_arr[keep], totals_arr[keep]
    table = np.column_stack([yes_arr, totals_arr - yes_arr])
    if len(table) < 2 or (table.sum(axis=0) == 0).any():
        return Disparity(measure, None, None, None, None, None, None)
    chi2, p, dof, _ = sps.chi2_contingency(table, correction=False)
    rates = yes_arr / totals_arr
    ratio = float(rates.min() / rates.max()) if rates.max() > 0 else None
    v = float(np.sqrt(chi2 / (table.sum() * (min(table.shape) - 1))))
    flagged = bool(p < DISPARITY_P and ratio is not None and ratio < FOUR_FIFTHS)
    return Disparity(measure, float(chi2), float(p), int(dof), v, ratio, flagged)


@dataclass(frozen=True)
class Parity:
    """Personalisation and offer parity across the groups of one dimension."""

    dimension: str
    groups: pl.DataFrame  # grp, decisions, personalised(_rate), offer_eligible, offered, offer_rate
    personalisation: Disparity
    offers: Disparity


def _parity(
    filters: Filters, dimension: str, offer_variants: Sequence[str], offer_placements: Sequence[str]
) -> Statement:
    if dimension not in DIMENSIONS:
        raise ValueError(f"parity dimension must be one of {DIMENSIONS}, got {dimension!r}")
    return Statement(
        _PARITY_SQL.format(dimension=f"coalesce(d.{dimension}, 'unknown')"),
        {**filters.params(), "offer_variants": list(offer_variants), "offer_placements": list(offer_placements)},
    )


PARITY = Query(
    "compliance.parity",
    "Per group of a dimension (segment, device, region): decisions, personalised decisions, decisions on a "
    "placement that can show an offer and those that showed one.",
    _parity,
    example={
        "dimension": "segment",
        "offer_variants": ("discount_10", "discount_15"),
        "offer_placements": ("cart_recovery_offer",),
    },
    metrics=("coverage",),
    method=f"A chi-square test of independence between group and outcome (personalised or not; offered or not); "
    f"a disparity when p < {significant(DISPARITY_P)} and the lowest group's rate is under "
    f"{percent(FOUR_FIFTHS, 0)} of the "
    "highest's (the four-fifths rule). Cramér's V gives the size of the difference.",
)


def parity(
    wh: Warehouse, filters: Filters, dimension: str, offer_variants: Sequence[str], offer_placements: Sequence[str]
) -> Parity:
    """Per group of `dimension`, what the engine chose to show: the share of decisions that were
    personalised (`momento.kpis.PERSONALISED`: a policy chose, no fallback, no error) and, on placements
    that can show an offer, the share that showed one; each with a chi-square test for disparity.

    Measured on decisions, the engine's own choices: whether a chosen experience is then seen
    depends on the visitor (and joining exposures costs seconds at 10M events)."""
    frame = PARITY.run(
        wh, filters, dimension=dimension, offer_variants=offer_variants, offer_placements=offer_placements
    )
    frame = frame.with_columns(
        (pl.col("personalised") / pl.col("decisions")).alias("personalised_rate"),
        pl.when(pl.col("offer_eligible") > 0).then(pl.col("offered") / pl.col("offer_eligible")).alias("offer_rate"),
    )
    return Parity(
        dimension=dimension,
        groups=frame,
        personalisation=disparity("personalised", frame["personalised"].to_list(), frame["decisions"].to_list()),
        offers=disparity("offered", frame["offered"].to_list(), frame["offer_eligible"].to_list()),
    )


@dataclass(frozen=True)
class AuditQuery:
    """What to look for in the audit trail; None or blank fields match everything."""

    decision_id: str | None = None
    user_id: str | None = None
    reason: str | None = None
    limit: int = 200

    def params(self) -> dict[str, object]:
        clean = {
            k: (v.strip() or None) if isinstance(v, str) else v
            for k, v in (("decision_id", self.decision_id), ("user_id", self.user_id), ("reason", self.reason))
        }
        return {**clean, "limit": max(1, min(int(self.limit), 10_000))}


AUDIT = Query(
    "compliance.audit",
    "The newest decisions matching a decision id prefix, a user id prefix and a reason code.",
    lambda filters, search: Statement(_AUDIT_SQL, {**filters.params(), **search.params()}),
    example={"search": AuditQuery()},
    method="Rows as logged; each reason code is explained in words.",
)


def audit(wh: Warehouse, filters: Filters, query: AuditQuery) -> pl.DataFrame:
    """The newest decisions matching `query` (ids match by prefix, the reason exactly against
    reasons, fallback reason or error code), each with its reasons explained in words."""
    frame = AUDIT.run(wh, filters, search=query)
    return frame.with_columns(
        pl.col("reasons")
        .map_elements(lambda codes: " ".join(sentence(c) for c in codes), return_dtype=pl.String)
        .alias("explanation")
    )


ERASURES = Query(
    "compliance.erasures",
    "The erasure log, newest first.",
    lambda filters: Statement(_ERASURES_SQL, {}),
    method="Rows as logged (subjects only as hashes).",
)


def erasures(wh: Warehouse) -> pl.DataFrame:
    """The erasure log, newest first (subjects only as hashes)."""
    return ERASURES.run(wh, Filters())
