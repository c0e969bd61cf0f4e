"""The pace of recurring background work (the rollup job's runs and compactions, the cockpit's
renewals): how long to wait after one round so that the work takes at most a share of the time."""

from __future__ import annotations


def pause(took: float, every: float, share: float) -> float:
    """Seconds from the end of a round that took `took` seconds to the start of the next: `every`,
    or longer so that the work takes at most `share` of the time (a share of 1: every `every`)."""
    return max(every, took * (1 - share) / share)
