"""A loopback HTTP echo server for measuring network paths (tests and ``benchmarks/endpoint_netns.py``).

``GET /N`` answers N bytes, ``POST /`` its body back, ``POST /sink`` nothing. HTTP/1.1 keep-alive and TCP_NODELAY,
as a model server sets it (else headers and body in two writes meet the client's delayed ACK: +40 ms a request).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class EchoHandler(BaseHTTPRequestHandler):
    """The echo's request handler (see the module's docstring)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._send(b"" if self.path == "/sink" else body)

    def do_GET(self) -> None:  # noqa: N802
        self._send(b"x" * int(self.path.strip("/")))

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def echo_server() -> Iterator[tuple[str, int]]:
    """Serve the echo on 127.0.0.1 (an ephemeral port) in a thread; yields ``(host, port)``."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv.server_address[:2]
    finally:
        srv.shutdown()
        srv.server_close()
