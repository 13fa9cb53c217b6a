"""Fault injection for the virtual device: what to break, and when.

Each fault fires once and then clears itself, so a client that retries after a
fault meets a healthy device (that is what the backend's retry tests need). The
device records every fault it fired in ``VirtualDevice.fault_log``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Faults:
    """Faults armed on the device; counts are per TCP connection, starting at 1.

    - ``drop_after_bytes``: close the connection once this many bytes came from the host.
    - ``drop_at_message``: close the connection when the host's K-th message arrives.
    - ``stall_s`` with ``stall_at_message``: freeze (read nothing, send nothing) for
      ``stall_s`` seconds when the host's K-th message arrives (default: the first
      ``OPEN``, i.e. the next command or transfer).
    - ``corrupt_checksum_at``: send the first device message carrying data, from the
      device's K-th message on, with a wrong checksum (an empty payload has nothing to check).
    - ``reject_auth``: refuse every key, whatever the auth mode (stays armed).
    - ``bandwidth_bytes_per_s``: cap each direction's throughput (not one-shot).
    """

    drop_after_bytes: int | None = None
    drop_at_message: int | None = None
    stall_s: float | None = None
    stall_at_message: int | None = None
    corrupt_checksum_at: int | None = None
    reject_auth: bool = False
    bandwidth_bytes_per_s: float | None = None

    def armed(self) -> list[str]:
        """Names of the faults that are set."""
        return [f.name for f in fields(self) if getattr(self, f.name) not in (None, False)]


class FaultBox:
    """Thread-safe holder: tests arm faults from their thread, connections consume them."""

    def __init__(self, faults: Faults | None = None) -> None:
        self._lock = threading.Lock()
        self._faults = faults or Faults()
        self.log: list[str] = []

    @property
    def current(self) -> Faults:
        with self._lock:
            return self._faults

    def arm(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults

    def fire(self, name: str, detail: str, *, clear: tuple[str, ...] = (), disarm: bool = True) -> None:
        """Record a fault that fired and, unless ``disarm`` is False, clear it (and the named companions)."""
        with self._lock:
            self.log.append(f"{name}: {detail}")
            if not disarm:
                return
            reset = {key: (False if key == "reject_auth" else None) for key in (name, *clear)}
            self._faults = replace(self._faults, **reset)
