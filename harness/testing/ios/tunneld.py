"""A fake ``pymobiledevice3 remote tunneld``: its HTTP API on loopback, listing the fake's RSD endpoint.

A real tunneld (root, TUN interfaces) creates one tunnel per phone and publishes them on
``http://127.0.0.1:49151/`` as ``{UDID: [{"tunnel-address", "tunnel-port", "interface",
"auxiliary-metadata", "origin"}]}`` (``pymobiledevice3/tunneld/server.py``). This server publishes the
same list, pointing at :class:`~harness.testing.ios.rsd.RsdServer`'s loopback port, so a host's
tunneld route (``get_tunneld_devices``, the CLI's ``--tunnel``, the harness's ``HARNESS_TUNNELD``)
runs end to end; only the tunnel in between is missing. Also ``/hello``, as tunneld answers it.
It runs the standard library's threading HTTP server in its own thread, on ``127.0.0.1`` only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

HOST = "127.0.0.1"
INTERFACE = "fake-utun0"


class FakeTunneld:
    """tunneld's listing API for the tunnels ``tunnels()`` returns (``{udid: (host, port)}``, read per request)."""

    def __init__(self, tunnels: Callable[[], dict[str, tuple[str, int]]], port: int = 0) -> None:
        self._tunnels = tunnels
        self._server = ThreadingHTTPServer((HOST, port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def listing(self) -> dict[str, list[dict[str, Any]]]:
        """The body of ``GET /``: one tunnel per phone, served by this instance (``origin`` None)."""
        return {udid: [{"tunnel-address": host, "tunnel-port": port, "interface": INTERFACE,
                        "auxiliary-metadata": {}, "origin": None}]
                for udid, (host, port) in self._tunnels().items()}

    def start(self) -> FakeTunneld:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-tunneld", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(10)
            self._thread = None
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        tunneld = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = urlsplit(self.path).path
                if path == "/":
                    self._json(200, tunneld.listing())
                elif path == "/hello":
                    self._json(200, {"message": "Hello, I'm alive"})
                else:
                    self._json(404, {"detail": "Not Found"})

            def _json(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
                """Quiet: a test's output is not the place for an access log."""

        return Handler
