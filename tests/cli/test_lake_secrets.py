"""`cli.lake_secrets`: the demo's pseudonym key, one random key per lake, owner-only."""

from __future__ import annotations

import os
import stat

from cli.lake_secrets import demo_pseudonym_key, key_path
from momento.settings import DEV_PSEUDONYM_KEY


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_lake_gets_a_random_key_kept_owner_only_and_reused(tmp_path):
    lake = tmp_path / "lake"
    key, note = demo_pseudonym_key(lake, DEV_PSEUDONYM_KEY, lake_has_history=False)
    assert note is None and key != DEV_PSEUDONYM_KEY and len(key) >= 32
    path = key_path(lake)
    assert path.read_text().strip() == key
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    assert demo_pseudonym_key(lake, DEV_PSEUDONYM_KEY, lake_has_history=True) == (key, None)  # a restart
    other, _ = demo_pseudonym_key(tmp_path / "other-lake", DEV_PSEUDONYM_KEY, lake_has_history=False)
    assert other != key  # one key per lake


def test_the_keys_modes_do_not_follow_a_loose_umask(tmp_path):
    previous = os.umask(0)
    try:
        demo_pseudonym_key(tmp_path / "lake", DEV_PSEUDONYM_KEY, lake_has_history=False)
    finally:
        os.umask(previous)
    path = key_path(tmp_path / "lake")
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700


def test_a_key_set_in_the_environment_wins_and_is_not_written(tmp_path):
    assert demo_pseudonym_key(tmp_path / "lake", "operator-key", lake_has_history=False) == ("operator-key", None)
    assert not key_path(tmp_path / "lake").exists()


def test_a_lake_keyed_before_the_demo_kept_keys_keeps_the_development_key(tmp_path):
    key, note = demo_pseudonym_key(tmp_path / "lake", DEV_PSEUDONYM_KEY, lake_has_history=True)
    assert key == DEV_PSEUDONYM_KEY and "development pseudonym key" in note
    assert not key_path(tmp_path / "lake").exists()
