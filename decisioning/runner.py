"""`momento serve`: the service on uvicorn in this process until SIGINT or SIGTERM, then a
graceful stop (the writer flushes what it holds) and exit code 0.

Only uvicorn's public API: `Config`, `Server.run`, `Server.should_exit`, `Server.started`.
Since uvicorn 0.29 ("cooperative signal handling") the server installs its own SIGINT/SIGTERM
handlers while it serves and, once it has shut down, puts back the handlers it found and raises
the signal again for them. Python's own would then turn a clean stop into a death by SIGTERM or
a KeyboardInterrupt; the handlers installed here first only ask the server to stop, so replayed
after the shutdown they change nothing, and a signal that comes before uvicorn takes over (while
the app is built) stops it as well. `tests/decisioning/test_runner.py` stops the real service
with each signal and fails if the exit code, the flush or the free port change.
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import uvicorn

from decisioning.access import InsecureSettingsError
from decisioning.http import create_app
from momento.settings import Settings


def serve(settings: Settings, host: str, port: int) -> int:
    """Run the service until SIGINT/SIGTERM; the writer is flushed on the way out. Exit code 2,
    with what is missing, for a service off loopback without its secrets."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(settings, host=host, freeze_heap=True)
    except InsecureSettingsError as exc:
        problems = "".join(f"\n  - {problem}" for problem in exc.problems)
        print(f"momento serve: refusing to listen on {host}:{problems}", file=sys.stderr)
        return 2
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)

    def stop(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    print(f"momento serve: listening on http://{host}:{port} (lake {settings.lake})", file=sys.stderr, flush=True)
    server.run()
    return 0 if server.started else 1
