"""The Streamlit options the cockpit is served with (`.streamlit/config.toml`), read as Streamlit
itself reads them when `momento cockpit` starts it from the project's root: a misspelt option is
ignored by Streamlit with a warning, so the effective value is what counts."""

from __future__ import annotations

import json
import subprocess
import sys

from momento.settings import PROJECT_ROOT

OPTIONS = ("server.address", "server.runOnSave", "server.fileWatcherType", "runner.postScriptGC")
_READ = (
    "import json, streamlit.config as c; c.get_config_options(force_reparse=True); "
    f"print(json.dumps({{k: c.get_option(k) for k in {OPTIONS!r}}}))"
)


def _effective_options() -> dict[str, object]:
    # A process of its own: reparsing Streamlit's configuration here would change it for the
    # AppTest runs of the other tests.
    done = subprocess.run(
        [sys.executable, "-c", _READ], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    options: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return options


def test_the_cockpit_is_served_without_development_work_after_each_run() -> None:
    options = _effective_options()
    # Loopback unless `momento cockpit` is told otherwise.
    assert options["server.address"] == "127.0.0.1"
    # No source watching: Streamlit's watcher walks every imported module on the server's event
    # loop after each run of each session.
    assert options["server.fileWatcherType"] == "none"
    assert options["server.runOnSave"] is False
    # No full garbage collection after every run and every panel's redraw (~0.2 s each).
    assert options["runner.postScriptGC"] is False
