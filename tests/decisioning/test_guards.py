"""Governance: each check per decision (arrays and scalars), priorities, and atomic caps."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from decisioning.guards import (
    FrequencyCaps,
    bought_today_block,
    cap_block,
    cap_limits,
    channel_block,
    consent_block,
    eligible_variants,
    first_block,
    local_day,
    stock_block,
)
from momento.codes import Code


def test_consent_channel_stock_and_cap_blocks_broadcast_over_arrays_and_scalars(scenario):
    email = scenario.placement_by_id["cart_recovery_offer"]
    assert consent_block([True, False]).tolist() == [None, Code.NO_CONSENT]
    assert consent_block(False).tolist() == [Code.NO_CONSENT]
    assert channel_block(email, ["email", "push", "web"]).tolist() == [None, None, Code.CHANNEL_NOT_SERVED]
    assert channel_block(email, "app").tolist() == [Code.CHANNEL_NOT_SERVED]
    assert stock_block([True, False], scenario.governance).tolist() == [None, Code.OUT_OF_STOCK]
    limits = cap_limits(scenario.caps, ["email", "email", "push", "web"])
    assert limits.tolist() == [1, 1, 2, 30]
    assert cap_block([0, 1, 1, 29], limits).tolist() == [None, Code.FREQUENCY_CAP, None, None]


def test_no_discount_to_a_customer_who_bought_today(scenario):
    offer = scenario.experience_by_id["recovery_offer"]  # reminder (default), discount_10, discount_15
    mask = eligible_variants(offer, [False, True], scenario.governance)
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    assert bought_today_block(offer, [False, True]).tolist() == [None, Code.BOUGHT_TODAY]
    showcase = scenario.experience_by_id["home_showcase"]  # no discounts: nothing to exclude
    assert eligible_variants(showcase, True).all()
    assert bought_today_block(showcase, True).tolist() == [None]
    relaxed = scenario.governance.model_copy(update={"no_discount_if_bought_today": False})
    assert eligible_variants(offer, True, relaxed).all()


def test_first_block_keeps_the_first_code_in_priority_order(scenario):
    web_only = scenario.placement_by_id["homepage_showcase"]
    combined = first_block(
        consent_block([True, False, True, False]),
        channel_block(web_only, ["web", "web", "email", "email"]),
        cap_block([5, 5, 5, 50], 30),
    )
    assert combined.tolist() == [None, Code.NO_CONSENT, Code.CHANNEL_NOT_SERVED, Code.NO_CONSENT]


def test_local_day_follows_the_business_timezone():
    sao_paulo = "America/Sao_Paulo"  # UTC-3
    late_evening = datetime(2026, 6, 12, 2, 30, tzinfo=UTC).timestamp()  # 23:30 on 11 June
    morning = datetime(2026, 6, 12, 3, 30, tzinfo=UTC).timestamp()  # 00:30 on 12 June
    days = local_day([late_evening, morning], sao_paulo)
    assert days[1] - days[0] == 1
    assert days[1] == (datetime(2026, 6, 12) - datetime(1970, 1, 1)).days
    assert local_day(morning, "UTC")[0] == days[1]


def test_frequency_cap_holds_under_concurrent_takes_for_the_same_user():
    caps = FrequencyCaps({"push": 2, "web": 30})
    barrier = threading.Barrier(16)
    granted: list[bool] = []
    lock = threading.Lock()

    def fire() -> None:
        barrier.wait()
        for _ in range(10):
            ok = caps.try_take("user-1", "web", 100)
            with lock:
                granted.append(ok)

    threads = [threading.Thread(target=fire) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 30 and caps.used("user-1", "web", 100) == 30
    assert [caps.try_take("user-1", "push", 100) for _ in range(3)] == [True, True, False]
    assert caps.try_take("user-1", "push", 101)  # a new day starts a new count
    assert caps.try_take("user-1", "email", 101)  # a channel without a cap is never capped


def test_frequency_caps_forget_old_days_and_erased_users():
    caps = FrequencyCaps({"email": 1})
    assert caps.try_take("a", "email", 1) and caps.try_take("b", "email", 1)
    caps.erase("a")
    assert caps.used("a", "email", 1) == 0 and caps.used("b", "email", 1) == 1
    caps.try_take("a", "email", 3)
    assert caps.used("b", "email", 1) == 0  # day 1 is two days before day 3: dropped
    assert caps.used("a", "email", 3) == 1
