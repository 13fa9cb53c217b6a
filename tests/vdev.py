"""The virtual Android device as several test modules use it (a pytest plugin: list ``"tests.vdev"`` in a
module's ``pytest_plugins`` after ``"harness.testing.android.fixtures"``)."""

from __future__ import annotations

import pytest

from harness.devices.discovery import open_device
from harness.testing.android.physics import PhysicsConfig

#: Fast physics: a 50 ms tick, heating with a 2 s time constant.
FAST = PhysicsConfig(tick_s=0.05, tau_s=2.0)


@pytest.fixture
def phone(virtual_device_factory):
    """A fast-physics virtual device and the harness's device on it over ADB: ``(vd, device)``."""
    vd = virtual_device_factory(physics=FAST)
    device = open_device("adb:" + vd.address)
    yield vd, device
    device.close()
