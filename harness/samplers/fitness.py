"""Is the device fit to be measured? ``[suite] require = { battery_min, thermal_status_max, other_cpu_max }``.

Before a case, the harness reads the device's battery level (%), thermal status (0 none .. 6 shutdown)
and the share of its CPUs other work keeps busy (idle device: everything busy is other work), and
waits, as the cooldown waits for temperature (:mod:`harness.samplers.cooldown`), until every condition
holds or ``wait_s`` has passed, polling every ``poll_s``. A device still unfit after the wait gets its
cases ``skipped`` with the unmet condition and the reading. What a device cannot report is not checked
(a desktop has no battery, a Linux host no thermal status) and is logged once, never guessed.

Readings follow the device's declared capabilities and probes. A shell device (host, Android, Linux):
``power_supply`` → the battery's ``capacity``; ``thermalservice`` → ``dumpsys thermalservice``;
``proc_stat`` → two ``/proc/stat`` reads ``window_s`` apart on the device; ``host_cpu`` → psutil on the
host. An app host (an iPhone) between app runs (:meth:`~harness.devices.base.AppHost.read_state`):
``app_battery`` → ``BatteryCurrentCapacity`` (%) of the lockdown battery domain; ``app_system_cpu`` →
Sysmontap's ``SystemCPUUsage.CPU_TotalLoad`` (the sum of the per-core loads) over ``CPUCount``, the
first row after start dropped (it is always 0 or 100). No iPhone service reports the thermal state
(``ProcessInfo.thermalState`` is in-app only), so ``thermal_status_max`` is not checked there.

An endpoint (a server reached over the network) has no battery, thermal status or CPU share the
harness can read: every ``require`` condition is *not applicable* to it, said once per device, and its
cases run (:func:`not_applicable`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from shlex import quote
from typing import cast

import psutil

from harness.devices.base import AppHost, Capabilities, Device, ShellDevice
from harness.samplers.parsers import parse_thermalservice

log = logging.getLogger(__name__)
SPLIT = "EH-FIT"
BATTERY_PATH = "/sys/class/power_supply/battery/capacity"
#: The keys of ``require`` and what each takes (the suite loader checks them, see ``harness.suite``).
KEYS = {
    "battery_min": "battery level in % (0-100) the device must have at least",
    "thermal_status_max": "highest thermal status allowed (0 none, 1 light .. 6 shutdown)",
    "other_cpu_max": 'largest share of the device\'s CPUs other work may keep busy, e.g. "25%"',
    "wait_s": "seconds to wait for a fit device before skipping its cases (default 60)",
    "poll_s": "seconds between two readings while waiting (default 5)",
}


@dataclass(frozen=True)
class Requirements:
    """The suite's ``require`` table, checked at load (fractions for ``other_cpu_max``)."""

    battery_min: float | None = None
    thermal_status_max: int | None = None
    other_cpu_max: float | None = None
    wait_s: float = 60.0
    poll_s: float = 5.0
    window_s: float = 1.0  # how long the CPU share is measured over, per reading

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.battery_min, self.thermal_status_max, self.other_cpu_max))


@dataclass(frozen=True)
class Fitness:
    """One reading of the device: battery %, thermal status, other work's CPU share (None: cannot tell)."""

    battery_pct: float | None = None
    thermal_status: int | None = None
    other_cpu: float | None = None


@dataclass(frozen=True)
class FitOutcome:
    """How long we waited (s), the unmet conditions after the wait (empty: fit), and what was not checked."""

    waited_s: float
    unmet: tuple[str, ...] = ()
    unchecked: tuple[str, ...] = field(default_factory=tuple)


def read(device: ShellDevice, req: Requirements) -> Fitness:
    """The device's readings the requirements need, in one shell command (plus psutil on the host)."""
    probes = device.capabilities().probes
    battery = f"cat {quote(BATTERY_PATH)} 2>/dev/null" if req.battery_min is not None and \
        "power_supply" in probes else ":"
    thermal = "dumpsys thermalservice 2>/dev/null" if req.thermal_status_max is not None and \
        "thermalservice" in probes else ":"
    device_cpu = req.other_cpu_max is not None and "proc_stat" in probes
    cpu = (f"read -r a < /proc/stat; echo \"$a\"; sleep {req.window_s:g}; read -r a < /proc/stat; echo \"$a\""
           if device_cpu else ":")
    host_cpu = req.other_cpu_max is not None and not device_cpu and "host_cpu" in probes
    if host_cpu:
        psutil.cpu_percent(None)
    out = device.shell(f"{battery}; echo {SPLIT}; {thermal}; echo {SPLIT}; {cpu}",
                       timeout_s=30 + req.window_s).output
    if host_cpu:
        time.sleep(max(0.0, req.window_s - 0.1))
    parts = (out.split(SPLIT) + ["", "", ""])[:3]
    other = (psutil.cpu_percent(None) / 100.0) if host_cpu else busy_share(parts[2])
    return Fitness(_number(parts[0]), parse_thermalservice(parts[1]).status if parts[1].strip() else None, other)


def read_app(device: AppHost, req: Requirements) -> Fitness:
    """An app host's readings between app runs (see module doc); what it does not give stays None."""
    probes = device.capabilities().probes
    wanted = ({"app_battery"} if req.battery_min is not None else set()) | \
        ({"app_system_cpu"} if req.other_cpu_max is not None else set())
    state = device.read_state(frozenset(wanted & probes), req.window_s) if wanted & probes else {}
    return Fitness(battery_level(state.get("app_battery")), None, system_cpu_share(state.get("app_system_cpu")))


def battery_level(values: object) -> float | None:
    """``BatteryCurrentCapacity`` (0-100 %) of an iPhone's battery domain values, or None (device output)."""
    if not isinstance(values, Mapping):
        return None
    level = values.get("BatteryCurrentCapacity")
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 <= level <= 100:
        return None
    return float(level)


def system_cpu_share(rows: object) -> float | None:
    """Busy share (0..1) of all CPUs from Sysmontap system rows: ``CPU_TotalLoad`` sums the per-core
    percentages, so it is divided by ``CPUCount`` (``EnabledCPUs`` when that is all there is); the first
    row is dropped. None when fewer than two rows or no usable one (device output is untrusted)."""
    if not isinstance(rows, Sequence) or len(rows) < 2:
        return None
    shares = []
    for row in rows[1:]:
        usage = row.get("SystemCPUUsage") if isinstance(row, Mapping) else None
        total = usage.get("CPU_TotalLoad") if isinstance(usage, Mapping) else None
        cpus = row.get("CPUCount", row.get("EnabledCPUs")) if isinstance(row, Mapping) else None
        if isinstance(total, int | float) and isinstance(cpus, int) and not isinstance(cpus, bool) \
                and cpus >= 1 and 0 <= total <= 100 * cpus:
            shares.append(float(total) / cpus / 100.0)
    return sum(shares) / len(shares) if shares else None


def not_applicable(caps: Capabilities, req: Requirements) -> tuple[str, ...]:
    """The asked conditions that make no sense on this kind of device (an endpoint: all of them)."""
    if not caps.endpoint:
        return ()
    why = "an endpoint is a server reached over the network: the harness reads no {} of it"
    asked = (("battery_min", req.battery_min, "battery level"), ("thermal_status_max", req.thermal_status_max,
                                                                 "thermal status"),
             ("other_cpu_max", req.other_cpu_max, "CPU share"))
    return tuple(f"{key} ({why.format(what)})" for key, value, what in asked if value is not None)


def reader(device: Device, req: Requirements) -> Callable[[], Fitness] | None:
    """How to read ``device`` for ``req``, chosen by its declared capabilities; None: it cannot be read
    (an endpoint, see :func:`not_applicable`, or a device that neither runs commands nor hosts an app)."""
    caps = device.capabilities()
    if caps.endpoint:
        return None
    if caps.shell:
        return lambda: read(cast(ShellDevice, device), req)
    if caps.app_host:
        return lambda: read_app(cast(AppHost, device), req)
    return None


def busy_share(text: str) -> float | None:
    """Busy share (0..1) of all CPUs between two ``/proc/stat`` ``cpu`` lines, or None when unreadable."""
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[0] == "cpu" and all(f.isdigit() for f in fields[1:9]):
            ticks = [int(f) for f in fields[1:9]]
            rows.append((sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0), sum(ticks)))
    if len(rows) < 2 or rows[-1][1] <= rows[0][1]:
        return None
    return min(1.0, max(0.0, (rows[-1][0] - rows[0][0]) / (rows[-1][1] - rows[0][1])))


def _number(text: str) -> float | None:
    try:
        value = float(text.strip().splitlines()[0])
    except (ValueError, IndexError):
        return None
    return value if 0 <= value <= 100 else None


def check(req: Requirements, fit: Fitness) -> tuple[list[str], list[str]]:
    """The unmet conditions with their readings, and the conditions the device could not report."""
    unmet, unchecked = [], []
    if req.battery_min is not None:
        if fit.battery_pct is None:
            unchecked.append("battery_min (the device reports no battery level)")
        elif fit.battery_pct < req.battery_min:
            unmet.append(f"battery {fit.battery_pct:g}% < battery_min {req.battery_min:g}%")
    if req.thermal_status_max is not None:
        if fit.thermal_status is None:
            unchecked.append("thermal_status_max (the device reports no thermal status)")
        elif fit.thermal_status > req.thermal_status_max:
            unmet.append(f"thermal status {fit.thermal_status} > thermal_status_max {req.thermal_status_max}")
    if req.other_cpu_max is not None:
        if fit.other_cpu is None:
            unchecked.append("other_cpu_max (the device's CPU counters are not readable)")
        elif fit.other_cpu > req.other_cpu_max:
            unmet.append(f"other work kept {fit.other_cpu:.0%} of the CPUs busy > "
                         f"other_cpu_max {req.other_cpu_max:.0%}")
    return unmet, unchecked


def wait(req: Requirements, read_fit: Callable[[], Fitness], *, label: str = "",
         sleep: Callable[[float], None] = time.sleep) -> FitOutcome:
    """Poll until every condition holds or ``wait_s`` has passed (see module doc)."""
    start = time.monotonic()
    while True:
        unmet, unchecked = check(req, read_fit())
        waited = time.monotonic() - start
        if not unmet or waited >= req.wait_s:
            if unmet:
                log.info("%srequire: still unfit after %.0f s: %s", label, waited, "; ".join(unmet))
            return FitOutcome(waited, tuple(unmet), tuple(unchecked))
        log.info("%srequire: %s; waited %.0f s of %.0f s", label, "; ".join(unmet), waited, req.wait_s)
        sleep(min(req.poll_s, max(0.0, req.wait_s - waited)))
