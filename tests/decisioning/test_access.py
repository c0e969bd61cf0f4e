"""`decisioning.access`: the credentials off loopback (site key for decisions, server key for
writes), the drills switch, the rate limit's client, and the secrets a service off loopback
refuses to start without."""

from __future__ import annotations

import pytest

from decisioning.access import SERVER_CLIENT, Access, InsecureSettingsError, Role, insecure_settings
from decisioning.errors import ForbiddenError, RateLimitedError, UnauthorisedError
from momento.settings import DEV_PSEUDONYM_KEY, load_settings

SECRETS = {
    "MOMENTO_API_TOKEN": "server-secret",
    "MOMENTO_SITE_KEY": "site-secret",
    "MOMENTO_PSEUDONYM_KEY": "pseudonym-secret",
}
SERVER, SITE = "Bearer server-secret", "Bearer site-secret"


def _exposed(**env: str) -> Access:
    return Access(load_settings({**SECRETS, **env}), "0.0.0.0")


def test_on_loopback_every_local_caller_is_trusted():
    access = Access(load_settings({}), "127.0.0.1")
    for authorization in (None, "Bearer anything"):
        caller = access.admit(authorization, "127.0.0.1", Role.SERVER)
        assert caller.role is Role.SERVER and caller.client == "127.0.0.1"
    access.check_drills(access.identify(None, "127.0.0.1"), ["model_outage"])


def test_off_loopback_decisions_take_the_site_key_or_the_server_key():
    access = _exposed()
    assert access.admit(SITE, "198.51.100.7", Role.SITE).role is Role.SITE
    assert access.admit(SERVER, "198.51.100.7", Role.SITE).role is Role.SERVER
    for wrong in (None, "", "site-secret", "Bearer wrong", "bearer site-secret", f"{SITE} "):
        with pytest.raises(UnauthorisedError) as refused:
            access.admit(wrong, "198.51.100.7", Role.SITE)
        assert refused.value.field == "Authorization" and "MOMENTO_SITE_KEY" in refused.value.reason


def test_off_loopback_writes_take_the_server_key_only():
    access = _exposed()
    assert access.admit(SERVER, "198.51.100.7", Role.SERVER).role is Role.SERVER
    with pytest.raises(ForbiddenError, match="site key may only ask for decisions"):
        access.admit(SITE, "198.51.100.7", Role.SERVER)
    with pytest.raises(UnauthorisedError, match="not one this service knows"):
        access.admit("Bearer wrong", "198.51.100.7", Role.SERVER)
    with pytest.raises(UnauthorisedError, match="MOMENTO_API_TOKEN"):
        access.admit(None, "198.51.100.7", Role.SERVER)
    assert access.admit(None, "198.51.100.7", Role.ANONYMOUS).role is Role.ANONYMOUS  # the catalogue


def test_drills_off_loopback_need_the_switch_and_the_server_key():
    off, on = _exposed(), _exposed(MOMENTO_ALLOW_DRILLS="1")
    server, site = on.identify(SERVER, "198.51.100.7"), on.identify(SITE, "198.51.100.7")
    for access, caller, why in ((off, server, "switched off"), (on, site, "need the server key")):
        with pytest.raises(ForbiddenError, match=why) as refused:
            access.check_drills(caller, ["latency_spike"])
        assert refused.value.field == "incidents"
    on.check_drills(server, ["latency_spike"])
    off.check_drills(site, [])  # no drill asked: nothing to refuse


def test_the_rate_limit_client_is_the_server_key_else_the_address():
    access = _exposed(MOMENTO_RATE_LIMIT_PER_SECOND="0.001", MOMENTO_RATE_LIMIT_BURST="2")
    assert access.identify(SERVER, "198.51.100.7").client == SERVER_CLIENT
    assert access.identify(SITE, "198.51.100.7").client == "198.51.100.7"  # a site key is every visitor's
    for _ in range(2):
        access.admit(SITE, "198.51.100.7", Role.SITE)
    with pytest.raises(RateLimitedError) as limited:
        access.admit(SITE, "198.51.100.7", Role.SITE)
    assert limited.value.retry_after > 0
    access.admit(SITE, "198.51.100.8", Role.SITE)  # another address: its own bucket
    access.admit(SERVER, "198.51.100.7", Role.SITE)  # the back end: its own bucket
    with pytest.raises(RateLimitedError):  # a flood of wrong credentials is limited too, before it is checked
        access.admit("Bearer guess", "198.51.100.7", Role.SITE)
    assert Access(load_settings({"MOMENTO_RATE_LIMIT_PER_SECOND": "0"}), "127.0.0.1").limiter is None


def test_a_service_off_loopback_refuses_to_start_without_its_secrets():
    assert insecure_settings(load_settings({}), "127.0.0.1") == []
    assert insecure_settings(load_settings(SECRETS), "0.0.0.0") == []
    for missing, named in (
        ("MOMENTO_API_TOKEN", "MOMENTO_API_TOKEN"),
        ("MOMENTO_SITE_KEY", "MOMENTO_SITE_KEY"),
        ("MOMENTO_PSEUDONYM_KEY", "MOMENTO_PSEUDONYM_KEY"),
    ):
        (problem,) = insecure_settings(load_settings({**SECRETS, missing: ""}), "0.0.0.0")
        assert problem.startswith(named)
    (same,) = insecure_settings(load_settings({**SECRETS, "MOMENTO_SITE_KEY": "server-secret"}), "0.0.0.0")
    assert "equals MOMENTO_API_TOKEN" in same
    (default,) = insecure_settings(load_settings({**SECRETS, "MOMENTO_PSEUDONYM_KEY": DEV_PSEUDONYM_KEY}), "::")
    assert "development key is public" in default
    with pytest.raises(InsecureSettingsError) as refused:
        Access(load_settings({}), "0.0.0.0")
    assert len(refused.value.problems) == 3
