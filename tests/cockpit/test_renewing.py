"""pages/renewing.py: once a key has a result, a request for a newer version gets it at once while
one background thread computes the newer one; the first request waits (for `quick` if given), or
only so long and then gets `Pending`; a result may be kept for a while whatever the version; a
failed renewal keeps the older result and says why."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from pages.renewing import Pending, Renewing


def _eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class Gate:
    """A computation that blocks until released, counting its calls."""

    def __init__(self, value: object) -> None:
        self.value = value
        self.calls = 0
        self.open = threading.Event()

    def __call__(self) -> object:
        self.calls += 1
        assert self.open.wait(10), "never released"
        return self.value


def test_the_first_request_waits_and_the_same_version_is_never_computed_again():
    store = Renewing(8)
    calls = []
    assert store.get("k", 1, lambda: calls.append(1) or "one") == "one"
    assert store.get("k", 1, lambda: calls.append(1) or "again") == "one"
    assert calls == [1]


def test_a_newer_version_gets_the_older_result_at_once_and_the_newer_one_later():
    store = Renewing(8)
    store.get("k", 1, lambda: "one")
    newer = Gate("two")
    assert store.get("k", 2, newer) == "one"  # the gate is closed: this did not wait for it
    assert store.get("k", 2, newer) == "one"
    _eventually(lambda: newer.calls == 1)
    newer.open.set()
    _eventually(lambda: store.get("k", 2, newer) == "two")
    assert newer.calls == 1  # one renewal at a time, and none once the version is there


def test_a_quick_first_result_is_served_and_renewed_at_once():
    store = Renewing(8)
    full = Gate("full")
    assert store.get("k", 1, full, quick=lambda: "quick") == "quick"
    assert store.get("k", 1, full, quick=lambda: "quick") == "quick"  # starts the full computation
    full.open.set()
    _eventually(lambda: store.get("k", 1, full) == "full")
    assert full.calls == 1


def test_the_first_request_raises_what_the_computation_raises():
    store = Renewing(8)
    with pytest.raises(ZeroDivisionError):
        store.get("k", 1, lambda: 1 / 0)
    assert store.get("k", 1, lambda: "fine") == "fine"  # nothing was kept


def test_a_failed_renewal_keeps_the_older_result_and_says_why_until_one_succeeds():
    store = Renewing(8)
    store.get("k", 1, lambda: "one")

    def broken() -> str:
        raise OSError("the lake's disk is gone")

    assert store.get("k", 2, broken) == "one"
    _eventually(lambda: store.error("k") == "the lake's disk is gone")
    assert store.get("k", 2, broken) == "one"
    _eventually(lambda: store.get("k", 2, lambda: "two") == "two")
    assert store.error("k") == ""


def test_the_least_recently_used_keys_go_first():
    store = Renewing(2)
    store.get("a", 1, lambda: "a")
    store.get("b", 1, lambda: "b")
    store.get("a", 1, lambda: "unused")  # a is used again: b is now the oldest
    store.get("c", 1, lambda: "c")
    assert store.get("a", 1, lambda: "recomputed") == "a"
    assert store.get("b", 1, lambda: "recomputed") == "recomputed"


def test_a_renewal_is_not_a_daemon_even_when_asked_for_from_a_daemon_thread():
    """Streamlit's script threads are daemons; a daemon renewal killed at exit inside a DuckDB
    query aborts the interpreter, so an exiting cockpit must wait for it instead."""
    store = Renewing(8)
    store.get("k", 1, lambda: "one")
    newer = Gate("two")
    asker = threading.Thread(target=store.get, args=("k", 2, newer), daemon=True)
    asker.start()
    asker.join()
    _eventually(lambda: newer.calls == 1)
    (renewal,) = [t for t in threading.enumerate() if t.name.startswith("momento-renew-")]
    assert not renewal.daemon
    newer.open.set()
    renewal.join(10)


def test_a_first_request_that_may_wait_only_so_long_gets_pending_then_the_result():
    store = Renewing(8)
    first = Gate("one")
    with pytest.raises(Pending):
        store.get("k", 1, first, wait=0.05)
    with pytest.raises(Pending):  # a second first request shares the computation
        store.get("k", 1, first, wait=0.05)
    first.open.set()
    _eventually(lambda: store.get("k", 1, first, wait=0.05) == "one")
    assert first.calls == 1
    assert store.get("k", 2, lambda: "two", wait=0.05) == "one"  # from now on, as without a wait


def test_a_first_request_within_its_wait_gets_the_result():
    store = Renewing(8)
    assert store.get("k", 1, lambda: "one", wait=10) == "one"
    assert store.get("k", 1, lambda: "again", wait=10) == "one"


def test_a_first_computation_that_fails_in_the_background_raises_once_then_is_tried_again():
    store = Renewing(8)
    failing = Gate(None)

    def broken() -> str:
        failing()
        raise OSError("the lake's disk is gone")

    with pytest.raises(Pending):
        store.get("k", 1, broken, wait=0.05)
    failing.open.set()
    _eventually(
        lambda: failing.calls == 1 and not any(t.name.startswith("momento-renew-") for t in threading.enumerate())
    )
    with pytest.raises(OSError, match="disk is gone"):
        store.get("k", 1, broken, wait=0.05)
    assert store.get("k", 1, lambda: "fine", wait=10) == "fine"


def test_a_quick_first_result_computed_in_the_background_is_renewed_at_once():
    store = Renewing(8)
    full = Gate("full")
    assert store.get("k", 1, full, quick=lambda: "quick", wait=10) == "quick"
    assert store.get("k", 1, full, quick=lambda: "quick", wait=10) == "quick"  # starts the full one
    full.open.set()
    _eventually(lambda: store.get("k", 1, full) == "full")


def test_a_result_is_kept_for_every_seconds_whatever_the_version_then_renewed():
    now = [0.0]
    store = Renewing(8, clock=lambda: now[0])
    store.get("k", 1, lambda: "one", every=30)
    newer = Gate("three")
    now[0] = 29.0
    assert store.get("k", 3, newer, every=30) == "one"
    assert newer.calls == 0  # not renewed: stored 29 s ago
    now[0] = 31.0
    assert store.get("k", 3, newer, every=30) == "one"  # renewed in the background
    _eventually(lambda: newer.calls == 1)
    newer.open.set()
    _eventually(lambda: store.get("k", 3, newer, every=30) == "three")


def test_a_result_that_took_long_is_kept_so_that_renewing_it_takes_at_most_its_share_of_the_time():
    now = [0.0]
    store = Renewing(8, clock=lambda: now[0])

    def scan() -> str:  # a scan of the history that has grown to take 12 s
        now[0] += 12.0
        return "one"

    store.get("k", 1, scan, every=30, share=0.1)
    newer = Gate("two")
    now[0] = 12.0 + 107.0  # 12 s is a tenth of 120 s: kept 108 s after it ended
    assert store.get("k", 2, newer, every=30, share=0.1) == "one"
    assert newer.calls == 0
    now[0] = 12.0 + 109.0
    assert store.get("k", 2, newer, every=30, share=0.1) == "one"  # renewed in the background
    _eventually(lambda: newer.calls == 1)
    newer.open.set()
    _eventually(lambda: store.get("k", 2, newer, every=30, share=0.1) == "two")


def test_computations_holding_one_gate_run_one_at_a_time_and_its_wait_is_not_their_cost():
    now = [0.0]
    store = Renewing(8, clock=lambda: now[0])
    gate = threading.Semaphore(1)
    first, second = Gate("a"), Gate("b")
    for key, compute in (("a", first), ("b", second)):
        with pytest.raises(Pending):
            store.get(key, 1, compute, wait=0.01, gate=gate)
    _eventually(lambda: first.calls + second.calls == 1)
    running, waiting = (first, second) if first.calls else (second, first)
    time.sleep(0.1)
    assert waiting.calls == 0  # it waits for the gate, not for its own turn to be scheduled
    now[0] = 50.0  # the running one took 50 s; the waiting one waited that long
    running.open.set()
    _eventually(lambda: waiting.calls == 1)
    waiting.open.set()
    key = "a" if waiting is first else "b"
    _eventually(lambda: store.newest(key) == waiting.value)
    # it took no clock time once it held the gate: with a share of 0.1, a newer version renews it
    assert store.get(key, 2, lambda: "newer", share=0.1) == waiting.value
    _eventually(lambda: store.newest(key) == "newer")


def test_newest_is_the_newest_result_kept_whatever_its_version():
    store = Renewing(8)
    assert store.newest("k") is None
    store.get("k", 1, lambda: "one")
    newer = Gate("two")
    store.get("k", 2, newer)
    assert store.newest("k") == "one"  # the renewal is still running
    newer.open.set()
    _eventually(lambda: store.newest("k") == "two")
