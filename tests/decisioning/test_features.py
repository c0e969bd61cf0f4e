"""Features: the encoding models read, and the live store's expiry, consent and erasure."""

from __future__ import annotations

import math
import random
import threading

import numpy as np
import pytest

from decisioning.features import FEATURE_NAMES, FeatureStore, encode, encode_columns, referrer_type
from tests.support.legacy_features import FeatureStore as LegacyFeatureStore


def _column(name: str) -> int:
    return FEATURE_NAMES.index(name)


def test_encode_maps_each_signal_to_its_column():
    X = encode(
        [
            {
                "device": "tablet",
                "price_sensitivity": "high",
                "referrer": "social",
                "hour": 6,
                "category": "vestidos",
                "last_category": "vestidos",
                "cart_value": 999.0,
                "pages_viewed": 30,
                "returning": True,
                "recency_seconds": 0.0,
                "seconds_since_email_open": 86_400.0,
            },
            {},
        ]
    )
    full, empty = X
    assert X.shape == (2, len(FEATURE_NAMES)) and (X[:, _column("bias")] == 1).all()
    assert full[_column("device_tablet")] == 1 and full[_column("device_mobile")] == 0
    assert full[_column("price_sensitivity")] == 1.0 and empty[_column("price_sensitivity")] == 0.5
    assert full[_column("referrer_social")] == 1 and full[_column("referrer_search")] == 0
    assert full[_column("hour_sin")] == pytest.approx(1.0) and full[_column("hour_cos")] == pytest.approx(
        0.0, abs=1e-12
    )
    assert full[_column("category_match")] == 1 and empty[_column("category_match")] == 0
    assert full[_column("cart_value")] == pytest.approx(math.log1p(999) / math.log1p(1000))
    assert full[_column("pages_viewed")] == 2.0  # capped at 20 pages
    assert full[_column("returning")] == 1 and empty[_column("returning")] == 0
    assert full[_column("recency")] == 0.0 and empty[_column("recency")] == 1.0  # never seen = oldest
    assert 0 < full[_column("email_open_recency")] < 1 and empty[_column("email_open_recency")] == 1.0
    assert np.isfinite(X).all()


def test_encode_rows_and_encode_columns_agree():
    rng = np.random.default_rng(4)
    n = 300
    columns = {
        "recency_seconds": np.where(rng.random(n) < 0.3, np.nan, rng.exponential(86_400, n)),
        "pages_viewed": rng.integers(0, 12, n).astype(float),
        "cart_value": rng.exponential(200, n),
        "device": rng.choice(["mobile", "desktop", "tablet", "tv"], n).astype(object),
        "returning": (rng.random(n) < 0.5).astype(float),
        "price_sensitivity": rng.choice(["low", "medium", "high"], n).astype(object),
        "last_category": rng.choice(["a", "b"], n).astype(object),
        "category": rng.choice(["a", "b"], n).astype(object),
        "referrer": rng.choice(["search", "social", "email", "direct", "other"], n).astype(object),
        "hour": rng.integers(0, 24, n).astype(float),
        "seconds_since_email_open": rng.exponential(86_400, n),
    }
    rows = [
        {key: (None if isinstance(v[i], float) and math.isnan(v[i]) else v[i]) for key, v in columns.items()}
        for i in range(n)
    ]
    np.testing.assert_array_equal(encode(rows), encode_columns(columns, n))


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (None, "direct"),
        ("", "direct"),
        ("https://www.google.com/search?q=vestido", "search"),
        ("https://l.instagram.com/", "social"),
        ("newsletter", "email"),
        ("email", "email"),
        ("https://blog.example.org/", "other"),
    ],
)
def test_referrer_type(raw, kind):
    assert referrer_type(raw) == kind


def test_store_counts_pages_and_cart_per_session_and_remembers_the_user():
    store = FeatureStore()
    store.observe_context(
        "u", "s1", 1000.0, device="mobile", referrer="search", price_sensitivity="high", category="vestidos"
    )
    for t in (1001.0, 1002.0, 1003.0):
        store.observe_event("u", "s1", "page_view", t)
    store.observe_event("u", "s1", "add_to_cart", 1004.0, revenue=120.0, category="calcados")
    row = store.row("u", "s1", 1005.0)
    assert row["pages_viewed"] == 3 and row["cart_value"] == 120.0 and row["device"] == "mobile"
    assert row["last_category"] == "calcados" and row["price_sensitivity"] == "high"
    assert row["returning"] is False and row["recency_seconds"] is None
    later = store.row("u", "s2", 5000.0)
    assert "pages_viewed" not in later  # a new session starts empty
    store.observe_context("u", "s2", 5000.0)
    again = store.row("u", "s2", 5010.0)
    assert again["returning"] is True and again["recency_seconds"] == pytest.approx(5010.0 - 1004.0)


def test_store_expires_sessions_and_users_after_their_time_to_live():
    store = FeatureStore(user_ttl_seconds=100.0, session_ttl_seconds=10.0)
    store.observe_event("u", "s", "page_view", 0.0)
    store.observe_event("v", "s", "page_view", 50.0)
    assert store.row("u", "s", 5.0)["pages_viewed"] == 1
    assert "pages_viewed" not in store.row("u", "s", 20.0)  # session gone, user kept
    assert store.row("u", "s", 120.0) == {}  # user gone
    assert len(store) == 1 and store.sweep(151.0) == 1 and len(store) == 0


def test_consent_withdrawal_is_immediate_never_expires_and_can_be_given_back():
    store = FeatureStore(user_ttl_seconds=1.0)
    assert not store.consent_withdrawn("u")
    store.observe_event("u", None, "consent_change", 0.0, consent=False)
    assert store.consent_withdrawn("u")
    store.sweep(1e9)
    assert store.consent_withdrawn("u")
    store.observe_event("u", None, "consent_change", 10.0, consent=True)
    assert not store.consent_withdrawn("u")
    store.observe_event("u", None, "opt_out", 20.0)
    assert store.consent_withdrawn("u")


def test_bought_today_uses_the_stores_day_function():
    store = FeatureStore(day_of=lambda ts: int((ts - 3 * 3600) // 86_400))  # UTC-3
    store.observe_event("u", "s", "purchase", 86_400 + 4 * 3600, revenue=100.0)  # 01:00 local, day 1
    assert store.bought_today("u", 86_400 + 20 * 3600)
    assert not store.bought_today("u", 2 * 86_400 + 4 * 3600)
    assert not store.bought_today("someone-else", 86_400 + 20 * 3600)


def test_identify_merges_the_anonymous_profile_and_erase_forgets_everything():
    store = FeatureStore()
    store.observe_event("anon", "s", "page_view", 10.0, category="lingerie")
    store.observe_event("anon", "s", "consent_change", 11.0, consent=False)
    store.merge("anon", "cust", 12.0)
    row = store.row("cust", "s", 13.0)
    assert row["pages_viewed"] == 1 and row["last_category"] == "lingerie"
    assert store.consent_withdrawn("cust") and store.row("anon", "s", 13.0) == {}
    store.erase("cust")
    assert store.row("cust", "s", 14.0) == {} and not store.consent_withdrawn("cust")


def test_store_is_consistent_under_concurrent_events_for_one_session():
    store = FeatureStore()

    def views() -> None:
        for i in range(500):
            store.observe_event("u", "s", "page_view", 100.0 + i * 1e-3)

    threads = [threading.Thread(target=views) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.row("u", "s", 101.0)["pages_viewed"] == 4000


def _random_calls(seed: int, n: int) -> list[tuple[str, tuple, dict]]:
    """A random but plausible sequence of store calls over a few users, sessions and hours."""
    rng = random.Random(seed)
    units = [f"u{i}" for i in range(6)] + [f"{i:032x}" for i in range(6)] + ["anon-a", "anon-b"]
    sessions = [None, "s1", "s2", "s3"]
    calls, now = [], 0.0
    for _ in range(n):
        now += rng.choice([1.0, 30.0, 400.0, 2_000.0, 50_000.0])
        unit, session = rng.choice(units), rng.choice(sessions)
        kind = rng.random()
        if kind < 0.35:
            calls.append(
                (
                    "observe_context",
                    (unit, session, now),
                    {
                        "device": rng.choice([None, "mobile", "desktop"]),
                        "referrer": rng.choice([None, "search", "email"]),
                        "cart_value": rng.choice([None, 0.0, 80.0]),
                        "category": rng.choice([None, "", "shoes", "dresses"]),
                        "price_sensitivity": rng.choice([None, "low", "high"]),
                    },
                )
            )
        elif kind < 0.75:
            event = rng.choice(["page_view", "add_to_cart", "purchase", "email_open", "consent_change", "opt_out"])
            calls.append(
                (
                    "observe_event",
                    (unit, session, event, now),
                    {
                        "category": rng.choice([None, "bags"]),
                        "revenue": rng.choice([None, 50.0]),
                        "consent": rng.choice([None, True, False]),
                    },
                )
            )
        elif kind < 0.85:
            calls.append(("merge", (rng.choice(["anon-a", "anon-b"]), unit, now), {}))
        elif kind < 0.88:
            calls.append(("erase", (unit,), {}))
        elif kind < 0.9:
            calls.append(("sweep", (now,), {}))
        calls.append(("row", (unit, rng.choice(sessions), now + rng.choice([0.0, 100.0, 3_000.0])), {}))
        calls.append(("bought_today", (unit, now), {}))
        calls.append(("consent_withdrawn", (unit,), {}))
    return calls


@pytest.mark.parametrize("seed", range(8))
def test_the_columnar_store_answers_as_the_dict_store_did(seed):
    """The same calls give the same rows, purchases, consent, sweeps and sizes as the previous
    store (one dict per user and session), expiry and identity stitching included."""
    ttl = {"user_ttl_seconds": 100_000.0, "session_ttl_seconds": 1_800.0}
    new, old = FeatureStore(**ttl), LegacyFeatureStore(**ttl)
    for name, args, kwargs in _random_calls(seed, 400):
        assert getattr(new, name)(*args, **kwargs) == getattr(old, name)(*args, **kwargs), (name, args, kwargs)
        assert len(new) == len(old)


def test_the_sweep_drops_exactly_the_expired_users_and_reuses_their_rows():
    store = FeatureStore(user_ttl_seconds=100.0)
    for i in range(1_000):
        store.observe_event(f"{i:032x}", "s", "page_view", float(i % 200))  # touched at 0..199
    assert store.sweep(250.0) == 750 and len(store) == 250  # touched before 150 have expired
    assert store.row(f"{150:032x}", "s", 250.0)["pages_viewed"] == 1 and store.row(f"{149:032x}", "s", 250.0) == {}
    rows_before = len(store._units)
    for i in range(1_000, 1_500):
        store.observe_context(f"{i:032x}", "s", 260.0, device="tablet")
    assert len(store._units) == rows_before  # new users took the freed rows
    assert store.row(f"{1_499:032x}", "s", 261.0) == {
        "recency_seconds": None,
        "returning": False,
        "last_category": None,
        "price_sensitivity": None,
        "seconds_since_email_open": None,
        "pages_viewed": 0,
        "cart_value": 0.0,
        "device": "tablet",
        "referrer": None,
    }


def test_past_max_users_the_least_recently_seen_go_first():
    store = FeatureStore(max_users=200)
    for i in range(200):
        store.observe_event(f"u{i}", None, "page_view", float(i))
    store.observe_event("u0", None, "page_view", 500.0)  # seen again: now the most recent
    store.observe_event("newcomer", None, "page_view", 501.0)
    assert len(store) == 199  # 1% of 200 = 2 evicted at once (at least the one too many)
    assert store.row("u0", None, 502.0) and store.row("newcomer", None, 502.0)
    assert store.row("u1", None, 502.0) == {} and store.row("u2", None, 502.0) == {} and store.row("u3", None, 502.0)


def test_labels_past_the_interning_table_are_kept_exactly():
    store = FeatureStore(max_labels=2)
    for i in range(5):
        store.observe_context(f"u{i}", "s", 1.0, category=f"category-{i}", device=f"device-{i}")
    assert [store.row(f"u{i}", "s", 2.0)["last_category"] for i in range(5)] == [f"category-{i}" for i in range(5)]
    assert store.row("u4", "s", 2.0)["device"] == "device-4"
    store.erase("u4")
    store.observe_context("u5", "s", 3.0)  # takes u4's row: none of u4's labels leak into it
    assert store.row("u5", "s", 4.0)["last_category"] is None and store.row("u5", "s", 4.0)["device"] is None
