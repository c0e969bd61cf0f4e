"""Incidents on a timeline: when each is active, and what it does to a decision or an event.

The scenario schedules incidents by day and hour from the start of a backfill; the live
simulator switches them on by name. Both modes read the same magnitudes from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from momento.scenario import Incident, Scenario

NAMES = ("latency_spike", "model_outage", "error_burst", "ingestion_stall", "srm_bug")
ERROR_BURST_SHARE = 0.3
"""Share of decisions that fail (status error, default served) during an error burst (as the
engine's `Faults.error_share`)."""
SPIKE_MS = 25.0
"""Delay a latency spike adds to a policy's feature step (as the engine's `Faults`): over budget."""
NORMAL_LATENCY_US = (120.0, 0.45)
"""Median (µs) and log-sd of a decision's in-process latency on a healthy engine."""
DEFAULT_SRM_DROP = 0.08

_HOUR_US = 3_600_000_000


@dataclass(frozen=True)
class Window:
    """One incident active over [start_us, end_us)."""

    incident: Incident
    start_us: int
    end_us: int

    @property
    def name(self) -> str:
        return self.incident.name


def schedule(scenario: Scenario, start_us: int) -> list[Window]:
    """The scenario's incidents placed on a timeline that starts at `start_us` (backfill day 0)."""
    windows = []
    for incident in scenario.incidents:
        begin = start_us + (incident.at_day * 24 + incident.at_hour) * _HOUR_US
        windows.append(Window(incident, begin, begin + int(incident.hours * _HOUR_US)))
    return windows


def active(windows: list[Window], name: str, ts_us: np.ndarray) -> np.ndarray:
    """Whether incident `name` is active at each timestamp."""
    out = np.zeros(np.shape(ts_us), dtype=bool)
    for window in windows:
        if window.name == name:
            out |= (ts_us >= window.start_us) & (ts_us < window.end_us)
    return out


def srm_drops(
    windows: list[Window],
    scenario: Scenario,
    experiment_id: np.ndarray,
    arm: np.ndarray,
    ts_us: np.ndarray,
    u: np.ndarray,
) -> np.ndarray:
    """Exposures the `srm_bug` loses on the client side (its experiment and arm only)."""
    dropped = np.zeros(np.shape(ts_us), dtype=bool)
    for window in windows:
        if window.name == "srm_bug":
            experiment, target, share = srm_setting(scenario, window.incident)
            during = (ts_us >= window.start_us) & (ts_us < window.end_us)
            dropped |= (experiment_id == experiment) & (arm == target) & during & (u < share)
    return dropped


def srm_setting(scenario: Scenario, incident: Incident | None = None) -> tuple[str, str, float]:
    """(experiment, arm, share of its exposures lost) of an `srm_bug`: the incident's, else the
    scenario's scheduled one's; by default the first experiment's last arm loses 8%."""
    incident = incident or next((i for i in scenario.incidents if i.name == "srm_bug"), None)
    experiment = (incident and incident.experiment) or scenario.experiments[0].id
    arm = (incident and incident.arm) or scenario.experiment_by_id[experiment].arms[-1].name
    return experiment, arm, (incident and incident.drop_share) or DEFAULT_SRM_DROP


def latency_us(rng: np.random.Generator, slow: np.ndarray) -> np.ndarray:
    """In-process decision latency: healthy log-normal, plus the spike's delay where `slow`."""
    median, sd = NORMAL_LATENCY_US
    healthy = median * np.exp(sd * rng.standard_normal(len(slow)))
    return (healthy + np.where(slow, SPIKE_MS * 1000, 0.0)).astype(np.int64)
