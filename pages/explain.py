""""How this is computed": under a panel, the definition of its metrics from the KPI catalogue, the
SQL that produced its numbers with the filters bound, and the statistical method.

The SQL is rendered from the same `Query` and arguments the panel ran (`metrics.queries.explain`),
so it is what ran, with the values written in for reading. `momento sql METRIC` prints the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import streamlit as st

from metrics.filters import Filters
from metrics.queries import explain
from metrics.sql.query import Query

TITLE = "How this is computed"


def how_computed(query: Query, filters: Filters, metrics: Iterable[str] | None = None, **arguments: Any) -> None:
    """An expander explaining `query` run with `filters` and `arguments` (as the panel ran it); the
    definitions of `metrics` (default: every metric the query computes)."""
    explanation = explain(query, filters, metrics, **arguments)
    with st.expander(TITLE, icon=":material/functions:"):
        for d in explanation.definitions:
            st.markdown(f"**{d.label}** (`{d.name}`): {d.description}  \n*{d.formula}*")
        st.markdown(f"**SQL** — `{query.name}`: {query.description}")
        st.code(explanation.sql, language="sql")
        st.markdown(f"**Method** — {explanation.method} The formulas and their references: "
                    f"[`{explanation.docs}`]({explanation.docs}) in the repository.")
