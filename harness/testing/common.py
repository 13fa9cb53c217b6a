"""What both fakes' ``serve`` commands share (the virtual Android device and the fake iPhone)."""

from __future__ import annotations

import signal
import threading


def wait_until_stopped(stop: threading.Event) -> None:
    """Block until SIGINT/SIGTERM (handled only on the main thread) or until ``stop`` is set."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    stop.wait()
