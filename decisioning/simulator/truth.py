"""Ground truth of a backfill: the true effect of every experiment, as `metrics/` measures it.

For each experiment the population is the users with a logged exposure (holdout excluded) and
outcomes count from the user's first exposure to the end of the backfill, as `momento.kpis`
counts them. For every such user and every arm, the model's *expected* outcomes are computed
exactly from the probabilities the simulation drew with: each cart's chance of an order (in
the session, or recovered by a message after it was abandoned), its expected revenue and net
margin, and the expected clicks per exposure, with the experiment's variant averaged over the
distribution that arm would have served (the fixed variant, or the policy's probabilities,
after governance). The true effect is the sample average treatment effect: the mean over the
population of (outcome under the arm) minus (outcome under control), and its relative form.

It conditions on everything the arm cannot change: sessions, pages, carts, what was seen,
message opens, returns, consent and governance state, the other experiments' choices. For the
recovery experiment the sessions' own orders cannot depend on it and are taken as realised.
Metrics as in `momento.kpis`: conversion_rate (share of users with an order), revenue_per_user
(order revenue), margin_per_user (order margin net of discounts, minus returned orders'
margin), aov and ctr (ratios of expected sums). With the `srm_bug` incident the measured
population is itself biased: the truth is then over the users that were measured.

Also: the incremental revenue and margin of personalisation over serving every default, for
the non-holdout users the engine reached. Stored with the lake by `momento.lake.ground_truth`.

For off-policy evaluation, per logged decision (`decision_rewards`): the expected reward had it
served each of the experience's variants, all else as it happened. A decision's reward is what
the lake credits to it by `decision_id`: a click (`momento.kpis.CLICK_EVENTS`), an order
(conversion, 0 or 1) or the order's revenue, counted when it happens by the backfill's end
(and, given a window, within that many seconds of the decision). A placement in a session is
clicked if seen, and is credited with the session's order if it was the last placement seen (the
order's chance then depends on every variant seen, the others held as served); a recovery
message is clicked and recovers an order only if opened. The TRUE value of a candidate policy
(`policy_value`) is the expected reward under its action distribution, averaged over the logged
decisions: mean over i of sum over k of pi(k | i) * E[reward_i | variant k].
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

from decisioning.simulator import behaviour as bh
from decisioning.simulator.rows import (
    CLICK_DELAY_US,
    RECOVERY_CLICK_DELAY_US,
    RECOVERY_ORDER_DELAY_US,
    decision_prefix,
)

if TYPE_CHECKING:
    from decisioning.simulator.simulation import Ledger, Simulation
    from momento.scenario import Experience

RECOVERY = "cart_recovery_offer"
_NEVER = np.iinfo(np.int64).max


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat()


def _sum_by(index: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per-user sums of (rows, arms) values, as floats (even over no rows, where `np.bincount`
    gives integer zeros whatever the weights)."""
    sums = [np.bincount(index, weights=values[:, a], minlength=n) for a in range(values.shape[1])]
    return np.stack(sums, axis=1).astype(np.float64, copy=False)


def _onehot(k: int, index: int) -> np.ndarray:
    return cast(np.ndarray, np.eye(k)[index])


class _Columns(dict[str, np.ndarray]):
    """A ledger's columns, each put together when first read (a ledger holds more than the
    truth reads)."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__()
        self.ledger = ledger

    def __missing__(self, name: str) -> np.ndarray:
        column = self[name] = self.ledger.column(name)
        return column


class _Placement:
    """One placement's ledger as arrays, and where each session's decision is in it."""

    def __init__(self, sim: Simulation, placement: str) -> None:
        self.placement = placement
        self.experience: Experience = sim.s.experience_by_placement[placement]
        self.experiment = sim.s.experiment_by_experience[self.experience.id]
        ledger: Ledger = sim.ledgers[placement]
        self.k, self.n_arms = len(self.experience.variants), len(self.experiment.arms)
        self.default = self.experience.variants.index(self.experience.default_variant)
        self.col = _Columns(ledger)
        self.dists = ledger.dists(self.n_arms, self.k)
        self.n_sessions = len(sim.plan["ts"])
        self.sim = sim

    @property
    def empty(self) -> bool:
        return not self.col.ledger.parts

    def rows_of(self, sessions: np.ndarray, logged_only: bool) -> np.ndarray:
        """Each session's row here (-1: none); a session has at most one per placement."""
        rows = np.full(self.n_sessions, -1, dtype=np.int64)
        if not self.empty:
            keep = self.col["logged"] if logged_only else np.ones(len(self.col["session"]), dtype=bool)
            rows[self.col["session"][keep]] = np.flatnonzero(keep)
        return cast(np.ndarray, rows[sessions])

    def multipliers(self, rows: np.ndarray) -> np.ndarray:
        """Every variant's true effects for the users of `rows`: (n, k, 3)."""
        return cast(np.ndarray, self.sim.effects[self.placement][self.sim.unit_person[self.col["unit"][rows]]])

    def realised(self, rows: np.ndarray) -> np.ndarray:
        """The distribution each decision was actually served from (holdout: the default)."""
        dist = self.dists[rows, self.col["arm"][rows]]
        return np.where(self.col["holdout"][rows][:, None], _onehot(self.k, self.default)[None, :], dist)


class _Experiment:
    """Expected per-user outcomes of one experiment's population under each of its arms."""

    def __init__(self, sim: Simulation, placement: str) -> None:
        self.sim, self.here = sim, _Placement(sim, placement)
        self.recovery = self.here if placement == RECOVERY else _Placement(sim, RECOVERY)
        self.own_recovery = placement == RECOVERY

    def population(self) -> tuple[np.ndarray, np.ndarray]:
        """Units with a measured exposure (not holdout) and each one's first exposure time."""
        c = self.here.col
        exposed = c["exposed"] & ~c["holdout"] & (c["exposure_ts"] <= self.sim.end_us)
        order = np.argsort(c["exposure_ts"][exposed], kind="stable")
        units, index = np.unique(c["unit"][exposed][order], return_index=True)
        return units, c["exposure_ts"][exposed][order][index]

    def sums(self) -> dict[str, Any]:
        """The population's size (in all and per assigned arm), its measured exposures and, per
        arm, the sums over its users of the expected outcomes: additive over disjoint
        populations (the shards of a streamed backfill), `_outcomes` turns them into means."""
        sim, plan = self.sim, self.sim.plan
        arms = self.here.n_arms
        none = {
            "users": 0,
            "users_by_arm": np.zeros(arms, dtype=np.int64),
            "exposures": 0,
            "sums": {name: np.zeros(arms) for name in ("converted", "revenue", "margin", "orders", "clicks")},
        }
        if self.here.empty:
            return none
        units, first = self.population()
        n = units.size
        if n == 0:
            return none
        member = np.full(len(sim.unit_ids), -1, dtype=np.int64)
        member[units] = np.arange(n)
        start = np.full(len(sim.unit_ids), _NEVER, dtype=np.int64)
        start[units] = first
        sessions = np.flatnonzero(plan["cart"] & (member[plan["unit"]] >= 0))
        t0 = start[plan["unit"][sessions]]
        d, d_revenue, d_ts = self._direct(sessions)
        r, r_revenue, r_margin, r_ts = self._recovered(sessions)
        d_in = ((d_ts >= t0) & (d_ts <= sim.end_us))[:, None]
        r_in = ((r_ts >= t0) & (r_ts <= sim.end_us))[:, None]
        kept_d = 1.0 - self._returned(sessions, d_ts)[:, None]
        kept_r = 1.0 - self._returned(sessions, r_ts)[:, None]
        q = d * d_in + (1 - d) * r * r_in
        revenue = d_revenue * d_in + (1 - d) * r_revenue * r_in
        margin = d_revenue * self.sim.b.margin_rate * kept_d * d_in + (1 - d) * r_margin * kept_r * r_in
        idx = member[plan["unit"][sessions]]
        no_order = np.exp(_sum_by(idx, np.log1p(-np.minimum(q, 1 - 1e-15)), n))
        orders, revenue, margin = _sum_by(idx, q, n), _sum_by(idx, revenue, n), _sum_by(idx, margin, n)
        margin -= self._earlier_returns(member, start, n)[:, None]
        clicks, exposures = self._clicks(member, n)
        assigned = sim.arm_index[self.here.experiment.id][units]
        return {
            "users": int(n),
            "users_by_arm": np.bincount(assigned, minlength=arms),
            "exposures": int(exposures.sum()),
            "sums": {
                "converted": (1 - no_order).sum(axis=0),
                "revenue": revenue.sum(axis=0),
                "margin": margin.sum(axis=0),
                "orders": orders.sum(axis=0),
                "clicks": clicks.sum(axis=0),
            },
        }

    def _direct(self, sessions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per arm: each cart's chance of an order in its session and the expected revenue;
        and when that order is (or would be) placed."""
        sim, plan, b = self.sim, self.sim.plan, self.sim.b
        arms = self.here.n_arms
        ts = plan["ts"][sessions] + plan["end_us"][sessions] + plan["checkout_us"][sessions]
        if self.own_recovery:  # a session's own order cannot depend on the later message
            bought = sim.purchased[sessions].astype(np.float64)
            revenue = np.where(sim.purchased[sessions], sim.revenue[sessions], 0.0)
            return np.repeat(bought[:, None], arms, 1), np.repeat(revenue[:, None], arms, 1), ts
        base, M = plan["base"][sessions], sim.multiplier[sessions]
        d = np.repeat(bh.purchase_given_cart(b, base, M[:, 1])[:, None], arms, 1)
        revenue = d * bh.order_value_mean(b, M[:, 2])[:, None]
        rows = self.here.rows_of(sessions, logged_only=True)
        seen = rows >= 0
        seen[seen] = self.here.col["seen"][rows[seen]]
        if seen.any():
            r = rows[seen]
            m = self.here.multipliers(r)  # (n, k, 3)
            others = M[seen] / m[np.arange(r.size), self.here.col["variant"][r]]  # the other placements' effects
            p = bh.purchase_given_cart(b, base[seen][:, None], others[:, None, 1] * m[:, :, 1])
            value = bh.order_value_mean(b, others[:, None, 2] * m[:, :, 2])
            d[seen] = np.einsum("nak,nk->na", self.here.dists[r], p)
            revenue[seen] = np.einsum("nak,nk->na", self.here.dists[r], p * value)
        return d, revenue, ts

    def _recovered(self, sessions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per arm: the chance that the recovery message for an abandoned cart brings an order,
        its expected revenue and margin; and when that order would be (never: no message)."""
        sim, b, rec = self.sim, self.sim.b, self.recovery
        arms, n = self.here.n_arms, sessions.size
        chance, revenue, margin = np.zeros((n, arms)), np.zeros((n, arms)), np.zeros((n, arms))
        ts = np.full(n, _NEVER, dtype=np.int64)
        # the experiment's own messages were only sent for abandoned carts (the logged rows);
        # for the others, a cart bought in the session still has the message it would have had
        rows = rec.rows_of(sessions, logged_only=self.own_recovery)
        has = rows >= 0
        if not has.any():
            return chance, revenue, margin, ts
        r = rows[has]
        opened = sim.plan["u_open"][rec.col["session"][r]] < bh.open_probability(b, rec.col["channel"][r])
        m = rec.multipliers(r)
        p = bh.recovery_purchase_probability(m[:, :, 1])
        value = bh.order_value_mean(b, m[:, :, 2])
        discount = bh.discounts(rec.experience)
        share = (b.margin_rate - discount) / (1.0 - discount)
        dist = rec.dists[r] if self.own_recovery else np.repeat(rec.realised(r)[:, None, :], arms, 1)
        chance[has] = opened[:, None] * np.einsum("nak,nk->na", dist, p)
        revenue[has] = opened[:, None] * np.einsum("nak,nk->na", dist, p * value)
        margin[has] = opened[:, None] * np.einsum("nak,nk->na", dist, p * value * share[None, :])
        ts[has] = np.where(opened, rec.col["exposure_ts"][r] + RECOVERY_ORDER_DELAY_US, _NEVER)
        return chance, revenue, margin, ts

    def _returned(self, sessions: np.ndarray, order_ts: np.ndarray) -> np.ndarray:
        """Whether an order of the session placed at `order_ts` comes back before the end."""
        plan = self.sim.plan
        late = order_ts.astype(np.float64) + plan["return_us"][sessions]
        return cast(np.ndarray, (plan["u_return"][sessions] < self.sim.b.return_rate) & (late <= self.sim.end_us))

    def _earlier_returns(self, member: np.ndarray, start: np.ndarray, n: int) -> np.ndarray:
        """Margin of realised orders placed before the user's first exposure but returned after
        it: the metric subtracts them, whatever the arm."""
        sim, plan = self.sim, self.sim.plan
        direct = np.flatnonzero(sim.purchased & (member[plan["unit"]] >= 0))
        orders = [
            (
                direct,
                plan["ts"][direct] + plan["end_us"][direct] + plan["checkout_us"][direct],
                sim.revenue[direct] * sim.b.margin_rate,
            )
        ]
        if not self.recovery.empty:
            c = self.recovery.col
            bought = np.flatnonzero(c["bought"] & (member[c["unit"]] >= 0))
            margin, _ = bh.margin_and_discount(sim.b, c["revenue"][bought], c["discount"][bought])
            orders.append((c["session"][bought], c["exposure_ts"][bought] + RECOVERY_ORDER_DELAY_US, margin))
        total = np.zeros(n)
        for sessions, ts, margin in orders:
            unit = plan["unit"][sessions]
            back = ts + plan["return_us"][sessions]
            hit = self._returned(sessions, ts) & (ts < start[unit]) & (back >= start[unit])
            total += np.bincount(member[unit[hit]], weights=margin[hit], minlength=n)
        return total

    def _clicks(self, member: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Expected clicks per user under each arm on this placement's measured exposures."""
        c, b = self.here.col, self.sim.b
        exposed = c["exposed"] & ~c["holdout"] & (c["exposure_ts"] <= self.sim.end_us) & (member[c["unit"]] >= 0)
        r = np.flatnonzero(exposed)
        m = self.here.multipliers(r)
        p = bh.recovery_click_probability(b, m) if self.own_recovery else bh.click_probability(b, m[:, :, 0])
        idx = member[c["unit"][r]]
        return _sum_by(idx, np.einsum("nak,nk->na", self.here.dists[r], p), n), np.bincount(idx, minlength=n)


def _outcomes(sums: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """An experiment's truth from its `_Experiment.sums`: per-user means and ratios of sums."""
    n = sums["users"]
    if n == 0:
        return {"users": 0}
    s = sums["sums"]
    means = {
        "conversion_rate": s["converted"] / n,
        "revenue_per_user": s["revenue"] / n,
        "margin_per_user": s["margin"] / n,
        "aov": s["revenue"] / np.maximum(s["orders"], 1e-12),
        "ctr": s["clicks"] / max(sums["exposures"], 1),
    }
    return {
        "users": int(n),
        "users_by_arm": {arm: int(sums["users_by_arm"][a]) for a, arm in enumerate(names)},
        "exposures": int(sums["exposures"]),
        "metrics": {name: _effects(value, names) for name, value in means.items()},
    }


def _effects(value: np.ndarray, arms: list[str]) -> dict[str, Any]:
    control = float(value[0])
    return {
        "arms": {arm: float(value[a]) for a, arm in enumerate(arms)},
        "effects": {
            arm: {
                "absolute": float(value[a] - control),
                "relative": float(value[a] / control - 1.0) if control else None,
            }
            for a, arm in enumerate(arms)
            if a > 0
        },
    }


def _incremental(sim: Simulation) -> dict[str, Any]:
    """Expected revenue and net margin that the variants actually shown added over serving every
    default, summed over the non-holdout users the engine reached (and their number)."""
    plan, b = sim.plan, sim.b
    reached = np.zeros(len(sim.unit_ids), dtype=bool)
    for ledger in sim.ledgers.values():
        if ledger.parts:
            reached[ledger.column("unit")[ledger.column("logged") & ~ledger.column("holdout")]] = True
    sessions = np.flatnonzero(plan["cart"] & plan["campaign"] & reached[plan["unit"]])
    base, M = plan["base"][sessions], sim.multiplier[sessions]
    d_actual, d_default = bh.purchase_given_cart(b, base, M[:, 1]), bh.purchase_given_cart(b, base, np.ones_like(base))
    order_ts = plan["ts"][sessions] + plan["end_us"][sessions] + plan["checkout_us"][sessions]
    kept = ~((plan["u_return"][sessions] < b.return_rate) & (order_ts + plan["return_us"][sessions] <= sim.end_us))
    direct = d_actual * bh.order_value_mean(b, M[:, 2]) - d_default * bh.order_value_mean(b, np.ones_like(base))
    direct = direct * (order_ts <= sim.end_us)
    revenue, margin = float(direct.sum()), float((direct * b.margin_rate * kept).sum())
    rec = _Placement(sim, RECOVERY)
    rows = rec.rows_of(sessions, logged_only=True)
    has = rows >= 0
    if has.any():
        r = rows[has]
        m = rec.multipliers(r)
        opened = plan["u_open"][rec.col["session"][r]] < bh.open_probability(b, rec.col["channel"][r])
        rec_ts = rec.col["exposure_ts"][r] + RECOVERY_ORDER_DELAY_US
        weight = opened & (rec_ts <= sim.end_us)
        s = sessions[has]
        kept_r = ~((plan["u_return"][s] < b.return_rate) & (rec_ts + plan["return_us"][s] <= sim.end_us))
        discount = bh.discounts(rec.experience)
        share = (b.margin_rate - discount) / (1.0 - discount)
        n = np.arange(r.size)

        def expected(variant: np.ndarray, abandon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            value = (
                abandon * bh.recovery_purchase_probability(m[n, variant, 1]) * bh.order_value_mean(b, m[n, variant, 2])
            )
            return value * weight, value * share[variant] * weight * kept_r

        actual = expected(rec.col["variant"][r], 1 - d_actual[has])
        default = expected(np.full(r.size, rec.default), 1 - d_default[has])
        revenue += float((actual[0] - default[0]).sum())
        margin += float((actual[1] - default[1]).sum())
    return {"revenue": revenue, "margin": margin, "users_reached": int(reached.sum())}


def tally(sim: Simulation) -> dict[str, Any]:
    """What the ground truth sums over customers, for a finished simulation: counts and sums
    only, so the tallies of the shards of a streamed backfill (disjoint customers, one shared
    calendar) add up (`add`) to the whole population's, and `document` gives the same truth."""
    decided = np.zeros(len(sim.unit_ids), dtype=bool)
    for ledger in sim.ledgers.values():
        if ledger.parts:
            decided[ledger.column("unit")[ledger.column("logged")]] = True
    return {
        "users": sim.population.size,
        "sessions": sim.sessions,
        "decided": int(decided.sum()),
        "decided_holdout": int(sim.holdout[decided].sum()),
        "consenting": int(sim.population.column("consent").sum()),
        "experiments": {
            sim.deciders[placement].experiment.id: _Experiment(sim, placement).sums() for placement in sim.ledgers
        },
        "incremental": _incremental(sim),
    }


def add(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The sum of two tallies (key by key)."""
    return {key: add(value, b[key]) if isinstance(value, dict) else value + b[key] for key, value in a.items()}


def document(sim: Simulation, total: dict[str, Any]) -> dict[str, Any]:
    """The ground-truth document from a tally; `sim` (any shard) gives the calendar and scenario."""
    s = sim.s
    experiments = {}
    for placement in sim.ledgers:
        experience = s.experience_by_placement[placement]
        experiment = s.experiment_by_experience[experience.id]
        experiments[experiment.id] = {
            **_outcomes(total["experiments"][experiment.id], [arm.name for arm in experiment.arms]),
            "placement": placement,
            "experience_id": experience.id,
            "primary_metric": experiment.primary_metric,
            "secondary_metrics": list(experiment.secondary_metrics),
            "allocation": experiment.shares,
        }
    incremental, reached = total["incremental"], total["incremental"]["users_reached"]
    return {
        "scenario": s.business.name,
        "currency": s.business.currency,
        "start": _iso(sim.start_us),
        "end": _iso(sim.end_us),
        "campaign_start": _iso(sim.campaign_start_us),
        "users": total["users"],
        "sessions": total["sessions"],
        "holdout_share": s.population.holdout_share,
        "holdout_share_realised": total["decided_holdout"] / total["decided"] if total["decided"] else None,
        "consent_rate": s.population.consent_rate,
        "consent_rate_realised": total["consenting"] / total["users"],
        "incidents": [{"name": w.name, "start": _iso(w.start_us), "end": _iso(w.end_us)} for w in sim.windows],
        "experiments": experiments,
        "incremental": {**incremental, "revenue_per_user": incremental["revenue"] / reached if reached else 0.0},
    }


def ground_truth(sim: Simulation) -> dict[str, Any]:
    """The ground-truth document of a finished simulation (see the module docstring)."""
    return document(sim, tally(sim))


Reward = Literal["click", "conversion", "revenue"]
REWARDS: tuple[Reward, ...] = ("click", "conversion", "revenue")
SUM_TOLERANCE = 1e-6
"""How far from 1 a candidate's probabilities for a decision may sum (rounding, not a mistake)."""


@dataclass(frozen=True)
class DecisionRewards:
    """An experience's logged decisions (those in the lake), with each one's expected reward had
    it served each variant (see the module docstring)."""

    decision_id: np.ndarray  # (n,) the decisions' ids in the lake
    variants: tuple[str, ...]  # the experience's variants: the columns of `expected`
    expected: np.ndarray  # (n, k)


def decision_rewards(
    sim: Simulation, placement: str, reward: Reward, window_seconds: float | None = None
) -> DecisionRewards:
    """Per logged decision of `placement`: the expected `reward` under each variant, counting what
    happens by the backfill's end and, given `window_seconds`, within that long of the decision."""
    if reward not in REWARDS:
        raise ValueError(f"reward must be one of {', '.join(REWARDS)}, got {reward!r}")
    here = _Placement(sim, placement)
    k = here.k
    if here.empty:
        return DecisionRewards(np.zeros(0, dtype=object), tuple(here.experience.variants), np.zeros((0, k)))
    c, b, plan = here.col, sim.b, sim.plan
    rows = np.flatnonzero(c["logged"] & (c["ts"] <= sim.end_us))
    ts, sessions, seen = c["ts"][rows], c["session"][rows], c["seen"][rows]
    m = here.multipliers(rows)  # (n, k, 3)
    horizon = np.full(rows.size, sim.end_us, dtype=np.int64)
    if window_seconds is not None:
        horizon = np.minimum(horizon, ts + int(window_seconds * 1e6))
    if placement == RECOVERY:  # a message is clicked, and recovers the cart, only if opened
        at = c["exposure_ts"][rows]
        clicked = seen & (at + RECOVERY_CLICK_DELAY_US <= horizon)
        ordered = seen & (at + RECOVERY_ORDER_DELAY_US <= horizon)
        click, order = bh.recovery_click_probability(b, m), bh.recovery_purchase_probability(m[:, :, 1])
        value = bh.order_value_mean(b, m[:, :, 2])
    else:  # a placement is clicked if seen; the session's order is credited to the last one seen
        number = list(sim.ledgers).index(placement)
        credited = (sim.credited[sessions, 0] == number) & (sim.credited[sessions, 1] == rows)
        others = sim.multiplier[sessions] / m[np.arange(rows.size), c["variant"][rows]]  # the other placements' effects
        order_ts = plan["ts"][sessions] + plan["end_us"][sessions] + plan["checkout_us"][sessions]
        clicked = seen & (ts + CLICK_DELAY_US <= horizon)
        ordered = credited & plan["cart"][sessions] & (order_ts <= horizon)
        click = bh.click_probability(b, m[:, :, 0])
        order = bh.purchase_given_cart(b, plan["base"][sessions][:, None], others[:, None, 1] * m[:, :, 1])
        value = bh.order_value_mean(b, others[:, None, 2] * m[:, :, 2])
    expected = {
        "click": clicked[:, None] * click,
        "conversion": ordered[:, None] * order,
        "revenue": ordered[:, None] * order * value,
    }[reward]
    ids = np.array([f"{decision_prefix(sim, placement)}{row}" for row in rows], dtype=object)
    return DecisionRewards(ids, tuple(here.experience.variants), np.asarray(expected, dtype=np.float64))


def policy_value(rewards: DecisionRewards, probabilities: np.ndarray) -> float:
    """The true value of a candidate policy given as its action probabilities over the variants
    for each logged decision, (n, k) in the order of `rewards`: the mean over the decisions of
    the expected reward under the candidate's distribution."""
    p = np.asarray(probabilities, dtype=np.float64)
    n, k = rewards.expected.shape
    if p.shape != (n, k):
        raise ValueError(f"probabilities must be (decisions, variants) = ({n}, {k}), got {p.shape}")
    if n == 0:
        raise ValueError("probabilities: no logged decisions to average over")
    bad = ~np.isfinite(p).all(axis=1) | (p < 0).any(axis=1) | (np.abs(p.sum(axis=1) - 1.0) > SUM_TOLERANCE)
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"probabilities: row {row} ({rewards.decision_id[row]}) is not a distribution: {p[row]}")
    return float(np.einsum("nk,nk->n", p, rewards.expected).mean())
