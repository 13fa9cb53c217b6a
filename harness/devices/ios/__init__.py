"""iOS backend: iPhones over usbmuxd, driven with pymobiledevice3 (the optional ``ios`` extra).

pymobiledevice3 is asyncio and pinned ``>=11.45,<12``; it is imported only inside this package
(and the fake iPhone in ``harness/testing/ios``). Modules: :mod:`.loop` (the one event-loop owner
per phone), :mod:`.lockdown` (connect, pair, typed errors), :mod:`.apps` (install, container
files), :mod:`.device` (:class:`IosDevice`, an ``AppHost``), :mod:`.discovery` (usbmuxd listing).
Importing this package without the extra raises ``ImportError`` (discovery turns it into a hint).
"""

from harness.devices.ios.apps import container_path, read_app_bundle_info
from harness.devices.ios.device import DEFAULT_BUNDLE_ID, IosDevice, open_ios_device
from harness.devices.ios.discovery import discover_ios_devices, list_ios_devices
from harness.devices.ios.lockdown import pairing_dir
from harness.devices.ios.loop import LoopClosed, LoopOwner

__all__ = [
    "DEFAULT_BUNDLE_ID",
    "IosDevice",
    "LoopClosed",
    "LoopOwner",
    "container_path",
    "discover_ios_devices",
    "list_ios_devices",
    "open_ios_device",
    "pairing_dir",
    "read_app_bundle_info",
]
