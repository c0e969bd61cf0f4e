"""Deterministic, sticky assignment: the global holdout and each experiment's arm.

A unit (a pseudonymised user id) is hashed with a salt into a uniform bucket in [0, 1). The
holdout takes the lowest `holdout_share` of the holdout salt's buckets; everyone else is
split into an experiment's arms by that experiment's own salt, so experiments are
independent of each other and of the holdout, and the same user always lands in the same arm.
The backfill calls the same functions as the service, so live and historical data agree.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate

import numpy as np

from momento.scenario import Experiment, Population

HOLDOUT = "holdout"
_SCALE = float(2**64)


def bucket(unit: str, salt: str) -> float:
    """Uniform number in [0, 1) fixed by `unit` and `salt`."""
    digest = hashlib.blake2b(f"{salt}:{unit}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def buckets(units: Iterable[str], salt: str) -> np.ndarray:
    """`bucket` for many units at once (the backfill's path)."""
    return np.fromiter((bucket(unit, salt) for unit in units), dtype=np.float64)


def in_holdout(unit: str, population: Population) -> bool:
    """Whether `unit` belongs to the global holdout, which never gets a personalised decision."""
    return bucket(unit, population.holdout_salt) < population.holdout_share


@dataclass(frozen=True)
class ArmSplit:
    """An experiment's arms as cumulative bucket boundaries of its salt (build it once per
    experiment where many units are assigned one at a time)."""

    salt: str
    names: tuple[str, ...]
    bounds: tuple[float, ...]

    @classmethod
    def of(cls, experiment: Experiment) -> ArmSplit:
        bounds = tuple(accumulate(arm.share for arm in experiment.arms))
        return cls(experiment.salt, tuple(arm.name for arm in experiment.arms), (*bounds[:-1], 1.0))

    def arm_of(self, unit: str) -> str:
        """The arm `unit` is in (callers handle the holdout first)."""
        return self.names[bisect.bisect_right(self.bounds, bucket(unit, self.salt))]

    def arms_of(self, units: Iterable[str]) -> np.ndarray:
        """`arm_of` for many units at once."""
        index = np.searchsorted(np.asarray(self.bounds), buckets(units, self.salt), side="right")
        return np.asarray(self.names, dtype=object)[np.minimum(index, len(self.names) - 1)]


def assign_arm(unit: str, experiment: Experiment) -> str:
    """The arm of `experiment` that `unit` is in (callers handle the holdout first)."""
    return ArmSplit.of(experiment).arm_of(unit)


def assign_arms(units: Iterable[str], experiment: Experiment) -> np.ndarray:
    """`assign_arm` for many units at once."""
    return ArmSplit.of(experiment).arms_of(units)
