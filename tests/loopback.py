"""Throwaway TCP servers for tests: accept on a socket until it closes, each connection in a thread of its own."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


def serve_each(sock: socket.socket, handle: Callable[[socket.socket], None]) -> None:
    """Start a daemon thread accepting on ``sock`` (until it is closed); ``handle`` runs per connection."""

    def accept() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
