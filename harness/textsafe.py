"""Untrusted text made safe for a terminal: control characters shown as escapes, never sent raw.

Stored strings (suite and baseline names from imported files), device output (``getprop``,
tool logs) and file content can hold terminal escape sequences (``\\x1b]0;title\\x07``
retitles the window, ``\\x1b[2J`` clears it) or a carriage return that overwrites a line.
The fronts pass every line they print through :func:`escape_lines`.
"""

from __future__ import annotations

import logging
import re

_SUSPECT = re.compile(r"[^\x20-\x7e]")  # anything but printable ASCII gets a closer look


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char.isprintable():  # letters, CJK, emoji... stay as they are
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def escape(text: str) -> str:
    """``text`` with every non-printable character (C0, DEL, C1, bidi overrides, newlines) as ``\\x1b`` style."""
    return _SUSPECT.sub(_escaped, text)


def escape_lines(text: str) -> str:
    """Like :func:`escape` but keeps the newlines that separate lines (tables, multi-line hints)."""
    return "\n".join(escape(line) for line in text.split("\n"))


def shown(value: str, limit: int = 40) -> str:
    """A quoted, escaped, shortened form of an untrusted value for an error message."""
    cut = value if len(value) <= limit else value[:limit] + "..."
    return f"'{escape(cut)}'"


def clip(value: object, limit: int = 80) -> str:
    """An untrusted value as one short display line: cut to ``limit`` characters (``…`` marks the cut), then
    control, newline and bidi characters shown as escapes (:func:`escape`), so a cut never splits an escape.

    Not HTML-safe by itself: a page still escapes the result (autoescaping or ``harness.report.text.esc``).
    """
    text = value if isinstance(value, str) else str(value)
    return escape(text) if len(text) <= limit else escape(text[:max(limit - 1, 1)]) + "…"


class EscapingFormatter(logging.Formatter):
    """A log formatter whose lines carry no raw control characters (log records quote device output)."""

    def format(self, record: logging.LogRecord) -> str:
        return escape_lines(super().format(record))
