"""Numbers as tools print them (``1.01013e+06``, ``-1274``, ``80.390%``), read without guessing."""

from __future__ import annotations

import math
import re

NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NUM_FULL = re.compile(rf"^{NUM}$")
_KV = re.compile(rf"(\w+)=({NUM})(?![\w.])")


def to_float(value: object) -> float | None:
    """A finite float from a printed token, or None (never raises)."""
    if value is None:
        return None
    s = str(value).strip().rstrip("%")
    if not _NUM_FULL.match(s):
        return None
    try:
        f = float(s)
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def to_int(value: object) -> int | None:
    """An int from a printed integer token (``7``, ``-22``), or None; ``7.5`` is not an int."""
    f = to_float(value)
    if f is None or not f.is_integer() or not re.fullmatch(r"[-+]?\d+", str(value).strip()):
        return None
    return int(f)


def ms_to_us(value: float | None) -> float | None:
    """Milliseconds to microseconds, rounded so 5.76 ms is 5760.0 us, not 5759.999999999999."""
    return None if value is None else round(value * 1000.0, 6)


def key_values(text: str) -> dict[str, str]:
    """``key=number`` pairs of a stats line (first occurrence of each key wins)."""
    out: dict[str, str] = {}
    for key, val in _KV.findall(text):
        out.setdefault(key, val)
    return out
