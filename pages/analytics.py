"""What the analytics pages (Journeys, Experiments) share: the arguments they read the
experiments' statistics with. Each is passed both to the cached loader and to the panel's "How
this is computed", so the SQL shown is the SQL run. The journey filter picks experiments, not
users, so it is left out of these queries; the pages pick the experiments themselves."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from metrics import experiments, journeys
from metrics.filters import Filters
from pages.cache import scenario


def stats(filters: Filters) -> dict[str, Any]:
    """Every experiment's sufficient statistics for the scenario's metrics (`experiments.STATS`)."""
    sc = scenario()
    return {"filters": replace(filters, journey=None), "pre_days": sc.business.pre_period_days,
            "metric_names": experiments.scenario_metrics(sc)}


def revenue(filters: Filters, experiment_id: str) -> dict[str, Any]:
    """One experiment's revenue per exposed user statistics (`experiments.STATS` for one
    experiment and one metric: a fraction of the work of `stats`)."""
    return {"filters": replace(filters, journey=None), "pre_days": scenario().business.pre_period_days,
            "metric_names": (journeys.REVENUE_METRIC,), "experiment_id": experiment_id}


def days(filters: Filters, experiment_id: str, metric: str) -> dict[str, Any]:
    """One experiment's statistics of one metric as of each day (`experiments.CUMULATIVE`)."""
    return {"filters": replace(filters, journey=None), "experiment_id": experiment_id, "metric_name": metric,
            "pre_days": scenario().business.pre_period_days}
