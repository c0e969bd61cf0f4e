"""Disk trouble: the lake's filesystem full, then read-only, while the REAL service writes.

The test mounts a small tmpfs of its own (root is needed: skipped with the reason otherwise),
puts the service's lake on it and then:
- fills the disk: a flush fails, what was acknowledged stays buffered (retried every 0.5 s),
  and ingestion answers 503 with `Retry-After` and the reason (`No space left on device`), while
  decisions keep being answered;
- frees the space: the buffered rows reach the lake and ingestion is accepted again;
- remounts the filesystem read-only: 503 naming `Read-only file system`; read-write again:
  recovery;
- stops the service and reads the lake: every acknowledged event is there, once.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from momento.lake.warehouse import Warehouse

pytestmark = pytest.mark.e2e

DISK_MB = 24
PATIENCE_SECONDS = 20.0


def _mount(point: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *options, point.as_posix()], capture_output=True, text=True, check=False)


@pytest.fixture
def small_disk(tmp_path: Path):
    point = tmp_path / "lake"  # the service's lake is <workdir>/lake; its log stays off the small disk
    point.mkdir()
    mounted = _mount(point, "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs")
    if mounted.returncode != 0:
        pytest.skip(f"this machine forbids mounting a test filesystem: {mounted.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", point.as_posix()], check=False)


def _fill(point: Path) -> Path:
    """Fill the filesystem to the last byte; return the file that holds the space."""
    filler = point / "filler"
    with filler.open("wb", buffering=0) as out:
        for chunk in (1 << 20, 1 << 12, 1):
            try:
                while out.write(b"\0" * chunk):
                    pass
            except OSError:
                pass
    return filler


class Client:
    """Posts events with fresh ids and remembers the acknowledged ones."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30.0)
        self.acked: list[str] = []

    def post(self, n: int = 20, wait: bool = False) -> httpx.Response:
        ids = [f"disk-{uuid.uuid4().hex}" for _ in range(n)]
        events = [
            {"event_id": i, "event_type": "page_view", "channel": "web", "user_id": "disk-user", "session_id": "disk-s"}
            for i in ids
        ]
        response = self.http.post("/v1/events" + ("?wait=durable" if wait else ""), json={"events": events})
        if response.status_code == httpx.codes.OK:
            self.acked.extend(ids)
        return response

    def until(self, status: int) -> httpx.Response:
        """Post batches until one is answered with `status` (failing after a while)."""
        deadline = time.monotonic() + PATIENCE_SECONDS
        while time.monotonic() < deadline:
            response = self.post()
            if response.status_code == status:
                return response
            time.sleep(0.2)
        pytest.fail(f"no {status} within {PATIENCE_SECONDS:.0f} s (last: {response.status_code} {response.text})")

    def decide(self) -> int:
        return self.http.post(
            "/v1/decide",
            json={"user_id": "disk-user", "placement": "homepage_showcase", "channel": "web", "consent": True},
        ).status_code


def _refused_for(response: httpx.Response, reason: str) -> None:
    assert response.status_code == httpx.codes.SERVICE_UNAVAILABLE
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"] == "backpressure" and reason in response.json()["reason"], response.json()


def test_a_full_or_read_only_disk_gets_503_with_its_reason_loses_nothing_and_recovers(small_disk, launch):
    service = launch(small_disk.parent, env={"MOMENTO_FLUSH_SECONDS": "0.2", "MOMENTO_COMPACT_EVERY_SECONDS": "0"})
    client = Client(service.url)
    assert client.post(wait=True).json()["durable"] is True

    filler = _fill(small_disk)
    full = client.until(httpx.codes.SERVICE_UNAVAILABLE)
    _refused_for(full, "No space left on device")
    assert client.decide() == httpx.codes.OK  # decisions keep flowing (buffered for later)
    waiting = len(client.acked)

    filler.unlink()
    client.until(httpx.codes.OK)
    assert client.post(wait=True).json()["durable"] is True  # the buffered rows and this batch: committed

    assert _mount(small_disk, "-o", "remount,ro").returncode == 0
    try:
        _refused_for(client.until(httpx.codes.SERVICE_UNAVAILABLE), "Read-only file system")
        assert client.decide() == httpx.codes.OK
    finally:
        assert _mount(small_disk, "-o", "remount,rw").returncode == 0
    client.until(httpx.codes.OK)
    assert client.post(wait=True).json()["durable"] is True

    assert service.stop() == 0
    warehouse = Warehouse(small_disk)
    try:
        stored = warehouse.query(
            "SELECT event_id, count(*) AS n FROM events WHERE starts_with(event_id, 'disk-') GROUP BY event_id"
        )
    finally:
        warehouse.close()
    print(
        f"\ndisk trouble: {len(client.acked)} events acknowledged ({waiting} before the disk filled), "
        f"{stored.height} stored"
    )
    assert set(stored["event_id"].to_list()) == set(client.acked)
    assert stored["n"].max() == 1
