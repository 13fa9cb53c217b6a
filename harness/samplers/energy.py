"""Energy per inference (mJ) from power sampled over the measured window, idle power subtracted.

For each repetition: idle power = mean of the samples taken in the ``idle_s`` before the benchmark
started; the measured window = the last ``sum(latencies)`` seconds before the benchmark ended (the
iterations run back to back at the end of the process); gross energy = mean power of the samples
in the window x window length; net = (mean - idle) x length. Per inference = sum over repetitions /
measured iterations. Uncertainty (1 sigma, mJ per inference): standard errors of the window and idle
means, times window length, added in quadrature over repetitions.

Sources: Android/Linux ``/sys/class/power_supply`` ``current_now`` x ``voltage_now`` sampled on the
device (:mod:`harness.samplers.probe`), units and the sign of discharge from the profile's
``[energy]`` table, raw values kept in the trace; Linux hosts: RAPL ``energy_uj`` counters. A device
that is charging is refused (the battery current then says nothing about the SoC). Nothing here
estimates: no source, no number, and the record says why.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from shlex import quote
from typing import TYPE_CHECKING

from harness.devices.base import ShellDevice
from harness.results import Energy, Latency, Repetition
from harness.samplers.base import Reading, RepetitionReadings, SamplerBase, Slot
from harness.samplers.parsers import parse_dumpsys_battery, parse_sysfs_listing

if TYPE_CHECKING:
    from harness.samplers.run import RepetitionRun

CHARGING_HINT = ("run over Wi-Fi ADB (adb tcpip 5555; adb connect PHONE_IP) with the cable unplugged, "
                 "or disable charging (e.g. 'dumpsys battery unplug' on a rooted/test device)")
_UNIT_SCALE = {"ua": 1e-3, "ma": 1.0, "uv": 1e-3, "mv": 1.0}  # to mA and mV
MIN_WINDOW_SAMPLES = 2
#: Power sampler intervals a repetition's measured window should span when the suite sets no
#: ``min_duration_s``: at least MIN_WINDOW_SAMPLES samples even when the on-device loop runs 2x slower
#: than its nominal interval (each tick also forks ``date``), and a few more for the standard error.
DURATION_INTERVALS = 5


@dataclass(frozen=True)
class EnergyConfig:
    """The profile's ``[energy]`` table: where power comes from and how to read it."""

    source: str = "power_supply"  # power_supply | rapl | none
    current_path: str = "/sys/class/power_supply/battery/current_now"
    voltage_path: str = "/sys/class/power_supply/battery/voltage_now"
    status_path: str = "/sys/class/power_supply/battery/status"
    current_unit: str = "uA"
    voltage_unit: str = "uV"
    discharge_sign: int = -1  # the sign current_now has while the battery discharges
    sign_source: str = "not stated by the profile"
    interval_s: float = 0.05
    idle_s: float = 1.0
    simulated: bool = False
    rapl_root: str = "/sys/class/powercap"

    @classmethod
    def from_profile(cls, table: dict | None, probes: Collection[str]) -> EnergyConfig:
        """The profile's table; its ``source`` defaults to what the device's probes offer (rapl, power_supply)."""
        table = dict(table or {})
        default = next((p for p in ("rapl", "power_supply") if p in probes), "none")
        table.setdefault("source", default)
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in table.items() if k in known})

    def describe(self) -> str:
        sign = "negative" if self.discharge_sign < 0 else "positive"
        return (f"current_now x voltage_now ({self.current_unit}, {self.voltage_unit}; current {sign} while "
                f"discharging: {self.sign_source}) sampled on the device every {self.interval_s * 1000:g} ms")


def discharge_power_mw(current_raw: int, voltage_raw: int, cfg: EnergyConfig) -> float:
    """Power drawn from the battery in mW (positive while discharging, per the profile's sign)."""
    current_ma = current_raw * _UNIT_SCALE[cfg.current_unit.lower()] * cfg.discharge_sign
    voltage_v = voltage_raw * _UNIT_SCALE[cfg.voltage_unit.lower()] / 1000.0
    return current_ma * voltage_v


@dataclass(frozen=True)
class PowerState:
    """The battery's state before a case: charging reason (or None) and whether the device is virtual."""

    charging_reason: str | None
    simulated: bool


#: The ``online`` flag of every power supply (``path:value`` lines), for devices without ``dumpsys battery``.
SUPPLIES_ONLINE = "grep . /sys/class/power_supply/*/online 2>/dev/null"


def power_state(device: ShellDevice, cfg: EnergyConfig) -> PowerState:
    """Read ``status``, ``dumpsys battery`` powered flags, the virtual-device marker and the supplies'
    ``online`` flags in one command."""
    out = device.shell(
        f"cat {quote(cfg.status_path)} 2>/dev/null; echo EH-SPLIT; dumpsys battery 2>/dev/null; "
        f"echo EH-SPLIT; getprop edgeharness.virtual 2>/dev/null; echo EH-SPLIT; {SUPPLIES_ONLINE}",
        timeout_s=30,
    ).output
    parts = (out.split("EH-SPLIT") + ["", "", "", ""])[:4]
    return PowerState(charging_reason(parts[0].strip(), parts[1], parts[3]), parts[2].strip() == "1" or cfg.simulated)


def charging_reason(status: str, dumpsys_battery: str, supplies_online: str = "") -> str | None:
    """Why energy cannot be measured now (charging or powered), or None when on battery.

    ``dumpsys battery``'s powered flags are the authority when it answers (so ``dumpsys battery unplug``
    on a test device works as :data:`CHARGING_HINT` says); a device without it (a Linux board) is
    judged by its non-battery supplies' sysfs ``online`` flags (``grep`` listing, :data:`SUPPLIES_ONLINE`).
    """
    why = []
    if status.lower() in ("charging", "full"):
        why.append(f"status={status}")
    svc = parse_dumpsys_battery(dumpsys_battery)
    flags = (("AC", svc.ac_powered), ("USB", svc.usb_powered), ("wireless", svc.wireless_powered),
             ("dock", svc.dock_powered))
    for name, flag in flags:
        if flag:
            why.append(f"{name} powered")
    if all(flag is None for _, flag in flags):
        for name, supply in sorted(parse_sysfs_listing(supplies_online).items()):
            if supply.online and name != "battery":
                why.append(f"sysfs power_supply/{name} online")
    if svc.status in ("charging", "full") and not why:
        why.append(f"dumpsys battery status={svc.status}")
    if not why:
        return None
    return (f"device is charging or externally powered ({', '.join(why)}): battery current does not measure "
            f"the SoC; {CHARGING_HINT}")


@dataclass(frozen=True)
class RepetitionPower:
    """Power samples ``(unix_ns, mW)`` around one repetition, and where its parts were."""

    samples: tuple[tuple[int, float], ...]
    bench_start_ns: int
    bench_end_ns: int
    measured_s: float
    iterations: int


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, se


def energy_per_inference(reps: Sequence[RepetitionPower], *, method: str, simulated: bool) -> Energy:
    """Combine repetitions into one :class:`Energy`; a missing part gives ``reason`` instead of a number."""
    gross_mj = net_mj = var = 0.0
    idle_means: list[float] = []
    n_iter = n_samples = 0
    for i, rep in enumerate(reps):
        window_start = rep.bench_end_ns - int(rep.measured_s * 1e9)
        idle = [p for t, p in rep.samples if t < rep.bench_start_ns]
        window = [p for t, p in rep.samples if window_start <= t <= rep.bench_end_ns]
        if len(window) < MIN_WINDOW_SAMPLES or len(idle) < MIN_WINDOW_SAMPLES:
            return Energy(method=method, simulated=simulated, samples=n_samples, reason=(
                f"repetition {i + 1}: {len(window)} power sample(s) in the {rep.measured_s:.3f} s measured window "
                f"and {len(idle)} idle (need {MIN_WINDOW_SAMPLES} each): raise measured_runs or the sample rate"))
        p_mean, p_se = _mean_se(window)
        idle_mean, idle_se = _mean_se(idle)
        gross_mj += p_mean * rep.measured_s
        net_mj += (p_mean - idle_mean) * rep.measured_s
        var += (p_se**2 + idle_se**2) * rep.measured_s**2
        idle_means.append(idle_mean)
        n_iter += rep.iterations
        n_samples += len(window)
    if n_iter == 0:
        return Energy(method=method, simulated=simulated, reason="no measured iterations")
    if gross_mj <= 0:
        return Energy(method=method, simulated=simulated, samples=n_samples, reason=(
            "the battery was not discharging during the run (power <= 0 with the profile's sign convention): "
            f"check [energy] discharge_sign, or the device is powered; {CHARGING_HINT}"))
    return Energy(
        method=method, per_inference_mj=net_mj / n_iter, gross_per_inference_mj=gross_mj / n_iter,
        idle_power_mw=statistics.fmean(idle_means), uncertainty_mj=math.sqrt(var) / n_iter,
        samples=n_samples, simulated=simulated,
    )


def absent(method: str, reason: str, *, simulated: bool = False) -> Energy:
    """An energy record that says why there is no number."""
    return Energy(method=method, reason=reason, simulated=simulated)


# --- host: RAPL --------------------------------------------------------------------------------


def rapl_domains(root: str | Path) -> tuple[list[Path], str | None]:
    """Readable top-level RAPL package domains (``intel-rapl:N/energy_uj``), or why there are none."""
    base = Path(root)
    zones = sorted(p for p in base.glob("intel-rapl:*") if p.name.count(":") == 1) if base.is_dir() else []
    if not zones:
        return [], f"no RAPL domains under {base} (not an Intel/AMD Linux host, or powercap not exposed here)"
    readable = []
    for zone in zones:
        try:
            int((zone / "energy_uj").read_text())
            readable.append(zone)
        except (OSError, ValueError) as exc:
            return [], f"{zone / 'energy_uj'} is not readable ({exc.__class__.__name__}: since Linux 5.10 " \
                       "energy_uj is root-only; grant read access, e.g. a udev rule, to measure host energy)"
    return readable, None


class RaplPoller:
    """Host thread reading RAPL counters every ``interval_s``; gives power samples ``(unix_ns, mW)``."""

    def __init__(self, zones: Sequence[Path], interval_s: float) -> None:
        self._zones = list(zones)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._rows: list[tuple[int, int]] = []
        self._thread = threading.Thread(target=self._run, name="rapl-sampler", daemon=True)
        self._wrap_uj = sum(_read_int(z / "max_energy_range_uj") or 0 for z in self._zones)

    def start(self) -> RaplPoller:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            total = sum(_read_int(z / "energy_uj") or 0 for z in self._zones)
            self._rows.append((time.time_ns(), total))
            self._stop.wait(self._interval_s)

    def stop(self) -> tuple[tuple[int, float], ...]:
        self._stop.set()
        self._thread.join(timeout=5)
        out = []
        for (t0, e0), (t1, e1) in zip(self._rows, self._rows[1:], strict=False):
            delta = e1 - e0 if e1 >= e0 else e1 + self._wrap_uj - e0
            out.append(((t0 + t1) // 2, delta / 1000.0 / ((t1 - t0) / 1e9)))  # uJ -> mJ per s = mW
        return tuple(out)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


# --- the samplers ------------------------------------------------------------------------------


def measured_s(rep: Repetition) -> float:
    """Seconds the measured iterations took (their samples, else the tool's count x average)."""
    return sum(rep.samples_us) / 1e6 if rep.samples_us else (rep.count or 0) * (rep.avg_us or 0) / 1e6


def from_repetitions(sampler: str, reps: Sequence[RepetitionReadings], latency: Latency | None,
                     problems: Sequence[str], cfg: EnergyConfig, *, method: str, simulated: bool) -> Energy:
    """Energy per inference from each repetition's power reading of ``sampler``, or why there is none."""
    broken = [p for p in problems if p.startswith(("probe", "marks"))]
    if latency is None or len(reps) != len(latency.repetitions) or broken:
        why = "; ".join(broken) or "a repetition ran without the power sampler"
        return absent(method, f"power sampler failed: {why}", simulated=simulated)
    out = []
    for i, (sampled, rep) in enumerate(zip(reps, latency.repetitions, strict=True)):
        reading = sampled.get(sampler)
        window, power = sampled.window, reading.power if reading is not None else ()
        if window is None:
            return absent(method, f"repetition {i + 1}: no start/end marks from the benchmark wrapper",
                          simulated=simulated)
        last_t = power[-1][0] if power else 0
        if last_t < window[1] - int(3 * cfg.interval_s * 1e9) - int(0.5e9):
            seen = f"its last sample came {(window[1] - last_t) / 1e9:.2f} s before" if power else "no samples by"
            return absent(method, f"repetition {i + 1}: the power sampler stopped mid-run ({seen} the benchmark "
                          "ended); latency is unaffected", simulated=simulated)
        out.append(RepetitionPower(power, window[0], window[1], measured_s(rep), rep.n))
    return energy_per_inference(out, method=method, simulated=simulated)


class RaplEnergy(SamplerBase):
    """``rapl``: host package energy from RAPL counters, read by a host thread during each repetition."""

    name = "rapl"
    label = "rapl"

    def __init__(self, cfg: EnergyConfig) -> None:
        self.cfg = cfg
        self.zones: list[Path] = []
        self.absent_reason: str | None = None

    def before_case(self) -> None:
        if self.cfg.source == "rapl":
            self.zones, self.absent_reason = rapl_domains(self.cfg.rapl_root)

    @contextlib.contextmanager
    def repetition(self, run: RepetitionRun) -> Iterator[Slot]:
        slot = Slot()
        if not self.zones:
            yield slot
            return
        poller = RaplPoller(self.zones, self.cfg.interval_s).start()
        run.idle(self.cfg.idle_s)
        try:
            yield slot
        finally:
            power = poller.stop()
        slot.reading = Reading(self.name, self.method(), len(power), power=power)

    def method(self) -> str:
        return f"RAPL package energy_uj read every {self.cfg.interval_s * 1000:g} ms on the host"

    def min_duration_s(self) -> float | None:
        """The measured window a repetition needs for an energy figure (None: no RAPL counters here)."""
        return DURATION_INTERVALS * self.cfg.interval_s if self.zones and not self.absent_reason else None

    def energy(self, reps: Sequence[RepetitionReadings], latency: Latency | None, problems: Sequence[str]) -> Energy:
        if self.cfg.source != "rapl" or self.absent_reason or not self.zones:
            return absent(self.method(), self.absent_reason or f"profile energy source is {self.cfg.source!r}")
        return from_repetitions(self.name, reps, latency, problems, self.cfg, method=self.method(), simulated=False)


class PowerSupplyEnergy(SamplerBase):
    """``power_supply``: battery current x voltage from the repetition's on-device loop; refuses a charging device."""

    name = "power_supply"
    label = "battery"

    def __init__(self, device: ShellDevice, cfg: EnergyConfig, profile_name: str) -> None:
        self.device = device
        self.cfg = cfg
        self.profile_name = profile_name
        self.refusal: str | None = None
        self.simulated = cfg.simulated
        self.checked = False  # the battery state was read before this case

    def before_case(self) -> None:
        """Read the battery state: a charging device gets no energy figure (and no power polling)."""
        if self.cfg.source == "power_supply":
            state = power_state(self.device, self.cfg)
            self.refusal, self.simulated = state.charging_reason, state.simulated
            self.checked = True

    @contextlib.contextmanager
    def repetition(self, run: RepetitionRun) -> Iterator[Slot]:
        slot = Slot()
        if self.cfg.source != "power_supply" or self.refusal is not None:
            yield slot
            return
        run.device_power(self.cfg.current_path, self.cfg.voltage_path)
        run.idle(self.cfg.idle_s)
        yield slot
        power = tuple((t, discharge_power_mw(c, v, self.cfg)) for t, c, v in run.trace.power)
        slot.reading = Reading(self.name, self.cfg.describe(), len(power), power=power)

    def min_duration_s(self) -> float | None:
        """The measured window a repetition needs for an energy figure (None: no power figure will be made)."""
        return DURATION_INTERVALS * self.cfg.interval_s if self.cfg.source == "power_supply" and \
            self.checked and self.refusal is None else None

    def method(self) -> str:
        return (f"{self.cfg.describe()} (profile {self.profile_name}); idle power over {self.cfg.idle_s:g} s "
                "before each repetition subtracted; energy = mean power in the measured window x its length")

    def energy(self, reps: Sequence[RepetitionReadings], latency: Latency | None, problems: Sequence[str]) -> Energy:
        if self.cfg.source != "power_supply":
            return absent(self.method(), f"profile energy source is {self.cfg.source!r}", simulated=self.simulated)
        if self.refusal:
            return absent(self.method(), self.refusal, simulated=self.simulated)
        return from_repetitions(self.name, reps, latency, problems, self.cfg, method=self.method(),
                                simulated=self.simulated)
