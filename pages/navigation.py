"""The cockpit's one use of a private Streamlit API, kept here alone.

A fresh Streamlit server whose app sits next to a `pages/` folder serves its first deep link
(say /governance?channel=web) the legacy multipage way: the page file alone, without app.py's
navigation, sidebar filters and layout, until some run calls `st.navigation`. Streamlit offers
no public switch for this (checked for 1.67: neither a config option nor an API; the flag below
is only reset by `st.navigation` itself), and the folder must keep its name. So a page that finds
itself run that way turns the flag off and reruns, and app.py then draws the requested page.
tests/cockpit/test_navigation.py fails loudly if Streamlit renames or stops reading the flag.
"""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager


def through_app() -> None:
    """Make sure this page runs inside app.py's navigation (see the module docstring)."""
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
