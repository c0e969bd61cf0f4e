"""The programs as child processes: the command lines that start the service and the cockpit,
a free loopback port, and the wait until a started service answers. Used by `momento demo`,
the end-to-end tests and the benchmarks."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx

from momento.settings import PROJECT_ROOT


def free_loopback_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_command(host: str, port: int) -> list[str]:
    """The command line that runs this service as its own process (demo, tests, benchmarks)."""
    return [sys.executable, "-m", "cli.main", "serve", "--host", host, "--port", str(port)]


def wait_until_healthy(url: str, process: subprocess.Popen | None = None, timeout: float = 60.0) -> None:
    """Block until `url`/healthz answers 200; RuntimeError if `process` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the service exited with code {process.returncode} before answering")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the service at {url} did not answer /healthz within {timeout:.0f} s")


def cockpit_command(port: int) -> list[str]:
    """The command line that serves the cockpit on `port`."""
    return [
        sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "app.py"),
        "--server.port", str(port), "--server.headless", "true",
        "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
    ]
