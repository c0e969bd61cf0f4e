"""The cockpit's one use of private Streamlit APIs, kept here alone.

A fresh Streamlit server whose app sits next to a `pages/` folder serves its first deep links
(say /governance?channel=web) the legacy multipage way: the page file alone, without app.py's
navigation, sidebar filters and layout, until some run calls `st.navigation`. Streamlit offers
no public switch for this (checked for 1.67: neither a config option nor an API; the flag below
is only reset by `st.navigation` itself), and the folder must keep its name. So a page that finds
itself run that way turns the flag off and reruns, and app.py then draws the requested page.

"Run that way" is read from the session's own navigation, not from the flag: several sessions
opened at once on a fresh server all start the legacy way, and only the first finds the flag
still on (the others, judging by the flag, stayed on the bare page for good). A legacy run
registers app.py itself among the session's pages (as its main page); app.py's navigation never
does. tests/cockpit/test_navigation.py fails loudly if Streamlit renames or stops reading the
flag or stops registering the pages so.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner import get_script_run_ctx

APP = "app.py"


def legacy_run() -> bool:
    """Whether this run is the legacy one (app.py among the session's pages)."""
    ctx = get_script_run_ctx()
    pages = ctx.pages_manager.get_pages().values() if ctx is not None else ()
    return any(Path(page["script_path"]).name == APP for page in pages)


def through_app() -> None:
    """Make sure this page runs inside app.py's navigation (see the module docstring)."""
    if legacy_run():
        PagesManager.uses_pages_directory = False
        st.rerun()
