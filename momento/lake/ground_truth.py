"""The ground-truth document stored with a simulated lake (`<lake>/_ground_truth.json`).

The traffic simulator writes it (`decisioning.simulator.truth` computes it); the cockpit and the
tests read it to show the true effect next to each estimate. Its format is JSON whose shape
`decisioning.simulator.truth` documents.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FILE_NAME = "_ground_truth.json"


def truth_path(lake: Path) -> Path:
    """Where the ground truth of the lake at `lake` is stored."""
    return Path(lake) / FILE_NAME


def write(lake: Path, truth: dict[str, Any]) -> Path:
    """Store `truth` with the lake; returns the file written."""
    path = truth_path(lake)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(truth, indent=2, sort_keys=True), encoding="utf-8")
    return path


def load(lake: Path) -> dict[str, Any] | None:
    """The ground truth stored with the lake, or None (e.g. a lake fed only by live traffic)."""
    path = truth_path(lake)
    loaded: dict[str, Any] | None = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    return loaded
