"""Real CPU throttling for the virtual device: its processes get less CPU when its physics model is hot.

A phone that throttles runs its cores at a lower frequency, so the same inference takes longer. The
virtual device runs on the host's cores at full speed; to make its throttling real, every process the
device spawns is put into the device's own group and the group gets a share of CPU time:

- ``cgroup-v1``: a child of this process's cgroup in the ``cpu`` controller's hierarchy (``cpu.cfs_period_us``
  = :data:`PERIOD_US`, ``cpu.cfs_quota_us`` = ratio x period x lanes); ``-1`` (no limit) when not throttled.
- ``cgroup-v2``: the same with ``cpu.max`` (``"QUOTA PERIOD"`` or ``"max PERIOD"``) in a cgroup2 hierarchy whose
  parent delegates the ``cpu`` controller.
- ``signals``: no writable cgroup: duty cycling, ``SIGSTOP`` then ``SIGCONT`` to the process groups the device
  started (its :class:`~harness.testing.android.shell_service.ProcessTable`, never anything else), stopped
  ``1 - ratio`` of every :data:`SIGNAL_PERIOD_S`.
- ``off``: nothing (``--isolation``-style override, or nothing else works): throttling stays in the readings.

A process joins the group before it runs anything: the device's launcher wraps each command's argv with
:meth:`CpuLimiter.wrap` (``sh`` writes its own pid to ``cgroup.procs``, then ``exec``s the command), so
its children inherit the group. The group is removed on :meth:`CpuLimiter.close`.

"lanes": a CPU quota caps the *group's* total CPU time, whereas a frequency cap slows each core. The
physics model passes how many cores the device's processes were keeping busy before the cap came
(:attr:`~harness.testing.android.physics.Physics.demand_cores`, at least 1), so one benchmark thread
gets ``ratio`` of a core, and two threads ``ratio`` of two cores.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger(__name__)

#: CFS bandwidth period (us): short, so a few-ms inference is slowed evenly rather than paused once.
PERIOD_US = 4000
MIN_QUOTA_US = 1000  # the kernel's floor for a CFS quota
SIGNAL_PERIOD_S = 0.02
KINDS = ("auto", "cgroup-v2", "cgroup-v1", "signals", "off")
_SH_JOIN = 'echo $$ > "$0" 2>/dev/null; exec "$@"'  # $0 = the group's cgroup.procs


class CpuLimiter:
    """No limit (``off``); the base of the mechanisms below."""

    name = "off"

    def wrap(self, argv: list[str]) -> list[str]:
        """The argv that runs ``argv`` inside the device's group."""
        return argv

    def set_ratio(self, ratio: float, lanes: int = 1) -> None:
        """Give the group ``ratio`` (0..1] of ``lanes`` cores; 1.0 lifts the limit."""

    @property
    def quota(self) -> str:
        """The limit in force, as the mechanism states it (for tests and ``serve``'s output)."""
        return "none"

    def close(self) -> None:
        """Lift the limit and remove the group; safe to call twice."""


class CgroupLimiter(CpuLimiter):
    """A cgroup of the device's processes with a CFS bandwidth limit (v1 or v2, see module doc)."""

    def __init__(self, path: Path, version: int) -> None:
        self.path = path
        self.version = version
        self.name = f"cgroup-v{version}"
        self._lock = threading.Lock()
        path.mkdir()
        try:
            if version == 1:
                (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            self._write_limit(None)
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            raise
        self._current = "none"

    def wrap(self, argv: list[str]) -> list[str]:
        return ["/bin/sh", "-c", _SH_JOIN, str(self.path / "cgroup.procs"), *argv]

    def _write_limit(self, quota_us: int | None) -> None:
        if self.version == 1:
            (self.path / "cpu.cfs_quota_us").write_text(str(quota_us if quota_us is not None else -1))
        else:
            (self.path / "cpu.max").write_text(f"{quota_us if quota_us is not None else 'max'} {PERIOD_US}")

    def set_ratio(self, ratio: float, lanes: int = 1) -> None:
        quota = None if ratio >= 1.0 else max(MIN_QUOTA_US, int(ratio * PERIOD_US * max(1, lanes)))
        with self._lock:
            if not self.path.is_dir():
                return
            try:
                self._write_limit(quota)
            except OSError as exc:
                log.warning("virtual device: cannot set the CPU quota in %s: %s", self.path, exc)
                return
            self._current = "none" if quota is None else f"{quota}/{PERIOD_US} us"

    @property
    def quota(self) -> str:
        return self._current

    def cpu_stat(self) -> dict[str, int]:
        """The group's ``cpu.stat``: ``nr_periods`` (periods with a limit and work to do), ``nr_throttled``
        (periods in which the kernel held the group back), ``throttled_time`` (ns; v2: ``throttled_usec``)."""
        out = {}
        for line in _read(self.path / "cpu.stat").splitlines():
            key, _, value = line.partition(" ")
            if value.strip().isdigit():
                out[key] = int(value)
        return out

    def throttled_periods(self) -> int:
        """Periods in which the kernel held the group back (``cpu.stat`` ``nr_throttled``)."""
        return self.cpu_stat().get("nr_throttled", 0)

    def members(self) -> list[int]:
        return [int(p) for p in _read(self.path / "cgroup.procs").split() if p.isdigit()]

    def close(self) -> None:
        with self._lock:
            if not self.path.is_dir():
                return
            with contextlib.suppress(OSError):
                self._write_limit(None)
            for pid in self.members():  # a leftover (an orphan of a killed command) goes back to our own group
                with contextlib.suppress(OSError):
                    (self.path.parent / "cgroup.procs").write_text(str(pid))
            try:
                self.path.rmdir()
            except OSError as exc:
                log.warning("virtual device: cgroup %s not removed: %s", self.path, exc)


class SignalLimiter(CpuLimiter):
    """Duty cycling with SIGSTOP/SIGCONT of the device's own process groups (``groups()``), nothing else."""

    name = "signals"

    def __init__(self, groups: Callable[[], Iterable[int]]) -> None:
        self._groups = groups
        self._ratio = 1.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vdev-duty-cycle", daemon=True)
        self._thread.start()

    def set_ratio(self, ratio: float, lanes: int = 1) -> None:
        self._ratio = min(1.0, max(0.05, ratio))

    @property
    def quota(self) -> str:
        return "none" if self._ratio >= 1.0 else f"running {self._ratio:.0%} of every {SIGNAL_PERIOD_S * 1000:g} ms"

    def _signal(self, signum: int) -> None:
        for pgid in list(self._groups()):
            if pgid > 1 and pgid != os.getpgrp():  # never our own group, never init's
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signum)

    def _run(self) -> None:
        while not self._stop.is_set():
            ratio = self._ratio
            if ratio >= 1.0:
                self._stop.wait(SIGNAL_PERIOD_S)
                continue
            self._stop.wait(SIGNAL_PERIOD_S * ratio)
            self._signal(signal.SIGSTOP)
            try:
                self._stop.wait(SIGNAL_PERIOD_S * (1 - ratio))
            finally:
                self._signal(signal.SIGCONT)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._signal(signal.SIGCONT)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def own_cgroup(controller: str | None, mountinfo: str | None = None, cgroups: str | None = None,
               ) -> tuple[Path, int] | None:
    """(directory of this process's cgroup, version): in the v1 hierarchy holding ``controller``, or (None)
    in the cgroup2 hierarchy; None when there is none. ``mountinfo``/``cgroups``: the texts of
    ``/proc/self/mountinfo`` and ``/proc/self/cgroup`` (read when not given)."""
    mounts = (mountinfo if mountinfo is not None else _read(Path("/proc/self/mountinfo"))).splitlines()
    groups = (cgroups if cgroups is not None else _read(Path("/proc/self/cgroup"))).splitlines()
    for line in mounts:
        pre, _, post = line.partition(" - ")
        fields, post_fields = pre.split(), post.split()
        if len(fields) < 5 or len(post_fields) < 3:
            continue
        fstype, mount_root, mount_point = post_fields[0], fields[3], fields[4]
        if controller and fstype == "cgroup" and controller in post_fields[2].split(","):
            wanted = next((g.split(":", 2)[2] for g in groups if g.count(":") >= 2
                           and controller in g.split(":", 2)[1].split(",")), None)
            version = 1
        elif controller is None and fstype == "cgroup2":
            wanted = next((g.split(":", 2)[2] for g in groups if g.startswith("0::")), None)
            version = 2
        else:
            continue
        if wanted is None:
            continue
        relative = os.path.relpath(wanted, mount_root) if mount_root != "/" else wanted.lstrip("/")
        return Path(mount_point) / ("" if relative == "." else relative), version
    return None


def _cgroup(version: int, name: str) -> CgroupLimiter:
    found = own_cgroup("cpu" if version == 1 else None)
    if found is None or not found[0].is_dir():
        raise OSError(f"no cgroup v{version} hierarchy with the cpu controller")
    base, _ = found
    if version == 2 and "cpu" not in _read(base / "cgroup.subtree_control").split():
        raise OSError(f"{base} does not delegate the cpu controller to its children")
    return CgroupLimiter(base / name, version)


def open_limiter(kind: str, name: str, groups: Callable[[], Iterable[int]]) -> CpuLimiter:
    """The first mechanism of ``kind`` (``auto``: cgroup v2, cgroup v1, signals) that works here."""
    if kind not in KINDS:
        raise ValueError(f"unknown CPU limiter {kind!r}; use one of {', '.join(KINDS)}")
    order = ["cgroup-v2", "cgroup-v1", "signals"] if kind == "auto" else [kind]
    for option in order:
        if option == "off":
            return CpuLimiter()
        if option == "signals":
            return SignalLimiter(groups)
        try:
            return _cgroup(int(option[-1]), name)
        except OSError as exc:
            log.debug("virtual device: %s unavailable: %s", option, exc)
            if kind != "auto":
                raise
    return CpuLimiter()
