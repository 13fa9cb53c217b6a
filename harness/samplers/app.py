"""Readings taken around an app-based run (the iOS benchmark app): app log, battery energy, Sysmontap memory.

The backend (an :class:`~harness.devices.base.AppHost`) hands over the raw streams as plain data;
the observers here turn them into readings: the app's log lines (filtered to its run id and pid),
battery readings (current mA, negative while discharging; voltage mV) from the battery registry
about once a second, and Sysmontap rows of the app process at the interval the phone really used.
There is no idle baseline on iOS (the app is launched for the run), so energy is **gross**: mean
battery power over the app's run times the measured inference time, divided by the measured iterations.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from harness.devices.base import APP_MONITOR_INTERVAL_S, AppHost, AppObserver, AppRunOutcome
from harness.results import Energy
from harness.samplers.parsers import process_sample, smart_battery

ENERGY_METHOD = ("iOS diagnostics_relay battery InstantAmperage x Voltage, mean over the app run, x measured "
                 "inference time / iterations (gross: no idle baseline)")
MEMORY_METHOD = "iOS Sysmontap physFootprint/resident of the app process"
MAX_LOG_LINES = 5000
NO_BATTERY = "the device gives no battery readings"
MIB = 1024.0 * 1024.0
#: Monitor intervals an app's measured window must span for its memory rows: the backend launches the app just
#: after a tick, so a run shorter than one interval gets no row naming it (then only the app's own reading is left).
MEMORY_WINDOW_INTERVALS = 2


@dataclass(frozen=True)
class SysmonSample:
    """One sysmontap row of the app process: CPU in % of one core (may exceed 100), memory in MiB."""

    t_s: float
    pid: int
    cpu_percent: float | None
    footprint_mb: float | None
    resident_mb: float | None
    threads: int | None


@dataclass(frozen=True)
class BatteryReading:
    """One AppleSmartBattery reading: current in mA (negative = discharging), voltage in mV."""

    t_s: float
    current_ma: float | None
    voltage_mv: float | None
    external_connected: bool
    is_charging: bool
    temperature_c: float | None

    @property
    def power_mw(self) -> float | None:
        """Battery output power (mW, positive when discharging), or None when a value is missing."""
        if self.current_ma is None or self.voltage_mv is None:
            return None
        return -self.current_ma * self.voltage_mv / 1000.0


class AppLog:
    """``app_log``: every log line during the run (at most :data:`MAX_LOG_LINES`), filtered to the app's at the end."""

    probe = "app_log"

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.pid: int | None = None
        self._lines: list[str] = []

    def launched(self, pid: int) -> None:
        self.pid = pid

    def feed(self, t_s: float, item: Any) -> None:
        if len(self._lines) < MAX_LOG_LINES and isinstance(item, str):
            self._lines.append(item)

    def lines(self) -> tuple[str, ...]:
        """The lines that name the run id or the app's pid."""
        marks = [self.run_id] + ([f"({self.pid})", f"[{self.pid}]"] if self.pid else [])
        return tuple(ln for ln in self._lines if any(m in ln for m in marks))


class AppBattery:
    """``app_battery``: battery registry dicts -> :class:`BatteryReading`; says when they cannot be the app's energy."""

    probe = "app_battery"

    def __init__(self) -> None:
        self.readings: list[BatteryReading] = []

    def launched(self, pid: int) -> None:
        pass

    def feed(self, t_s: float, item: Any) -> None:
        reg = smart_battery(item if isinstance(item, Mapping) else {})
        self.readings.append(BatteryReading(
            t_s=t_s, current_ma=_float(reg.current_ma), voltage_mv=_float(reg.voltage_mv),
            external_connected=bool(reg.external_connected), is_charging=bool(reg.is_charging),
            temperature_c=reg.temperature_c))

    def refusal(self) -> str | None:
        """Why these readings cannot stand for the app's energy (e.g. the phone is on USB power), or None."""
        if not self.readings:
            return "no battery readings (diagnostics_relay gave none)"
        if any(r.external_connected or r.is_charging for r in self.readings):
            return ("the phone was on external power (ExternalConnected/charging): battery current is not the "
                    "app's power; measure over Wi-Fi or through a data-only hub")
        if all(r.power_mw is None for r in self.readings):
            return "the battery reports no InstantAmperage/Voltage"
        return None


class AppMemory:
    """``app_memory``: Sysmontap ticks -> the app process's rows, and the interval the phone really used."""

    probe = "app_memory"

    def __init__(self) -> None:
        self.pid: int | None = None
        self.samples: list[SysmonSample] = []
        self.ticks: list[float] = []

    def launched(self, pid: int) -> None:
        self.pid = pid

    def feed(self, t_s: float, item: Any) -> None:
        self.ticks.append(t_s)
        if self.pid is None or not isinstance(item, list):
            return
        for row in (process_sample(r) for r in item if isinstance(r, Mapping)):
            if row.pid == self.pid:
                self.samples.append(SysmonSample(
                    t_s=t_s, pid=row.pid, cpu_percent=row.cpu_usage_pct,
                    footprint_mb=_mib(row.phys_footprint_bytes), resident_mb=_mib(row.mem_resident_bytes),
                    threads=row.threads))

    def interval_s(self) -> float | None:
        """Median gap between sysmontap deliveries (seconds), as the device really sent them."""
        gaps = [b - a for a, b in zip(self.ticks, self.ticks[1:])]
        return float(statistics.median(gaps)) if gaps else None


@dataclass(frozen=True)
class AppRun(AppRunOutcome):
    """One app launch with its readings: the backend's outcome plus what the observers made of the streams.

    ``sample_interval_s`` is the interval sysmontap really delivered (devices ignore the requested
    rate). ``energy_refusal`` says why the battery readings cannot stand for the app's energy.
    """

    log_lines: tuple[str, ...] = ()
    samples: tuple[SysmonSample, ...] = ()
    sample_interval_s: float | None = None
    battery: tuple[BatteryReading, ...] = ()
    energy_refusal: str | None = NO_BATTERY


def run_app_benchmark(device: AppHost, model: Path, params: Mapping[str, Any], run_id: str, timeout_s: float,
                      app: Path | None = None) -> AppRun:
    """Run one benchmark through the app contract with the observers the device's probes allow."""
    probes = device.capabilities().probes
    log = AppLog(run_id) if "app_log" in probes else None
    battery = AppBattery() if "app_battery" in probes else None
    memory = AppMemory() if "app_memory" in probes else None
    observers: list[AppObserver] = [o for o in (log, battery, memory) if o is not None]
    outcome = device.run_app(model, params, run_id, timeout_s, app=app, observers=observers)
    return AppRun(
        **{f.name: getattr(outcome, f.name) for f in fields(AppRunOutcome)},
        log_lines=log.lines() if log else (),
        samples=tuple(memory.samples) if memory else (),
        sample_interval_s=memory.interval_s() if memory else None,
        battery=tuple(battery.readings) if battery else (),
        energy_refusal=battery.refusal() if battery else NO_BATTERY,
    )


def memory_min_duration_s(observed_interval_s: float | None) -> tuple[float, str]:
    """The measured window (s) an app run needs for rows of its process, and why: ``MEMORY_WINDOW_INTERVALS`` of
    the monitor's pace (as the device measured it, else the interval the backend asks for)."""
    pace = observed_interval_s if observed_interval_s else APP_MONITOR_INTERVAL_S
    seen = "observed" if observed_interval_s else "asked"
    return (MEMORY_WINDOW_INTERVALS * pace,
            f"{MEMORY_WINDOW_INTERVALS} app memory monitor ticks at the {pace * 1000:.0f} ms {seen}: its rows name "
            "the app only while it runs")


def app_energy(battery: Sequence[BatteryReading], refusal: str | None, measured_s: float,
               iterations: int) -> Energy:
    """Energy per inference (mJ) from battery readings, or the reason there is none."""
    if refusal:
        return Energy(method=ENERGY_METHOD, reason=refusal, samples=len(battery))
    powers = [r.power_mw for r in battery if r.power_mw is not None]
    if len(powers) < 2 or iterations <= 0:
        return Energy(method=ENERGY_METHOD, samples=len(powers),
                      reason=f"{len(powers)} battery reading(s) during the run: too few to integrate")
    mean_mw = statistics.fmean(powers)
    sem_mw = statistics.stdev(powers) / len(powers) ** 0.5
    per_inf = mean_mw * measured_s / iterations  # mW x s = mJ
    return Energy(method=ENERGY_METHOD, gross_per_inference_mj=per_inf,
                  uncertainty_mj=sem_mw * measured_s / iterations, samples=len(powers))


def app_memory(samples: Sequence[SysmonSample]) -> tuple[float | None, float | None, int]:
    """(peak MB, steady MB = median, row count) of the app's memory over its Sysmontap rows."""
    values = [s.footprint_mb if s.footprint_mb is not None else s.resident_mb for s in samples]
    values = [v for v in values if v is not None]
    if not values:
        return None, None, 0
    return max(values), statistics.median(values), len(values)


def _float(value: int | None) -> float | None:
    return float(value) if value is not None else None


def _mib(value: int | None) -> float | None:
    return value / MIB if value is not None else None
