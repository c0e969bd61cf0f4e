""" "How this is computed": under a panel, the definition of its metrics from the KPI catalogue, the
SQL that produced its numbers with the filters bound, and the statistical method.

Each `Explanation` is rendered from the same `Query` and arguments the panel ran
(`metrics.queries.explain`), so the SQL shown is the SQL that ran, with its values written in for
reading. `momento sql METRIC` prints the same.
"""

from __future__ import annotations

import streamlit as st

from metrics.queries import DOCS, Explanation

TITLE = "How this is computed"


def how_computed(*explanations: Explanation) -> None:
    """One expander explaining the queries a panel ran (`metrics.queries.explain` of each)."""
    with st.expander(TITLE, icon=":material/functions:"):
        definitions = {d.name: d for e in explanations for d in e.definitions}
        for d in definitions.values():
            st.markdown(f"**{d.label}** (`{d.name}`): {d.description}  \n*{d.formula}*")
        for e in explanations:
            st.markdown(f"**SQL** — `{e.query.name}`: {e.query.description}")
            st.code(e.sql, language="sql")
            st.markdown(f"**Method** — {e.method}")
        st.markdown(f"The formulas and their references: [`{DOCS}`]({DOCS}) in the repository.")
