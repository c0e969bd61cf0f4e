"""What the analytics pages (Executive, Journeys, Experiments) share: the rollups' aggregates of
this snapshot, and the arguments each panel query is run and explained with. The same arguments
go to the query and to its "How this is computed", so the SQL shown is the SQL run. The journey
filter picks experiments, not users, so it is left out of the experiments' queries; the pages
pick the experiments themselves."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import polars as pl
import streamlit as st

from metrics import experiments, journeys
from metrics.filters import Filters
from metrics.queries import Explanation, explain_source
from metrics.rollup import read
from metrics.sql.query import Query
from pages.cache import AGGREGATES, aggregates, renewing, scenario


def run(query: Query, **arguments: Any) -> pl.DataFrame:
    """`query` over the aggregates, with `arguments` (what `explain` shows with the same ones)."""
    return read.run_on(aggregates(), query.statement(**arguments))


def source() -> tuple[Explanation, ...]:
    """How the aggregates were read (for each panel's "How this is computed")."""
    return explain_source(aggregates())


def source_note() -> None:
    """A caption saying where the numbers come from: the rollups and the live rows, or raw rows
    and why; and as of when (the cockpit renews them in the background)."""
    src = aggregates().source
    as_of = f"exact as of {src.as_of:%Y-%m-%d %H:%M:%S} UTC"
    if src.mode == "rollups" and src.tail_rows is None:
        st.caption(
            f"From the rollups as their run finished at {src.watermark:%H:%M:%S} UTC: {as_of}. The rows "
            "loaded since are being folded in."
        )
    elif src.mode == "rollups":
        st.caption(
            f"From the rollups (run finished {src.watermark:%H:%M:%S} UTC) plus {src.tail_rows:,} rows "
            f"loaded since, folded live: {as_of}."
        )
    else:
        st.caption(f"Computed from every raw row ({src.reason}): {as_of}.")
    failure = renewing().error(AGGREGATES)
    if failure:
        st.warning(f"These numbers could not be renewed ({failure}); they are the last ones computed.")


def stats(filters: Filters) -> dict[str, Any]:
    """Every experiment's sufficient statistics for the scenario's metrics (`experiments.STATS`)."""
    sc = scenario()
    return {
        "filters": replace(filters, journey=None),
        "pre_days": sc.business.pre_period_days,
        "metric_names": experiments.scenario_metrics(sc),
        "as_of": aggregates().source.as_of,
    }


def revenue(filters: Filters, experiment_id: str) -> dict[str, Any]:
    """One experiment's revenue per exposed user statistics (`experiments.STATS` for one
    experiment and one metric)."""
    return {
        "filters": replace(filters, journey=None),
        "pre_days": scenario().business.pre_period_days,
        "metric_names": (journeys.REVENUE_METRIC,),
        "experiment_id": experiment_id,
        "as_of": aggregates().source.as_of,
    }


def days(filters: Filters, experiment_id: str, metric: str) -> dict[str, Any]:
    """One experiment's statistics of one metric as of each day (`experiments.CUMULATIVE`)."""
    return {
        "filters": replace(filters, journey=None),
        "experiment_id": experiment_id,
        "metric_name": metric,
        "pre_days": scenario().business.pre_period_days,
        "as_of": aggregates().source.as_of,
    }


def summary(filters: Filters) -> dict[str, Any]:
    """The executive headline statistics (`executive.SUMMARY`)."""
    return {"filters": filters, "pre_days": scenario().business.pre_period_days, "as_of": aggregates().source.as_of}


def trend(filters: Filters, grain: str) -> dict[str, Any]:
    """The executive revenue trend (`executive.TREND`)."""
    return {**summary(filters), "grain": grain}
