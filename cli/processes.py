"""The programs as processes: the command lines that start the service and the cockpit, a free
loopback port, the wait until a started service answers, and replacing this process with
another. Used by `momento` (cli.main, cli.demo), the end-to-end tests and the benchmarks.

Every long-running `momento` command stops cleanly on a plain `kill` (SIGTERM) as on Ctrl-C,
leaving no process behind: it either serves in its own process (serve, simulate), replaces
itself with the server it starts (cockpit: `become`), or passes the signal on to its children
and waits for them (demo)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from types import FrameType
from typing import NoReturn

import httpx

from momento.settings import PROJECT_ROOT, Settings, is_loopback


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


def cockpit_command(host: str, port: int) -> list[str]:
    """The command line that serves the cockpit on `host`:`port`."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(PROJECT_ROOT / "app.py"),
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.address",
        host,
        "--browser.gatherUsageStats",
        "false",
    ]


def cockpit_refusal(settings: Settings) -> str | None:
    """Why the cockpit must not start with these settings (None: it may). Off loopback it
    serves only requests its reverse proxy vouches for (pages/ui.py, `require_login`), which
    needs the secret the proxy sends."""
    if is_loopback(settings.cockpit_host) or settings.cockpit_proxy_secret:
        return None
    return (
        f"refusing to serve the cockpit on {settings.cockpit_host} without MOMENTO_COCKPIT_PROXY_SECRET: off "
        "loopback it needs a login, the user name set by a reverse proxy along with this shared secret"
    )


def become(command: list[str]) -> NoReturn:
    """Replace this process with `command`, run from the project root with this environment: the
    same process id, so a signal sent to it reaches the program itself and nothing is left behind."""
    os.chdir(PROJECT_ROOT)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)


def _exit(signum: int, frame: FrameType | None) -> NoReturn:
    sys.exit(128 + signum)


def exit_on_sigterm() -> None:
    """Make a plain `kill` end this process as an exit does, so its `finally` blocks run and stop
    what it started (a benchmark's service, simulator, rollup job): for programs that do not
    handle SIGTERM themselves (`momento` commands, the benchmarks run as scripts)."""
    signal.signal(signal.SIGTERM, _exit)
