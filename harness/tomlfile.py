"""TOML files (suites, profiles, harness.toml, inventories) read one way: a failure names the file and line.

``error`` is the class raised: :class:`SuiteError` (the default) for suites, :class:`ConfigError` (or
:class:`ProfileError`) for every other file.
"""

from __future__ import annotations

import re
import stat
import tomllib
from pathlib import Path
from typing import Any

from harness.errors import FileError, SuiteError


def parse(text: str, path: str | Path, error: type[FileError] = SuiteError) -> dict[str, Any]:
    """``text`` as TOML; malformed TOML raises ``error`` with the line tomllib reports."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise error(path, f"invalid TOML: {exc}", line=int(m.group(1)) if m else None) from None


def read_text(path: str | Path, error: type[FileError] = SuiteError, what: str = "file") -> str:
    """The text of the TOML file at ``path``: a regular, readable, non-empty UTF-8 file, else ``error`` at a line.

    A FIFO or device is refused before it is opened (reading one would block or never end).
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise error(path, f"cannot read {what}: {kind}", line=1, hint=f"the {what} must be a TOML text file")
        data = path.read_bytes()
    except OSError as exc:
        raise error(path, f"cannot read {what}: {exc.strerror or exc}", line=1) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(path, f"{what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                    line=line, hint="save the file as UTF-8") from None
    if not text.strip():
        raise error(path, f"{what} is empty", line=1, hint=f"an empty {what} is usually a truncated copy")
    return text


def read(path: str | Path, error: type[FileError] = SuiteError, what: str = "file") -> dict[str, Any]:
    """The TOML file at ``path``; an unreadable or malformed file raises ``error`` naming it."""
    return parse(read_text(path, error, what), path, error)


class Source:
    """A TOML file's text, to put the line of a key into errors.

    ``arrays`` names the arrays of tables (``[[models]]``): their keys are labelled ``models[2].path``.
    """

    def __init__(self, path: str | Path, text: str, error: type[FileError] = SuiteError,
                 arrays: tuple[str, ...] = ()) -> None:
        self.path = Path(path)
        self.lines = text.splitlines()
        self.error_type = error
        self.arrays = arrays

    def line_of(self, key: str, table: str | None = None, index: int = 0) -> int | None:
        """The line of ``key = `` in the ``index``-th ``[table]`` (else the table's header line).

        A quoted dotted key (``"ro.product.model" = ...``) is looked up whole, then by its last part.
        """
        start = self._header(table, index) if table else None
        for name in dict.fromkeys((key, key.split(".")[-1])):
            pat = re.compile(r"^\s*[\"']?" + re.escape(name) + r"[\"']?\s*=")
            for i in range((start or 1) - 1, len(self.lines)):
                if pat.match(self.lines[i]):
                    return i + 1
        return (start or 1) if table else self._header(key)

    def _header(self, table: str, index: int = 0) -> int | None:
        """The line of the ``index``-th ``[table]`` or ``[[table]]`` header."""
        header = re.compile(r"^\s*\[\[?\s*" + re.escape(table) + r"\s*\]\]?\s*(#.*)?$")
        hits = [i + 1 for i, line in enumerate(self.lines) if header.match(line)]
        return hits[index] if index < len(hits) else None

    def error(
        self, reason: str, key: str, table: str | None = None, index: int = 0, hint: str | None = None
    ) -> FileError:
        """``error_type`` at the key's line; a key with no line of its own (a missing table) points at line 1."""
        label = f"{table}[{index}].{key}" if table in self.arrays else (f"{table}.{key}" if table else key)
        line = self.line_of(key, table, index) or 1
        return self.error_type(self.path, reason, key=label, line=line, hint=hint)
