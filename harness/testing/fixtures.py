"""The virtual Android device's fixtures under their first name: ``pytest_plugins = ["harness.testing.fixtures"]``.

They live in :mod:`harness.testing.android.fixtures`; the fake iPhone's are in
:mod:`harness.testing.ios.fixtures` (not re-exported here: they need the optional pymobiledevice3 extra).
"""

from harness.testing.android.fixtures import adb_client, virtual_device, virtual_device_factory

__all__ = ["adb_client", "virtual_device", "virtual_device_factory"]
