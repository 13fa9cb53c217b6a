"""pytest fixtures for the virtual device, for this project's tests and for users' CI.

Enable them with ``pytest_plugins = ["harness.testing.android.fixtures"]`` in a conftest
(``harness.testing.fixtures`` re-exports them under their first name).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.errors import DeviceError
from harness.testing.android.client import AdbClient
from harness.testing.android.device import VirtualDevice


@pytest.fixture
def virtual_device_factory(tmp_path: Path) -> Iterator[Callable[..., VirtualDevice]]:
    """Start virtual devices with any :class:`VirtualDevice` options; all are stopped after the test."""
    started: list[VirtualDevice] = []

    def factory(**options: object) -> VirtualDevice:
        options.setdefault("root", tmp_path / f"device{len(started)}")
        device = VirtualDevice(**options).start()  # type: ignore[arg-type]
        started.append(device)
        return device

    yield factory
    for device in started:
        device.stop()


@pytest.fixture
def virtual_device(virtual_device_factory: Callable[..., VirtualDevice]) -> VirtualDevice:
    """One started virtual device (no auth, ``virtual`` profile) on a free 127.0.0.1 port."""
    return virtual_device_factory()


@pytest.fixture(scope="session")
def adb_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdbClient]:
    """The real ``adb`` client with a private server and key, shared by the session."""
    try:
        client = AdbClient(tmp_path_factory.mktemp("adb-home"))
    except DeviceError as exc:
        if os.environ.get("CI"):  # CI installs adb: a missing client there is a failure, not a skip
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    client.start_server()
    yield client
    client.close()
