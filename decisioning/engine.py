"""The service's decisions, pure of HTTP: the decision flow (`decisioning.flow`: holdout ->
experiment arm -> governance -> frequency cap -> fixed variant -> policy -> budget, every step
with a reason code) one request at a time; and the online learning loop.

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
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

import numpy as np

from decisioning import flow
from decisioning import guards as gov
from decisioning.assignment import HOLDOUT, ArmSplit, in_holdout
from decisioning.features import FeatureStore, encode, referrer_type
from decisioning.flow import INACTIVE, Serves, control_arm
from decisioning.policies import ModelUnavailable, Policy, choose, make_policy
from momento.codes import POLICY_CODES, Code
from momento.lake.writer import LakeWriter, QueueFull
from momento.scenario import Arm, Experience, Experiment, Placement, Scenario

log = logging.getLogger(__name__)

INCIDENTS = ("latency_spike", "model_outage", "error_burst")
REWARD_EVENTS = frozenset({"click", "add_to_cart", "purchase", "email_click", "push_open"})
FALLBACKS_AFTER_CAPS = flow.FALLBACKS_AFTER_CAPS  # read by recovery


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
    price_sensitivity: str | None = None
    pages_viewed: int | None = None
    in_stock: bool | None = None
    segment: str | None = None
    region: str | None = None
    now: float | None = None  # epoch seconds; default: the clock


@dataclass
class Decision:
    """The answer and its `decisions` row (`row()`).

    `action_probabilities` is the distribution over the experience's variants the variant was
    drawn from, as `{"variant", "p"}` entries in the experience's order: the policy's
    probabilities, or the point mass on what was served when no policy chose. `context` holds
    the features the policy was given (in `flow.CONTEXT_VERSION` order), None when no policy
    chose (`momento.lake.schema.DECISIONS` says more)."""

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
    action_probabilities: list[dict[str, Any]]
    context: list[float] | None = None
    context_version: str | None = None

    def row(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Choice(NamedTuple):
    """A policy's choice, kept until its outcome is known."""

    experience_id: str
    policy: str
    x: np.ndarray
    chosen: int


_NO_CHOICE = (None,) * len(_Choice._fields)


class _Answer(NamedTuple):
    """A policy's answer: its probabilities over the variants and the variant drawn from them."""

    probabilities: np.ndarray
    chosen: int
    propensity: float
    score: float
    model_version: str


class _Request:
    """One decision on its way down the flow: its input, and what the steps passed so far found
    out (the stored features, whether the visitor bought today, the policy's features and
    answer), for the steps after them."""

    __slots__ = (
        "answer",
        "arm",
        "bought_today",
        "ctx",
        "d",
        "experience",
        "incidents",
        "now",
        "paused",
        "placement",
        "started",
        "stored",
        "x",
    )

    def __init__(
        self,
        d: Decision,
        ctx: Context,
        now: float,
        placement: Placement,
        experience: Experience,
        arm: Arm | None,
        incidents: Collection[str],
        paused: bool,
    ) -> None:
        self.d, self.ctx, self.now, self.placement, self.experience = d, ctx, now, placement, experience
        self.paused = paused  # the unit's own arm is paused: `arm` is the control arm it is served as
        self.arm = cast(Arm, arm)  # None only in a decision that stops before a step reads the arm
        self.incidents = incidents
        self.stored: dict[str, Any] = {}
        self.bought_today = False
        self.started = 0.0
        self.x: np.ndarray = np.empty(0)
        self.answer: _Answer | None = None


def _point_mass(variants: list[str], served: str) -> list[dict[str, Any]]:
    """The action distribution of a decision no policy drew: probability 1 on what was served."""
    return [{"variant": v, "p": 1.0 if v == served else 0.0} for v in variants]


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
        self._eligible = {
            x.id: gov.eligible_variants(x, [False, True], scenario.governance) for x in scenario.experiences
        }
        self._warm_up()
        self._arms = {x.id: {arm.name: arm for arm in x.arms} for x in scenario.experiments}
        self._splits = {x.id: ArmSplit.of(x) for x in scenario.experiments}
        self._controls = {
            x.id: control.name
            for x in scenario.experiments
            if (control := control_arm(x, scenario.experience_by_id[x.experience])) is not None
        }
        self._paused_arms: dict[str, frozenset[str]] = {}
        self._tests = flow.bind({s.name: getattr(self, f"_{s.name}") for s in flow.STEPS[: flow.POLICY_STEP]})
        self._memos: OrderedDict[str, tuple[Any, ...]] = OrderedDict()  # decision id -> the fields of a _Memo
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
        arm, paused = self._arm(ctx.unit, experiment)
        decision = Decision(
            decision_id=self._new_id(),
            ts=datetime.fromtimestamp(now, tz=UTC),
            user_id=ctx.unit,
            session_id=ctx.session_id,
            journey=placement.journey,
            placement=placement.id,
            channel=ctx.channel,
            experience_id=experience.id,
            experiment_id=experiment.id if experiment else None,
            arm=arm,
            variant=experience.default_variant,
            policy="default",
            model_version=None,
            propensity=1.0,
            score=None,
            reasons=[],
            fallback=False,
            fallback_reason=None,
            consent=ctx.consent,
            latency_us=0,
            status="ok",
            error_code=None,
            device=ctx.device,
            segment=ctx.segment,
            region=ctx.region,
            action_probabilities=_point_mass(experience.variants, experience.default_variant),
        )
        choice = None
        try:
            choice = self._decide(decision, ctx, now, placement, experience, experiment, incidents, paused)
        except Exception:  # the engine's last line of defence: never an error to the client
            log.exception("decision failed for placement %s", placement.id)
            self._fall_back(decision, experience, Code.INTERNAL_ERROR, error=True)
        decision.latency_us = int((time.perf_counter() - started) * 1e6)
        self._remember(decision, now, choice)
        self.store.observe_context(
            ctx.unit,
            ctx.session_id,
            now,
            device=ctx.device,
            referrer=_referrer(ctx.referrer),
            cart_value=ctx.cart_value,
            category=ctx.category,
            price_sensitivity=ctx.price_sensitivity,
        )
        return decision

    def _arm(self, unit: str, experiment: Experiment | None) -> tuple[str, bool]:
        """The arm the unit is logged in, fixed before anything can fail so even an error is logged
        in it, and whether its own arm is paused (then the arm logged is the control arm: the
        same sticky hash, so a user keeps one arm, and control's own users are untouched)."""
        if in_holdout(unit, self.scenario.population):
            return HOLDOUT, False
        if experiment is None or not flow.running(experiment):
            return INACTIVE, False
        arm = self._splits[experiment.id].arm_of(unit)
        paused = self._paused_arms.get(experiment.id)
        if paused and arm in paused:
            return self._controls[experiment.id], True
        return arm, False

    def paused_arms(self) -> dict[str, frozenset[str]]:
        """Per experiment, the arms paused now."""
        return dict(self._paused_arms)

    def set_paused(self, experiment_id: str, arms: frozenset[str]) -> None:
        """Pause exactly `arms` of the experiment (their units are served as its control arm).
        The map is replaced, never mutated, so a decision reads one consistent state unlocked."""
        if arms and experiment_id not in self._controls:
            raise ValueError(f"experiment {experiment_id!r} has no control arm to send paused traffic to")
        paused = {**self._paused_arms, experiment_id: arms}
        self._paused_arms = {key: value for key, value in paused.items() if value}

    def _decide(
        self,
        d: Decision,
        ctx: Context,
        now: float,
        placement: Placement,
        experience: Experience,
        experiment: Experiment | None,
        incidents: Collection[str],
        paused: bool,
    ) -> _Choice | None:
        d.consent = ctx.consent and not self.store.consent_withdrawn(ctx.unit)
        arm = None if experiment is None or d.arm in (HOLDOUT, INACTIVE) else self._arms[experiment.id][d.arm]
        q = _Request(d, ctx, now, placement, experience, arm, incidents, paused)
        step = flow.STEPS[flow.first_step(self._tests, q)]
        if step.code is None:  # the policy step
            return self._serve_policy(q)
        if step.serves is Serves.FIXED:
            assert q.arm.variant is not None  # the fixed step holds for an arm with a variant
            d.variant, d.policy = q.arm.variant, "fixed"
            d.action_probabilities = _point_mass(experience.variants, d.variant)
            d.reasons.append(step.code)
        elif step.fallback:
            self._fall_back(d, experience, step.code, error=step.serves is Serves.ERROR)
        else:
            d.reasons.append(step.code)
        return None

    def _serve_policy(self, q: _Request) -> _Choice:
        d, answer, kind = q.d, q.answer, q.arm.policy
        assert answer is not None  # a decision reaches the policy step with the policy's answer
        assert kind is not None
        variants = q.experience.variants
        d.variant, d.policy, d.model_version = variants[answer.chosen], kind, answer.model_version
        d.propensity, d.score = answer.propensity, answer.score if np.isfinite(answer.score) else None
        d.action_probabilities = [{"variant": v, "p": p} for v, p in zip(variants, answer.probabilities.tolist())]
        d.context, d.context_version = q.x[0].tolist(), flow.CONTEXT_VERSION
        d.reasons.append(POLICY_CODES[kind])
        return _Choice(q.experience.id, kind, q.x[0], answer.chosen)

    # The flow's tests (`flow.STEPS`), asked in order of a decision until one holds.

    def _store_failed(self, q: _Request) -> bool:
        try:
            q.stored = self.store.row(q.ctx.unit, q.ctx.session_id, q.now)
        except Exception:
            log.exception("feature store read failed")
            return True
        if q.d.segment is None:
            q.d.segment = "returning" if q.stored.get("returning") else "new"
        return False

    def _error(self, q: _Request) -> bool:
        return "error_burst" in q.incidents and self._rng().random() < self.faults.error_share

    def _holdout(self, q: _Request) -> bool:
        return q.d.arm == HOLDOUT

    def _inactive(self, q: _Request) -> bool:
        return q.d.arm == INACTIVE

    def _paused(self, q: _Request) -> bool:
        return q.paused

    def _control(self, q: _Request) -> bool:
        return flow.is_control(q.arm, q.experience)

    def _no_consent(self, q: _Request) -> bool:
        return gov.consent_block(q.d.consent)[0] is not None

    def _channel_not_served(self, q: _Request) -> bool:
        return gov.channel_block(q.placement, q.ctx.channel)[0] is not None

    def _out_of_stock(self, q: _Request) -> bool:
        in_stock = True if q.ctx.in_stock is None else q.ctx.in_stock
        return gov.stock_block(in_stock, self.scenario.governance)[0] is not None

    def _bought_today(self, q: _Request) -> bool:
        q.bought_today = self.store.bought_today(q.ctx.unit, q.now)
        return q.bought_today and gov.bought_today_block(q.experience, True, self.scenario.governance)[0] is not None

    def _capped(self, q: _Request) -> bool:
        return not self.caps.try_take(q.ctx.unit, q.ctx.channel, self.day_of(q.now))

    def _fixed(self, q: _Request) -> bool:
        return q.arm.variant is not None

    def _features_failed(self, q: _Request) -> bool:
        q.started = time.perf_counter()
        try:
            q.x = self._features(q.ctx, q.stored, gov.local_clock(q.now, self.tz)[1], q.incidents)
        except Exception:
            log.exception("feature step failed")
            return True
        return False

    def _model_unavailable(self, q: _Request) -> bool:
        """Asks the policy (the model step's two tests share the one call); a failure other
        than an unavailable model leaves no answer, for `_model_failed`."""
        kind = q.arm.policy
        assert kind is not None  # an arm without a fixed variant has a policy
        if kind == flow.OUTAGE_TARGET and "model_outage" in q.incidents:
            return True
        policy = self.policies[(q.experience.id, kind)]
        try:
            eligible = self._eligible[q.experience.id][int(q.bought_today)][None, :]
            version = policy.model_version
            probabilities = policy.probabilities(q.x, eligible)
            index, propensity = choose(probabilities, self._rng())
            chosen = int(index[0])
            q.answer = _Answer(
                probabilities[0], chosen, float(propensity[0]), float(policy.scores(q.x)[0, chosen]), version
            )
        except ModelUnavailable:
            return True
        except Exception:
            log.exception("policy %s failed", kind)
        return False

    def _model_failed(self, q: _Request) -> bool:
        return q.answer is None

    def _over_budget(self, q: _Request) -> bool:
        return time.perf_counter() - q.started > self.budget_s

    def _features(self, ctx: Context, stored: dict[str, Any], hour: float, incidents: Collection[str]) -> np.ndarray:
        live = {
            "device": ctx.device,
            "referrer": _referrer(ctx.referrer),
            "cart_value": ctx.cart_value,
            "category": ctx.category,
            "price_sensitivity": ctx.price_sensitivity,
            "pages_viewed": ctx.pages_viewed,
        }
        row = {**stored, **{key: value for key, value in live.items() if value is not None}}
        row["hour"] = hour
        if "latency_spike" in incidents:
            time.sleep(self.faults.latency_spike_ms / 1000.0)
        return encode([row])

    def _fall_back(self, d: Decision, experience: Experience, code: Code, error: bool = False) -> None:
        d.variant, d.policy, d.model_version, d.propensity, d.score = (
            experience.default_variant,
            "default",
            None,
            1.0,
            None,
        )
        d.action_probabilities = _point_mass(experience.variants, d.variant)
        d.context = d.context_version = None
        d.reasons.append(code)
        d.fallback, d.fallback_reason = True, code
        if error:
            d.status, d.error_code = "error", code

    # -- memos, outcomes and learning -------------------------------------------------------

    def _remember(self, d: Decision, now: float, choice: _Choice | None) -> None:
        memo = tuple(
            _Memo(
                d.user_id,
                d.session_id,
                d.placement,
                d.channel,
                d.experiment_id,
                d.arm,
                d.variant,
                now,
                *(choice or _NO_CHOICE),
            )
        )
        expired: list[tuple[Any, ...]] = []
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

    def _queue_rewards(self, outcomes: list[tuple[tuple[Any, ...], float]]) -> None:
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
        expired: list[tuple[Any, ...]] = []
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
