"""Delivery against a real local HTTP receiver: messages are signed, kept in the outbox while the
webhook is down or failing (failures counted), delivered once when it is back, in order, and a
second message for the same alert is refused."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from cli.processes import free_loopback_port
from metrics.monitors.delivery import Deliverer, Outbox, Telemetry, message, sign
from metrics.monitors.evaluate import Finding, Tracker
from metrics.monitors.rules import Webhook
from tests.support.webhook import Receiver

SECRET = b"hook-secret-5e1"


def _changes(n: int):
    tracker = Tracker()
    at = datetime(2026, 6, 12, tzinfo=UTC)
    return [
        tracker.update([Finding(f"rule{i}", "error_rate", "service", True, f"errors {i}", {"rate": 0.5})], at)[0]
        for i in range(n)
    ]


def test_the_message_is_slack_and_teams_text_with_the_alert():
    (change,) = _changes(1)
    body = message(change)
    assert body["text"] == "[FIRING] rule0: errors 0"
    assert body["momento"]["evidence"] == {"rate": 0.5}
    assert body["momento"]["alert_id"] == change.alert_id
    assert sign(SECRET, "1", b"{}") == sign(SECRET, "1", b"{}") != sign(b"other", "1", b"{}")


def test_a_webhook_down_then_up_gets_every_alert_once_in_order(tmp_path):
    secret_file = tmp_path / "hook.key"
    secret_file.write_bytes(SECRET + b"\n")
    receiver = Receiver(free_loopback_port(), SECRET)
    telemetry = Telemetry()
    outbox = Outbox(tmp_path / "outbox")
    deliverer = Deliverer(outbox, Webhook(url=receiver.url, secret_file=secret_file, max_backoff_s=0.5), telemetry)
    changes = _changes(3)
    for change in changes:
        assert outbox.put(change.alert_id, message(change))
    assert not outbox.put(changes[0].alert_id, message(changes[0]))  # one message per alert change
    deliverer.start()
    try:
        time.sleep(1.5)  # the webhook is down: nothing lost, failures counted
        assert len(outbox.pending()) == len(changes)
        assert telemetry.registry.get_sample_value("momento_webhook_delivery_failures_total") >= 1
        receiver.status = 500  # up but failing: still kept
        receiver.start()
        time.sleep(1.0)
        assert len(outbox.pending()) == len(changes)
        receiver.status = 200
        deadline = time.monotonic() + 10
        while outbox.pending() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        deliverer.stop()
        receiver.stop()
    assert [m.body["momento"]["alert_id"] for m in receiver.messages] == [c.alert_id for c in changes]
    assert all(m.signed for m in receiver.messages)
    assert outbox.pending() == []
    assert telemetry.registry.get_sample_value("momento_webhook_deliveries_total") == len(changes)
