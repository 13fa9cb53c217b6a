"""Test support users can reuse: the virtual Android device (device side of ADB) and its faults."""

from harness.testing.adb_auth import AuthMode
from harness.testing.faults import Faults
from harness.testing.virtual_device import VirtualDevice

__all__ = ["AuthMode", "Faults", "VirtualDevice"]
