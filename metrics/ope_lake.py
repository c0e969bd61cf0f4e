"""One adaptive experience's logged bandit feedback, read from the warehouse for the Policy lab.

The rows are the decisions a policy chose (their `context` is logged: see `momento.lake.schema`),
status ok and no fallback, each with its logged propensity, its logged distribution over the
experience's variants (when logged) and the decision-level reward of a catalogue outcome: the
events carrying the decision's id within `window_hours` after it (a click, a conversion, the
revenue of its orders). Decisions younger than the window are left out: their reward is not
known yet.

Before the log is built, the raw propensities go through the integrity check
(`metrics.ope_data.check_propensities`); rows with a problem are counted, shown and left out,
so one bad row never stops a page.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from metrics.filters import Filters
from metrics.ope_data import (
    PROPENSITY_FLOOR,
    SUM_TOLERANCE,
    BanditLog,
    PropensityIntegrity,
    check_propensities,
    propensity_problems,
)
from metrics.sql.query import Query, Statement
from momento.kpis import CLICK_EVENTS
from momento.lake.bandit_import import JOURNEY as IMPORTED_JOURNEY
from momento.lake.warehouse import Warehouse
from momento.sql import sql_list


@dataclass(frozen=True)
class Reward:
    """A decision-level outcome: `value` is SQL over the events `e` of one decision, aggregated."""

    name: str
    label: str
    value: str
    rate: bool
    """A share (0/1 per decision), shown as a percentage; otherwise money."""
    verb: str
    """How the lab's sentence says a policy would have done ("would have converted 6.1%")."""


REWARDS: dict[str, Reward] = {
    r.name: r
    for r in (
        Reward(
            "click",
            "click-through",
            f"max(CASE WHEN e.event_type IN ({sql_list(CLICK_EVENTS)}) THEN 1 ELSE 0 END)",
            True,
            "drawn clicks on",
        ),
        Reward(
            "conversion", "conversion", "max(CASE WHEN e.event_type = 'purchase' THEN 1 ELSE 0 END)", True, "converted"
        ),
        Reward(
            "revenue",
            "revenue (BRL)",
            "sum(CASE WHEN e.event_type = 'purchase' THEN coalesce(e.revenue, 0) ELSE 0 END)",
            False,
            "earned per decision",
        ),
    )
}
"""Rewards the lab can judge a policy on (the catalogue's click, conversion and revenue, per decision)."""

DEFAULT_WINDOW_HOURS = 24.0

_WHERE = Filters.where("d", channel=True, segment=True, journey=True)

_LOG_SQL = """
WITH logged AS (
    SELECT d.decision_id, d.ts, d.variant, d.policy, d.propensity, d.action_probabilities, d.context,
           d.context_version
    FROM decisions d
    WHERE {where} AND d.experience_id = $experience_id AND d.context IS NOT NULL
      AND d.status = 'ok' AND NOT d.fallback
      AND d.ts <= (SELECT max(ts) FROM decisions) - to_seconds($window_hours * 3600.0)
),
rewards AS (
    SELECT l.decision_id, {value} AS reward
    FROM logged l JOIN events e ON e.decision_id = l.decision_id
    WHERE e.ts >= l.ts AND e.ts < l.ts + to_seconds($window_hours * 3600.0)
    GROUP BY l.decision_id
)
SELECT l.*, coalesce(r.reward, 0)::DOUBLE AS reward
FROM logged l LEFT JOIN rewards r USING (decision_id)
ORDER BY l.ts, l.decision_id
"""


def _log(filters: Filters, experience_id: str, reward: str, window_hours: float) -> Statement:
    if reward not in REWARDS:
        raise ValueError(f"unknown reward {reward!r} (known: {', '.join(REWARDS)})")
    sql = _LOG_SQL.format(where=_WHERE, value=REWARDS[reward].value)
    return Statement(sql, {**filters.params(), "experience_id": experience_id, "window_hours": float(window_hours)})


LOG = Query(
    "ope.bandit_log",
    "One experience's decisions a policy chose, with their logged distributions, context and the decision's reward "
    "within the window.",
    _log,
    example={"experience_id": "home_showcase", "reward": "conversion", "window_hours": DEFAULT_WINDOW_HOURS},
    method="Off-policy evaluation (metrics/ope.py): IPS, self-normalised IPS, direct method and doubly robust with "
    "an outcome model cross-fitted over 5 time folds; 95% intervals from each estimator's influence function; "
    "effective sample size, largest weight, mean weight and support check before any verdict.",
)


_IMPORTED_SQL = f"""
SELECT d.experience_id, list(DISTINCT d.variant ORDER BY d.variant) AS variants, count(*) AS decisions
FROM decisions d
WHERE {_WHERE} AND d.journey = $journey
GROUP BY d.experience_id
ORDER BY d.experience_id
"""


def _imported(filters: Filters) -> Statement:
    return Statement(_IMPORTED_SQL, {**filters.params(), "journey": IMPORTED_JOURNEY})


IMPORTED = Query(
    "ope.imported_campaigns",
    "Campaigns imported from another system's bandit logs (`momento import bandit-log`), with their variants.",
    _imported,
    method="Listed so the Policy lab can evaluate candidates on them too.",
)


def imported_campaigns(wh: Warehouse, filters: Filters) -> dict[str, tuple[str, ...]]:
    """Imported campaign -> its variants (the items its decisions showed), for the filters."""
    frame = IMPORTED.run(wh, filters)
    return {row["experience_id"]: tuple(row["variants"]) for row in frame.iter_rows(named=True)}


# The rules of `metrics.ope_data.check_propensities`, counted in the warehouse: the Governance
# page checks every policy decision of the history, which read into Python would cost memory and
# time in proportion to it. Per row, `probs` is the logged distribution in the declared actions'
# order (as `load_log` builds it: an action the distribution does not name has 0, an entry whose
# p is missing is NaN, the last entry of a variant counts; a probability given to a variant
# outside the actions is lost); `a` the chosen action's index (-1: not declared). DuckDB orders
# NaN above every number, so each comparison below is false for NaN as it is in numpy.
_INTEGRITY_SQL = f"""
WITH declared AS (
  SELECT unnest($experience_ids) AS experience_id, unnest($experience_actions) AS actions
), logged AS (
  SELECT x.experience_id, d.propensity AS p, coalesce(list_position(x.actions, d.variant), 0) - 1 AS a,
         CASE WHEN d.action_probabilities IS NOT NULL THEN list_transform(x.actions, lambda v:
           CASE WHEN len(list_filter(d.action_probabilities, lambda e: e.variant = v)) = 0 THEN 0.0
                ELSE coalesce(list_filter(d.action_probabilities, lambda e: e.variant = v)[-1].p, 'NaN'::DOUBLE)
           END) END AS probs
  FROM decisions d JOIN declared x ON d.experience_id = x.experience_id
  WHERE {_WHERE} AND d.context IS NOT NULL AND d.status = 'ok' AND NOT d.fallback
), known AS (
  SELECT *, probs IS NOT NULL AND NOT list_bool_and(list_transform(probs, lambda q: isnan(q))) AS known,
         a >= 0 AS inside,
         list_bool_or(list_transform(probs, lambda q: NOT (q >= 0 AND q <= 1))) AS bad_entry
  FROM logged
), flagged AS (
  SELECT experience_id, known, probs[CASE WHEN inside THEN a + 1 ELSE 1 END] AS chosen, p, inside,
         NOT coalesce(p >= 0 AND p <= 1, false) OR NOT inside OR (known AND bad_entry) AS malformed,
         known AND NOT bad_entry AND abs(list_sum(probs) - 1.0) > $tolerance AS summing,
         CASE WHEN known THEN list_bool_or(list_transform(probs, lambda q: q > 0 AND q < $floor))
              ELSE coalesce(p > 0 AND p < $floor, false) END AS below
  FROM known
), counted AS (
  SELECT *, coalesce(p = 0, false) OR (known AND inside AND chosen = 0) AS zero,
         known AND inside AND NOT malformed AND abs(chosen - p) > $tolerance AS mismatched
  FROM flagged
)
SELECT experience_id, count(*) AS rows, count(*) FILTER (WHERE NOT known) AS unknown,
       count(*) FILTER (WHERE malformed) AS malformed, count(*) FILTER (WHERE summing) AS not_summing_to_one,
       count(*) FILTER (WHERE zero) AS chosen_zero, count(*) FILTER (WHERE mismatched) AS mismatched,
       count(*) FILTER (WHERE below) AS below_floor,
       count(*) FILTER (WHERE malformed OR summing OR zero OR mismatched) AS problems,
       CAST($floor AS DOUBLE) AS floor
FROM counted
GROUP BY experience_id
ORDER BY list_position($experience_ids, experience_id)
"""

Experiences = tuple[tuple[str, tuple[str, ...]], ...]
"""(experience id, its declared variants in order), for each experience checked."""


def _integrity(filters: Filters, experiences: Experiences) -> Statement:
    return Statement(
        _INTEGRITY_SQL,
        {
            **filters.params(),
            "experience_ids": tuple(experience_id for experience_id, _ in experiences),
            "experience_actions": tuple(tuple(actions) for _, actions in experiences),
            "tolerance": SUM_TOLERANCE,
            "floor": PROPENSITY_FLOOR,
        },
    )


INTEGRITY = Query(
    "ope.propensity_integrity",
    "Per experience, the decisions a policy chose and those whose logged propensities cannot be trusted.",
    _integrity,
    example={"experiences": (("home_showcase", ("editorial", "style_affinity", "price_band_match", "gift_guide")),)},
    method="Per experience, the rows whose distribution does not sum to 1 (within 1e-6), whose chosen "
    "variant has probability 0, whose propensity differs from its distribution's entry, or that "
    "are malformed; and the rows with a probability below the 1% floor "
    "(the rules of metrics.ope_data.check_propensities, counted in the warehouse).",
)


def integrity_by_experience(wh: Warehouse, filters: Filters, experiences: Experiences) -> pl.DataFrame:
    """One row per experience (id, its variants) with decisions: the integrity counts of its logged
    propensities (as `metrics.ope_data.check_propensities` counts them), in the order given."""
    return INTEGRITY.run(wh, filters, experiences=experiences)


@dataclass(frozen=True, eq=False)
class LoadedLog:
    """What the warehouse holds for one experience: the integrity counts over every row read,
    and the bandit log built from the rows without a problem (None when none is left).

    `policies` counts rows per logging policy name; `other_context` the rows left out because their
    context is in another feature set than the log's (`context_version`)."""

    rows: int
    integrity: PropensityIntegrity
    log: BanditLog | None
    context_version: str | None
    other_context: int
    policies: dict[str, int]


def load_log(
    wh: Warehouse,
    filters: Filters,
    experience_id: str,
    actions: tuple[str, ...],
    reward: str = "conversion",
    window_hours: float = DEFAULT_WINDOW_HOURS,
) -> LoadedLog:
    """The experience's logged bandit feedback over `actions` (its variants, in order)."""
    frame = LOG.run(wh, filters, experience_id=experience_id, reward=reward, window_hours=window_hours)
    return build_log(frame, actions)


def build_log(frame: pl.DataFrame, actions: tuple[str, ...]) -> LoadedLog:
    """`LoadedLog` from the rows of `LOG` (see `load_log`)."""
    policies = dict(Counter(frame["policy"].to_list())) if frame.height else {}
    versions = Counter(v for v in frame["context_version"].to_list() if v is not None) if frame.height else Counter()
    version = versions.most_common(1)[0][0] if versions else None
    same = frame.filter(pl.col("context_version") == version) if version is not None else frame.clear()
    index = {name: i for i, name in enumerate(actions)}
    action = np.array([index.get(v, -1) for v in same["variant"].to_list()], dtype=np.int64)
    propensity = same["propensity"].to_numpy().astype(np.float64)
    distribution = _distributions(same["action_probabilities"], index) if same.height else np.zeros((0, len(actions)))
    integrity = check_propensities(action, propensity, distribution)
    ok = ~propensity_problems(action, propensity, distribution)
    log = None
    if ok.any():
        rows = np.flatnonzero(ok)
        context = np.array(same["context"].to_list(), dtype=np.float64)[rows]  # rows is not empty: ok.any()
        log = BanditLog(
            actions=actions,
            action=action[rows],
            propensity=propensity[rows],
            reward=same["reward"].to_numpy().astype(np.float64)[rows],
            time=same["ts"].dt.epoch("us").to_numpy()[rows],
            context=context,
            logging=distribution[rows],
            policy=_policy_name(policies),
        )
    return LoadedLog(frame.height, integrity, log, version, frame.height - same.height, policies)


def _distributions(column: pl.Series, index: dict[str, int]) -> np.ndarray:
    """(n, K) logged distributions in the actions' order; a NaN row where none was logged. A
    probability given to a variant outside the actions is lost, so that row then does not sum to 1."""
    out = np.full((len(column), len(index)), np.nan)
    present = column.is_not_null().to_numpy()
    out[present] = 0.0
    exploded = pl.DataFrame({"row": np.arange(len(column)), "d": column}).filter(pl.col("d").is_not_null())
    exploded = exploded.explode("d").unnest("d").drop_nulls("variant")
    col = np.array([index.get(v, -1) for v in exploded["variant"].to_list()], dtype=np.int64)
    known = col >= 0
    out[exploded["row"].to_numpy()[known], col[known]] = exploded["p"].to_numpy()[known]
    return out


def _policy_name(policies: dict[str, Any]) -> str:
    """The logging policy in sentences: "the rules", "the propensity model", or the names."""
    words = {"rules": "the rules", "thompson": "the bandit", "propensity": "the propensity model"}
    names = sorted(policies, key=lambda p: -policies[p])
    return " + ".join(words.get(p, p) for p in names) or "logging policy"
