"""A real local webhook receiver for the alert tests: `http.server` on a thread, recording every
message it accepts with whether its HMAC signature verified. It can start on a port chosen in
advance (to play a webhook that is down, then back) and answer errors on demand."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    body: dict[str, Any]
    signed: bool


@dataclass
class Receiver:
    """Messages accepted on `port` (`start()`/`stop()`); `status` is what it answers."""

    port: int
    secret: bytes | None = None
    status: int = 200
    messages: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.status == 200:
                    receiver.messages.append(Received(json.loads(raw), receiver.verify(self.headers, raw)))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def verify(self, headers: Any, raw: bytes) -> bool:
        if self.secret is None:
            return False
        expected = (
            "sha256="
            + hmac.new(self.secret, headers["X-Momento-Timestamp"].encode() + b"." + raw, hashlib.sha256).hexdigest()
        )
        return hmac.compare_digest(expected, headers.get("X-Momento-Signature", ""))

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, test: Any, timeout: float = 20.0) -> list[Received]:
        """The messages for which `test(body)` holds, once there is one (or the timeout passed)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.messages if test(m.body)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.1)
