"""Hand-made lakes for the tests that need exact, known numbers (a 10-user experiment whose
conversion rate is exactly 0.3, ...): rows with sensible defaults, written with the real writer."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from momento.lake.writer import LakeWriter

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
"""Hour 0 of every hand-made lake (a Monday, midday UTC)."""

PLACEMENTS = {  # placement -> (journey, experience, experiment, default variant)
    "homepage_showcase": ("browse", "home_showcase", "exp_home_showcase", "editorial"),
    "cart_cross_sell": ("cart", "cart_cross_sell", "exp_cart_cross_sell", "bestsellers"),
    "cart_recovery_offer": ("recovery", "recovery_offer", "exp_recovery_offer", "reminder"),
    "product_cta": ("conversion", "adaptive_cta", "exp_adaptive_cta", "buy_now"),
}
_ids = itertools.count()


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def user(n: int) -> str:
    """A pseudonymised-looking user id."""
    return f"{n:032x}"


def event(who: int, hours: float, event_type: str, **fields: Any) -> dict[str, Any]:
    ts = at(hours)
    return {
        "event_id": f"e{next(_ids)}",
        "ts": ts,
        "received_at": ts,
        "user_id": user(who),
        "channel": "web",
        "event_type": event_type,
        **fields,
    }


def purchase(who: int, hours: float, revenue: float, margin: float | None = None, **fields: Any) -> dict[str, Any]:
    return event(who, hours, "purchase", revenue=revenue, margin=revenue * 0.4 if margin is None else margin, **fields)


def decision(
    who: int, hours: float, arm: str = "control", placement: str = "homepage_showcase", **fields: Any
) -> dict[str, Any]:
    journey, experience, experiment, default = PLACEMENTS[placement]
    personalised = arm not in ("control", "holdout")
    row = {
        "decision_id": f"d{next(_ids)}",
        "ts": at(hours),
        "user_id": user(who),
        "journey": journey,
        "placement": placement,
        "channel": "web",
        "experience_id": experience,
        "experiment_id": experiment,
        "arm": arm,
        "variant": default,
        "policy": "thompson" if personalised else "default",
        "propensity": 1.0,
        "reasons": [],
        "fallback": False,
        "consent": True,
        "latency_us": 1_000,
        "status": "ok",
        "segment": "new",
    }
    return row | fields


def exposure(d: dict[str, Any], after_seconds: float = 1.0, **fields: Any) -> dict[str, Any]:
    """The exposure of decision `d` (same user, element, experiment, arm, variant)."""
    return {
        "exposure_id": f"x{next(_ids)}",
        "decision_id": d["decision_id"],
        "ts": d["ts"] + timedelta(seconds=after_seconds),
        "user_id": d["user_id"],
        "placement": d["placement"],
        "experiment_id": d["experiment_id"],
        "arm": d["arm"],
        "variant": d["variant"],
        "channel": d["channel"],
    } | fields


def write_lake(root: Path, events: list[dict] = (), decisions: list[dict] = (), exposures: list[dict] = ()) -> Path:
    """Commit the rows to a new lake at `root` with the real writer; return `root`."""
    with LakeWriter(root, background=False, compact_every_seconds=None) as writer:
        for table, rows in (("events", events), ("decisions", decisions), ("exposures", exposures)):
            if rows:
                writer.append(table, list(rows))
        writer.flush()
    return root
