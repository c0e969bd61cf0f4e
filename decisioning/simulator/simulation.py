"""The backfill's simulation: sessions planned up front, then an hourly loop of decisions.

Sessions and everything no decision can change are drawn up front (`behaviour.plan_sessions`).
Then time advances an hour at a time: the hour's decision requests go through the service's
own flow on a batch (`batch.ExperienceDecider`: assignment, governance, policies with their
logged propensities), the outcomes follow from the behaviour model, and the policies learn
from the hour's outcomes before the next hour (a batched bandit, so propensities stay exact).
Abandoned carts schedule recovery messages into later hours. The state the service would
keep (consent, purchases today, frequency caps, messages sent) is carried from hour to hour.
Everything is recorded per decision (`Ledger`) for `rows.py` and `truth.py`.
"""

from __future__ import annotations

import functools
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
from tqdm import tqdm

from decisioning.assignment import assign_arms, buckets
from decisioning.features import FEATURE_NAMES, encode_columns
from decisioning.identity import anonymous_unit
from decisioning.policies import make_policy
from decisioning.simulator import behaviour as bh
from decisioning.simulator import incidents as inc
from decisioning.simulator.batch import ExperienceDecider, Requests, Served, arm_labels
from decisioning.simulator.frames import series
from momento.codes import CHANNELS as CHANNEL_NAMES
from momento.codes import Code
from momento.scenario import Scenario

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
CHANNELS = np.array(CHANNEL_NAMES, dtype=object)
STATIC = ("homepage_showcase", "product_cta", "cart_cross_sell")
"""Placements decided inside a session: on the homepage, the first product page, the cart."""
RECOVERY = "cart_recovery_offer"
_NEVER = np.iinfo(np.int64).max
EXPOSURE_DELAY_US = 500_000
"""An in-session placement reaches the screen half a second after its decision."""
SHARD_STREAMS = 1_000
"""Shard s > 0 of a streamed backfill seeds its random streams with [seed, SHARD_STREAMS + s]."""


@dataclass
class Ledger:
    """Per-decision results of the block loop for one placement (`frame()` once done), with
    each decision's variant distribution under every arm (`dists`, for the ground truth; under
    its own arm, the distribution it was drawn from), and the features of the decisions a
    policy chose (`contexts`, one row per decision whose `learned` is true, in order)."""

    parts: list[dict[str, np.ndarray]] = field(default_factory=list)
    dist_parts: list[np.ndarray] = field(default_factory=list)
    context_parts: list[np.ndarray] = field(default_factory=list)
    size: int = 0
    """Decisions recorded so far."""

    def add(self, columns: dict[str, np.ndarray], dists: np.ndarray, contexts: np.ndarray) -> None:
        self.parts.append(columns)
        self.dist_parts.append(dists)
        self.context_parts.append(contexts)
        self.size += len(columns["session"])

    def column(self, name: str) -> np.ndarray:
        return np.concatenate([p[name] for p in self.parts]) if self.parts else np.zeros(0)

    def frame(self) -> pl.DataFrame:
        if not self.parts:
            return pl.DataFrame()
        return pl.DataFrame([series(name, self.column(name)) for name in self.parts[0]])

    def dists(self, arms: int, k: int) -> np.ndarray:
        return np.concatenate(self.dist_parts) if self.dist_parts else np.zeros((0, arms, k))

    def contexts(self) -> np.ndarray:
        return np.concatenate(self.context_parts) if self.context_parts else np.zeros((0, len(FEATURE_NAMES)))


def _offset_s(moment: datetime) -> int:
    """UTC offset (s) of an aware datetime."""
    offset = moment.utcoffset()
    assert offset is not None  # an aware datetime has one
    return int(offset.total_seconds())


def _local_offsets_us(start_us: int, hours: int, tz: str) -> np.ndarray:
    """UTC offset (µs) of the local time zone at each hour from `start_us` (one extra at the end)."""
    zone = ZoneInfo(tz)
    return np.array(
        [
            _offset_s(datetime.fromtimestamp(start_us / 1e6 + h * 3600, tz=UTC).astimezone(zone)) * 1_000_000
            for h in range(hours + 1)
        ],
        dtype=np.int64,
    )


def _channel_index(channel: np.ndarray) -> np.ndarray:
    return np.select([channel == c for c in CHANNELS], np.arange(len(CHANNELS)), default=0)


class Simulation:
    """One backfill run: the plan, the hourly block loop, and the state the loop carries
    (consent, purchases today, frequency caps, messages sent, policies)."""

    def __init__(
        self,
        scenario: Scenario,
        days: int,
        users: int,
        seed: int,
        end_us: int,
        key: str,
        with_incidents: bool = True,
        *,
        first_user: int = 0,
        shard: int = 0,
    ) -> None:
        """`first_user` and `shard`: a shard of a streamed backfill simulates customers
        `first_user` onwards, with random streams of its own (shard 0's are the one-shot run's)."""
        self.s, self.b = scenario, scenario.behaviour
        self.days, self.seed, self.key = days, seed, key
        self.streams = [seed] if shard == 0 else [seed, SHARD_STREAMS + shard]
        self.run_id = uuid.uuid4().hex[:10]  # in every id the run writes: two runs into one lake never collide
        self.rng = np.random.default_rng(seed if shard == 0 else self.streams)
        self.end_us = end_us
        self.start_us = end_us - days * DAY_US
        self.hours = days * 24
        self.offsets = _local_offsets_us(self.start_us, self.hours, scenario.business.timezone)
        self.windows = inc.schedule(scenario, self.start_us) if with_incidents else []
        self.population = bh.make_population(scenario, users, seed, key, first_user)
        self.catalogue = bh.make_catalogue(scenario, bh.catalogue_rng(seed))
        local_hours = self._local_hour(self.start_us + np.arange(self.hours, dtype=np.int64) * HOUR_US).astype(np.int64)
        starts, self.pre_days = bh.session_starts(scenario, self.population, self.start_us, days, local_hours, self.rng)
        self.campaign_start_us = self.start_us + self.pre_days * DAY_US
        people = bh.session_users(self.rng, self.population, len(starts))
        self.plan = bh.plan_sessions(scenario, self.population, self.catalogue, people, starts, self.rng)
        self.plan["block"] = (starts - self.start_us) // HOUR_US
        self.plan["campaign"] = starts >= self.campaign_start_us
        self.plan["base"] = bh.conversion_base(
            self.b, self.population.column("segment")[people], self.population.column("price_sensitivity")[people]
        )
        self.plan["cart_price"] = self.catalogue.get_column("price").to_numpy()[self.plan["cart_item"]]
        self._units()
        self._state()
        self.effects = {
            p: bh.person_effects(scenario, scenario.experience_by_placement[p], self.population)
            for p in (*STATIC, RECOVERY)
        }
        self.deciders = {p: self._decider(p) for p in (*STATIC, RECOVERY)}
        self.ledgers = {p: Ledger() for p in (*STATIC, RECOVERY)}

    @property
    def sessions(self) -> int:
        return len(self.plan["ts"])

    # -- setup -----------------------------------------------------------------------------------

    def _hour_index(self, ts: np.ndarray) -> np.ndarray:
        return cast(np.ndarray, np.clip((ts - self.start_us) // HOUR_US, 0, self.hours))

    def _local_hour(self, ts: np.ndarray) -> np.ndarray:
        """Local time of day in hours (fractional, as the engine's feature)."""
        return cast(np.ndarray, ((ts + self.offsets[self._hour_index(ts)]) % DAY_US) / HOUR_US)

    def local_day(self, ts: np.ndarray) -> np.ndarray:
        """Local calendar day of UTC µs timestamps (the day caps and `bought today` count in)."""
        return cast(np.ndarray, (ts + self.offsets[self._hour_index(ts)]) // DAY_US)

    def _units(self) -> None:
        """Who each session is to the service: the customer, or an anonymous visitor who never
        logged in (a unit of its own, with its own holdout and arms; `identity.anonymous_unit`
        is both its stored anonymous id and its unit)."""
        plan, pop = self.plan, self.population
        n = len(plan["ts"])
        anonymous = np.flatnonzero(plan["anonymous"])
        stored = np.array(
            [anonymous_unit(f"a{v:016x}", self.key) for v in self.rng.integers(0, 2**63, anonymous.size)], dtype=object
        )
        plan["anonymous_id"] = np.full(n, None, dtype=object)
        plan["anonymous_id"][anonymous] = stored
        anon_only = plan["anonymous"] & ~plan["login"]
        self.unit_ids = np.concatenate([pop.column("user_id").astype(object), plan["anonymous_id"][anon_only]])
        unit = plan["user"].copy()
        unit[anon_only] = pop.size + np.arange(anon_only.sum())
        plan["unit"] = unit
        self.unit_person = np.concatenate([np.arange(pop.size), plan["user"][anon_only]])
        self.identified = np.r_[np.ones(pop.size, dtype=bool), np.zeros(anon_only.sum(), dtype=bool)]
        # assignment (the service's own functions), for the units the campaign will decide for
        deciding = np.zeros(len(self.unit_ids), dtype=bool)
        deciding[unit[plan["ts"] >= self.campaign_start_us]] = True
        ids = self.unit_ids[deciding]
        self.holdout = np.zeros(len(self.unit_ids), dtype=bool)
        self.holdout[deciding] = buckets(ids, self.s.population.holdout_salt) < self.s.population.holdout_share
        self.arm_index = {}
        for experiment in self.s.experiments:
            names = np.array([arm.name for arm in experiment.arms])
            order = np.argsort(names)
            index = np.zeros(len(self.unit_ids), dtype=np.int64)
            index[deciding] = order[np.searchsorted(names[order], assign_arms(ids, experiment).astype(str))]
            self.arm_index[experiment.id] = index
        order = np.lexsort((plan["ts"], unit))  # previous session of the same unit (recency, last category)
        prev = np.full(n, -1, dtype=np.int64)
        same = unit[order][1:] == unit[order][:-1]
        prev[order[1:][same]] = order[:-1][same]
        plan["prev_session"] = prev

    def _state(self) -> None:
        n_units, plan = len(self.unit_ids), self.plan
        self.unit_consent = self.population.column("consent")[self.unit_person]
        # a withdrawal ends personalisation from the end of the session it happened in
        withdrawn = plan["withdraw"]
        self.withdrawal_ts = plan["ts"] + plan["end_us"] + 30_000_000
        self.withdrawn_at = np.full(n_units, _NEVER, dtype=np.int64)
        np.minimum.at(self.withdrawn_at, plan["unit"][withdrawn], self.withdrawal_ts[withdrawn])
        self.bought_day = np.full(n_units, -1, dtype=np.int64)
        self.last_open = np.full(n_units, np.iinfo(np.int64).min, dtype=np.int64)
        self.cap_day = np.full((n_units, len(CHANNELS)), -1, dtype=np.int64)
        self.cap_used = np.zeros((n_units, len(CHANNELS)), dtype=np.int64)
        self.message_day = np.full(n_units, -1, dtype=np.int64)
        self.messages = np.zeros(n_units, dtype=np.int64)
        self.opt_outs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        n = len(plan["ts"])
        self.purchased = np.zeros(n, dtype=bool)
        self.revenue = np.zeros(n)
        self.multiplier = np.ones((n, len(bh.EFFECT_KINDS)))
        # the decision a direct order is credited with: the session's last seen placement
        self.credited = np.full((n, 2), -1, dtype=np.int64)  # (index in STATIC, row in its ledger)
        self.pending: list[dict[str, np.ndarray]] = []

    def _decider(self, placement_id: str) -> ExperienceDecider:
        s = self.s
        experience = s.experience_by_placement[placement_id]
        experiment = s.experiment_by_experience[experience.id]
        policies = {
            arm.name: make_policy(experience, np.random.default_rng([*self.streams, i]), arm.policy)
            for i, arm in enumerate(experiment.arms)
            if arm.policy
        }
        return ExperienceDecider(
            experience, experiment, s.placement_by_id[placement_id], s.governance, dict(s.caps.items()), policies
        )

    def consent_at(self, units: np.ndarray, ts: np.ndarray) -> np.ndarray:
        return cast(np.ndarray, self.unit_consent[units] & (ts < self.withdrawn_at[units]))

    # -- the block loop --------------------------------------------------------------------------

    def run(self, progress: bool) -> None:
        plan = self.plan
        bounds = np.searchsorted(plan["block"], np.arange(self.hours + 1))
        self._buy(np.flatnonzero(~plan["campaign"]), np.ones((int((~plan["campaign"]).sum()), len(bh.EFFECT_KINDS))))
        for b in tqdm(
            range(self.hours), desc="backfill hours", unit="h", disable=not progress, file=sys.stderr, leave=False
        ):
            sessions = np.arange(bounds[b], bounds[b + 1])
            sessions = sessions[plan["campaign"][sessions]]
            if sessions.size:
                self._sessions_block(sessions)
            self._recovery_block(b)

    def _buy(self, sessions: np.ndarray, multiplier: np.ndarray) -> np.ndarray:
        """Settle the carts of `sessions` given the product of their seen variants' effects."""
        plan = self.plan
        p = bh.purchase_given_cart(self.b, plan["base"][sessions], multiplier[:, 1])
        bought: np.ndarray = plan["cart"][sessions] & (plan["u_buy"][sessions] < p)
        self.purchased[sessions] = bought
        self.revenue[sessions] = np.where(
            bought, bh.order_value(self.b, plan["z_value"][sessions], multiplier[:, 2]), 0.0
        )
        self.multiplier[sessions] = multiplier
        ts = plan["ts"][sessions] + plan["end_us"][sessions] + plan["checkout_us"][sessions]
        units = plan["unit"][sessions[bought]]
        self.bought_day[units] = np.maximum(self.bought_day[units], self.local_day(ts[bought]))
        return bought

    def _features(
        self, sessions: np.ndarray, ts: np.ndarray, pages: np.ndarray, cart_value: np.ndarray, rows: np.ndarray
    ) -> np.ndarray:
        """The model features the service would have for the `rows` (mask) of these requests
        (`features.encode_columns`)."""
        sessions, ts, pages, cart_value = sessions[rows], ts[rows], pages[rows], cart_value[rows]
        plan, pop = self.plan, self.population
        units = plan["unit"][sessions]
        person = self.unit_person[units]
        prev = plan["prev_session"][sessions]
        has_prev = prev >= 0
        last_open = self.last_open[units]
        return encode_columns(
            {
                "recency_seconds": np.where(has_prev, (ts - plan["ts"][np.maximum(prev, 0)]) / 1e6, np.nan),
                "pages_viewed": pages,
                "cart_value": cart_value,
                "device": pop.column("device")[person],
                "returning": (pop.column("segment")[person] == "returning").astype(np.float64),
                "price_sensitivity": pop.column("price_sensitivity")[person],
                "last_category": np.where(has_prev, plan["category"][np.maximum(prev, 0)], -1),
                "category": plan["category"][sessions],
                "referrer": plan["referrer"][sessions],
                "hour": self._local_hour(ts),
                "seconds_since_email_open": np.where(
                    last_open > np.iinfo(np.int64).min, (ts - last_open) / 1e6, np.nan
                ),
            },
            len(sessions),
        )

    def _caps_used(self, units: np.ndarray, ch: np.ndarray, day: np.ndarray, counted: np.ndarray) -> np.ndarray:
        """Personalised decisions each request's user already had today on its channel: the
        state from earlier blocks plus the `counted` requests earlier in this block (requests
        are in time order)."""
        used = np.where(self.cap_day[units, ch] == day, self.cap_used[units, ch], 0)
        key = (units * len(CHANNELS) + ch) * 100_000 + day % 100_000
        order = np.argsort(key, kind="stable")
        counted_sorted = counted[order].astype(np.int64)
        running = np.cumsum(counted_sorted) - counted_sorted
        sorted_key = key[order]
        group_start = np.r_[0, np.flatnonzero(sorted_key[1:] != sorted_key[:-1]) + 1]
        running -= np.repeat(running[group_start], np.diff(np.r_[group_start, len(key)]))
        before = np.empty_like(running)
        before[order] = running
        return used + before

    def _take_caps(self, units: np.ndarray, ch: np.ndarray, day: np.ndarray, took: np.ndarray) -> None:
        units, ch, day = units[took], ch[took], day[took]
        stale = self.cap_day[units, ch] != day
        self.cap_used[units[stale], ch[stale]] = 0
        self.cap_day[units, ch] = day
        np.add.at(self.cap_used, (units, ch), 1)

    def _decide(
        self,
        placement: str,
        sessions: np.ndarray,
        ts: np.ndarray,
        channel: np.ndarray,
        features: Callable[[np.ndarray], np.ndarray],
        in_stock: np.ndarray,
        real: np.ndarray,
    ) -> tuple[Served, Requests]:
        """Run one placement's requests through the decision flow; count the frequency caps of
        the `real` ones (the others are would-be decisions kept only for the ground truth)."""
        decider = self.deciders[placement]
        units = self.plan["unit"][sessions]
        n, day, ch = len(sessions), self.local_day(ts), _channel_index(channel)
        consent = self.consent_at(units, ts)
        holdout = self.holdout[units]
        requests = Requests(
            holdout=holdout,
            arm=self.arm_index[decider.experiment.id][units],
            consent=consent,
            channel=channel,
            cap_used=self._caps_used(units, ch, day, real & ~holdout & consent),
            in_stock=in_stock,
            bought_today=self.bought_day[units] == day,
            features=features,
            error=inc.active(self.windows, "error_burst", ts) & (self.rng.random(n) < inc.ERROR_BURST_SHARE),
            spike=inc.active(self.windows, "latency_spike", ts),
            outage=inc.active(self.windows, "model_outage", ts),
        )
        served = decider.decide(requests, self.rng)
        latency = inc.latency_us(self.rng, served.reason == Code.BUDGET_EXCEEDED)
        self._take_caps(units, ch, day, served.takes_cap & real)
        self.ledgers[placement].add(
            {
                "session": sessions,
                "unit": units,
                "ts": ts,
                "channel": channel,
                "logged": real,
                "holdout": holdout,
                "arm": requests.arm,
                "variant": served.variant,
                "propensity": served.propensity,
                "policy": served.policy.astype(object),
                "model_version": served.model_version.astype(object),
                "score": served.score.astype(np.float64),
                "reason": served.reason.astype(str).astype(object),
                "fallback": served.fallback,
                "status_error": served.error,
                "latency_us": latency,
                "consent": consent,
                "learned": served.learned,
            },
            served.dists,
            served.X[served.learned].astype(np.float32),
        )
        return served, requests

    def _outcomes(self, placement: str, seen: np.ndarray, exposure_ts: np.ndarray, **columns: np.ndarray) -> None:
        """Attach what happened to the last decided batch; an exposure is logged when the
        placement was seen, unless the `srm_bug` loses it on the client."""
        part = self.ledgers[placement].parts[-1]
        experiment = self.deciders[placement].experiment
        arm = arm_labels(experiment, part["holdout"], part["arm"])
        lost = inc.srm_drops(
            self.windows,
            self.s,
            np.full(len(seen), experiment.id, dtype=object),
            arm,
            exposure_ts,
            self.rng.random(len(seen)),
        )
        part.update(seen=seen, exposed=seen & part["logged"] & ~lost, exposure_ts=exposure_ts, **columns)

    def _sessions_block(self, sessions: np.ndarray) -> None:
        plan = self.plan
        n = len(sessions)
        ts0 = plan["ts"][sessions]
        channel = plan["channel"][sessions]
        pages = plan["pages"][sessions]
        timing = {
            "homepage_showcase": np.zeros(n, dtype=np.int64),
            "product_cta": plan["second_page_us"][sessions],
            "cart_cross_sell": plan["cart_us"][sessions],
        }
        shown = {
            "homepage_showcase": np.ones(n, dtype=bool),
            "product_cta": pages >= 2,
            "cart_cross_sell": plan["cart"][sessions],
        }
        pages_so_far = {
            "homepage_showcase": np.ones(n),
            "product_cta": np.full(n, 2.0),
            "cart_cross_sell": pages.astype(np.float64),
        }
        multiplier = np.ones((n, len(bh.EFFECT_KINDS)))
        last_seen = np.full(n, -1)
        learning = []
        for p, placement in enumerate(STATIC):
            rows = np.flatnonzero(shown[placement])
            if rows.size == 0:
                continue
            s_rows = sessions[rows]
            ts = ts0[rows] + timing[placement][rows]
            cart_value = plan["cart_price"][s_rows] if placement == "cart_cross_sell" else np.zeros(rows.size)
            pages = pages_so_far[placement][rows]
            features = functools.partial(self._features, s_rows, ts, pages, cart_value)
            offset = self.ledgers[placement].size
            served, requests = self._decide(
                placement,
                s_rows,
                ts,
                channel[rows],
                features,
                plan["in_stock"][s_rows, p],
                np.ones(rows.size, dtype=bool),
            )
            m = self.effects[placement][self.unit_person[plan["unit"][s_rows]], served.variant]
            seen = plan["seen"][s_rows, p]
            multiplier[rows] *= np.where(seen[:, None], m, 1.0)
            last_seen[rows[seen]] = p
            self.credited[s_rows[seen]] = np.stack([np.full(seen.sum(), p), offset + np.flatnonzero(seen)], axis=1)
            clicked = seen & (plan["u_click"][s_rows, p] < bh.click_probability(self.b, m[:, 0]))
            self._outcomes(placement, seen, ts + EXPOSURE_DELAY_US, clicked=clicked)
            learning.append((p, placement, served, requests, rows, clicked))
        bought = self._buy(sessions, multiplier)
        for p, placement, served, requests, rows, clicked in learning:
            # the engine rewards a decision named by a click or by the order it is credited with
            self._learn(placement, served, requests, clicked | (bought[rows] & (last_seen[rows] == p)))
        self._schedule_recovery(sessions[plan["cart"][sessions]])

    def _learn(
        self, placement: str, served: Served, requests: Requests, reward: np.ndarray, real: np.ndarray | None = None
    ) -> None:
        """The block's outcomes update the policies that chose (never the would-be rows)."""
        decider = self.deciders[placement]
        for a, arm in enumerate(decider.experiment.arms):
            policy = decider.policies.get(arm.name)
            if policy is None:
                continue
            rows = served.learned & (requests.arm == a) & ~requests.holdout & (True if real is None else real)
            if rows.any():
                policy.update(served.X[rows], served.variant[rows], reward[rows].astype(np.float64))

    def _schedule_recovery(self, sessions: np.ndarray) -> None:
        """Every cart of an identified customer gets a would-be recovery message hours later:
        sent when the cart was abandoned, otherwise kept only for the ground truth."""
        sessions = sessions[self.identified[self.plan["unit"][sessions]]]
        if sessions.size:
            plan = self.plan
            ts = plan["ts"][sessions] + plan["end_us"][sessions] + plan["message_us"][sessions]
            self.pending.append(
                {
                    "session": sessions,
                    "ts": ts,
                    "block": (ts - self.start_us) // HOUR_US,
                    "real": ~self.purchased[sessions],
                }
            )

    def _recovery_block(self, b: int) -> None:
        if not self.pending:
            return
        pending = {k: np.concatenate([p[k] for p in self.pending]) for k in self.pending[0]}
        due = pending["block"] == b
        self.pending = [{k: v[~due] for k, v in pending.items()}]
        order = np.flatnonzero(due)[np.argsort(pending["ts"][due], kind="stable")]
        sessions, ts, real = pending["session"][order], pending["ts"][order], pending["real"][order]
        keep = self.consent_at(self.plan["unit"][sessions], ts)  # no message without consent
        sessions, ts, real = sessions[keep], ts[keep], real[keep]
        if sessions.size == 0:
            return
        plan = self.plan
        units = plan["unit"][sessions]
        channel = np.where(plan["channel"][sessions] == "app", "push", "email").astype(object)
        features = functools.partial(
            self._features, sessions, ts, np.zeros(len(sessions)), plan["cart_price"][sessions]
        )
        served, requests = self._decide(
            RECOVERY, sessions, ts, channel, features, np.ones(len(sessions), dtype=bool), real
        )
        m = self.effects[RECOVERY][self.unit_person[units], served.variant]
        opened = real & (plan["u_open"][sessions] < bh.open_probability(self.b, channel))
        u = plan["u_message"][sessions]
        clicked = opened & (u < bh.recovery_click_probability(self.b, m))
        bought = opened & (u < bh.recovery_purchase_probability(m[:, 1]))
        revenue = np.where(bought, bh.order_value(self.b, plan["z_value"][sessions], m[:, 2]), 0.0)
        open_ts = ts + plan["open_us"][sessions]
        self._outcomes(
            RECOVERY,
            opened,
            open_ts,
            clicked=clicked,
            bought=bought,
            revenue=revenue,
            discount=bh.discounts(self.deciders[RECOVERY].experience)[served.variant],
        )
        day = self.local_day(ts)
        self._messages(units[real], ts[real], day[real], plan["u_opt_out"][sessions][real], sessions[real])
        self.last_open[units[opened]] = np.maximum(self.last_open[units[opened]], open_ts[opened])
        self.bought_day[units[bought]] = np.maximum(self.bought_day[units[bought]], self.local_day(open_ts[bought]))
        self._learn(RECOVERY, served, requests, clicked | bought | (opened & (channel == "push")), real)

    def _messages(
        self, units: np.ndarray, ts: np.ndarray, day: np.ndarray, u: np.ndarray, sessions: np.ndarray
    ) -> None:
        """Count each customer's messages per day; past the first, a message may cause an opt-out."""
        stale = self.message_day[units] != day
        self.messages[units[stale]] = 0
        self.message_day[units] = day
        before = self.messages[units].copy()
        np.add.at(self.messages, units, 1)
        out = (before >= 1) & (u < self.b.opt_out_per_message)
        if out.any():
            at = ts[out] + 60_000_000
            self.withdrawn_at[units[out]] = np.minimum(self.withdrawn_at[units[out]], at)
            self.opt_outs.append((sessions[out], units[out], at))
