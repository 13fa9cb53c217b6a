"""Names that become file names, and the one check that every written file stays in its folder.

A suite name, run id, xdist part name, baseline name or model name ends up in a file name
under the output folder (``<suite>-<run>.jsonl``, ``<suite>.html``...). Such names follow one
rule (:data:`RULE`): :func:`problem` says what is wrong, :func:`check_name` raises, and
:func:`sanitise` turns a name nobody chose on purpose (a device id, a file stem) into one.

Independently of the names, every file the harness writes into the folder the user gave is
built with :func:`inside` (or checked with :func:`contain`): the target, symlinks resolved,
must lie inside that folder, so no caller, present or future, can write elsewhere.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from harness.errors import PathEscapeError, UnsafeNameError
from harness.textsafe import shown

MAX_LEN = 64
RULE = f"letters, digits and _ . + -, starting with a letter, digit or _, at most {MAX_LEN} characters"


def _unsafe(what: str, reason: str) -> UnsafeNameError:
    return UnsafeNameError(what, reason, hint=f"a {what} becomes part of a file name: use {RULE}")
_FIRST = re.compile(r"[A-Za-z0-9_]")
_REST = re.compile(r"[A-Za-z0-9_.+-]")
_NAME_MAX_BYTES = 255  # one path component on Linux, macOS and Windows file systems


def problem(value: object) -> str | None:
    """What makes ``value`` unfit as a name (a phrase to follow the name's label), or None when it is fine."""
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not value:
        return "is empty"
    if len(value) > MAX_LEN:
        return f"is {len(value)} characters long; at most {MAX_LEN}"
    if not _FIRST.fullmatch(value[0]):
        return f"{shown(value)} starts with {shown(value[0])}"
    bad = next((c for c in value if not _REST.fullmatch(c)), None)
    if bad is not None:
        return f"{shown(value)} holds {shown(bad)}"
    return None


def check_name(value: object, what: str) -> str:
    """``value`` when it is a usable name, else :class:`UnsafeNameError` naming ``what`` it is."""
    reason = problem(value)
    if reason is not None:
        raise _unsafe(what, reason)
    return value  # type: ignore[return-value]


def sanitise(value: str, fallback: str, max_len: int = MAX_LEN) -> str:
    """``value`` made into a name: other characters become ``-``, no leading ``.``/``-``/``+``, cut to ``max_len``."""
    text = "".join(c if _REST.fullmatch(c) else "-" for c in value).lstrip(".-+")[:max_len]
    return text or fallback


def inside(root: str | Path, name: str) -> Path:
    """``root / name`` for one plain file name whose target (symlinks resolved) lies inside ``root``."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise _unsafe("file name", f"{shown(name)} is not one plain file name")
    if len(os.fsencode(name)) > _NAME_MAX_BYTES:
        raise _unsafe("file name", f"{shown(name)} is longer than {_NAME_MAX_BYTES} bytes")
    return contain(root, Path(root) / name)


def contain(root: str | Path, path: str | Path) -> Path:
    """``path`` unchanged when it (symlinks resolved) lies inside ``root``; else :class:`PathEscapeError`."""
    if "\0" in str(path):
        raise _unsafe("file name", f"{shown(str(path))} holds a NUL character")
    base = Path(root).resolve()
    target = Path(path).resolve()
    if target == base or not target.is_relative_to(base):
        raise PathEscapeError(root, path, target)
    for part in target.relative_to(base).parts:
        if len(os.fsencode(part)) > _NAME_MAX_BYTES:
            raise _unsafe("file name", f"{shown(part)} is longer than {_NAME_MAX_BYTES} bytes")
    return Path(path)
