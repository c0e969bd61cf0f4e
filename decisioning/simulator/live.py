"""Live mode: simulated shoppers driving the running service over its real HTTP API.

Sessions arrive as a Poisson process at `rate` sessions per second. Each one is a coroutine
that walks the same behaviour model as the backfill (`behaviour.py`), asking the service for
every decision and reporting what happened: page views, `decide` on the homepage, product
page and cart, exposures of what was seen, clicks, add-to-cart, the order or the abandonment,
the recovery e-mail/push hours later (decide, open = exposure, click, order), identity
stitching on login (`/v1/identify`), NPS answers, consent withdrawals and opt-outs. Time inside
a session runs `speed` times faster than the model's (pages seconds apart, recovery messages
minutes later) so a demo fills the cockpit quickly.

Events and exposures are buffered and posted in batches several times a second; decisions are
asked one by one. Every request retries with exponential backoff (honouring `Retry-After`), so
a restart of the service costs nothing but time; what still cannot be sent is counted as
`unsent`. A progress line shows the rate, decisions, errors and unsent rows.

Incidents: `latency_spike`, `model_outage` and `error_burst` are asked of the service through
the decide request's `incidents` field; `srm_bug` drops a share of one arm's exposures on the
client (the scenario's srm incident names which); `ingestion_stall` holds the events back
until it ends (switched on by hand: until the run stops), so they arrive late. Incidents are
switched on by name, or follow the scenario's schedule from a given day 0. The customers are the
backfill's population (same raw ids, same attributes for the same population seed), so live
traffic continues the backfilled histories.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import numpy as np
import polars as pl

from decisioning.simulator import behaviour as bh
from decisioning.simulator import incidents as inc
from momento.scenario import Scenario, ScenarioError, load_scenario
from momento.settings import Settings

SERVICE_INCIDENTS = ("latency_spike", "model_outage", "error_burst")
DEFAULT_SPEED = 60.0
"""Session time runs this many times faster than the model's (a 45 s page gap takes 0.75 s)."""
POPULATION_SEED = 7
"""The population seed of `momento backfill`'s default, so live users are the backfilled ones."""
FLUSH_SECONDS = 0.25
BATCH_ROWS = 500
RETRIES = 20
BACKOFF_SECONDS = (0.1, 2.0)
"""First and largest pause between retries (doubling): about 30 s of patience in all, enough for
the service to restart on a busy machine."""
DRAIN_SECONDS = 3.0
"""At the end, in-flight sessions get this long to finish; pending recovery messages are dropped."""
_US = 1_000_000


@dataclass
class LiveStats:
    """What a live run did (rows accepted by the service, and what could not be sent)."""

    sessions: int = 0
    decisions: int = 0
    fallbacks: int = 0
    events: int = 0
    exposures: int = 0
    errors: int = 0
    retries: int = 0
    unsent: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (
            f"simulate {elapsed:6.1f}s  sessions {self.sessions} ({self.sessions / elapsed:.1f}/s)  "
            f"decisions {self.decisions} (fallback {self.fallbacks})  events {self.events}  "
            f"exposures {self.exposures}  errors {self.errors}  retries {self.retries}  unsent {self.unsent}"
        )


def _now() -> str:
    return datetime.now(UTC).isoformat()


class _Client:
    """The service's API with retries, and batched posting of events and exposures."""

    def __init__(self, client: httpx.AsyncClient, stats: LiveStats) -> None:
        self.http, self.stats = client, stats
        self.buffers: dict[str, list[dict[str, Any]]] = {"events": [], "exposures": []}
        self.hold_events = False

    async def post(self, path: str, body: dict[str, Any], rows: int) -> dict[str, Any] | None:
        """POST with retries; None (and `rows` counted unsent) when it cannot be delivered."""
        pause = BACKOFF_SECONDS[0]
        for attempt in range(RETRIES + 1):
            try:
                response = await self.http.post(path, json=body)
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code < 400:
                answer: dict[str, Any] = response.json()
                return answer
            if response is not None and response.status_code < 500 and response.status_code not in (408, 429):
                self.stats.errors += 1  # refused: retrying the same body cannot help
                self.stats.unsent += rows
                return None
            if attempt == RETRIES:
                break
            self.stats.retries += 1
            wait = pause
            if response is not None and response.headers.get("retry-after", "").isdigit():
                wait = max(wait, float(response.headers["retry-after"]))
            await asyncio.sleep(min(wait, BACKOFF_SECONDS[1]))
            pause = min(pause * 2, BACKOFF_SECONDS[1])
        self.stats.errors += 1
        self.stats.unsent += rows
        return None

    def queue(self, kind: str, row: dict[str, Any]) -> None:
        self.buffers[kind].append(row)

    async def flush(self, final: bool = False) -> None:
        for kind in ("exposures", "events"):
            if kind == "events" and self.hold_events and not final:
                continue
            rows, self.buffers[kind] = self.buffers[kind], []
            for start in range(0, len(rows), BATCH_ROWS):
                batch = rows[start : start + BATCH_ROWS]
                if await self.post(f"/v1/{kind}", {kind: batch}, len(batch)) is not None:
                    setattr(self.stats, kind, getattr(self.stats, kind) + len(batch))


@dataclass
class _Visitor:
    """Who a request is about: the ids the client sends, the person behind them, the session
    (None for a message) and channel, and the person's attributes (for the true effects)."""

    ids: dict[str, str]
    person: int
    session_id: str | None
    channel: str
    attrs: dict[str, np.ndarray]


class LiveSimulator:
    """Drives the service at `url` with sessions of `population` (see the module docstring)."""

    def __init__(
        self,
        url: str,
        scenario: Scenario,
        population: bh.Population,
        catalogue: pl.DataFrame,
        *,
        rate: float,
        seed: int | None = None,
        incidents: Collection[str] = (),
        speed: float = DEFAULT_SPEED,
        token: str | None = None,
        schedule_start: datetime | None = None,
    ) -> None:
        unknown = set(incidents) - set(inc.NAMES)
        if unknown:
            raise ValueError(f"unknown incident {sorted(unknown)[0]!r} (known: {', '.join(inc.NAMES)})")
        if rate <= 0 or speed <= 0:
            raise ValueError("rate and speed must be positive")
        self.url, self.s, self.b, self.population = url.rstrip("/"), scenario, scenario.behaviour, population
        self.rate, self.speed = rate, speed
        self.rng = np.random.default_rng(seed)
        self.incidents = set(incidents)
        self.windows = inc.schedule(scenario, int(schedule_start.timestamp() * _US)) if schedule_start else []
        self.srm = inc.srm_setting(scenario)
        self.token = token
        self.catalogue = catalogue
        self.effects = {
            p.id: bh.EffectTable(scenario, scenario.experience_by_placement[p.id])
            for p in scenario.placements
            if p.id in scenario.experience_by_placement
        }
        self.categories = list(scenario.catalogue.categories)
        self.withdrawn: set[int] = set()
        self.messages: dict[tuple[int, int], int] = {}
        self.run_id = uuid.uuid4().hex[:8]
        self.counter = 0
        self.stats = LiveStats()
        self.stop: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the run -----------------------------------------------------------------------------

    async def run(self, duration: float | None, progress: bool = False) -> LiveStats:
        """Run for `duration` seconds (None: until `request_stop`), then drain and flush."""
        self.stop = asyncio.Event()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        async with httpx.AsyncClient(base_url=self.url, headers=headers, timeout=5.0, limits=limits) as http:
            self.client = _Client(http, self.stats)
            background = [asyncio.create_task(self._flush_loop())]
            if progress:
                background.append(asyncio.create_task(self._progress_loop()))
            await self._arrivals(duration)
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=DRAIN_SECONDS)
            for task in [*self._tasks, *background]:
                task.cancel()
            await asyncio.gather(*self._tasks, *background, return_exceptions=True)
            await self.client.flush(final=True)
        if progress:
            print("\n" + self.stats.line(), file=sys.stderr, flush=True)
        return self.stats

    def request_stop(self) -> None:
        if self.stop is not None:
            self.stop.set()

    async def _arrivals(self, duration: float | None) -> None:
        stop = self.stop
        assert stop is not None  # `run` sets it before the arrivals start
        tick = min(0.1, 1.0 / self.rate)
        started = time.monotonic()
        while not stop.is_set():
            if duration is not None and time.monotonic() - started >= duration:
                return
            count = int(self.rng.poisson(self.rate * tick))
            if count:
                self._start_sessions(count)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick)

    def _start_sessions(self, count: int) -> None:
        users = bh.session_users(self.rng, self.population, count)
        starts = np.full(count, int(time.time() * _US), dtype=np.int64)
        plan = bh.plan_sessions(self.s, self.population, self.catalogue, users, starts, self.rng)
        for i in range(count):
            self._spawn(self._session({key: value[i] for key, value in plan.items()}))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.client.hold_events = "ingestion_stall" in self.active()
            await self.client.flush()

    def active(self) -> set[str]:
        """The incidents on now: the ones switched on, and the schedule's current ones."""
        now = np.array([int(time.time() * _US)])
        return self.incidents | {w.name for w in self.windows if inc.active([w], w.name, now)[0]}

    async def _progress_loop(self) -> None:
        end = "\r" if sys.stderr.isatty() else "\n"
        every = 1.0 if sys.stderr.isatty() else 10.0
        while True:
            await asyncio.sleep(every)
            print(self.stats.line(), end=end, file=sys.stderr, flush=True)

    async def _pause(self, model_us: float) -> None:
        await asyncio.sleep(model_us / _US / self.speed)

    # -- one session ---------------------------------------------------------------------------

    def _next_id(self, kind: str) -> str:
        self.counter += 1
        return f"{kind}-{self.run_id}-{self.counter}"

    def _consent(self, person: int) -> bool:
        return bool(self.population.column("consent")[person]) and person not in self.withdrawn

    async def _session(self, row: dict[str, Any]) -> None:
        self.stats.sessions += 1
        person = int(row["user"])
        pop = self.population
        visitor = _Visitor(
            ids={"user_id": bh.raw_user_id(person)},
            person=person,
            session_id=self._next_id("session"),
            channel=str(row["channel"]),
            attrs=bh.attributes(pop, np.array([person])),
        )
        if row["anonymous"]:
            anonymous = f"a{self.rng.integers(0, 2**63):016x}"
            visitor.ids = {"anonymous_id": anonymous}
            if row["login"]:
                await self.client.post(
                    "/v1/identify", {"anonymous_id": anonymous, "user_id": bh.raw_user_id(person)}, 1
                )
                visitor.ids = {"user_id": bh.raw_user_id(person), "anonymous_id": anonymous}
        category = self.categories[int(row["category"])]
        item = self.catalogue.row(int(row["cart_item"]), named=True)
        context = {
            "session_id": visitor.session_id,
            "channel": visitor.channel,
            "device": visitor.attrs["device"][0],
            "referrer": str(row["referrer"]),
            "price_sensitivity": visitor.attrs["price_sensitivity"][0],
            "segment": visitor.attrs["segment"][0],
            "region": visitor.attrs["region"][0],
            "category": category,
        }
        multiplier = np.ones(len(bh.EFFECT_KINDS))
        credited: dict[str, Any] | None = None
        self._event(visitor, "page_view")
        # (placement, when, pages so far, cart value, item)
        steps: list[tuple[str, int, int, float, dict[str, Any] | None]] = [("homepage_showcase", 0, 1, 0.0, None)]
        if row["pages"] >= 2:
            steps.append(("product_cta", int(row["second_page_us"]), 2, 0.0, None))
        if row["cart"]:
            steps.append(("cart_cross_sell", int(row["cart_us"]), int(row["pages"]), float(item["price"]), item))
        elapsed = 0
        for index, (placement, at_us, pages, cart_value, cart_item) in enumerate(steps):
            await self._pause(at_us - elapsed)
            elapsed = at_us
            if placement == "product_cta":
                self._event(visitor, "page_view", item_id=item["item_id"], category=category)
            if cart_item is not None:
                self._event(
                    visitor,
                    "add_to_cart",
                    item_id=cart_item["item_id"],
                    category=cart_item["category"],
                    revenue=cart_value,
                    quantity=1,
                )
            decision = await self._decide(
                visitor,
                placement,
                context,
                pages_viewed=pages,
                cart_value=cart_value or None,
                in_stock=bool(row["in_stock"][index]),
            )
            if decision is None:
                continue
            m = self._multipliers(placement, decision, visitor)
            if row["seen"][index]:
                multiplier *= m
                credited = decision
                self._exposure(visitor, decision)
                if row["u_click"][index] < bh.click_probability(self.b, m[:1])[0]:
                    self._event(visitor, "click", decision=decision)
        later = int(row["pages"]) - min(int(row["pages"]), 2)  # pages after the product page
        for _ in range(later):
            await self._pause(max(row["end_us"] - elapsed, 0) / (later + 1))
            self._event(visitor, "page_view", item_id=item["item_id"], category=category)
        await self._pause(max(row["end_us"] - elapsed, 0) / (later + 1))
        bought = False
        if row["cart"]:
            p = bh.purchase_given_cart(
                self.b,
                bh.conversion_base(self.b, visitor.attrs["segment"], visitor.attrs["price_sensitivity"]),
                multiplier[1:2],
            )[0]
            bought = bool(row["u_buy"] < p)
            if bought:
                await self._pause(row["checkout_us"])
                revenue = float(bh.order_value(self.b, np.array([row["z_value"]]), multiplier[2:3])[0])
                self._order(visitor, revenue, 0.0, item, credited)
        if row["nps"]:
            self._event(visitor, "nps_response", nps_score=int(bh.nps_score(self.b, np.array([row["nps_z"]]))[0]))
        if row["withdraw"] and self._consent(person):
            self.withdrawn.add(person)
            self._event(visitor, "consent_change", consent=False)
        if row["cart"] and not bought and "user_id" in visitor.ids and self._consent(person):
            self._spawn(self._recovery(visitor, row, item))

    async def _recovery(self, visitor: _Visitor, row: dict[str, Any], item: dict[str, Any]) -> None:
        """The triggered e-mail (web shoppers) or push (app shoppers) after an abandoned cart."""
        await self._pause(row["message_us"])
        if not self._consent(visitor.person):
            return
        channel = "push" if visitor.channel == "app" else "email"
        message = _Visitor(visitor.ids, visitor.person, None, channel, visitor.attrs)
        context = {
            "channel": channel,
            "device": visitor.attrs["device"][0],
            "price_sensitivity": visitor.attrs["price_sensitivity"][0],
            "segment": visitor.attrs["segment"][0],
            "region": visitor.attrs["region"][0],
            "category": item["category"],
        }
        decision = await self._decide(message, "cart_recovery_offer", context, cart_value=float(item["price"]))
        if decision is None:
            return
        day = int(time.time() // 86_400)
        sent_today = self.messages.get((visitor.person, day), 0)
        self.messages[(visitor.person, day)] = sent_today + 1
        if sent_today >= 1 and row["u_opt_out"] < self.b.opt_out_per_message:
            self.withdrawn.add(visitor.person)
            self._event(message, "opt_out", consent=False)
        if row["u_open"] >= bh.open_probability(self.b, np.array([channel]))[0]:
            return
        await self._pause(row["open_us"])
        self._event(message, "push_open" if channel == "push" else "email_open", decision=decision)
        self._exposure(message, decision)
        m = self._multipliers("cart_recovery_offer", decision, visitor)
        if row["u_message"] < bh.recovery_click_probability(self.b, m[None, :])[0]:
            self._event(message, "click" if channel == "push" else "email_click", decision=decision)
        if row["u_message"] < bh.recovery_purchase_probability(m[1:2])[0]:
            experience = self.s.experience_by_placement["cart_recovery_offer"]
            discount = experience.discount.get(decision["variant"], 0.0)
            revenue = float(bh.order_value(self.b, np.array([row["z_value"]]), m[2:3])[0])
            self._order(message, revenue, discount, item, decision)

    # -- requests ------------------------------------------------------------------------------

    async def _decide(
        self, visitor: _Visitor, placement: str, context: dict[str, Any], **extra: Any
    ) -> dict[str, Any] | None:
        body = {
            **visitor.ids,
            **context,
            **{k: v for k, v in extra.items() if v is not None},
            "placement": placement,
            "consent": self._consent(visitor.person),
        }
        service_incidents = sorted(self.active() & set(SERVICE_INCIDENTS))
        if service_incidents:
            body["incidents"] = service_incidents
        answer = await self.client.post("/v1/decide", body, 1)
        if answer is None:
            return None
        decision: dict[str, Any] = answer["decisions"][0]
        self.stats.decisions += 1
        self.stats.fallbacks += bool(decision["fallback"])
        return decision

    def _multipliers(self, placement: str, decision: dict[str, Any], visitor: _Visitor) -> np.ndarray:
        table = self.effects[placement]
        return cast(np.ndarray, table.of(np.array([table.variants.index(decision["variant"])]), visitor.attrs)[0])

    def _exposure(self, visitor: _Visitor, decision: dict[str, Any]) -> None:
        experiment, arm, share = self.srm
        if (
            "srm_bug" in self.active()
            and decision.get("experiment_id") == experiment
            and decision.get("arm") == arm
            and self.rng.random() < share
        ):
            return
        row = {
            "decision_id": decision["decision_id"],
            "ts": _now(),
            "placement": decision["placement"],
            "experiment_id": decision.get("experiment_id"),
            "arm": decision["arm"],
            "variant": decision["variant"],
            "channel": visitor.channel,
            **visitor.ids,
        }  # complete: a restarted service has forgotten the decision
        if visitor.session_id:
            row["session_id"] = visitor.session_id
        self.client.queue("exposures", row)

    def _event(self, visitor: _Visitor, event_type: str, decision: dict[str, Any] | None = None, **fields: Any) -> None:
        row = {
            "event_id": self._next_id("ev"),
            "event_type": event_type,
            "ts": _now(),
            "channel": visitor.channel,
            "device": visitor.attrs["device"][0],
            "segment": visitor.attrs["segment"][0],
            "region": visitor.attrs["region"][0],
            **visitor.ids,
            **fields,
        }
        if visitor.session_id:
            row["session_id"] = visitor.session_id
        if decision is not None:
            row.update(
                decision_id=decision["decision_id"],
                placement=decision["placement"],
                experiment_id=decision.get("experiment_id"),
            )
        self.client.queue("events", row)

    def _order(
        self, visitor: _Visitor, revenue: float, discount: float, item: dict[str, Any], decision: dict[str, Any] | None
    ) -> None:
        margin, cost = bh.margin_and_discount(self.b, np.array([revenue]), np.array([discount]))
        self._event(
            visitor,
            "purchase",
            decision=decision,
            item_id=item["item_id"],
            category=item["category"],
            quantity=1,
            revenue=round(revenue, 2),
            margin=round(float(margin[0]), 2),
            discount_cost=round(float(cost[0]), 2),
        )


def simulate(
    url: str,
    scenario: Scenario,
    *,
    rate: float,
    duration: float | None,
    seed: int | None = None,
    incidents: Collection[str] = (),
    users: int | None = None,
    population_seed: int = POPULATION_SEED,
    speed: float = DEFAULT_SPEED,
    key: str = Settings.pseudonym_key,
    token: str | None = None,
    schedule_start: datetime | None = None,
    progress: bool = False,
) -> LiveStats:
    """Run live mode against the service at `url` (blocking) and return what it did.

    `schedule_start`: day 0 of the scenario's incident schedule (e.g. the backfill's start), so
    scheduled incidents switch on and off by the clock; without it only `incidents` are on."""
    population = bh.make_population(scenario, users or scenario.population.users, population_seed, key)
    catalogue = bh.make_catalogue(scenario, bh.catalogue_rng(population_seed))
    simulator = LiveSimulator(
        url,
        scenario,
        population,
        catalogue,
        rate=rate,
        seed=seed,
        incidents=incidents,
        speed=speed,
        token=token,
        schedule_start=schedule_start,
    )
    return asyncio.run(_run_until_signal(simulator, duration, progress))


async def _run_until_signal(simulator: LiveSimulator, duration: float | None, progress: bool) -> LiveStats:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread: the caller stops us
            loop.add_signal_handler(sig, simulator.request_stop)
    return await simulator.run(duration, progress)


def run_live(
    settings: Settings,
    url: str,
    rate: float,
    duration: float | None,
    seed: int | None,
    incidents: Collection[str],
    users: int | None = None,
) -> int:
    """`momento simulate`: drive the service until the duration ends or Ctrl-C; `users`: the
    population drawn from (the backfill's `--users`, so live traffic continues its customers)."""
    try:
        scenario = load_scenario(settings.scenario)
        stats = simulate(
            url,
            scenario,
            rate=rate,
            duration=duration,
            seed=seed,
            incidents=incidents,
            users=users,
            key=settings.pseudonym_key,
            token=settings.api_token,
            progress=True,
        )
    except (ValueError, ScenarioError) as exc:
        print(f"momento simulate: {exc}", file=sys.stderr)
        return 2
    if stats.decisions == 0 and stats.sessions > 0:
        print(f"momento simulate: the service at {url} answered no decision", file=sys.stderr)
        return 1
    return 0
