"""What the service's endpoints do: decide, store events, exposures and identity links, erase a
customer, describe the catalogue and report health. Everything the endpoints share lives here
(scenario, engine, lake writer, identities, telemetry), with the lifecycle that starts and stops it.

Nothing here knows HTTP: a request the service will not carry out raises a `decisioning.errors`
error (`decisioning.http` turns it into a status and a body). Writes are refused with
`BackpressureError` before the writer's queue is full: ingestion first (once the queue is fuller
than `1 - DECISION_RESERVE` of its bound), so decisions keep flowing while a slow writer pushes
back on bulk writes; and ingestion is refused while the lake's disk fails writes (full or
read-only), so nothing is acknowledged that the disk cannot take.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from decisioning import pauses
from decisioning.api_models import (
    Accepted,
    DecideRequest,
    Erased,
    EventsRequest,
    ExposuresRequest,
    Health,
    IdentifyRequest,
)
from decisioning.engine import Context, Decision, DecisionLog, Engine, Faults, UnknownPlacement
from decisioning.errors import BackpressureError, BatchTooLargeError, InvalidInputError, UnknownPlacementError
from decisioning.flow import control_arm
from decisioning.identity import IdentityMap, anonymous_unit, customer_unit
from decisioning.recovery import recover
from decisioning.telemetry import Telemetry
from momento.lake.schema import BatchError, to_table
from momento.lake.warehouse import Warehouse
from momento.lake.writer import LakeWriter, QueueFull, open_table
from momento.scenario import Scenario, load_scenario
from momento.settings import Settings

log = logging.getLogger(__name__)

DURABLE_WAIT_SECONDS = 10.0
DECISION_RESERVE = 0.1
"""Share of the writer queue's bound that only decision rows may fill (events, exposures and
identities are retried by their clients; an unanswered decision is a broken page)."""


class Service:
    """Everything the endpoints share: scenario, engine, writer, identities, telemetry."""

    def __init__(
        self,
        settings: Settings,
        writer: LakeWriter | None,
        scenario: Scenario | None,
        *,
        faults: Faults,
        incidents: Collection[str],
        flush_delay_seconds: float | None,
        seed: int | None,
        attribution_seconds: float,
    ) -> None:
        self.settings = settings
        self.scenario = scenario or load_scenario(settings.scenario)
        self.owns_writer = writer is None
        if flush_delay_seconds is None:
            flush_delay_seconds = settings.flush_delay_seconds
        self.writer = writer or LakeWriter(
            settings.lake,
            flush_rows=settings.flush_rows,
            flush_seconds=settings.flush_seconds,
            queue_limit=settings.queue_limit,
            compact_every_seconds=settings.compact_every_seconds,
            vacuum_retention_hours=settings.vacuum_retention_hours,
            flush_delay_seconds=flush_delay_seconds,
        )
        self.engine = Engine(
            self.scenario,
            budget_ms=settings.decision_budget_ms,
            faults=faults,
            seed=seed,
            attribution_seconds=attribution_seconds,
        )
        self.incidents = frozenset(incidents) | frozenset(settings.incidents)
        self.identities = IdentityMap()
        self.decision_log = DecisionLog(self.writer)
        self.telemetry = Telemetry(self.writer, lambda: self.decision_log.pending)
        self.served: Counter[tuple[str, bool]] = Counter()
        self.started = time.time()
        self._stop = threading.Event()
        self._pause_lock = threading.Lock()
        self._maintenance: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        to_table("decisions", [])  # Arrow's first conversion imports pandas: not on a request's time
        self._recover()
        self._recover_pauses()
        self._maintenance = threading.Thread(target=self._maintain, name="learner", daemon=True)
        self._maintenance.start()

    def _recover(self) -> None:
        """Identity links, consent withdrawals, today's caps and purchases back from the lake
        (decisioning.recovery). An unreadable lake is logged and the service starts without
        them: it still refuses personalisation to whoever the client says has no consent."""
        try:
            warehouse = Warehouse(self.writer.root)
            try:
                recovered = recover(self.engine, self.identities, warehouse)
            finally:
                warehouse.close()
        except Exception:
            log.exception("governance state not recovered from the lake; serving without it")
            return
        log.info(
            "recovered from the lake: %d identity links, %d consent withdrawals, %d buyers today, "
            "%d capped user-channels",
            *recovered,
        )

    def _recover_pauses(self) -> None:
        """The arms paused when the service last stopped, back from the audit (`arm_pauses`);
        an arm the scenario no longer has is ignored."""
        try:
            paused = pauses.load(self.writer.root)
        except Exception:
            log.exception("arm pauses not recovered from the lake; serving every arm")
            return
        for experiment_id, arms in paused.items():
            experiment = self.scenario.experiment_by_id.get(experiment_id)
            known = frozenset(arm.name for arm in experiment.arms) if experiment else frozenset()
            if arms & known:
                self.engine.set_paused(experiment_id, arms & known)
                log.warning("experiment %s: arms %s paused (from the audit)", experiment_id, sorted(arms & known))

    def _maintain(self) -> None:
        """Apply policy outcomes every second and sweep expired features every minute."""
        next_sweep = time.monotonic() + 60
        while not self._stop.wait(1.0):
            try:
                learned = self.engine.learn()
                if learned:
                    log.debug("policies learned from %d outcomes", learned)
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + 60
                    self.engine.store.sweep()
            except Exception:
                log.exception("maintenance step failed; retried in a second")

    def stop(self) -> None:
        self._stop.set()
        if self._maintenance is not None:
            self._maintenance.join()
        self.decision_log.close()
        if self.owns_writer:
            self.writer.close()

    # -- helpers -----------------------------------------------------------------------------

    def unit(self, user_id: str | None, anonymous_id: str | None) -> tuple[str, str | None]:
        """(decision unit, stored anonymous id) for raw ids."""
        key = self.settings.pseudonym_key
        anonymous = anonymous_unit(anonymous_id, key) if anonymous_id is not None else None
        customer = customer_unit(user_id, key) if user_id is not None else None
        return self.identities.unit(customer, anonymous), anonymous

    def backpressure(self, endpoint: str) -> BackpressureError:
        """The refusal for a full writer queue (counted)."""
        self.telemetry.backpressure.labels(endpoint).inc()
        return BackpressureError("the lake writer's queue is full; retry shortly")

    def room_for(self, rows: int, endpoint: str) -> None:
        """Refuse (503) what the writer cannot take: ingestion while the lake's storage fails
        its writes (a full or read-only disk: what is buffered stays buffered, retried until
        the disk takes it), any write past its share of the queue."""
        trouble = self.writer.stats.write_error
        if trouble is not None and endpoint != "decide":
            self.telemetry.backpressure.labels(endpoint).inc()
            raise BackpressureError(
                f"the lake cannot be written right now ({trouble}); nothing was stored, retry shortly"
            )
        reserve = 0 if endpoint == "decide" else int(self.writer.queue_limit * DECISION_RESERVE)
        if not self.decision_log.has_room(rows, reserve):
            raise self.backpressure(endpoint)

    def append(self, table: str, rows: list[dict[str, Any]], endpoint: str) -> int:
        self.room_for(len(rows), endpoint)
        try:
            return self.writer.append(table, rows)
        except QueueFull:
            raise self.backpressure(endpoint) from None
        except BatchError as exc:
            raise InvalidInputError(str(exc), exc.field) from None

    def check_batch(self, n: int, field: str) -> None:
        limit = self.settings.max_batch_events
        if n > limit:
            raise BatchTooLargeError(f"{field} holds {n} items; the limit is {limit} per request", field)

    # -- endpoints ---------------------------------------------------------------------------

    def decide(self, body: DecideRequest) -> list[Decision]:
        placements = body.placement_list
        for index, placement in enumerate(placements):
            try:
                self.engine.resolve(placement)
            except UnknownPlacement as exc:
                field = "placement" if body.placement is not None else f"placements.{index}"
                raise UnknownPlacementError(str(exc), field) from None
        self.room_for(len(placements), "decide")
        unit, _ = self.unit(body.user_id, body.anonymous_id)
        incidents = self.incidents.union(body.incidents)
        decisions = []
        for placement in placements:
            ctx = Context(
                unit=unit,
                placement=placement,
                channel=body.channel,
                consent=body.consent,
                session_id=body.session_id,
                device=body.device,
                referrer=body.referrer,
                category=body.category,
                cart_value=body.cart_value,
                price_sensitivity=body.price_sensitivity,
                pages_viewed=body.pages_viewed,
                in_stock=body.in_stock,
                segment=body.segment,
                region=body.region,
            )
            decisions.append(self.engine.decide(ctx, incidents))
        self.decision_log.add([d.row() for d in decisions])
        for d in decisions:
            self.telemetry.record(d)
            self.served[(d.experience_id, d.fallback)] += 1
        return decisions

    def events(self, body: EventsRequest, wait: str | None) -> Accepted:
        self.check_batch(len(body.events), "events")
        now = datetime.now(UTC)
        rows: list[dict[str, Any]] = []
        units: list[str] = []
        for event in body.events:
            unit, anonymous = self.unit(event.user_id, event.anonymous_id)
            memo = self.engine.recall(event.decision_id) if event.decision_id else None
            rows.append(
                {
                    "event_id": event.event_id,
                    "ts": event.ts or now,
                    "received_at": now,
                    "user_id": unit,
                    "anonymous_id": anonymous,
                    "session_id": event.session_id,
                    "channel": event.channel,
                    "event_type": event.event_type,
                    "placement": event.placement or (memo.placement if memo else None),
                    "decision_id": event.decision_id,
                    "experiment_id": event.experiment_id or (memo.experiment_id if memo else None),
                    "item_id": event.item_id,
                    "category": event.category,
                    "quantity": event.quantity,
                    "revenue": event.revenue,
                    "margin": event.margin,
                    "discount_cost": event.discount_cost,
                    "nps_score": event.nps_score,
                    "consent": event.consent,
                    "device": event.device,
                    "segment": event.segment,
                    "region": event.region,
                    "properties": json.dumps(event.properties) if event.properties is not None else None,
                }
            )
            units.append(unit)
        seq = self.append("events", rows, "events")
        for event, row, unit in zip(body.events, rows, units):
            self.engine.store.observe_event(
                unit,
                event.session_id,
                event.event_type,
                row["ts"].timestamp(),
                category=event.category,
                revenue=event.revenue,
                consent=event.consent,
            )
            if event.decision_id and self.engine.record_outcome(event.decision_id, event.event_type):
                self.telemetry.outcomes.inc()
        for event_type, n in Counter(event.event_type for event in body.events).items():
            self.telemetry.events.labels(event_type).inc(n)
        return Accepted(accepted=len(rows), durable=self.durable(seq) if wait == "durable" else None)

    def durable(self, seq: int) -> bool:
        """Wait until the append numbered `seq` is committed (False after DURABLE_WAIT_SECONDS)."""
        if self.writer.wait_committed(seq, self.writer.flush_seconds + 1.0):
            return True
        # An append whose rows were all duplicates gets a number no timed flush ever marks
        # committed (momento.lake.writer); an explicit flush marks it.
        self.writer.flush()
        return self.writer.wait_committed(seq, DURABLE_WAIT_SECONDS)

    def exposures(self, body: ExposuresRequest, wait: str | None) -> Accepted:
        self.check_batch(len(body.exposures), "exposures")
        now = datetime.now(UTC)
        rows = []
        for index, exposure in enumerate(body.exposures):
            memo = self.engine.recall(exposure.decision_id)
            if exposure.user_id is not None or exposure.anonymous_id is not None:
                unit, _ = self.unit(exposure.user_id, exposure.anonymous_id)
            elif memo is not None:
                unit = memo.unit
            else:
                raise InvalidInputError(
                    "user_id or anonymous_id is required for a decision this service does not remember",
                    f"exposures.{index}.user_id",
                )
            row = {
                "exposure_id": exposure.exposure_id or exposure.decision_id,
                "decision_id": exposure.decision_id,
                "ts": exposure.ts or now,
                "user_id": unit,
                "session_id": exposure.session_id or (memo.session_id if memo else None),
            }
            for name in ("placement", "experiment_id", "arm", "variant", "channel"):
                row[name] = getattr(exposure, name) or (getattr(memo, name) if memo else None)
            missing = [name for name in ("placement", "variant", "channel") if row[name] is None]
            if missing:
                raise InvalidInputError(
                    f"unknown decision_id: send {', '.join(missing)} with it", f"exposures.{index}.{missing[0]}"
                )
            rows.append(row)
        seq = self.append("exposures", rows, "exposures")
        self.telemetry.exposures.inc(len(rows))
        return Accepted(accepted=len(rows), durable=self.durable(seq) if wait == "durable" else None)

    def identify(self, body: IdentifyRequest) -> Accepted:
        key = self.settings.pseudonym_key
        anonymous, customer = anonymous_unit(body.anonymous_id, key), customer_unit(body.user_id, key)
        ts = body.ts or datetime.now(UTC)
        self.append("identities", [{"anonymous_id": anonymous, "user_id": customer, "ts": ts}], "identify")
        self.identities.link(anonymous, customer)
        self.engine.store.merge(anonymous, customer, ts.timestamp())
        self.telemetry.identities.inc()
        return Accepted(accepted=1)

    def erase(self, raw_user_id: str, requested_by: str | None) -> Erased:
        if not raw_user_id.strip() or len(raw_user_id) > 128:
            raise InvalidInputError("user_id must be 1-128 characters", "user_id")
        customer = customer_unit(raw_user_id, self.settings.pseudonym_key)
        units = [customer, *self.identities.forget(customer), *self._linked_in_lake(customer)]
        for unit in dict.fromkeys(units):
            self.engine.erase(unit)
        try:
            self.decision_log.drain()  # their decision rows must reach the lake before the delete
        except QueueFull:
            raise self.backpressure("erase") from None
        totals: Counter[str] = Counter()
        for unit in dict.fromkeys(units):
            totals.update(self.writer.erase_user(unit, requested_by))
        self.telemetry.erasures.inc()
        return Erased(erased=True, rows_deleted=dict(totals))

    def _linked_in_lake(self, customer: str) -> list[str]:
        """Anonymous ids the lake links to `customer` (links older than the in-memory map)."""
        table = open_table(self.writer.root, "identities")
        if table is None or not table.file_uris():
            return []
        links = table.to_pyarrow_dataset().to_table(columns=["anonymous_id", "user_id"])
        # compared as plain strings: the Delta reader may hand the column back as string_view
        mine = pc.equal(links.column("user_id").cast(pa.string()), customer)
        linked: list[str] = links.filter(mine).column("anonymous_id").cast(pa.string()).to_pylist()
        return linked

    def set_pause(
        self, experiment_id: str, arm: str, pause: bool, body: pauses.PauseRequest, client: str
    ) -> pauses.PauseState:
        """Pause or resume `arm` of `experiment_id`: its units are served as the control arm from the
        next decision on; the change is audited in `arm_pauses` and committed before the answer."""
        experiment = self.scenario.experiment_by_id.get(experiment_id)
        if experiment is None:
            known = ", ".join(sorted(self.scenario.experiment_by_id))
            raise InvalidInputError(f"unknown experiment {experiment_id!r} (known: {known})", "experiment_id")
        names = [a.name for a in experiment.arms]
        if arm not in names:
            raise InvalidInputError(
                f"experiment {experiment_id!r} has no arm {arm!r} (arms: {', '.join(names)})", "arm"
            )
        control = control_arm(experiment, self.scenario.experience_by_id[experiment.experience])
        if control is None:
            raise InvalidInputError(
                f"experiment {experiment_id!r} has no control arm to send paused traffic to", "experiment_id"
            )
        if arm == control.name:
            raise InvalidInputError("the control arm cannot be paused: paused arms' traffic goes to it", "arm")
        with self._pause_lock:
            current = self.engine.paused_arms().get(experiment_id, frozenset())
            if (arm in current) == pause:
                return pauses.PauseState(
                    experiment_id=experiment_id,
                    arm=arm,
                    paused=pause,
                    changed=False,
                    served_as=control.name if pause else None,
                )
            row = pauses.audit_row(experiment_id, arm, pauses.PAUSE if pause else pauses.RESUME, body, client)
            seq = self.append(pauses.TABLE, [row], "pause")
            self.engine.set_paused(experiment_id, current | {arm} if pause else current - {arm})
        log.warning(
            "experiment %s: arm %s %s by %s", experiment_id, arm, "paused" if pause else "resumed", row["actor"]
        )
        return pauses.PauseState(
            experiment_id=experiment_id,
            arm=arm,
            paused=pause,
            changed=True,
            served_as=control.name if pause else None,
            durable=self.durable(seq),
        )

    def experiences(self) -> dict[str, Any]:
        population = self.scenario.population
        catalogue = []
        for experience in self.scenario.experiences:
            placement = self.scenario.placement_by_id[experience.placement]
            experiment = self.scenario.experiment_by_experience.get(experience.id)
            running = experiment is not None and experiment.status == "running"
            arms = []
            personalised_share = 0.0
            for arm in experiment.arms if experiment else []:
                share = arm.share * (1 - population.holdout_share)
                arms.append(
                    {
                        "name": arm.name,
                        "share": arm.share,
                        "traffic_share": share,
                        "variant": arm.variant,
                        "policy": arm.policy,
                    }
                )
                if arm.variant != experience.default_variant:
                    personalised_share += share
            served, fallbacks = self.served[(experience.id, False)], self.served[(experience.id, True)]
            catalogue.append(
                {
                    "experience_id": experience.id,
                    "name": experience.name,
                    "placement": experience.placement,
                    "journey": placement.journey,
                    "channels": list(placement.channels),
                    "policy": experience.policy,
                    "variants": list(experience.variants),
                    "default_variant": experience.default_variant,
                    "experiment_id": experiment.id if experiment else None,
                    "status": experiment.status if experiment else "none",
                    "active_today": running,
                    "hypothesis": experiment.hypothesis if experiment else None,
                    "allocation": {"holdout": population.holdout_share, "arms": arms},
                    "eligible_share": personalised_share if running else 0.0,
                    "decisions_served": served + fallbacks,
                    "fallback_share": fallbacks / (served + fallbacks) if served + fallbacks else None,
                }
            )
        return {"scenario": self.scenario.business.name, "experiences": catalogue}

    def health(self) -> Health:
        stats = self.writer.stats
        stale = stats.queued_rows > 0 and (stats.last_flush_at or self.started) < time.time() - max(
            10.0, 5 * self.writer.flush_seconds
        )
        return Health(
            status="degraded" if stale else "ok",
            uptime_seconds=round(time.time() - self.started, 3),
            scenario=self.scenario.business.name,
            writer={
                "queued_rows": stats.queued_rows,
                "committed_rows": stats.committed_rows,
                "commits": stats.commits,
                "flush_errors": stats.flush_errors,
                "last_flush_at": stats.last_flush_at,
                "pending_decisions": self.decision_log.pending,
            },
        )
