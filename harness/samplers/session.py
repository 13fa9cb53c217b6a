"""The one object the orchestrator calls around a case: cooldown, samplers, and the three records.

```python
sampling = CaseSampling(device, profile, suite_cooldown)
sampling.before_case()                        # cooldown wait, thermal "before", battery check
for i in range(repetitions):
    with sampling.around_repetition() as dev:  # dev: the device, benchmark commands wrapped
        outcome = strategy(dev, ...)
memory, energy, thermal = sampling.finish(latency, runner_memory)
```

How the benchmark's pid is known at start: inside :meth:`around_repetition` every shell command
is wrapped (:func:`harness.samplers.probe.wrap_benchmark`) to start in the background, write its
pid to a file and ``S``/``E`` marks around it; the last wrapped command of a repetition is the
benchmark (staging commands come before it). Android/Linux: one on-device loop samples power and
``/proc/<pid>/status``. Host: psutil polls the pid, RAPL counters give energy where readable.

A sampler that fails never fails the case: latency is kept, and the energy/memory record says what
went wrong.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from harness.devices.base import Device, ShellResult
from harness.errors import HarnessError
from harness.results import Energy, Latency, Memory, Repetition, Thermal
from harness.samplers import contention, cooldown, energy, memory, probe, thermal, throttle

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_PROBE_S = 3600.0


class WrappedDevice:
    """The device with every shell command wrapped for the probe; everything else passes through."""

    def __init__(self, device: Device, paths: probe.ProbePaths) -> None:
        self._device = device
        self._paths = paths

    def shell(self, command: str, timeout_s: float = 60.0) -> ShellResult:
        result = self._device.shell(probe.wrap_benchmark(command, self._paths), timeout_s=timeout_s)
        return ShellResult(command, result.output, result.exit_code, result.duration_s)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._device, name)


class CaseSampling:
    """Samplers for one case on one device (see module doc). ``profile``: a ``harness.profiles.Profile`` or None."""

    def __init__(self, device: Device, profile: Any | None, suite_cooldown: dict | None = None) -> None:
        self.device = device
        extra = dict(getattr(profile, "extra", {}) or {})
        self.profile_name = getattr(profile, "name", "") or "no profile"
        self.energy_cfg = energy.EnergyConfig.from_profile(extra.get("energy"), device.platform)
        self.thermal_cfg = thermal.ThermalConfig.from_profile(extra.get("thermal"), extra.get("cooldown"))
        self.cooldown_cfg = cooldown.CooldownConfig.merge(suite_cooldown, extra.get("cooldown"))
        self.limits = throttle.ThrottleLimits.from_profile(extra.get("throttle"))
        self.enabled = device.platform in ("android", "host")
        self.problems: list[str] = []
        self.energy_refusal: str | None = None
        self.simulated = self.energy_cfg.simulated
        self.cooldown: cooldown.CooldownOutcome | None = None
        self.before: thermal.ThermalSnapshot | None = None
        self._reps: list[_Sampled] = []
        self._rapl_zones: list[Path] = []
        self._rapl_absent: str | None = None

    # -- helpers ------------------------------------------------------------------------------
    def _safe(self, what: str, fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except (HarnessError, OSError, ValueError) as exc:
            self.problems.append(f"{what}: {exc}")
            log.warning("[%s] sampler %s failed: %s", self.device.id, what, exc)
            return None

    @property
    def _power_on_device(self) -> bool:
        return self.device.platform == "android" and self.energy_cfg.source == "power_supply"

    # -- around the case ----------------------------------------------------------------------
    def before_case(self) -> None:
        """Cool down, read the thermal state, and check the battery is not charging."""
        if not self.enabled:
            return
        label = f"[{self.device.id}] "
        self.cooldown = self._safe("cooldown", lambda: cooldown.wait(self.cooldown_cfg, self._watched_c, label=label))
        self.before = self._safe("thermal", lambda: thermal.read_snapshot(self.device, self.thermal_cfg))
        if self._power_on_device:
            state = self._safe("battery", lambda: energy.power_state(self.device, self.energy_cfg))
            if state is not None:
                self.energy_refusal, self.simulated = state.charging_reason, state.simulated
        elif self.device.platform == "host" and self.energy_cfg.source == "rapl":
            self._rapl_zones, self._rapl_absent = energy.rapl_domains(self.energy_cfg.rapl_root)

    def _watched_c(self) -> float | None:
        return thermal.read_snapshot(self.device, self.thermal_cfg).watched_c(self.thermal_cfg.watch)

    @contextlib.contextmanager
    def around_repetition(self) -> Iterator[Any]:
        """Yield the device to run one repetition on; samplers run while the block does."""
        if not self.enabled:
            yield self.device
            return
        paths = probe.new_paths(self.device)
        poll_power = self._power_on_device and self.energy_refusal is None
        started = self._safe("probe start", lambda: self._start(paths, poll_power))
        if started is None:
            yield self.device
            return
        try:
            yield WrappedDevice(self.device, paths)
        finally:
            self._reps.append(self._stop(paths, *started))

    def _start(self, paths: probe.ProbePaths, poll_power: bool) -> tuple[Any, Any, Any]:
        """The host's per-repetition samplers (memory poller, RAPL, CPU meter); on a device, its probe loop."""
        cfg = self.energy_cfg
        if self.device.platform == "host":
            Path(paths.directory).mkdir(parents=True, exist_ok=True)
            poller = memory.HostMemoryPoller(Path(paths.pid)).start()
            meter = contention.HostCpuMeter().start()
            rapl = energy.RaplSampler(self._rapl_zones, cfg.interval_s).start() if self._rapl_zones else None
            if rapl is not None:
                time.sleep(cfg.idle_s)
            return poller, rapl, meter
        probe.start(self.device, paths, interval_s=cfg.interval_s, max_samples=int(MAX_PROBE_S / cfg.interval_s),
                     current_path=cfg.current_path if poll_power else None,
                     voltage_path=cfg.voltage_path if poll_power else None, poll_memory=True)
        if poll_power:
            time.sleep(cfg.idle_s)
        return None, None, None

    def _stop(self, paths: probe.ProbePaths, host_memory: Any, rapl: Any, meter: Any) -> _Sampled:
        rows = host_memory.stop() if host_memory is not None else ()
        power: tuple[tuple[int, float], ...] = rapl.stop() if rapl is not None else ()
        if self.device.platform == "host":
            marks = self._safe("marks", lambda: Path(paths.marks).read_text()) or ""
            trace = probe.parse_trace("\n".join(f"K {line}" for line in marks.splitlines()))
            with contextlib.suppress(OSError):
                for name in ("marks.txt", "bench.pid"):
                    Path(posixpath.join(paths.directory, name)).unlink(missing_ok=True)
                Path(paths.directory).rmdir()
            method = memory.HostMemoryPoller.method_template.format(ms=host_memory.interval_s * 1000)
            return _Sampled(trace, power, rows, method, meter.stop(host_memory.cpu_s))
        text = self._safe("probe stop", lambda: probe.stop(self.device, paths, linger_s=self.energy_cfg.interval_s * 2))
        trace = probe.parse_trace(text or "")
        power = tuple((t, energy.discharge_power_mw(c, v, self.energy_cfg)) for t, c, v in trace.power)
        method = f"/proc/<pid>/status VmHWM/VmRSS polled on the device every {self.energy_cfg.interval_s * 1000:g} ms"
        return _Sampled(trace, power, trace.memory, method)

    # -- records ------------------------------------------------------------------------------
    def finish(self, latency: Latency | None, runner_memory: Memory | None) -> tuple[Memory | None, Energy | None,
                                                                                      Thermal | None]:
        """Memory (runner's + polled), energy per inference (or why not) and thermal state with throttling."""
        if not self.enabled:
            return runner_memory, None, None
        windows = self._windows(latency)
        mem = memory.combine(runner_memory, [memory.summarize(r.memory_rows, w, r.memory_method)
                                             for r, w in zip(self._reps, windows, strict=False)])
        return mem, self._energy(latency), self._thermal(latency)

    def _energy(self, latency: Latency | None) -> Energy:
        cfg = self.energy_cfg
        if self.device.platform == "host":
            method = f"RAPL package energy_uj read every {cfg.interval_s * 1000:g} ms on the host"
            if cfg.source != "rapl" or self._rapl_absent or not self._rapl_zones:
                return energy.absent(method, self._rapl_absent or f"profile energy source is {cfg.source!r}")
        else:
            method = f"{cfg.describe()} (profile {self.profile_name}); idle power over {cfg.idle_s:g} s before " \
                     f"each repetition subtracted; energy = mean power in the measured window x its length"
            if cfg.source != "power_supply":
                return energy.absent(method, f"profile energy source is {cfg.source!r}", simulated=self.simulated)
            if self.energy_refusal:
                return energy.absent(method, self.energy_refusal, simulated=self.simulated)
        broken = [p for p in self.problems if p.startswith(("probe", "marks"))]
        if latency is None or len(self._reps) != len(latency.repetitions) or broken:
            why = "; ".join(broken) or "a repetition ran without the power sampler"
            return energy.absent(method, f"power sampler failed: {why}", simulated=self.simulated)
        reps = []
        for i, (sampled, rep) in enumerate(zip(self._reps, latency.repetitions, strict=True)):
            window, power = sampled.trace.last_window(), sampled.power
            if window is None:
                return energy.absent(method, f"repetition {i + 1}: no start/end marks from the benchmark wrapper",
                                     simulated=self.simulated)
            measured_s = _measured_s(rep)
            last_t = power[-1][0] if power else 0
            if last_t < window[1] - int(3 * cfg.interval_s * 1e9) - int(0.5e9):
                seen = f"its last sample came {(window[1] - last_t) / 1e9:.2f} s before" if power else "no samples by"
                return energy.absent(method, f"repetition {i + 1}: the power sampler stopped mid-run ({seen} "
                                     "the benchmark ended); latency is unaffected", simulated=self.simulated)
            reps.append(energy.RepetitionPower(power, window[0], window[1], measured_s, rep.n))
        return energy.energy_per_inference(reps, method=method, simulated=self.simulated)

    def _windows(self, latency: Latency | None) -> list[tuple[int, int] | None]:
        """Each repetition's measured window (unix ns): the last ``sum(latencies)`` before the benchmark ended."""
        reps = latency.repetitions if latency is not None else ()
        out: list[tuple[int, int] | None] = []
        for sampled, rep in zip(self._reps, reps, strict=False):
            bench = sampled.trace.last_window()
            out.append((bench[1] - int(_measured_s(rep) * 1e9), bench[1]) if bench else None)
        return out

    def _thermal(self, latency: Latency | None) -> Thermal | None:
        after = self._safe("thermal", lambda: thermal.read_snapshot(self.device, self.thermal_cfg))
        if self.before is None or after is None:
            return None
        samples = latency.samples_us if latency is not None else []
        reasons = throttle.assess(self.before, after, samples, self.limits, self.thermal_cfg.throttle_status)
        method = thermal.describe(self.before, after)
        if self.cooldown is not None and self.cooldown.ended_by not in ("off",):
            method += f"; cooldown {self.cooldown_cfg.mode}: {self.cooldown.ended_by}"
        other_cpu = contention.summarize([r.other_cpu for r in self._reps])
        if other_cpu is not None:
            method += f"; other work on the host CPUs: {contention.METHOD}"
        return Thermal(method=method, before_c=dict(self.before.zones_c), after_c=dict(after.zones_c),
                       cooldown_s=self.cooldown.waited_s if self.cooldown and self.cooldown.ended_by != "off" else None,
                       throttled=bool(reasons), throttle_reasons=reasons,
                       status_before=self.before.status, status_after=after.status,
                       freq_ratio_before=self.before.freq_ratio, freq_ratio_after=after.freq_ratio,
                       other_cpu_fraction=other_cpu)


@dataclass(frozen=True)
class _Sampled:
    """What the samplers kept of one repetition: probe trace, power ``(unix_ns, mW)``, memory rows."""

    trace: probe.Trace
    power: tuple[tuple[int, float], ...]
    memory_rows: tuple[tuple[int, str, int], ...]
    memory_method: str
    other_cpu: float | None = None  # share of all host CPUs other work used (host only)


def _measured_s(rep: Repetition) -> float:
    """Seconds the measured iterations took (their samples, else the tool's count x average)."""
    return sum(rep.samples_us) / 1e6 if rep.samples_us else (rep.count or 0) * (rep.avg_us or 0) / 1e6
