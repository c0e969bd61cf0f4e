"""The decision flow, pure of HTTP: placement -> experience -> experiment -> holdout -> arm ->
governance -> policy -> budget, every step with a reason code; and the online learning loop.

`Engine.decide` never raises for a known placement: a model error, a slow feature step or an
injected fault serves the experience's default with the reason (`MODEL_ERROR`,
`BUDGET_EXCEEDED`, ...). The decision row it returns is what the `decisions` table stores.
`DecisionLog` hands those rows to the lake writer in batches off the request path (one
validation per batch instead of per row), and reports back-pressure before a request is taken.

Learning: a policy's decision is remembered (features, chosen variant) until an outcome event
names it (reward 1) or its attribution window passes (reward 0); `learn()` applies the
outcomes collected since its last call, so updates never run on the request path.

Fault injection (incident drills; the simulator sends them per request):
- `latency_spike`: the feature step sleeps `Faults.latency_spike_ms` (default 25 ms > budget);
- `model_outage`: the propensity model is unavailable (`MODEL_UNAVAILABLE`);
- `error_burst`: a `Faults.error_share` of decisions fail (`INTERNAL_ERROR`, status `error`,
  still the default).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

import numpy as np

from decisioning import guards as gov
from decisioning.assignment import HOLDOUT, ArmSplit, in_holdout
from decisioning.features import FeatureStore, encode, referrer_type
from decisioning.policies import ModelUnavailable, Policy, choose, make_policy
from momento.scenario import Arm, Experience, Experiment, Placement, Scenario
from momento.lake.writer import LakeWriter, QueueFull
from momento.codes import POLICY_CODES, Code

log = logging.getLogger(__name__)

INCIDENTS = ("latency_spike", "model_outage", "error_burst")
INACTIVE = "none"  # the arm logged when the experience's experiment is not running
REWARD_EVENTS = frozenset({"click", "add_to_cart", "purchase", "email_click", "push_open"})
FALLBACKS_AFTER_CAPS = (Code.MODEL_UNAVAILABLE, Code.MODEL_ERROR, Code.BUDGET_EXCEEDED)
"""The fallbacks a policy's choice ends in after governance has taken a frequency cap for it
(`_choose`). A feature-store error can come before the cap or after, so it is not listed."""


class UnknownPlacement(LookupError):
    """The request names a placement the scenario does not have."""


@dataclass(frozen=True)
class Faults:
    """How strong each injected incident is."""

    latency_spike_ms: float = 25.0
    error_share: float = 0.3


@dataclass(frozen=True)
class Context:
    """One decision's input, ids already pseudonymised (`unit` is the decision unit)."""

    unit: str
    placement: str
    channel: str
    consent: bool
    session_id: str | None = None
    device: str | None = None
    referrer: str | None = None
    category: str | None = None
    cart_value: float | None = None
    price_sensitivity: str | float | None = None
    pages_viewed: int | None = None
    in_stock: bool | None = None
    segment: str | None = None
    region: str | None = None
    now: float | None = None  # epoch seconds; default: the clock


@dataclass
class Decision:
    """The answer and its `decisions` row (`row()`)."""

    decision_id: str
    ts: datetime
    user_id: str
    session_id: str | None
    journey: str
    placement: str
    channel: str
    experience_id: str
    experiment_id: str | None
    arm: str
    variant: str
    policy: str
    model_version: str | None
    propensity: float
    score: float | None
    reasons: list[str]
    fallback: bool
    fallback_reason: str | None
    consent: bool
    latency_us: int
    status: str
    error_code: str | None
    device: str | None
    segment: str | None
    region: str | None

    def row(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Choice(NamedTuple):
    """A policy's choice, kept until its outcome is known."""

    experience_id: str
    policy: str
    x: np.ndarray
    chosen: int


_NO_CHOICE = (None,) * len(_Choice._fields)


class _Memo(NamedTuple):
    """What later requests need to know about a recent decision, and the policy's choice
    awaiting its outcome (None when no policy chose). Kept as one flat plain tuple of strings,
    numbers and an array, which the cycle collector stops tracking at its first look (a nested
    tuple can outlive that look tracked), so the window of recent decisions (up to
    `memo_capacity`) is not scanned by every full collection."""

    unit: str
    session_id: str | None
    placement: str
    channel: str
    experiment_id: str | None
    arm: str
    variant: str
    at: float
    experience_id: str | None
    policy: str | None
    x: np.ndarray | None
    chosen: int | None


_UNIT, _AT, _CHOICE = (_Memo._fields.index(name) for name in ("unit", "at", "experience_id"))


@dataclass
class _Learning:
    """Outcomes waiting for `learn()`, per policy."""

    x: list[np.ndarray] = field(default_factory=list)
    chosen: list[int] = field(default_factory=list)
    reward: list[float] = field(default_factory=list)


class Engine:
    """Decides for one placement at a time; thread-safe; owns policies, caps and memos."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        store: FeatureStore | None = None,
        caps: gov.FrequencyCaps | None = None,
        budget_ms: float | None = None,
        faults: Faults = Faults(),
        seed: int | None = None,
        attribution_seconds: float = 30 * 60.0,
        memo_capacity: int = 200_000,
    ) -> None:
        self.scenario = scenario
        self.tz = scenario.business.timezone
        self.store = store or FeatureStore(day_of=self.day_of)
        self.caps = caps or gov.FrequencyCaps(scenario.caps)
        self.budget_s = (budget_ms if budget_ms is not None else scenario.governance.decision_budget_ms) / 1000.0
        self.faults = faults
        self.attribution_seconds = attribution_seconds
        self.memo_capacity = memo_capacity
        self._seeds = np.random.SeedSequence(seed)
        self._local = threading.local()
        self._seed_lock = threading.Lock()
        rng = self._rng()
        self.policies: dict[tuple[str, str], Policy] = {}
        for experiment in scenario.experiments:
            experience = scenario.experience_by_id[experiment.experience]
            for arm in experiment.arms:
                if arm.policy is not None and (experience.id, arm.policy) not in self.policies:
                    self.policies[(experience.id, arm.policy)] = make_policy(experience, rng, arm.policy)
        # per experience, the variants a decision may show: row 0 for everyone, row 1 for a
        # customer who bought today
        self._eligible = {x.id: gov.eligible_variants(x, [False, True], scenario.governance) for x in scenario.experiences}
        self._warm_up()
        self._arms = {x.id: {arm.name: arm for arm in x.arms} for x in scenario.experiments}
        self._splits = {x.id: ArmSplit.of(x) for x in scenario.experiments}
        self._memos: OrderedDict[str, tuple] = OrderedDict()  # decision id -> the fields of a _Memo
        self._memo_lock = threading.Lock()
        self._learning: dict[tuple[str, str], _Learning] = {}
        self._learning_lock = threading.Lock()

    # -- helpers ----------------------------------------------------------------------------

    def _warm_up(self) -> None:
        """Compute each policy's answer for the eligibility patterns it will see, so the first
        live decisions do not pay for it (Thompson integrates once per pattern)."""
        x = encode([{}, {}])
        for (experience_id, _), policy in self.policies.items():
            policy.probabilities(x, self._eligible[experience_id])

    def _new_id(self) -> str:
        """A random 128-bit decision id. Per-thread generators seeded once from the OS: the
        OS's entropy call costs ~80 us a time on a small VM, too much for every decision."""
        ids = getattr(self._local, "ids", None)
        if ids is None:
            ids = self._local.ids = random.Random()
        return f"{ids.getrandbits(128):032x}"

    def _rng(self) -> np.random.Generator:
        """A generator per thread (numpy generators are not thread-safe)."""
        rng = getattr(self._local, "rng", None)
        if rng is None:
            with self._seed_lock:
                rng = self._local.rng = np.random.default_rng(self._seeds.spawn(1)[0])
        return rng

    def day_of(self, epoch_seconds: float) -> int:
        """The business's local calendar day of an instant (caps and 'bought today' use it)."""
        return gov.local_clock(epoch_seconds, self.tz)[0]

    def resolve(self, placement_id: str) -> tuple[Placement, Experience, Experiment | None]:
        placement = self.scenario.placement_by_id.get(placement_id)
        experience = self.scenario.experience_by_placement.get(placement_id)
        if placement is None or experience is None:
            known = ", ".join(sorted(self.scenario.experience_by_placement))
            raise UnknownPlacement(f"unknown placement {placement_id!r} (known: {known})")
        return placement, experience, self.scenario.experiment_by_experience.get(experience.id)

    # -- deciding ---------------------------------------------------------------------------

    def decide(self, ctx: Context, incidents: Collection[str] = ()) -> Decision:
        """The decision for `ctx` (raises only `UnknownPlacement`); records the context."""
        placement, experience, experiment = self.resolve(ctx.placement)
        started = time.perf_counter()
        now = time.time() if ctx.now is None else ctx.now
        decision = Decision(
            decision_id=self._new_id(), ts=datetime.fromtimestamp(now, tz=timezone.utc), user_id=ctx.unit,
            session_id=ctx.session_id, journey=placement.journey, placement=placement.id, channel=ctx.channel,
            experience_id=experience.id, experiment_id=experiment.id if experiment else None,
            arm=self._arm(ctx.unit, experiment),
            variant=experience.default_variant, policy="default", model_version=None, propensity=1.0, score=None,
            reasons=[], fallback=False, fallback_reason=None, consent=ctx.consent, latency_us=0, status="ok",
            error_code=None, device=ctx.device, segment=ctx.segment, region=ctx.region,
        )
        choice = None
        try:
            choice = self._decide(decision, ctx, now, placement, experience, experiment, incidents)
        except Exception:  # the engine's last line of defence: never an error to the client
            log.exception("decision failed for placement %s", placement.id)
            self._fall_back(decision, experience, Code.INTERNAL_ERROR, error=True)
        decision.latency_us = int((time.perf_counter() - started) * 1e6)
        self._remember(decision, now, choice)
        self.store.observe_context(
            ctx.unit, ctx.session_id, now, device=ctx.device, referrer=_referrer(ctx.referrer),
            cart_value=ctx.cart_value, category=ctx.category, price_sensitivity=ctx.price_sensitivity,
        )
        return decision

    def _arm(self, unit: str, experiment: Experiment | None) -> str:
        """The unit's arm, fixed before anything can fail, so even an error is logged in it."""
        if in_holdout(unit, self.scenario.population):
            return HOLDOUT
        if experiment is None or experiment.status != "running":
            return INACTIVE
        return self._splits[experiment.id].arm_of(unit)

    def _decide(
        self, d: Decision, ctx: Context, now: float, placement: Placement, experience: Experience,
        experiment: Experiment | None, incidents: Collection[str],
    ) -> _Choice | None:
        d.consent = ctx.consent and not self.store.consent_withdrawn(ctx.unit)
        try:
            stored = self.store.row(ctx.unit, ctx.session_id, now)
        except Exception:
            log.exception("feature store read failed")
            self._fall_back(d, experience, Code.FEATURE_STORE_ERROR)
            return None
        if d.segment is None:
            d.segment = "returning" if stored.get("returning") else "new"
        if "error_burst" in incidents and self._rng().random() < self.faults.error_share:
            self._fall_back(d, experience, Code.INTERNAL_ERROR, error=True)
            return None
        if d.arm == HOLDOUT:
            d.reasons.append(Code.HOLDOUT)
            return None
        if d.arm == INACTIVE:
            d.reasons.append(Code.EXPERIENCE_INACTIVE)
            return None
        arm: Arm = self._arms[experiment.id][d.arm]
        if arm.variant == experience.default_variant:
            d.reasons.append(Code.CONTROL_ARM)
            return None
        day, hour = gov.local_clock(now, self.tz)
        bought_today = self.store.bought_today(ctx.unit, now)
        checks = [
            gov.consent_block(d.consent),
            gov.channel_block(placement, ctx.channel),
            gov.stock_block(True if ctx.in_stock is None else ctx.in_stock, self.scenario.governance),
        ]
        if bought_today:
            checks.append(gov.bought_today_block(experience, bought_today, self.scenario.governance))
        blocked = gov.first_block(*checks)[0]
        if blocked is None and not self.caps.try_take(ctx.unit, ctx.channel, day):
            blocked = Code.FREQUENCY_CAP
        if blocked is not None:
            self._fall_back(d, experience, blocked)
            return None
        if arm.variant is not None:
            d.variant, d.policy = arm.variant, "fixed"
            d.reasons.append(Code.FIXED_ARM)
            return None
        return self._choose(d, ctx, stored, hour, experience, arm.policy, bought_today, incidents)

    def _choose(
        self, d: Decision, ctx: Context, stored: dict[str, Any], hour: float, experience: Experience,
        kind: str, bought_today: bool, incidents: Collection[str],
    ) -> _Choice | None:
        started = time.perf_counter()
        try:
            x = self._features(ctx, stored, hour, incidents)
        except Exception:
            log.exception("feature step failed")
            self._fall_back(d, experience, Code.FEATURE_STORE_ERROR)
            return None
        policy = self.policies[(experience.id, kind)]
        try:
            if kind == "propensity" and "model_outage" in incidents:
                raise ModelUnavailable("propensity model unavailable (injected model_outage)")
            eligible = self._eligible[experience.id][int(bought_today)][None, :]
            version = policy.model_version
            probabilities = policy.probabilities(x, eligible)
            index, propensity = choose(probabilities, self._rng())
            score = float(policy.scores(x)[0, int(index[0])])
        except ModelUnavailable:
            self._fall_back(d, experience, Code.MODEL_UNAVAILABLE)
            return None
        except Exception:
            log.exception("policy %s failed", kind)
            self._fall_back(d, experience, Code.MODEL_ERROR)
            return None
        if time.perf_counter() - started > self.budget_s:
            self._fall_back(d, experience, Code.BUDGET_EXCEEDED)
            return None
        chosen = int(index[0])
        d.variant, d.policy, d.model_version = experience.variants[chosen], kind, version
        d.propensity, d.score = float(propensity[0]), score if np.isfinite(score) else None
        d.reasons.append(POLICY_CODES[kind])
        return _Choice(experience.id, kind, x[0], chosen)

    def _features(self, ctx: Context, stored: dict[str, Any], hour: float, incidents: Collection[str]) -> np.ndarray:
        live = {
            "device": ctx.device, "referrer": _referrer(ctx.referrer), "cart_value": ctx.cart_value,
            "category": ctx.category, "price_sensitivity": ctx.price_sensitivity, "pages_viewed": ctx.pages_viewed,
        }
        row = {**stored, **{key: value for key, value in live.items() if value is not None}}
        row["hour"] = hour
        if "latency_spike" in incidents:
            time.sleep(self.faults.latency_spike_ms / 1000.0)
        return encode([row])

    def _fall_back(self, d: Decision, experience: Experience, code: Code, error: bool = False) -> None:
        d.variant, d.policy, d.model_version, d.propensity, d.score = experience.default_variant, "default", None, 1.0, None
        d.reasons.append(code)
        d.fallback, d.fallback_reason = True, code
        if error:
            d.status, d.error_code = "error", code

    # -- memos, outcomes and learning -------------------------------------------------------

    def _remember(self, d: Decision, now: float, choice: _Choice | None) -> None:
        memo = tuple(_Memo(d.user_id, d.session_id, d.placement, d.channel, d.experiment_id, d.arm, d.variant, now,
                           *(choice or _NO_CHOICE)))
        expired: list[tuple] = []
        with self._memo_lock:
            self._memos[d.decision_id] = memo
            while self._memos:
                oldest = next(iter(self._memos.values()))
                if len(self._memos) <= self.memo_capacity and now - oldest[_AT] <= self.attribution_seconds:
                    break
                expired.append(self._memos.popitem(last=False)[1])
        self._queue_rewards([(m[_CHOICE:], 0.0) for m in expired])

    def recall(self, decision_id: str) -> _Memo | None:
        """A recent decision (within its attribution window), to complete exposures and events."""
        memo = self._memos.get(decision_id)
        return None if memo is None else _Memo._make(memo)

    def record_outcome(self, decision_id: str, event_type: str) -> bool:
        """An event caused by a decision: a reward for the policy that chose it (once)."""
        if event_type not in REWARD_EVENTS:
            return False
        with self._memo_lock:
            memo = self._memos.get(decision_id)
            if memo is None or memo[_CHOICE] is None:
                return False
            self._memos[decision_id] = memo[:_CHOICE] + _NO_CHOICE
        self._queue_rewards([(memo[_CHOICE:], 1.0)])
        return True

    def _queue_rewards(self, outcomes: list[tuple[tuple, float]]) -> None:
        """Queue (choice fields of a memo, reward) pairs for `learn`; memos without a choice are skipped."""
        with self._learning_lock:
            for (experience_id, policy, x, chosen), reward in outcomes:
                if experience_id is None:
                    continue
                batch = self._learning.setdefault((experience_id, policy), _Learning())
                batch.x.append(x)
                batch.chosen.append(chosen)
                batch.reward.append(reward)

    def expire(self, now: float | None = None) -> None:
        """Close the attribution window of decisions older than it (reward 0)."""
        now = time.time() if now is None else now
        expired: list[tuple] = []
        with self._memo_lock:
            while self._memos and now - next(iter(self._memos.values()))[_AT] > self.attribution_seconds:
                expired.append(self._memos.popitem(last=False)[1])
        self._queue_rewards([(m[_CHOICE:], 0.0) for m in expired])

    def learn(self, now: float | None = None) -> int:
        """Apply the outcomes collected so far to their policies; returns how many."""
        self.expire(now)
        with self._learning_lock:
            batches, self._learning = self._learning, {}
        for key, batch in batches.items():
            self.policies[key].update(np.stack(batch.x), np.array(batch.chosen), np.array(batch.reward))
        return sum(len(batch.chosen) for batch in batches.values())

    def erase(self, unit: str) -> None:
        """Forget a user in every in-memory structure (features, caps, recent decisions)."""
        self.store.erase(unit)
        self.caps.erase(unit)
        with self._memo_lock:
            for decision_id in [k for k, memo in self._memos.items() if memo[_UNIT] == unit]:
                del self._memos[decision_id]


def _referrer(referrer: str | None) -> str | None:
    return referrer_type(referrer) if referrer is not None else None


class DecisionLog:
    """Decision rows buffered in the service and handed to the lake writer in batches.

    `has_room()` is the back-pressure check before a request is taken: the rows waiting here
    plus the writer's queue must stay under the writer's `queue_limit`. A batch the writer
    refuses as full stays here and is retried; nothing is dropped.
    """

    def __init__(self, writer: LakeWriter, *, interval_seconds: float = 0.2) -> None:
        self.writer = writer
        self.interval = interval_seconds
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()
        self.last_seq = 0

    @property
    def pending(self) -> int:
        return len(self._rows)

    def has_room(self, rows: int = 1, reserve: int = 0) -> bool:
        """Whether `rows` more fit under the writer's bound, keeping `reserve` rows free."""
        return self.writer.stats.queued_rows + len(self._rows) + rows <= self.writer.queue_limit - reserve

    def add(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            self._rows.extend(rows)

    def drain(self) -> int:
        """Hand every waiting row to the writer now; returns the writer's sequence number
        (QueueFull if the writer has no room; the rows then stay here)."""
        with self._drain_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if rows:
                try:
                    self.last_seq = self.writer.append("decisions", rows)
                except QueueFull:
                    with self._lock:
                        self._rows[:0] = rows
                    raise
            return self.last_seq

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.drain()
            except QueueFull:
                continue
            except Exception:
                log.exception("decision rows could not be handed to the writer; retrying")

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread and hand over what is left (retrying while the writer is full)."""
        self._stop.set()
        self._thread.join()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.drain()
                return
            except QueueFull:
                if time.monotonic() > deadline:
                    log.error("writer still full at shutdown: %d decision rows not stored", self.pending)
                    return
                time.sleep(0.1)
