"""Cockpit runs that wait, as a viewer does, for the panels computed for the first time in the
background to fill in (`pages.ui.PENDING`)."""

from __future__ import annotations

import time

from streamlit.testing.v1 import AppTest

from pages.ui import PENDING


def pending(at: AppTest) -> list[str]:
    """The panels that say their first result is still being computed."""
    return [str(e.value) for e in at.info if PENDING in str(e.value)]


def settled(at: AppTest, timeout: float = 60.0) -> AppTest:
    """`at`, run again until no panel is pending, as a viewer's page fills in on its redraws."""
    deadline = time.monotonic() + timeout
    while pending(at):
        assert time.monotonic() < deadline, f"still pending after {timeout} s: {pending(at)}"
        time.sleep(0.1)
        at.run()
    return at
