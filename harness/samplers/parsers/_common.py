"""Small readers shared by the telemetry parsers: tokens to numbers/bools, ``key: value`` lines
and JSON after a preamble. None means "the text did not say"."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator

_INT = re.compile(r"^[-+]?\d+$")
_FLOAT = re.compile(r"^[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?$")


def number(token: object) -> int | float | None:
    """``42`` -> 42, ``-1.5`` -> -1.5, anything else (``N/A``, ``None``, ``nan``) -> None."""
    if isinstance(token, bool) or token is None:
        return None
    if isinstance(token, (int, float)):
        return token if math.isfinite(token) else None
    s = str(token).strip()
    if _INT.match(s):
        return int(s)
    if _FLOAT.match(s):
        f = float(s)
        return f if math.isfinite(f) else None
    return None


def integer(token: object) -> int | None:
    n = number(token)
    return n if isinstance(n, int) else None


def real(token: object) -> float | None:
    n = number(token)
    return None if n is None else float(n)


def boolean(token: object) -> bool | None:
    """true/false/1/0/yes/no (any case, Python ``True``) -> bool; else None."""
    if isinstance(token, bool):
        return token
    s = str(token).strip().lower() if token is not None else ""
    if s in ("true", "1", "yes"):
        return True
    if s in ("false", "0", "no"):
        return False
    return None


def text_lines(text: str) -> list[str]:
    """Lines with CR/LF normalised and ``> `` quote marks removed (pasted captures)."""
    out = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        out.append(re.sub(r"^\s*(?:>\s?)+", "", raw) if raw.lstrip().startswith(">") else raw)
    return out


def colon_pairs(text: str) -> Iterator[tuple[str, str, int]]:
    """``key: value`` pairs with each line's indentation (for section-aware parsers)."""
    for line in text_lines(text):
        m = re.match(r"^(\s*)([^:]+?)\s*:\s?(.*?)\s*$", line)
        if m and m.group(2).strip():
            yield m.group(2).strip(), m.group(3), len(m.group(1).expandtabs(8))


def json_after_preamble(text: str) -> object | None:
    """The JSON document that starts at the first line beginning with ``{`` or ``[`` (log lines before it skipped)."""
    lines = text_lines(text)
    for i, line in enumerate(lines):
        if line.lstrip()[:1] in ("{", "["):
            try:
                return json.loads("\n".join(lines[i:]))
            except ValueError:
                continue
    return None
