"""A restart forgets nothing governance needs: identity links, consent withdrawals, today's
frequency caps and today's purchases come back from the lake (decisioning.recovery), on the
REAL service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from momento.codes import Code
from tests.support.service import decide, raw_user

OFFER = {"price_sensitivity": "high", "cart_value": 180.0}


def _ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


def _events(http: httpx.Client, *events: dict) -> None:
    body = {"events": [{"channel": "web", **event} for event in events]}
    assert http.post("/v1/events", params={"wait": "durable"}, json=body).json()["durable"] is True


@pytest.mark.e2e
def test_links_consent_caps_and_purchases_survive_a_restart(launch, tmp_path, scenario):
    withdrew = raw_user(scenario, "exp_adaptive_cta", "adaptive", "restart-withdrew")
    gave_back = raw_user(scenario, "exp_adaptive_cta", "adaptive", "restart-gave-back")
    capped = raw_user(scenario, "exp_recovery_offer", "treatment", "restart-capped")
    bought = raw_user(scenario, "exp_recovery_offer", "treatment", "restart-bought")
    untouched = raw_user(scenario, "exp_recovery_offer", "treatment", "restart-untouched")

    first = launch(tmp_path)
    with httpx.Client(base_url=first.url, timeout=10) as http:
        _events(
            http,
            {"event_id": "w1", "event_type": "consent_change", "consent": False, "user_id": withdrew},
            {"event_id": "g1", "event_type": "opt_out", "user_id": gave_back, "ts": _ago(2)},
            {"event_id": "g2", "event_type": "consent_change", "consent": True, "user_id": gave_back, "ts": _ago(1)},
            {"event_id": "b1", "event_type": "purchase", "revenue": 180.0, "user_id": bought},
        )
        assert decide(http, withdrew, "product_cta", "web", **OFFER)["fallback_reason"] == Code.NO_CONSENT
        assert (
            decide(http, capped, "cart_recovery_offer", "email", **OFFER)["policy"] == "rules"
        )  # takes today's e-mail cap
        assert decide(http, capped, "cart_recovery_offer", "email", **OFFER)["fallback_reason"] == Code.FREQUENCY_CAP
        assert decide(http, bought, "cart_recovery_offer", "email", **OFFER)["fallback_reason"] == Code.BOUGHT_TODAY
        assert http.post("/v1/identify", json={"anonymous_id": "restart-cookie", "user_id": capped}).status_code == 200
        assert (
            decide(http, None, "cart_recovery_offer", "email", **OFFER, anonymous_id="restart-cookie")[
                "fallback_reason"
            ]
            == Code.FREQUENCY_CAP
        )  # the cookie is the capped customer now
    first.stop()

    second = launch(tmp_path)  # the same lake, a new process
    with httpx.Client(base_url=second.url, timeout=10) as http:
        assert decide(http, withdrew, "product_cta", "web", **OFFER)["fallback_reason"] == Code.NO_CONSENT
        assert decide(http, gave_back, "product_cta", "web", **OFFER)["policy"] == "propensity"
        assert decide(http, capped, "cart_recovery_offer", "email", **OFFER)["fallback_reason"] == Code.FREQUENCY_CAP
        assert (
            decide(http, None, "cart_recovery_offer", "email", **OFFER, anonymous_id="restart-cookie")[
                "fallback_reason"
            ]
            == Code.FREQUENCY_CAP
        )
        assert decide(http, bought, "cart_recovery_offer", "email", **OFFER)["fallback_reason"] == Code.BOUGHT_TODAY
        assert decide(http, untouched, "cart_recovery_offer", "email", **OFFER)["policy"] == "rules"
