"""pages/navigation.py: the one private Streamlit API the cockpit uses. These tests fail loudly when
Streamlit changes what it relies on (the flag's name, who reads it, when it is set), and check
that a deep link still opens the page inside app.py's navigation and sidebar."""

from __future__ import annotations

import inspect

from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner import script_runner

from momento.settings import PROJECT_ROOT
from pages import ui

CHANGED = (
    "Streamlit changed the legacy pages/ handling that pages/navigation.py works around: check whether "
    "a public way exists now (or whether the workaround is still needed) and update navigation.py"
)


def test_streamlit_still_has_the_flag_and_still_reads_it():
    assert hasattr(PagesManager, "uses_pages_directory"), CHANGED
    assert "PagesManager.uses_pages_directory" in inspect.getsource(script_runner), CHANGED


def test_a_pages_folder_next_to_the_app_still_means_legacy_mode():
    before = PagesManager.uses_pages_directory
    try:
        PagesManager.uses_pages_directory = None
        PagesManager(str(PROJECT_ROOT / "app.py"))
        assert PagesManager.uses_pages_directory is True, CHANGED
    finally:
        PagesManager.uses_pages_directory = before


def test_a_deep_link_opens_the_page_inside_the_app(run_page, small_lake):
    at = run_page("pages/governance.py", small_lake, query={"channel": "web"})
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Governance"
    assert [w.label for w in at.sidebar.selectbox] == ["Channel", "Segment", "Journey"]  # app.py's sidebar
    assert at.selectbox(key="channel").value == "web"
    assert PagesManager.uses_pages_directory is False


def test_a_deep_link_still_gets_the_app_when_another_session_turned_the_flag_off_first(
    run_page, small_lake, monkeypatch
):
    """Sessions opened at once on a fresh server all start the legacy way; the first to reach its
    filters turns the flag off. Here another session does so while this one draws its header."""
    header = ui.header

    def header_while_another_session_turns_the_flag_off(*args, **kwargs):
        PagesManager.uses_pages_directory = False
        return header(*args, **kwargs)

    monkeypatch.setattr(ui, "header", header_while_another_session_turns_the_flag_off)
    at = run_page("pages/governance.py", small_lake)
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Governance"
    assert [w.label for w in at.sidebar.selectbox] == ["Channel", "Segment", "Journey"]  # app.py's sidebar
