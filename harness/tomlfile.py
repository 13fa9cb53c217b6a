"""TOML files (suites, profiles, harness.toml, inventories) read one way: a failure names the file and line."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from harness.errors import SuiteError


def parse(text: str, path: str | Path, error: type[SuiteError] = SuiteError) -> dict[str, Any]:
    """``text`` as TOML; malformed TOML raises ``error`` with the line tomllib reports."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise error(path, f"invalid TOML: {exc}", line=int(m.group(1)) if m else None) from None


def read(path: str | Path, error: type[SuiteError] = SuiteError, what: str = "file") -> dict[str, Any]:
    """The TOML file at ``path``; an unreadable or malformed file raises ``error`` naming it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise error(path, f"cannot read {what}: {exc.strerror or exc}") from None
    return parse(text, path, error)
