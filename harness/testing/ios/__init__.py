"""A wire-level fake iPhone that unmodified pymobiledevice3 talks to (see ``device.py``).

The names below load lazily: ``harness fake-iphone --help`` and the CLI parser must not import
pymobiledevice3 (an optional extra) just to describe the command.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BENCH_BUNDLE_ID", "FakeFaults", "FakeIPhone", "fake_iphone_env", "make_test_ipa"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from harness.testing.ios import device

        return getattr(device, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
