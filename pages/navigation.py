"""The cockpit's one use of a private Streamlit API, kept here alone.

A fresh Streamlit server whose app sits next to a `pages/` folder serves its first deep links
(say /governance?channel=web) the legacy multipage way: the page file alone, without app.py's
navigation, sidebar filters and layout, until some run calls `st.navigation`. Streamlit offers
no public switch for this (checked for 1.67: neither a config option nor an API; the flag below
is only reset by `st.navigation` itself), and the folder must keep its name. So a page that finds
itself run that way turns the flag off and reruns, and app.py then draws the requested page.

"Run that way" is known per session, not from the flag: several sessions opened at once on a
fresh server all start the legacy way, and only the first finds the flag still on (the others,
judging by the flag, stayed on the bare page for good). app.py marks each session it runs in
(`entered`); a page in a session without the mark reruns it once.
tests/cockpit/test_navigation.py fails loudly if Streamlit renames or stops reading the flag.
"""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

_ENTERED = "_momento_through_app"
"""Session state: app.py has run in this session."""
_RERUN = "_momento_rerun_for_app"
"""Session state: this session was rerun to go through app.py (once: a page run alone, as in a
test, must not rerun for ever)."""


def entered() -> None:
    """Called by app.py on every run: this session goes through its navigation."""
    st.session_state[_ENTERED] = True


def through_app() -> None:
    """Make sure this page runs inside app.py's navigation (see the module docstring)."""
    if st.session_state.get(_ENTERED) or st.session_state.get(_RERUN):
        return
    st.session_state[_RERUN] = True
    PagesManager.uses_pages_directory = False
    st.rerun()
