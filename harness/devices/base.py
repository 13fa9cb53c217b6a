"""The ``Device`` contract every backend implements (host, adb, iOS).

Modelled on Mobly's controllers: a small surface the orchestrator relies on, and
nothing about suites or reports. Paths passed to ``push``/``pull``/``shell`` are
*device* paths; the backend decides where they live.
"""

from __future__ import annotations

import abc
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from harness.errors import DeviceError
from harness.results import DeviceInfo

#: Once a run is stopped, a command started after that (cleanup: stop a sampler, remove a file) still
#: runs, for at most this long; one running when the stop came is killed at once.
AFTER_STOP_S = 2.0


@dataclass(frozen=True)
class ShellResult:
    """Output of one device command. ``exit_code`` is None when the transport cannot tell."""

    command: str
    output: str
    exit_code: int | None
    duration_s: float

    def check(self, device: str | None = None) -> ShellResult:
        """Raise :class:`DeviceError` carrying command and output when the command failed."""
        if self.exit_code not in (0, None):
            raise DeviceError(
                f"command exited {self.exit_code}: {self.command}",
                device=device,
                command=self.command,
                output=self.output,
                exit_code=self.exit_code,
            )
        return self


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a host file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


class Device(abc.ABC):
    """A device the harness can stage files on and run commands on."""

    #: ``host``, ``android`` or ``ios``.
    platform: str = ""
    #: The run's cancellation token (set by the orchestrator): once it is set, a shell command in progress
    #: is stopped, its processes killed, and :class:`~harness.errors.RunInterrupted` raised.
    cancel: threading.Event | None = None

    def __init__(self, device_id: str) -> None:
        self.id = device_id

    def cancelled(self) -> bool:
        """True once the run this device serves was told to stop."""
        return self.cancel is not None and self.cancel.is_set()

    @abc.abstractmethod
    def info(self) -> DeviceInfo:
        """Facts about the device (model, SoC, OS, ABI, matched profile)."""

    @abc.abstractmethod
    def shell(self, command: str, timeout_s: float = 60.0) -> ShellResult:
        """Run a shell command on the device; raise ``CommandTimeout``/``DeviceLost``."""

    @abc.abstractmethod
    def push(self, local: Path, remote: str) -> bool:
        """Copy a host file to the device atomically; return False when skipped (same sha256 there)."""

    @abc.abstractmethod
    def pull(self, remote: str, local: Path) -> Path:
        """Copy a device file into ``local`` (a file path chosen by the caller), never elsewhere."""

    @abc.abstractmethod
    def workdir(self) -> str:
        """The device directory the harness stages models and tools in."""

    def python(self) -> str | None:
        """The device's Python interpreter for the single-file runner, or None when it has none."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release transports; safe to call twice."""

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
