"""Test support users can reuse: the virtual Android device (``android/``) and the fake iPhone (``ios/``).

``VirtualDevice``, ``Faults`` and ``AuthMode`` (from :mod:`harness.testing.android`) load lazily,
so importing the fake iPhone does not start up the Android one.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AuthMode", "Faults", "VirtualDevice"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from harness.testing import android

        return getattr(android, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
