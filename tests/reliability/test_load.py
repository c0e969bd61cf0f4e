"""A short run of `bench/load.py` (the 60 s load script): the REAL service held at a fixed
decision rate while events and the live simulator post alongside, then every acknowledged event
looked up in the warehouse by `event_id`.

What it asserts is what the service controls: zero errors, the offered rate achieved, nothing
acknowledged missing, every decision logged, and the in-process decision time within the
budget at the 95th percentile. Tails (HTTP p99, in-process p99) depend on what else the shared
2-core machine runs — three load generators share it with the service here, and a descheduled
thread counts against the decision's clock — so they are printed, and judged in the 60 s bench
run (docs/reliability.md), not asserted on 600 decisions.
"""

from __future__ import annotations

import importlib.util

import pytest

from momento.settings import PROJECT_ROOT

SECONDS = 6.0


def _load_script():
    spec = importlib.util.spec_from_file_location("bench_load", PROJECT_ROOT / "bench" / "load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.e2e
def test_a_short_load_run_loses_nothing_and_stays_within_budget(tmp_path):
    load = _load_script()
    report = load.run(seconds=SECONDS, rate=100.0, events_per_s=100.0, sessions=1.0, workdir=tmp_path)
    load.print_report(report)
    assert report.errors == 0
    assert report.decide.achieved >= 0.95 * report.decide.offered
    assert report.events_acked == SECONDS * 100.0 and report.events_found == report.events_acked
    assert report.simulator["events"] > 0 and report.simulator_events_found >= report.simulator["events"]
    assert report.decisions_logged == report.decisions_answered
    assert report.in_process_ms[1] <= report.budget_ms
