"""The one object the orchestrator calls around a case: cooldown, then the samplers the device's probes allow.

```python
sampling = CaseSampling(device, profile, suite_cooldown)
sampling.before_case()                        # cooldown wait, each sampler's per-case hook
for i in range(repetitions):
    with sampling.around_repetition() as dev:  # dev: the device, benchmark commands wrapped
        outcome = strategy(dev, ...)
memory, energy, thermal = sampling.finish(latency, runner_memory)
```

:func:`select` maps ``device.capabilities().probes`` to samplers (:mod:`harness.samplers.base`);
``CaseSampling`` only composes them: per-case hooks in order, every per-repetition sampler entered
around the block with the shared sources of :class:`~harness.samplers.run.RepetitionRun`, and the
three records from their readings. Inside :meth:`CaseSampling.around_repetition` every shell command
is wrapped (:func:`harness.samplers.probe.wrap_benchmark`) so the benchmark's pid and its start/end
marks are known; the last wrapped command of a repetition is the benchmark.

A device without a shell (an :class:`~harness.devices.base.AppHost`) gets no samplers here: its
readings arrive through the app observers (see :mod:`harness.samplers.base`). A sampler that fails
never fails the case: latency is kept, and the energy/memory record says what went wrong.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

from harness.devices.base import AppHost, Capabilities, Device, ShellDevice, ShellResult
from harness.results import DeviceInfo, Energy, Latency, Memory, Thermal
from harness.samplers import app, contention, context, cooldown, energy, memory, probe, thermal, throttle
from harness.samplers.base import SAMPLER_ERRORS, RepetitionReadings, Sampler
from harness.samplers.run import RepetitionRun

log = logging.getLogger(__name__)
T = TypeVar("T")


class SampledDevice(ShellDevice):
    """A :class:`ShellDevice` whose every shell command is wrapped for the samplers; the rest delegates."""

    def __init__(self, device: ShellDevice, paths: probe.ProbePaths) -> None:
        super().__init__(device.id)
        self.device = device
        self.paths = paths
        self.platform = device.platform
        self.cancel = device.cancel
        #: For callers that still read the attribute rather than ``capabilities().shares_host_fs``.
        self.shares_host_fs = device.capabilities().shares_host_fs

    def shell(self, command: str, timeout_s: float = 60.0) -> ShellResult:
        result = self.device.shell(probe.wrap_benchmark(command, self.paths), timeout_s=timeout_s)
        return ShellResult(command, result.output, result.exit_code, result.duration_s)

    def capabilities(self) -> Capabilities:
        return self.device.capabilities()

    def info(self) -> DeviceInfo:
        return self.device.info()

    def push(self, local: Path, remote: str) -> bool:
        return self.device.push(local, remote)

    def pull(self, remote: str, local: Path) -> Path:
        return self.device.pull(remote, local)

    def workdir(self) -> str:
        return self.device.workdir()

    def python(self) -> str | None:
        return self.device.python()

    def pyrunner_launcher(self) -> tuple[str, ...]:
        return self.device.pyrunner_launcher()

    def cancelled(self) -> bool:
        return self.device.cancelled()

    def close(self) -> None:
        """The wrapper owns no transport: closing it leaves the device open."""


def select(device: ShellDevice, profile: Any | None, energy_cfg: energy.EnergyConfig | None = None) -> list[Sampler]:
    """The samplers ``device.capabilities().probes`` allow, configured from the profile's tables."""
    extra = dict(getattr(profile, "extra", {}) or {})
    probes = device.capabilities().probes
    energy_cfg = energy_cfg or energy.EnergyConfig.from_profile(extra.get("energy"), probes)
    out: list[Sampler] = []
    if probes & set(thermal.PROBES):
        out.append(thermal.ThermalSampler(
            device, thermal.ThermalConfig.from_profile(extra.get("thermal"), extra.get("cooldown"))))
    if "host_process" in probes:
        out.append(memory.HostProcessMemory())
    if "proc_status" in probes:
        out.append(memory.ProcStatusMemory())
    if "host_cpu" in probes:
        out.append(contention.HostCpuSampler())
    elif "proc_stat" in probes:
        out.append(contention.ProcStatSampler())
    power = [p for p in ("rapl", "power_supply") if p in probes]
    # one energy source per case: the profile's, else the first the device offers
    source = energy_cfg.source if energy_cfg.source in power else (power[0] if power else None)
    if source == "rapl":
        out.append(energy.RaplEnergy(energy_cfg))
    elif source == "power_supply":
        out.append(energy.PowerSupplyEnergy(device, energy_cfg, getattr(profile, "name", "") or "no profile"))
    return out


class CaseSampling:
    """Samplers for one case on one device (see module doc). ``profile``: a ``harness.profiles.Profile`` or None."""

    def __init__(self, device: Device, profile: Any | None, suite_cooldown: dict | None = None) -> None:
        self.device = device
        extra = dict(getattr(profile, "extra", {}) or {})
        self.energy_cfg = energy.EnergyConfig.from_profile(extra.get("energy"), device.capabilities().probes)
        shell = device if device.capabilities().shell and isinstance(device, ShellDevice) else None
        self.enabled = shell is not None
        self.samplers: list[Sampler] = select(shell, profile, self.energy_cfg) if shell is not None else []
        self.cooldown_cfg = cooldown.CooldownConfig.merge(suite_cooldown, extra.get("cooldown"))
        self.limits = throttle.ThrottleLimits.from_profile(extra.get("throttle"))
        self.problems: list[str] = []
        self.cooldown: cooldown.CooldownOutcome | None = None
        self._reps: list[RepetitionReadings] = []

    def _safe(self, what: str, fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except SAMPLER_ERRORS as exc:
            self._problem(what, exc)
            return None

    def _problem(self, what: str, exc: BaseException) -> None:
        self.problems.append(f"{what}: {exc}")
        log.warning("[%s] sampler %s failed: %s", self.device.id, what, exc)

    def _one(self, kind: type[T]) -> T | None:
        return next((s for s in self.samplers if isinstance(s, kind)), None)

    # -- around the case ----------------------------------------------------------------------
    def before_case(self) -> None:
        """Cool down (watching the thermal sampler's temperature), then each sampler's per-case hook."""
        if not self.enabled:
            return
        watch = self._one(thermal.ThermalSampler)
        read_c = watch.watched_c if watch is not None else (lambda: None)
        label = f"[{self.device.id}] "
        self.cooldown = self._safe("cooldown", lambda: cooldown.wait(self.cooldown_cfg, read_c, label=label))
        for sampler in self.samplers:
            self._safe(sampler.label, sampler.before_case)

    def min_duration_s(self) -> tuple[float, str] | None:
        """What the case's samplers need of each repetition's measured window (s) and why; None: nothing.

        Called after :meth:`before_case` (a charging device's battery sampler needs nothing: it makes no figure).
        An app host with the ``app_memory`` probe needs its monitor's rows while the app runs
        (:func:`harness.samplers.app.memory_min_duration_s`, at the pace the device says its monitor kept).
        """
        if not self.enabled:
            caps = self.device.capabilities()
            if not (caps.app_host and "app_memory" in caps.probes):
                return None
            return app.memory_min_duration_s(cast(AppHost, self.device).monitor_interval_s())
        source = self._one(energy.RaplEnergy) or self._one(energy.PowerSupplyEnergy)
        need = source.min_duration_s() if source is not None else None
        if not need:
            return None
        pace = self._observed_interval_s(source.name)
        if pace is not None and pace > self.energy_cfg.interval_s:  # a loaded device samples slower than asked
            return (need * pace / self.energy_cfg.interval_s,
                    f"{energy.DURATION_INTERVALS} {source.label} power samples at the {pace * 1000:.0f} ms "
                    f"observed (asked {self.energy_cfg.interval_s * 1000:g} ms)")
        return need, (f"{energy.DURATION_INTERVALS} {source.label} power samples at "
                      f"{self.energy_cfg.interval_s * 1000:g} ms")

    def _observed_interval_s(self, sampler: str) -> float | None:
        """The median time between two power samples of the last repetition, or None before one ran."""
        reading = self._reps[-1].get(sampler) if self._reps else None
        times = [t for t, _ in reading.power] if reading is not None else []
        gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False))
        return gaps[len(gaps) // 2] / 1e9 if gaps else None

    def discard_last(self) -> None:
        """Forget the last repetition's readings (a calibration repetition whose figures are not kept)."""
        if self._reps:
            self._reps.pop()

    def context(self) -> dict[str, str]:
        """The device's part of the run context at the case's start (:mod:`harness.samplers.context`)."""
        if not self.enabled:
            return {}
        out = self._safe("context", lambda: context.device_part(cast(ShellDevice, self.device))) or {}
        watch = self._one(thermal.ThermalSampler)
        if watch is not None and watch.before is not None:
            if watch.before.status is not None:
                out["thermal_status"] = str(watch.before.status)
            if watch.before.freq_ratio is not None:
                out["freq_caps"] = context.caps_text(watch.before.freq_ratio)
        battery = self._one(energy.PowerSupplyEnergy)
        if battery is not None and battery.checked:
            out["charging"] = "charging or powered" if battery.refusal else "on battery"
        return out

    @contextlib.contextmanager
    def around_repetition(self) -> Iterator[Any]:
        """Yield the device to run one repetition on; the per-repetition samplers run while the block does."""
        samplers = [s for s in self.samplers if s.per_repetition]
        if not samplers:
            yield self.device
            return
        run = RepetitionRun(cast(ShellDevice, self.device), self.energy_cfg.interval_s)
        slots = {}
        with contextlib.ExitStack() as stack:
            for sampler in samplers:
                try:
                    slots[sampler.name] = stack.enter_context(sampler.repetition(run))
                except SAMPLER_ERRORS as exc:
                    self._problem(sampler.label, exc)
            try:
                stack.enter_context(run.sources())
            except SAMPLER_ERRORS as exc:
                self._problem("probe start", exc)
                yield self.device
                return
            yield SampledDevice(cast(ShellDevice, self.device), run.paths)
        self.problems.extend(run.problems)
        readings = tuple(s.reading for s in slots.values() if s.reading is not None)
        self._reps.append(RepetitionReadings(run.trace.last_window(), readings))

    # -- soak runs (harness.soak) ------------------------------------------------------------------
    def snapshot(self) -> thermal.ThermalSnapshot | None:
        """The device's thermal state now (None: no thermal probes, or the read failed: the problem is kept)."""
        sampler = self._one(thermal.ThermalSampler) if self.enabled else None
        return self._safe("thermal", sampler.snapshot) if sampler is not None else None

    @property
    def start_snapshot(self) -> thermal.ThermalSnapshot | None:
        """The snapshot taken before the case (after any cooldown)."""
        sampler = self._one(thermal.ThermalSampler)
        return sampler.before if sampler is not None else None

    @property
    def throttle_status(self) -> int:
        """The thermal status the profile counts as throttled."""
        sampler = self._one(thermal.ThermalSampler)
        return sampler.cfg.throttle_status if sampler is not None else thermal.ThermalConfig().throttle_status

    def energy_of(self, indices: list[int], latency: Latency) -> Energy | None:
        """Energy per inference of the repetitions ``indices`` (of this case, in order) alone; None: no source."""
        source = self._one(energy.RaplEnergy) or self._one(energy.PowerSupplyEnergy)
        if source is None or not indices or len(self._reps) != len(latency.repetitions):
            return None  # a repetition without its readings: no window can be matched to its power
        part = Latency(latency.method, tuple(latency.repetitions[i] for i in indices))
        return source.energy([self._reps[i] for i in indices], part, self.problems)

    # -- records ------------------------------------------------------------------------------
    def finish(self, latency: Latency | None, runner_memory: Memory | None) -> tuple[Memory | None, Energy | None,
                                                                                      Thermal | None]:
        """Memory (runner's + polled), energy per inference (or why not) and thermal state with throttling."""
        if not self.enabled:
            return runner_memory, None, None
        return self._memory(latency, runner_memory), self._energy(latency), self._thermal(latency)

    def _memory(self, latency: Latency | None, runner_memory: Memory | None) -> Memory | None:
        """The runner's record completed with every memory reading, each summarized over its measured window."""
        reps = latency.repetitions if latency is not None else ()
        polled = []
        for sampled, rep in zip(self._reps, reps, strict=False):
            end = sampled.window[1] if sampled.window else None
            window = (end - int(energy.measured_s(rep) * 1e9), end) if end is not None else None
            polled += [memory.summarize(r.memory, window, r.method) for r in sampled.readings if r.memory]
        return memory.combine(runner_memory, polled)

    def _energy(self, latency: Latency | None) -> Energy | None:
        source = self._one(energy.RaplEnergy) or self._one(energy.PowerSupplyEnergy)
        return source.energy(self._reps, latency, self.problems) if source is not None else None

    def _thermal(self, latency: Latency | None) -> Thermal | None:
        sampler = self._one(thermal.ThermalSampler)
        if sampler is None or sampler.before is None:
            return None
        before = sampler.before
        after = self._safe("thermal", sampler.snapshot)
        if after is None:
            return None
        samples = latency.samples_us if latency is not None else []
        # the host's psutil reading or a device's /proc/stat one: the same field, so drift attribution reads either
        cpu_readings = [r for s in self._reps for r in s.readings if r.other_cpu is not None]
        shares = [r.other_cpu for r in cpu_readings]
        other_cpu, other_max = contention.summarize(shares), contention.peak(shares)
        judged = throttle.judge(before, after, samples, self.limits, sampler.cfg.throttle_status, other_max)
        reasons = judged.reasons
        method = thermal.describe(before, after)
        if self.cooldown is not None and self.cooldown.ended_by not in ("off",):
            method += f"; cooldown {self.cooldown_cfg.mode}: {self.cooldown.ended_by}"
        if other_cpu is not None:
            where = "host" if cpu_readings[0].sampler == contention.HostCpuSampler.name else "device"
            method += f"; other work on the {where} CPUs: {cpu_readings[0].method}"
        return Thermal(method=method, before_c=dict(before.zones_c), after_c=dict(after.zones_c),
                       cooldown_s=self.cooldown.waited_s if self.cooldown and self.cooldown.ended_by != "off" else None,
                       throttled=bool(reasons), throttle_reasons=reasons,
                       status_before=before.status, status_after=after.status,
                       freq_ratio_before=before.freq_ratio, freq_ratio_after=after.freq_ratio,
                       other_cpu_fraction=other_cpu, other_cpu_max=other_max, drift=judged.drift,
                       drift_cause=judged.drift_cause, drift_why=judged.drift_why)
