"""Real HTTP receivers on 127.0.0.1 for the webhook tests and bench/webhooks.py: a threading
http.server that records every request (headers and raw body) and answers from a script."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Received", "Receiver"]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)  # when the request arrived
    answered_at: float = 0.0  # when its answer was written (0: not yet)


# (status, headers) for the n-th request (0-based); default 200.
Script = Callable[[int], tuple[int, dict[str, str]]]


class Receiver:
    def __init__(self, script: Script | None = None, *, delay: float = 0.0,
                 host: str = "127.0.0.1") -> None:
        self.script = script or (lambda n: (200, {}))
        self.delay = delay
        self.received: list[Received] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                got = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with receiver.arrived:
                    index = len(receiver.received)
                    receiver.received.append(got)
                if receiver.delay:
                    time.sleep(receiver.delay)
                status, headers = receiver.script(index)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return  # the sender gave up (its timeout, or it was stopped)
                got.answered_at = time.time()
                with receiver.arrived:
                    receiver.arrived.notify_all()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.arrived.wait(left)
            return list(self.received)
