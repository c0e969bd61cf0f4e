"""Random small lakes for the rollups' exactness tests: a few dozen users over three weeks, with
the cases incremental folding must get right — events that arrive late (loaded long after their
time, before an earlier exposure or decision), exposures before the decision is logged, users
exposed in several experiments and scopes, first hours shared by several events, rows delivered twice,
erasures."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from momento.lake.writer import LakeWriter

T0 = datetime(2026, 5, 20, tzinfo=UTC)
PLACEMENTS = {  # placement -> (journey, experience, experiment, arms)
    "homepage_showcase": ("browse", "home_showcase", "exp_home_showcase", ("control", "treatment")),
    "cart_cross_sell": ("cart", "cart_cross_sell", "exp_cart_cross_sell", ("control", "treatment")),
    "product_cta": ("conversion", "adaptive_cta", "exp_adaptive_cta", ("control", "bandit")),
}
EVENT_TYPES = (
    "page_view",
    "purchase",
    "return",
    "click",
    "email_click",
    "nps_response",
    "opt_out",
    "add_to_cart",
    "consent_change",
)
CHANNELS = ("web", "app", "email")
_ids = itertools.count()


def user(n: int) -> str:
    return f"{n:032x}"


class RandomLake:
    """Draws batches of raw rows for a random population (one generator per lake)."""

    def __init__(self, seed: int, users: int = 40) -> None:
        self.rng = np.random.default_rng(seed)
        self.users = users
        self.arm = {(u, p): PLACEMENTS[p][3][int(self.rng.integers(2))] for u in range(users) for p in PLACEMENTS}
        self.holdout = {u: bool(self.rng.random() < 0.15) for u in range(users)}
        self.decisions: list[dict[str, Any]] = []

    def _ts(self, day_lo: float, day_hi: float) -> datetime:
        return T0 + timedelta(days=float(self.rng.uniform(day_lo, day_hi)))

    def batch(self, day_lo: float, day_hi: float, n: int, late_share: float = 0.0) -> dict[str, list[dict[str, Any]]]:
        """About `n` rows timed in [day_lo, day_hi) days after T0; a `late_share` of the events
        and exposures are timed anywhere since T0 (they arrive late)."""
        out: dict[str, list[dict[str, Any]]] = {"events": [], "decisions": [], "exposures": []}
        for _ in range(n):
            who = int(self.rng.integers(self.users))
            late = self.rng.random() < late_share
            ts = self._ts(0.0, day_hi) if late else self._ts(day_lo, day_hi)
            kind = self.rng.random()
            if kind < 0.3:
                out["decisions"].append(self._decision(who, ts))
            elif kind < 0.45 and self.decisions:
                d = self.decisions[int(self.rng.integers(len(self.decisions)))]
                out["exposures"].append(self._exposure(d, late))
            else:
                out["events"].append(self._event(who, ts))
        return out

    def _decision(self, who: int, ts: datetime) -> dict[str, Any]:
        placement = list(PLACEMENTS)[int(self.rng.integers(len(PLACEMENTS)))]
        journey, experience, experiment, _ = PLACEMENTS[placement]
        arm = "holdout" if self.holdout[who] else self.arm[(who, placement)]
        fallback = bool(self.rng.random() < 0.1)
        row = {
            "decision_id": f"d{next(_ids)}",
            "ts": ts,
            "user_id": user(who),
            "journey": journey,
            "placement": placement,
            "channel": CHANNELS[int(self.rng.integers(3))],
            "experience_id": experience,
            "experiment_id": experiment,
            "arm": arm,
            "variant": "v",
            "policy": "thompson" if arm != "control" else "default",
            "propensity": 0.5,
            "reasons": [],
            "fallback": fallback,
            "consent": bool(self.rng.random() < 0.9),
            "latency_us": int(self.rng.integers(200, 20_000)),
            "status": "error" if self.rng.random() < 0.05 else "ok",
            "segment": ("new", "returning")[int(self.rng.integers(2))],
        }
        self.decisions.append(row)
        return row

    def _exposure(self, d: dict[str, Any], late: bool) -> dict[str, Any]:
        after = float(self.rng.uniform(-3600, 7200)) if late else float(self.rng.uniform(0, 600))
        return {
            "exposure_id": f"x{next(_ids)}",
            "decision_id": d["decision_id"],
            "ts": d["ts"] + timedelta(seconds=after),
            "user_id": d["user_id"],
            "placement": d["placement"],
            "experiment_id": d["experiment_id"],
            "arm": d["arm"],
            "variant": d["variant"],
            "channel": d["channel"],
        }

    def _event(self, who: int, ts: datetime) -> dict[str, Any]:
        event_type = EVENT_TYPES[int(self.rng.integers(len(EVENT_TYPES)))]
        row: dict[str, Any] = {
            "event_id": f"e{next(_ids)}",
            "ts": ts,
            "received_at": ts,
            "user_id": user(who),
            "channel": CHANNELS[int(self.rng.integers(3))],
            "event_type": event_type,
            "placement": list(PLACEMENTS)[int(self.rng.integers(len(PLACEMENTS)))],
        }
        if event_type in ("purchase", "return"):
            row |= {
                "revenue": round(float(self.rng.uniform(20, 400)), 2),
                "margin": round(float(self.rng.uniform(-20, 150)), 2),
            }
        if event_type == "consent_change":
            row["consent"] = bool(self.rng.random() < 0.5)
        if event_type == "nps_response":
            row["nps_score"] = int(self.rng.integers(0, 11))
        own = [d for d in self.decisions if d["user_id"] == row["user_id"]]
        if own and self.rng.random() < 0.5:  # a click or purchase credited to one of the user's decisions
            row["decision_id"] = own[int(self.rng.integers(len(own)))]["decision_id"]
        return row


def stream(seed: int, batches: int) -> Iterator[dict[str, list[dict[str, Any]]]]:
    """`batches` batches moving through three weeks, each with some late rows."""
    lake = RandomLake(seed)
    span = 21.0 / batches
    previous: dict[str, list[dict[str, Any]]] = {}
    for i in range(batches):
        batch = lake.batch(i * span, (i + 1) * span, 120, late_share=0.15 if i else 0.0)
        for table, rows in previous.items():  # a few rows delivered again (at-least-once delivery)
            batch[table] += rows[:2]
        previous = batch
        yield batch


def commit(writer: LakeWriter, batch: dict[str, list[dict[str, Any]]]) -> None:
    """Write `batch` to the lake as one delivery: every table's rows, then a flush."""
    for table, rows in batch.items():
        if rows:
            writer.append(table, rows)
    writer.flush()
