"""`momento import bandit-log FILE --campaign NAME --policy NAME`: another system's logged bandit
feedback (the Open Bandit Dataset layout, CSV or Parquet) into the lake, for the Policy lab
(`momento.lake.bandit_import` does the work; this prints its report or its refusal)."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from momento.lake.bandit_import import ImportRefused, import_bandit_log
from momento.settings import Settings


def run_import_bandit_log(settings: Settings, path: Path, campaign: str, policy: str, out: TextIO, err: TextIO) -> int:
    """Import the file; 0 and a report, or 2 and why the file was refused (nothing written)."""
    try:
        report = import_bandit_log(settings.lake, path, campaign, policy)
    except ImportRefused as exc:
        print(f"momento import bandit-log: {path}: {exc}; nothing was imported", file=err)
        return 2
    print(
        f"{path}: {report.rows:,} logged decisions ({report.clicks:,} clicks) of policy {policy!r} into campaign "
        f"{campaign!r} at {settings.lake}",
        file=out,
    )
    print(
        f"added {report.decisions_added:,} decisions, {report.exposures_added:,} exposures, "
        f"{report.clicks_added:,} click events ({report.rows - report.decisions_added:,} already in the lake)",
        file=out,
    )
    print(f"context ({report.context_version}): {', '.join(report.features)}", file=out)
    if report.ignored_features:
        print(f"not numeric, left out of the context: {', '.join(report.ignored_features)}", file=out)
    return 0
