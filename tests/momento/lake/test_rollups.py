"""The rollup store's lock: one rollup job per lake, on a local disk (a lock file) and on object
storage (commits to a Delta table of its own, on a real S3-compatible server)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from deltalake.exceptions import CommitFailedError

from momento.lake.location import Location, lake_location
from momento.lake.rollups import RollupLocked, RollupStore, _commit_lock_state, _lock_state


@pytest.fixture(params=["local", "s3"])
def lake(request: pytest.FixtureRequest, tmp_path) -> Location:
    if request.param == "local":
        return lake_location(tmp_path / "lake")
    s3_lake: Location = request.getfixturevalue("s3_lake")
    return s3_lake


def test_a_second_job_is_refused_while_the_first_holds_the_lock(lake):
    first, second = RollupStore(lake), RollupStore(lake)
    with first.lock(), pytest.raises(RollupLocked), second.lock():
        pass
    with second.lock():  # given back
        pass


def test_of_two_jobs_that_saw_the_lock_free_one_takes_it(s3_lake):
    """The commit that takes the lock lands only as the next version of its log."""
    store = RollupStore(s3_lake)
    seen_by_one, seen_by_other = store._lock_table(), store._lock_table()
    assert _lock_state(seen_by_one)[1] is False and _lock_state(seen_by_other)[1] is False
    _commit_lock_state(seen_by_one, "one", held=True, retries=0)
    with pytest.raises(CommitFailedError):
        _commit_lock_state(seen_by_other, "other", held=True, retries=0)
    assert _lock_state(store._lock_table()) == ("one", True)


def test_a_lock_left_by_a_dead_job_on_this_host_is_taken_over(s3_lake):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store = RollupStore(s3_lake)
    _commit_lock_state(store._lock_table(), f"{socket.gethostname()}:{dead.pid}", held=True)
    with store.lock():
        assert _lock_state(store._lock_table()) == (f"{socket.gethostname()}:{os.getpid()}", True)
    assert _lock_state(store._lock_table())[1] is False


def test_a_lock_held_from_another_host_waits_for_a_hand_release(s3_lake):
    store = RollupStore(s3_lake)
    _commit_lock_state(store._lock_table(), "elsewhere:123", held=True)
    with pytest.raises(RollupLocked, match=r"elsewhere:123"), store.lock():
        pass
    store.release_lock()
    with store.lock():
        pass
