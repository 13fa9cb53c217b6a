"""Sockets in the virtual device's own network: what ``tcp:``, ``localabstract:`` and ``reverse:`` open.

With namespace isolation the device has a network namespace of its own with only a loopback, so
its ports never collide with the host's (``adb forward tcp:X tcp:X`` and ``adb reverse tcp:X …``
both work, as on a phone) and nothing it opens is reachable from outside. The holder process of
the namespaces (:mod:`netbroker_main`) opens the sockets there and passes them back. Without a
namespace (proot), sockets are opened here, on the host's loopback only.
"""

from __future__ import annotations

import array
import json
import socket
import threading

from harness.testing.android import netbroker_main


class DeviceNetwork:
    """Opens sockets on the host's loopback (the fallback without a network namespace)."""

    def open(self, request: dict[str, object]) -> socket.socket:
        """The socket a request names (``op``: connect_tcp, listen_tcp, connect_unix, listen_unix); OSError if not."""
        return netbroker_main._open(request)

    def close(self) -> None:
        """Release resources (nothing here)."""


class BrokerNetwork(DeviceNetwork):
    """Asks the namespace's holder process, over a SEQPACKET socket, for sockets in the device's network."""

    def __init__(self, control: socket.socket) -> None:
        self._control = control
        self._lock = threading.Lock()

    def open(self, request: dict[str, object]) -> socket.socket:
        with self._lock:
            try:
                self._control.send(json.dumps(request).encode())
                message, ancillary, _flags, _addr = self._control.recvmsg(4096, socket.CMSG_SPACE(4))
            except OSError as exc:
                raise OSError(exc.errno or 5, f"device network is gone: {exc}") from None
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
                return socket.socket(fileno=fds[0])
        try:
            answer = json.loads(message or b"{}")
        except ValueError:
            answer = {}
        raise OSError(int(answer.get("errno", 5)), str(answer.get("error", "device network is gone")))

    def close(self) -> None:
        self._control.close()
