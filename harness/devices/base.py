"""The ``Device`` contract every backend implements (host, adb, iOS), and what each can do.

Modelled on Mobly's controllers: a small surface the orchestrator relies on, and
nothing about suites or reports. Paths passed to ``push``/``pull``/``shell`` are
*device* paths; the backend decides where they live. A backend declares what it can do
in :meth:`Device.capabilities`; the core branches on that, never on ``platform`` or attributes:
a :class:`ShellDevice` runs commands, an :class:`AppHost` runs the benchmark-app contract.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.errors import DeviceError
from harness.hashing import sha256_file  # noqa: F401 - re-exported: backends and staging import it from here
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
                command_exit_code=self.exit_code,
            )
        return self


#: Readings a device can give (``Capabilities.probes``): the samplers that apply are chosen from these.
PROBES = frozenset({
    "host_process",    # psutil on the benchmark's host pid
    "host_cpu",        # CPU share of other work on the host
    "proc_stat",       # CPU share of other work on the device (/proc/stat polled on the device)
    "rapl",            # Intel/AMD RAPL energy counters
    "proc_status",     # VmHWM/VmRSS polled on the device
    "power_supply",    # current/voltage on the device
    "thermal_zones",   # /sys/class/thermal
    "thermalservice",  # dumpsys thermalservice
    "cpufreq",         # CPU frequency limits
    "app_memory",      # Sysmontap rows of the app process (AppHost)
    "app_battery",     # battery registry polled during the app run (AppHost)
    "app_log",         # the app's log lines (AppHost)
    "app_system_cpu",  # system-wide CPU load outside an app run (AppHost: Sysmontap SystemCPUUsage)
})


@dataclass(frozen=True)
class Capabilities:
    """What a backend declares it can do.

    ``shell``: runs shell commands (the device is a :class:`ShellDevice`); ``app_host``: runs the
    benchmark-app contract (an :class:`AppHost`); ``shares_host_fs``: staged files are host paths,
    nothing to push; ``probes``: readings the device can give (names in :data:`PROBES`); ``endpoint``: an
    inference server reached over the network (an :class:`AppHost` whose run sends requests; network
    profiles apply to it, ``docs/server.md``).
    """

    shell: bool = False
    app_host: bool = False
    shares_host_fs: bool = False
    probes: frozenset[str] = frozenset()
    endpoint: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.probes) - PROBES
        if unknown:
            raise ValueError(f"unknown probe(s) {sorted(unknown)}; known: {sorted(PROBES)}")


class Device(abc.ABC):
    """A device the harness can stage files on; what else it can do is in :meth:`capabilities`."""

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
    def capabilities(self) -> Capabilities:
        """What this device can do (shell, app host, shared filesystem, probes)."""

    @abc.abstractmethod
    def info(self) -> DeviceInfo:
        """Facts about the device (model, SoC, OS, ABI, matched profile)."""

    @abc.abstractmethod
    def push(self, local: Path, remote: str) -> bool:
        """Copy a host file to the device atomically; return False when skipped (same sha256 there)."""

    @abc.abstractmethod
    def pull(self, remote: str, local: Path) -> Path:
        """Copy a device file into ``local`` (a file path chosen by the caller), never elsewhere."""

    @abc.abstractmethod
    def workdir(self) -> str:
        """The device directory the harness stages models and tools in."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release transports; safe to call twice."""

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ShellDevice(Device):
    """A device that runs shell commands (host, Android)."""

    @abc.abstractmethod
    def shell(self, command: str, timeout_s: float = 60.0) -> ShellResult:
        """Run a shell command on the device; raise ``CommandTimeout``/``DeviceLost``."""

    def python(self) -> str | None:
        """The device's Python interpreter for the single-file runner, or None when it has none."""
        return None

    def pyrunner_launcher(self) -> tuple[str, ...]:
        """A command prefix that starts the single-file runner faster (the host's zygote), or () for none.

        The runner's own command (``PYTHON SCRIPT ARGS``) follows it unchanged.
        """
        return ()


#: The interval an app host asks its process monitor for (iOS: Sysmontap). A device keeps its own pace
#: (an iPhone often 3-5 s); the ``app_memory`` observer measures the one it got.
APP_MONITOR_INTERVAL_S = 0.5


class AppObserver(Protocol):
    """One raw stream of an app run, handed over as plain data (no transport types).

    ``probe`` names the stream (``app_log``: one log line, ``str``; ``app_battery``: one battery
    registry reading, ``dict``; ``app_memory``: the process rows of one monitor tick, ``list[dict]``).
    The backend calls ``launched`` with the app's pid, then ``feed`` from its own thread; the
    observer is read only after :meth:`AppHost.run_app` returned.
    """

    probe: str

    def launched(self, pid: int) -> None:
        """The app was launched as ``pid``."""

    def feed(self, t_s: float, item: Any) -> None:
        """One item of the stream, ``t_s`` seconds after the run started."""


@dataclass(frozen=True)
class AppRunOutcome:
    """What one app launch gave (the app's own result and status; readings went to the observers).

    ``status`` is the app's own status (``ok``, ``failed``, ``delegate_unavailable``,
    ``model_rejected``) or ``timeout``.
    """

    run_id: str
    status: str
    reason: str | None
    result: Mapping[str, Any] | None
    pid: int | None
    duration_s: float
    app_installed: bool = False
    model_pushed: bool = False


class AppHost(Device):
    """A device that runs the benchmark-app contract (``docs/ios.md``) instead of shell commands."""

    @abc.abstractmethod
    def install_app(self, app: Path) -> bool:
        """Install the benchmark app; False when that version is already installed."""

    @abc.abstractmethod
    def run_app(self, model: Path, params: Mapping[str, Any], run_tag: str, timeout_s: float,
                app: Path | None = None, observers: Sequence[AppObserver] = ()) -> AppRunOutcome:
        """Run one benchmark through the app; a timeout kills the app and returns status ``timeout``."""

    def monitor_interval_s(self) -> float | None:
        """The interval (s) the device's process monitor (``app_memory``) really kept in the runs so far; None
        before it was measured (then :data:`APP_MONITOR_INTERVAL_S`, the interval asked for, is assumed)."""
        return None

    def read_state(self, probes: Collection[str], window_s: float) -> dict[str, Any]:
        """Outside an app run, the device's raw state for the probes asked, as plain data (the fitness
        check before a case, :mod:`harness.samplers.fitness`): ``app_battery``: the battery values the
        device reports (a dict); ``app_system_cpu``: the system CPU rows of about ``window_s`` of monitoring
        (a list of dicts). A probe the device cannot read now is left out; by default nothing is read."""
        return {}
