"""``harness.toml``: per-project settings shared by every suite (today: where the native tools are).

Looked up as ``$HARNESS_CONFIG`` or ``./harness.toml``. A suite's own ``[suite.tool]`` keys win
over the file's ``[tool]`` table; relative paths are relative to the file that names them.

    [tool]
    benchmark_model = { "arm64-v8a" = "tools/arm64/benchmark_model" }
    ios_app = "apps/EdgeBench.ipa"
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness import tomlfile
from harness.errors import SuiteError

CONFIG_NAME = "harness.toml"
_SECTIONS = ("tool",)


def config_path() -> Path | None:
    """The settings file in force, or None."""
    env = os.environ.get("HARNESS_CONFIG")
    if env:
        path = Path(env)
        if not _present(path):
            raise SuiteError(path, "HARNESS_CONFIG names a file that does not exist")
        return path
    local = Path.cwd() / CONFIG_NAME
    return local if _present(local) else None


def _present(path: Path) -> bool:
    """Something is there (a directory or a broken link too: reading it then says what is wrong)."""
    return path.exists() or path.is_symlink()


def load_config(path: Path | None = None) -> tuple[dict[str, Any], Path | None]:
    """(settings, the file they came from); empty settings when there is no file."""
    path = path or config_path()
    if path is None:
        return {}, None
    text = tomlfile.read_text(path, what="harness.toml")
    data = tomlfile.parse(text, path)
    for key, value in data.items():
        if key not in _SECTIONS or not isinstance(value, dict):
            raise tomlfile.Source(path, text).error(f"unknown or malformed section {key!r}", key,
                                                    hint=f"allowed tables: {', '.join(_SECTIONS)}")
    return data, path
