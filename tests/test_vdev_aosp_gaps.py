"""What AOSP's own adb tests (``tests/test_vdev_aosp.py``) found missing in the virtual device, one class per test.

Each test goes through Debian's real ``adb`` client and server, as AOSP's suite does.
"""

import time

import pytest

from harness.testing.android.fixtures import adb_client, virtual_device, virtual_device_factory  # noqa: F401


@pytest.fixture
def connected(adb_client, virtual_device):  # noqa: F811
    assert adb_client.connect(virtual_device.address) == "device"
    yield virtual_device
    adb_client.run("disconnect", virtual_device.address)


def _wait_shell(adb_client, address, timeout_s):  # noqa: F811
    """Run ``echo back`` once the server has the device again, without any ``adb connect``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = adb_client.run("shell", "echo back", serial=address, timeout_s=10)
        if done.returncode == 0 and done.stdout == b"back\n":
            return True
        time.sleep(0.3)
    return False


@pytest.mark.slow
def test_the_real_server_gets_the_device_back_after_going_offline(adb_client, connected):  # noqa: F811
    """The server's own reconnect (CNXN with checksum 0 at version 0x01000001) must be accepted."""
    connected.go_offline(1.0)
    time.sleep(1.5)
    assert _wait_shell(adb_client, connected.address, 30), connected.fault_log


@pytest.mark.slow
def test_adb_reconnect_brings_the_device_back(adb_client, connected):  # noqa: F811
    adb_client.run("reconnect", serial=connected.address, timeout_s=20)
    assert _wait_shell(adb_client, connected.address, 30)
