"""`decisioning.access`: which binds are loopback, and the credential checks off loopback."""

from __future__ import annotations

import pytest

from decisioning.access import Access, is_loopback
from decisioning.errors import Unauthorised
from momento.settings import load_settings


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True),
                                           ("localhost", True), ("0.0.0.0", False), ("::", False),
                                           ("192.0.2.7", False), ("example.com", False)])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_writes_need_the_bearer_token_off_loopback_only():
    settings = load_settings({"MOMENTO_API_TOKEN": "s3cret"})
    Access(settings, "127.0.0.1").check_writer(None)  # loopback: every local process is trusted
    exposed = Access(settings, "0.0.0.0")
    exposed.check_writer("Bearer s3cret")
    for wrong in (None, "", "s3cret", "Bearer wrong", "bearer s3cret", "Bearer s3cret "):
        with pytest.raises(Unauthorised) as refused:
            exposed.check_writer(wrong)
        assert refused.value.field == "Authorization"
    with pytest.raises(Unauthorised):  # no token configured: nothing opens the door
        Access(load_settings({}), "0.0.0.0").check_writer("Bearer ")
