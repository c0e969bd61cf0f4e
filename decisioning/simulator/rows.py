"""The lake's rows from a finished backfill: events, decisions, exposures and identities.

Pure assembly with polars and numpy over the simulation's arrays: ids, timestamps within a
session, which item a page shows, arrival lags. Session-level columns (who, device, segment)
are gathered by session index rather than joined, and events are sorted by time once, so a
10M-event backfill assembles in seconds. Everything after the backfill's end is left out;
the `ingestion_stall` incident delays `received_at`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

import numpy as np
import polars as pl
import pyarrow as pa

from decisioning.flow import CONTEXT_VERSION
from decisioning.simulator import behaviour as bh
from decisioning.simulator.batch import arm_labels
from decisioning.simulator.frames import series

if TYPE_CHECKING:
    from decisioning.simulator.simulation import Simulation

_S = 1_000_000
RECEIVE_LAG_SECONDS = 0.8
"""Mean delay (exponential) between an event and its arrival at the service."""
STALL_CATCH_UP_SECONDS = 300.0
"""Events held by an ingestion stall arrive spread over this long after it ends."""
CLICK_DELAY_US = 3 * _S
RECOVERY_CLICK_DELAY_US = 30 * _S
UTC = pl.Datetime("us", "UTC")
CHUNK_ROWS = 2_000_000
"""Events are assembled and written this many at a time (one Delta commit each)."""


def _ids(prefix: str, numbers: pl.Expr) -> pl.Expr:
    return pl.concat_str([pl.lit(prefix), numbers.cast(pl.String)])


def _action_probabilities(variants: list[str], dist: np.ndarray) -> pl.Series:
    """Each row of `dist` (n, variants) as the lake stores a distribution: a list of
    {variant, p} in the experience's order (built flat, then cut into rows: polars' concat_list
    of structs took 10 s for 400k rows, this 0.1 s)."""
    n, k = dist.shape
    flat = pl.DataFrame({"variant": pl.Series(variants).gather(np.tile(np.arange(k), n)), "p": dist.ravel()})
    rows = flat.select(pl.struct("variant", "p")).to_series().reshape((n, k))
    return rows.arr.to_list().alias("action_probabilities")


def _contexts(learned: np.ndarray, values: np.ndarray) -> pl.Series:
    """Per decision, the features its policy was given: the rows of `values` in turn for the
    decisions a policy chose (`learned`), null for the others."""
    offsets = np.concatenate([[0], np.cumsum(learned * values.shape[1])]).astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.ravel()), mask=pa.array(~learned))
    return pl.Series("context", lists)


def decision_prefix(sim: Simulation, placement: str) -> str:
    """The start of the decision ids of a placement's ledger: a ledger row's id is this and its
    row number (`truth.decision_rewards` names decisions by them too)."""
    return f"d-{sim.run_id}-{list(sim.ledgers).index(placement)}-"


class _Assembler:
    def __init__(self, sim: Simulation) -> None:
        self.sim, self.plan = sim, sim.plan
        self.run = sim.run_id
        self.rng = np.random.default_rng([*sim.streams, 99])
        pop = sim.population
        person = sim.unit_person[self.plan["unit"]]
        n = len(self.plan["ts"])
        self.who = pl.DataFrame(
            [  # one row per session
                pl.select(_ids(f"s-{self.run}-", pl.int_range(0, n))).to_series().alias("session_id"),
                series("user_id", sim.unit_ids).gather(self.plan["unit"]),
                series("anonymous_id", self.plan["anonymous_id"]),
                series("device", pop.column("device")).gather(person),
                series("segment", pop.column("segment")).gather(person),
                series("region", pop.column("region")).gather(person),
                series("session_channel", self.plan["channel"]),
            ]
        )
        empty = pl.DataFrame(
            {"item_id": [None], "category": [None]}, schema={"item_id": pl.String, "category": pl.String}
        )
        self.items = pl.concat([empty, sim.catalogue.select("item_id", "category")])  # row 0: no item

    def _who(self, sessions: np.ndarray | pl.Series) -> pl.DataFrame:
        return self.who.select(pl.all().gather(sessions))

    def _decision_id(self, placement: str) -> str:
        return decision_prefix(self.sim, placement)

    # -- decisions and exposures --------------------------------------------------------------

    def ledgers(self) -> dict[str, pl.DataFrame]:
        """Each placement's ledger with names: decision id, arm, variant, experiment."""
        sim, s = self.sim, self.sim.s
        out = {}
        for placement, ledger in sim.ledgers.items():
            frame = ledger.frame()
            if frame.height == 0:
                continue
            experience = s.experience_by_placement[placement]
            experiment = s.experiment_by_experience[experience.id]
            arms = arm_labels(experiment, frame.get_column("holdout").to_numpy(), frame.get_column("arm").to_numpy())
            out[placement] = frame.with_columns(
                _ids(self._decision_id(placement), pl.int_range(0, pl.len())).alias("decision_id"),
                pl.lit(placement).alias("placement"),
                pl.lit(s.placement_by_id[placement].journey).alias("journey"),
                pl.lit(experience.id).alias("experience_id"),
                pl.lit(experiment.id).alias("experiment_id"),
                series("arm_name", arms),
                pl.Series(list(experience.variants)).gather(frame.get_column("variant")).alias("variant_name"),
            )
        return out

    def decisions(self, ledgers: dict[str, pl.DataFrame]) -> pl.DataFrame:
        frames = []
        for placement, frame in ledgers.items():
            ledger, experiment = self.sim.ledgers[placement], self.sim.deciders[placement].experiment
            variants = self.sim.s.experience_by_placement[placement].variants
            keep = (frame.get_column("logged") & (frame.get_column("ts") <= self.sim.end_us)).to_numpy()
            arm, learned = frame.get_column("arm").to_numpy(), frame.get_column("learned").to_numpy()
            drawn = ledger.dists(len(experiment.arms), len(variants))[np.arange(frame.height), arm]  # its own arm's
            contexts = ledger.contexts()[np.cumsum(learned)[keep & learned] - 1]
            logged = frame.filter(pl.Series(keep)).with_columns(
                _action_probabilities(variants, drawn[keep]), _contexts(learned[keep], contexts)
            )
            who = self._who(logged.get_column("session")).select("user_id", "session_id", "device", "segment", "region")
            frames.append(
                pl.concat([logged, who], how="horizontal").select(
                    "decision_id",
                    pl.col("ts").cast(UTC),
                    "user_id",
                    "session_id",
                    "journey",
                    "placement",
                    "channel",
                    "experience_id",
                    "experiment_id",
                    pl.col("arm_name").alias("arm"),
                    pl.col("variant_name").alias("variant"),
                    "policy",
                    "model_version",
                    "propensity",
                    pl.col("score").fill_nan(None),
                    pl.concat_list("reason").alias("reasons"),
                    "fallback",
                    pl.when(pl.col("fallback")).then(pl.col("reason")).alias("fallback_reason"),
                    "consent",
                    "latency_us",
                    pl.when(pl.col("status_error")).then(pl.lit("error")).otherwise(pl.lit("ok")).alias("status"),
                    pl.when(pl.col("status_error")).then(pl.col("reason")).alias("error_code"),
                    "device",
                    "segment",
                    "region",
                    "action_probabilities",
                    "context",
                    pl.when(pl.col("learned")).then(pl.lit(CONTEXT_VERSION)).alias("context_version"),
                )
            )
        return pl.concat(frames).sort("ts")

    def exposures(self, ledgers: dict[str, pl.DataFrame]) -> pl.DataFrame:
        frames = []
        for frame in ledgers.values():
            exposed = frame.filter(pl.col("exposed") & (pl.col("exposure_ts") <= self.sim.end_us))
            who = self._who(exposed.get_column("session")).select("user_id", "session_id")
            frames.append(
                pl.concat([exposed, who], how="horizontal").select(
                    pl.col("decision_id").str.replace("^d-", "x-").alias("exposure_id"),
                    "decision_id",
                    pl.col("exposure_ts").cast(UTC).alias("ts"),
                    "user_id",
                    "session_id",
                    "placement",
                    "experiment_id",
                    pl.col("arm_name").alias("arm"),
                    pl.col("variant_name").alias("variant"),
                    "channel",
                )
            )
        return pl.concat(frames).sort("ts")

    # -- events ---------------------------------------------------------------------------------

    def _page_views(self) -> pl.DataFrame:
        plan = self.plan
        pages = plan["pages"]
        session = np.repeat(np.arange(len(pages)), pages)
        k = np.arange(session.size) - np.repeat(np.cumsum(pages) - pages, pages)
        second, end = plan["second_page_us"][session], plan["end_us"][session]
        offset = np.where(k == 0, 0, second + (k - 1) * (end - second) // np.maximum(pages[session], 1))
        item = bh.items_in(self.sim.catalogue, plan["category"][session], self.rng)
        return pl.DataFrame(
            {
                "session": session,
                "ts": plan["ts"][session] + offset,
                "event_type": "page_view",
                "item": np.where(k > 0, item, -1),
            }
        )

    def _session_events(self) -> list[pl.DataFrame]:
        """Carts, direct orders and their returns, NPS answers, consent withdrawals, opt-outs."""
        sim, plan, b = self.sim, self.plan, self.sim.b
        cart = np.flatnonzero(plan["cart"])
        bought = np.flatnonzero(sim.purchased)
        revenue = sim.revenue[bought]
        margin, cost = bh.margin_and_discount(b, revenue, np.zeros(bought.size))
        order_ts = plan["ts"][bought] + plan["end_us"][bought] + plan["checkout_us"][bought]
        credited = sim.credited[bought]
        has = credited[:, 0] >= 0
        placements = np.array(list(sim.ledgers), dtype=object)
        decision_id = np.full(bought.size, None, dtype=object)
        prefixes = [decision_prefix(sim, p) for p in placements]
        decision_id[has] = [f"{prefixes[p]}{row}" for p, row in credited[has]]
        # numpy's stubs reject None, which np.where takes as an object scalar
        placement = np.where(has, placements[np.maximum(credited[:, 0], 0)], None)  # type: ignore[call-overload]
        experiment = np.array([sim.deciders[p].experiment.id if p else None for p in placement], dtype=object)
        orders = pl.DataFrame(
            [
                pl.Series("session", bought),
                pl.Series("ts", order_ts),
                pl.Series("item", plan["cart_item"][bought]),
                pl.Series("revenue", revenue),
                pl.Series("margin", margin),
                pl.Series("discount_cost", cost),
                series("decision_id", decision_id),
                series("placement", placement),
                series("experiment_id", experiment),
            ]
        ).with_columns(event_type=pl.lit("purchase"))
        returned = plan["u_return"][bought] < b.return_rate
        returns = orders.filter(pl.Series(returned)).with_columns(
            pl.col("ts") + pl.Series(plan["return_us"][bought][returned]),
            event_type=pl.lit("return"),
            discount_cost=pl.lit(None, dtype=pl.Float64),
        )
        nps = np.flatnonzero(plan["nps"])
        withdraw = np.flatnonzero(plan["withdraw"])
        withdraw = withdraw[sim.consent_at(plan["unit"][withdraw], plan["ts"][withdraw])]
        out = [
            pl.DataFrame(
                {
                    "session": cart,
                    "ts": plan["ts"][cart] + plan["cart_us"][cart] - _S,
                    "event_type": "add_to_cart",
                    "item": plan["cart_item"][cart],
                    "revenue": plan["cart_price"][cart],
                }
            ),
            orders,
            returns,
            pl.DataFrame(
                {
                    "session": nps,
                    "ts": plan["ts"][nps] + plan["end_us"][nps] + 60 * _S,
                    "event_type": "nps_response",
                    "nps_score": bh.nps_score(b, plan["nps_z"][nps]),
                }
            ),
            pl.DataFrame(
                {
                    "session": withdraw,
                    "ts": sim.withdrawal_ts[withdraw],
                    "event_type": "consent_change",
                    "consent": np.zeros(withdraw.size, dtype=bool),
                }
            ),
        ]
        if sim.opt_outs:
            sessions = np.concatenate([o[0] for o in sim.opt_outs])
            out.append(
                pl.DataFrame(
                    {
                        "session": sessions,
                        "ts": np.concatenate([o[2] for o in sim.opt_outs]),
                        "event_type": "opt_out",
                        "consent": np.zeros(sessions.size, dtype=bool),
                        "channel": np.where(plan["channel"][sessions] == "app", "push", "email"),
                    }
                )
            )
        return out

    def _decision_events(self, ledgers: dict[str, pl.DataFrame]) -> list[pl.DataFrame]:
        """Clicks on in-session placements; opens, clicks, orders and returns of recovery messages."""
        link = ["session", "decision_id", "placement", "experiment_id"]
        out = []
        for placement, frame in ledgers.items():
            logged = frame.filter(pl.col("logged"))
            if placement != "cart_recovery_offer":
                out.append(
                    logged.filter(pl.col("clicked")).select(
                        *link, (pl.col("ts") + CLICK_DELAY_US).alias("ts"), pl.lit("click").alias("event_type")
                    )
                )
                continue
            push = pl.col("channel") == "push"
            opened = logged.filter(pl.col("seen"))
            out.append(
                opened.select(
                    *link,
                    "channel",
                    pl.col("exposure_ts").alias("ts"),
                    pl.when(push).then(pl.lit("push_open")).otherwise(pl.lit("email_open")).alias("event_type"),
                )
            )
            out.append(
                opened.filter(pl.col("clicked")).select(
                    *link,
                    "channel",
                    (pl.col("exposure_ts") + RECOVERY_CLICK_DELAY_US).alias("ts"),
                    pl.when(push).then(pl.lit("click")).otherwise(pl.lit("email_click")).alias("event_type"),
                )
            )
            orders = opened.filter(pl.col("bought"))
            session = orders.get_column("session").to_numpy()
            margin, cost = bh.margin_and_discount(
                self.sim.b, orders.get_column("revenue").to_numpy(), orders.get_column("discount").to_numpy()
            )
            orders = orders.select(
                *link,
                "channel",
                "revenue",
                (pl.col("exposure_ts") + RECOVERY_ORDER_DELAY_US).alias("ts"),
                pl.lit("purchase").alias("event_type"),
                pl.Series("margin", margin),
                pl.Series("discount_cost", cost),
                pl.Series("item", self.plan["cart_item"][session]),
            )
            returned = self.plan["u_return"][session] < self.sim.b.return_rate
            out += [
                orders,
                orders.filter(pl.Series(returned)).with_columns(
                    pl.col("ts") + pl.Series(self.plan["return_us"][session][returned]),
                    event_type=pl.lit("return"),
                    discount_cost=pl.lit(None, dtype=pl.Float64),
                ),
            ]
        return out

    def _received(self, ts: np.ndarray) -> np.ndarray:
        """When each event reached the service: a short lag, or after an ingestion stall."""
        received = ts + (self.rng.exponential(RECEIVE_LAG_SECONDS, ts.size) * _S).astype(np.int64)
        for window in self.sim.windows:
            if window.name == "ingestion_stall":
                stalled = (ts >= window.start_us) & (ts < window.end_us)
                late = window.end_us + (self.rng.random(ts.size) * STALL_CATCH_UP_SECONDS * _S).astype(np.int64)
                received = np.where(stalled, late, received)
        return cast(np.ndarray, np.minimum(received, np.maximum(self.sim.end_us, ts)))

    def events(self, ledgers: dict[str, pl.DataFrame]) -> Iterator[pl.DataFrame]:
        """The events in time order, in chunks of `CHUNK_ROWS` (sorted once while still slim;
        the wide session and item columns are gathered chunk by chunk)."""
        raw = pl.concat(
            [self._page_views(), *self._session_events(), *self._decision_events(ledgers)], how="diagonal_relaxed"
        )
        raw = raw.filter(pl.col("ts") <= self.sim.end_us).sort("ts")
        received = self._received(raw.get_column("ts").to_numpy())
        for start in range(0, raw.height, CHUNK_ROWS):
            part = raw.slice(start, CHUNK_ROWS)
            items = self.items.select(pl.all().gather(part.get_column("item").fill_null(-1) + 1))
            frame = pl.concat([part, self._who(part.get_column("session")), items], how="horizontal")
            yield frame.select(
                _ids(f"e-{self.run}-", pl.int_range(start, start + pl.len())).alias("event_id"),
                pl.col("ts").cast(UTC),
                pl.Series("received_at", received[start : start + part.height]).cast(UTC),
                "user_id",
                "anonymous_id",
                "session_id",
                pl.coalesce("channel", "session_channel").alias("channel"),
                "event_type",
                "placement",
                "decision_id",
                "experiment_id",
                "item_id",
                "category",
                pl.when(pl.col("event_type").is_in(["add_to_cart", "purchase", "return"]))
                .then(pl.lit(1))
                .alias("quantity"),
                "revenue",
                "margin",
                "discount_cost",
                "nps_score",
                "consent",
                "device",
                "segment",
                "region",
            )

    def identities(self) -> pl.DataFrame:
        login = np.flatnonzero(self.plan["login"] & (self.plan["ts"] <= self.sim.end_us))
        return self._who(login).select("anonymous_id", "user_id", pl.Series("ts", self.plan["ts"][login]).cast(UTC))


RECOVERY_ORDER_DELAY_US = 300 * _S
"""A recovered order follows the opening of its message by this long (the truth uses it)."""


def assemble(sim: Simulation) -> dict[str, Iterator[pl.DataFrame]]:
    """The rows of every table the backfill writes, in the lake's column names, as a stream of
    frames per table (events come in chunks, so a 10M-event history never sits in memory twice)."""
    assembler = _Assembler(sim)
    ledgers = assembler.ledgers()
    return {
        "decisions": iter([assembler.decisions(ledgers)]),
        "exposures": iter([assembler.exposures(ledgers)]),
        "identities": iter([assembler.identities()]),
        "events": assembler.events(ledgers),
    }
