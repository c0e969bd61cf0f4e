"""`momento watch`: the monitors, evaluated every few seconds until SIGINT or SIGTERM.

Each evaluation reads the lake's current snapshot the way the cockpit does
(`metrics.monitors.inputs`), judges every rule of the monitors file (`data/monitors.toml` next to
the scenario, or `--monitors`), and for every alert that starts or stops firing: writes a row to
the lake's `alerts` table (through the lake writer), puts a message in the webhook's outbox
(delivered by a thread of its own, so a webhook that is down never holds monitoring up), and for a
rule with `action = "pause"` asks the service to pause the arm. Its own counters are on
`/metrics` (`--metrics-port`; 0: none).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from pathlib import Path

from prometheus_client import start_http_server

from metrics.monitors.delivery import Deliverer, Outbox, Pauser, Telemetry, message
from metrics.monitors.evaluate import Change, Tracker, evaluate
from metrics.monitors.history import open_alerts
from metrics.monitors.inputs import read_numbers
from metrics.monitors.rules import Monitors, MonitorsError, default_path, load_monitors
from momento.lake.warehouse import Warehouse
from momento.lake.writer import LakeWriter
from momento.scenario import Scenario, ScenarioError, load_scenario
from momento.settings import Settings

log = logging.getLogger("momento.watch")

OUTBOX_DIR = "_outbox"
"""The webhook outbox's folder under the lake."""


class Watch:
    """One evaluation at a time: read, judge, record, deliver, act."""

    def __init__(self, settings: Settings, scenario: Scenario, monitors: Monitors, telemetry: Telemetry) -> None:
        self.settings, self.scenario, self.monitors, self.telemetry = settings, scenario, monitors, telemetry
        self.warehouse = Warehouse(settings.lake, min_refresh_seconds=0.0)
        # Only the alerts table is appended here: no compaction (the service's writer compacts the lake).
        self.writer = LakeWriter(settings.lake, compact_every_seconds=None, background=False, dedupe_capacity=10_000)
        opened = open_alerts(self.warehouse) if self.warehouse.has("alerts") else None
        self.tracker = Tracker([] if opened is None else zip(opened["rule"], opened["subject"], strict=True))
        self.outbox = self.deliverer = None
        if monitors.webhook is not None:
            self.outbox = Outbox(settings.lake.path / OUTBOX_DIR)
            self.deliverer = Deliverer(self.outbox, monitors.webhook, telemetry)
            self.deliverer.start()
        self.pauser = Pauser(settings.service_url, settings.api_token, telemetry)

    def once(self) -> list[Change]:
        """Evaluate every rule on the newest snapshot; the alert changes it brought."""
        self.warehouse.refresh(force=True)
        numbers = read_numbers(self.warehouse, self.scenario, self.monitors)
        findings = [finding for rule in self.monitors.rules for finding in evaluate(rule, numbers)]
        before = set(self.tracker.open)
        changes = self.tracker.update(findings, numbers.at)
        if changes:
            try:
                self.writer.append("alerts", [change.row() for change in changes])
                self.writer.flush()
            except Exception:
                self.tracker.open = before  # not recorded: raised again at the next evaluation
                raise
            for change in changes:
                self.telemetry.alerts.labels(change.finding.rule, change.state).inc()
                log.warning("%s %s: %s", change.state, change.finding.rule, change.finding.summary)
                if self.outbox is not None:
                    self.outbox.put(change.alert_id, message(change))
            if self.deliverer is not None:
                self.deliverer.notify()
        self.pauser.request(changes)
        self.telemetry.evaluations.inc()
        return changes

    def run(self, interval: float, stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.once()
            except Exception:
                self.telemetry.evaluation_errors.inc()
                log.exception("evaluation failed; tried again in %g s", interval)
            stop.wait(max(0.0, interval - (time.monotonic() - started)))

    def close(self) -> None:
        if self.deliverer is not None:
            self.deliverer.stop()
        self.writer.close()
        self.warehouse.close()


def run_watch(settings: Settings, monitors_file: Path | None, interval: float | None, metrics_port: int) -> int:
    """Run the monitors on `settings.lake` until a signal; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        scenario = load_scenario(settings.scenario)
        monitors = load_monitors(monitors_file or default_path(settings.scenario))
    except (ScenarioError, MonitorsError) as exc:
        print(f"momento watch: {exc}", file=sys.stderr)
        return 2
    if interval is not None and not interval > 0:
        print("momento watch: --interval must be a number of seconds > 0", file=sys.stderr)
        return 2
    stop = threading.Event()

    def leave(signum: int, frame: object) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, leave)
    telemetry = Telemetry()
    if metrics_port:
        start_http_server(metrics_port, addr="127.0.0.1", registry=telemetry.registry)
    watch = Watch(settings, scenario, monitors, telemetry)
    every = interval or monitors.interval_s
    print(
        f"momento watch: {len(monitors.rules)} rules on {settings.lake} every {every:g} s"
        + (f", metrics on http://127.0.0.1:{metrics_port}/metrics" if metrics_port else ""),
        file=sys.stderr,
        flush=True,
    )
    try:
        watch.run(every, stop)
    finally:
        watch.close()
    return 0
