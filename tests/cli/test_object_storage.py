"""A lake on object storage that cannot be used is refused in one line, not with a traceback: an
unknown scheme, an endpoint out of reach, a command that needs a local disk; and a rollup lock
left on object storage by a dead job is given back by hand."""

from __future__ import annotations

import signal

import pytest

from cli.main import main
from momento.lake.rollups import RollupStore, _commit_lock_state


def _run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert main(argv) == 2
    finally:
        signal.signal(signal.SIGTERM, previous)  # main() sets the command's own
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err


def test_an_unknown_scheme_is_refused(monkeypatch, capsys):
    err = _run(monkeypatch, capsys, ["rollup"], MOMENTO_LAKE="ftp://host/lake")
    assert err.startswith("momento: MOMENTO_LAKE: the lake 'ftp://host/lake' is neither a local path nor a URI")


def test_an_endpoint_out_of_reach_is_said_plainly(monkeypatch, capsys):
    err = _run(
        monkeypatch,
        capsys,
        ["rollup"],
        MOMENTO_LAKE="s3://bucket/lake",
        AWS_ENDPOINT_URL="http://127.0.0.1:9",
        AWS_REGION="us-east-1",
    )
    assert err.startswith("momento rollup: cannot reach the lake at s3://bucket/lake:")


def test_a_local_only_command_on_object_storage_says_so(monkeypatch, capsys):
    err = _run(monkeypatch, capsys, ["backfill", "--days", "1"], MOMENTO_LAKE="s3://bucket/lake")
    assert err == "momento backfill: this needs a lake on a local disk, and the lake is s3://bucket/lake\n"


def test_a_lock_left_on_object_storage_is_given_back_by_hand(monkeypatch, capsys, s3, s3_lake):
    store = RollupStore(s3_lake)
    _commit_lock_state(store._lock_table(), "elsewhere:1", held=True)
    for name, value in {**s3.env, "MOMENTO_LAKE": s3_lake.uri}.items():
        monkeypatch.setenv(name, value)
    assert main(["rollup", "--release-lock"]) == 0
    assert capsys.readouterr().err == f"momento rollup: the rollup lock of {s3_lake.uri} is free\n"
    with store.lock():
        pass
