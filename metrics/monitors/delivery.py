"""Getting alerts to people and to the service, without ever holding up monitoring.

- `Outbox`: a folder of pending messages, one file each, written atomically before anything is
  sent: alerts raised while the webhook is down wait there (across a restart of the watcher too)
  and go out, in order, once it is back. Nothing is lost; a message is removed only once the
  webhook acknowledged it (2xx). One message per alert change: the tracker opens an alert once
  while it stays open, and the outbox refuses a second message with the same alert id.
- `Deliverer`: a thread that posts the outbox's messages to the webhook as Slack/Teams-compatible
  JSON (`text`, plus the alert itself under `momento`), signed with HMAC-SHA256, retrying with
  exponential backoff; its failures are counted (`Telemetry`), monitoring never waits for it.
- `Pauser`: the safeguard: a rule with `action = "pause"` asks the service to pause the arm
  (`POST /v1/experiments/{id}/arms/{arm}/pause` with the server key), again on the next
  evaluation until the service has answered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge

from metrics.monitors.evaluate import FIRING, Change
from metrics.monitors.rules import Webhook

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Momento-Signature"
TIMESTAMP_HEADER = "X-Momento-Timestamp"
FIRST_BACKOFF_SECONDS = 0.5
"""The first wait after a failed delivery; it doubles up to the webhook's `max_backoff_s`."""


class Telemetry:
    """The watcher's own Prometheus counters (served on its `/metrics`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.evaluations = Counter(
            "momento_watch_evaluations_total", "Evaluations of every rule", registry=self.registry
        )
        self.evaluation_errors = Counter(
            "momento_watch_evaluation_errors_total",
            "Evaluations that failed (the lake unreadable, ...)",
            registry=self.registry,
        )
        self.alerts = Counter(
            "momento_alerts_total", "Alert changes written", ["rule", "state"], registry=self.registry
        )
        self.deliveries = Counter(
            "momento_webhook_deliveries_total", "Messages the webhook acknowledged", registry=self.registry
        )
        self.delivery_failures = Counter(
            "momento_webhook_delivery_failures_total", "Delivery attempts that failed (retried)", registry=self.registry
        )
        self.outbox = Gauge("momento_webhook_outbox_messages", "Messages waiting in the outbox", registry=self.registry)
        self.pauses = Counter(
            "momento_pause_requests_total", "Pause requests sent to the service", ["outcome"], registry=self.registry
        )


def message(change: Change) -> dict[str, Any]:
    """The webhook body of an alert change: Slack's and Teams' `text`, the alert under `momento`."""
    row = change.row()
    mark = "FIRING" if change.state == FIRING else "RESOLVED"
    action = f" (action: {row['action']})" if row["action"] else ""
    return {
        "text": f"[{mark}] {row['rule']}: {row['summary']}{action}",
        "momento": {**row, "ts": change.at.isoformat(), "evidence": json.loads(row["evidence"])},
    }


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header's value: HMAC-SHA256 of `timestamp.body` under `secret`."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class Outbox:
    """Messages waiting for the webhook, one JSON file each, in the order they were put."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def put(self, key: str, body: dict[str, Any]) -> bool:
        """Keep `body` until it is delivered; False (nothing kept) when `key` is already waiting."""
        with self._lock:
            if any(self.folder.glob(f"*-{key}.json")):
                return False
            path = self.folder / f"{time.time_ns():020d}-{key}.json"
            staging = path.with_suffix(".tmp")
            staging.write_text(json.dumps(body, default=str), encoding="utf-8")
            os.replace(staging, path)  # atomic: a crash leaves the whole message or none
            return True

    def pending(self) -> list[Path]:
        return sorted(self.folder.glob("*.json"))


class Deliverer:
    """Posts the outbox to the webhook on a thread of its own, in order, until stopped."""

    def __init__(self, outbox: Outbox, webhook: Webhook, telemetry: Telemetry) -> None:
        self.outbox, self.webhook, self.telemetry = outbox, webhook, telemetry
        self.backoff = (min(FIRST_BACKOFF_SECONDS, webhook.max_backoff_s), webhook.max_backoff_s)
        self.secret = webhook.secret_file.read_bytes().strip() if webhook.secret_file else None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        """Something new is in the outbox."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _post(self, client: httpx.Client, path: Path) -> bool:
        body = path.read_bytes()
        headers = {"Content-Type": "application/json"}
        if self.secret is not None:
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(self.secret, timestamp, body)
        try:
            response = client.post(self.webhook.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("webhook unreachable (%s); the alert stays in the outbox", exc)
            return False
        if response.is_success:
            return True
        log.warning("webhook answered %d; the alert stays in the outbox", response.status_code)
        return False

    def _run(self) -> None:
        delay = self.backoff[0]
        with httpx.Client(timeout=self.webhook.timeout_s) as client:
            while not self._stop.is_set():
                waiting = self.outbox.pending()
                self.telemetry.outbox.set(len(waiting))
                if not waiting:
                    self._wake.wait(1.0)
                    self._wake.clear()
                    continue
                for path in waiting:
                    if self._stop.is_set():
                        return
                    if not self._post(client, path):
                        self.telemetry.delivery_failures.inc()
                        self._stop.wait(delay)
                        delay = min(delay * 2, self.backoff[1])
                        break
                    path.unlink()
                    self.telemetry.deliveries.inc()
                    delay = self.backoff[0]


class Pauser:
    """Asks the service to pause the arm of each firing alert whose rule says `pause`."""

    def __init__(self, service_url: str, token: str | None, telemetry: Telemetry, timeout_s: float = 5.0) -> None:
        self.url, self.telemetry, self.timeout_s = service_url.rstrip("/"), telemetry, timeout_s
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.waiting: dict[str, Change] = {}
        """Requests not yet answered, by alert id: sent again at the next evaluation."""

    def request(self, changes: list[Change]) -> None:
        for change in changes:
            if change.state == FIRING and change.finding.action == "pause":
                self.waiting[change.alert_id] = change
        for alert_id, change in list(self.waiting.items()):
            if self._send(change):
                del self.waiting[alert_id]

    def _send(self, change: Change) -> bool:
        f = change.finding
        experiment_id, arm = f.subject.split("/", 1)
        body = {"rule": f.rule, "reason": f.summary, "evidence": f.evidence}
        try:
            response = httpx.post(
                f"{self.url}/v1/experiments/{experiment_id}/arms/{arm}/pause",
                json=body,
                headers=self.headers,
                timeout=self.timeout_s,
            )
        except httpx.HTTPError as exc:
            log.warning("pause of %s not sent (%s); retried at the next evaluation", f.subject, exc)
            self.telemetry.pauses.labels("unreachable").inc()
            return False
        if response.is_success:
            self.telemetry.pauses.labels("paused").inc()
            log.warning("%s paused by rule %s", f.subject, f.rule)
            return True
        self.telemetry.pauses.labels(str(response.status_code)).inc()
        log.error("the service refused to pause %s: %d %s", f.subject, response.status_code, response.text)
        return response.is_client_error  # a refusal will not change: do not ask again
