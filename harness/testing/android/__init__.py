"""The virtual Android device: the device side of the ADB wire protocol, which the real ``adb`` and adb-shell accept.

Layered like adb-shell, seen from the device: the TCP ``device`` accepts links; ``codec`` packs
and checks the 24-byte messages; ``connection`` runs the CNXN/AUTH handshake (``auth``) and
multiplexes ``stream``\\ s; ``services`` opens ``shell_service``, ``sync`` (through ``device_view``)
and ``forward`` (``tcp:``, ``reverse:``, in the device's own network: ``netns``) on them, inside the
``sandbox`` filesystem (entered through ``isolation``), with ``physics`` driving the sensor files
and ``faults`` injected on the link. ``client`` drives the real AOSP ``adb`` for tests; ``serve``
is ``harness virtual-device serve``; ``fixtures`` holds the pytest fixtures.
"""

from harness.testing.android.auth import AuthMode
from harness.testing.android.device import VirtualDevice
from harness.testing.android.faults import Faults

__all__ = ["AuthMode", "Faults", "VirtualDevice"]
