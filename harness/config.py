"""``harness.toml``: per-project settings shared by every suite (today: where the native tools are).

The fronts (CLI, Python API, pytest plugin) look it up with :func:`from_environment` — ``$HARNESS_CONFIG``,
else ``./harness.toml`` — and hand the result to :func:`harness.suite.load_suite`; the suite loader itself
reads only the suite file it is given. A suite's own ``[suite.tool]`` keys win over the file's ``[tool]``
table; relative paths are relative to the file that names them.

    [tool]
    benchmark_model = { "arm64-v8a" = "tools/arm64/benchmark_model" }
    ios_app = "apps/EdgeBench.ipa"
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import tomlfile
from harness.errors import ConfigError

CONFIG_NAME = "harness.toml"
CONFIG_ENV = "HARNESS_CONFIG"
_SECTIONS = ("tool",)


@dataclass(frozen=True)
class ProjectConfig:
    """The parsed ``harness.toml`` (``path`` None: there is none), with its text to put lines into errors."""

    path: Path | None = None
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def config_path(environ: Mapping[str, str], cwd: Path) -> Path | None:
    """The settings file in force for this environment and working directory, or None."""
    env = environ.get(CONFIG_ENV)
    if env:
        path = Path(env)
        if not _present(path):
            raise ConfigError(path, f"{CONFIG_ENV} names a file that does not exist",
                              hint=f"unset {CONFIG_ENV} or point it at a harness.toml")
        return path
    local = cwd / CONFIG_NAME
    return local if _present(local) else None


def _present(path: Path) -> bool:
    """Something is there (a directory or a broken link too: reading it then says what is wrong)."""
    return path.exists() or path.is_symlink()


def load_config(path: Path | None) -> ProjectConfig:
    """The settings of ``path``, validated; empty settings when ``path`` is None."""
    if path is None:
        return ProjectConfig()
    text = tomlfile.read_text(path, ConfigError, what="harness.toml")
    data = tomlfile.parse(text, path, ConfigError)
    for key, value in data.items():
        if key not in _SECTIONS or not isinstance(value, dict):
            raise tomlfile.Source(path, text, ConfigError).error(f"unknown or malformed section {key!r}", key,
                                                                 hint=f"allowed tables: {', '.join(_SECTIONS)}")
    return ProjectConfig(path, text, data)


def from_environment(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> ProjectConfig:
    """What a front calls: ``$HARNESS_CONFIG`` or ``./harness.toml`` (``os.environ`` and the working
    directory unless given), loaded."""
    return load_config(config_path(os.environ if environ is None else environ, cwd or Path.cwd()))
