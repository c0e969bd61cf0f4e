"""`momento.settings`: the new settings' parsing, with errors naming the variable, and which
binds are loopback."""

from __future__ import annotations

import pytest

from momento.settings import DEV_PSEUDONYM_KEY, SettingsError, is_loopback, load_settings


def test_defaults_keep_every_door_local_and_every_secret_unset():
    settings = load_settings({})
    assert settings.host == settings.cockpit_host == "127.0.0.1"
    assert settings.api_token is settings.site_key is settings.cockpit_proxy_secret is None
    assert settings.pseudonym_key == DEV_PSEUDONYM_KEY and settings.allow_drills is False
    assert settings.rate_limit_per_second > 0 and settings.rate_limit_burst >= 1 and settings.rate_limit_clients >= 1
    assert "secret" not in repr(load_settings({"MOMENTO_SITE_KEY": "secret", "MOMENTO_COCKPIT_PROXY_SECRET": "secret"}))


@pytest.mark.parametrize(
    ("raw", "value"), [("1", True), ("true", True), ("YES", True), ("0", False), ("off", False), ("", False)]
)
def test_allow_drills_reads_the_usual_spellings(raw, value):
    assert load_settings({"MOMENTO_ALLOW_DRILLS": raw}).allow_drills is value


def test_the_attribution_window_is_30_minutes_unless_set():
    assert load_settings({}).attribution_seconds == 1800.0
    assert load_settings({"MOMENTO_ATTRIBUTION_SECONDS": "300"}).attribution_seconds == 300.0


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("MOMENTO_ALLOW_DRILLS", "maybe"),
        ("MOMENTO_RATE_LIMIT_PER_SECOND", "-1"),
        ("MOMENTO_RATE_LIMIT_BURST", "0"),
        ("MOMENTO_RATE_LIMIT_CLIENTS", "0"),
        ("MOMENTO_RATE_LIMIT_BURST", "lots"),
        ("MOMENTO_COCKPIT_MEMORY_MB", "64"),
        ("MOMENTO_ROLLUP_MEMORY_MB", "100"),
        ("MOMENTO_ATTRIBUTION_SECONDS", "0"),
    ],
)
def test_an_unusable_value_is_an_error_naming_the_variable(name, raw):
    with pytest.raises(SettingsError, match=name):
        load_settings({name: raw})


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.7", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback
