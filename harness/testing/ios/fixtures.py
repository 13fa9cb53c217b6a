"""pytest fixtures for the fake iPhone; load with ``pytest_plugins = ["harness.testing.ios.fixtures"]``.

``make_fake_iphone(**options)`` starts a :class:`FakeIPhone` (options as its constructor, e.g.
``faults=FakeFaults(locked=True)``), points ``USBMUXD_SOCKET_ADDRESS`` at it and keeps pair
records in a per-test ``HARNESS_CACHE``; ``fake_iphone`` is one with default settings;
``bench_ipa`` is an ipa of the benchmark app the fake's installation_proxy accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.testing.ios.device import FakeIPhone, make_test_ipa


@pytest.fixture
def make_fake_iphone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., FakeIPhone]]:
    """Factory of running fake iPhones; every one is stopped (apps killed, socket removed) at teardown."""
    phones: list[FakeIPhone] = []
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "harness-cache"))

    def make(**options: Any) -> FakeIPhone:
        phone = FakeIPhone(**options).start()
        phones.append(phone)
        monkeypatch.setenv("USBMUXD_SOCKET_ADDRESS", phone.usbmux_address)
        return phone

    yield make
    for phone in phones:
        phone.stop()


@pytest.fixture
def fake_iphone(make_fake_iphone: Callable[..., FakeIPhone]) -> FakeIPhone:
    """A running fake iPhone that pymobiledevice3 and the harness find through usbmuxd."""
    return make_fake_iphone()


@pytest.fixture
def bench_ipa(tmp_path: Path) -> Path:
    """An (unsigned) ipa of the benchmark app, ``com.edgeharness.bench`` 1.0."""
    return make_test_ipa(tmp_path / "EdgeBench.ipa")
