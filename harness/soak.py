"""Soak runs: a case run back to back for ``duration_s``, its latency, thermal state and energy per window.

Users ask for this because the ranking of devices at minute 1 is not the ranking at minute 30: a phone
heats, throttles and slows. The suite asks for it with ``soak = { duration_s = 600, window_s = 30 }``
(``[suite]`` for every model, or one ``[[models]]`` entry). The orchestrator then runs repetitions (each a
separate process, as always) back to back until ``duration_s`` has passed (:mod:`harness.schedule`), takes a
thermal snapshot after each, and this module turns what it saw into windows and figures (pure; :class:`SoakRecorder`):

- **placing iterations in time**: a repetition's measured iterations run back to back at the end of its
  process, so iteration k ended ``sum(samples after k)`` before the repetition ended (the time the
  harness saw its command return, seconds since the soak began). A tool that gives only aggregates puts
  the whole repetition (its median) at its end.
- **per window** ``[k * window_s, (k + 1) * window_s)`` (the last one also holds the iterations of the
  repetition that was running when ``duration_s`` ran out): p50 and p90 of the iterations that ended in it
  (numpy's linear quantiles, as :mod:`harness.stats`), its iteration count, mean, throughput = 1e6 / mean
  (inferences per second of inference time: process start-up between repetitions is not counted; the mean,
  not the median, because a CPU quota or a duty cycle stalls some iterations and not others, and the
  total time is what a throughput is), the thermal snapshots taken in it (zones at the last one, the
  highest thermal status, the lowest frequency cap) and energy per inference over the repetitions that
  ended in it.
- **time to first throttle**: seconds from the start to the first snapshot with thermal or frequency
  evidence (cpufreq cap below the profile's ``[throttle] min_freq_ratio`` of max, or thermal status at or
  past ``[thermal] throttle_status``); its resolution is one repetition. Latency alone never counts as
  throttling here (a busy host slows a benchmark too).
- **sustained / peak**: peak = the fastest window's throughput (a maximum, so on a noisy device it sits
  above the typical window: read it with the curve); sustained = the median throughput of the last third
  of the windows (at least one). Windows with fewer than :data:`MIN_WINDOW_ITERATIONS` iterations are left
  out of both.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from harness.results import Energy, Repetition, Soak, SoakWindow
from harness.samplers.thermal import ThermalSnapshot

KEYS = ("duration_s", "window_s")
MAX_DURATION_S = 7 * 24 * 3600.0
MAX_WINDOWS = 10_000
MIN_WINDOW_ITERATIONS = 3


class SoakSettingError(ValueError):
    """A bad ``soak = {...}`` table: the key and what is wrong (the suite loader adds file and line)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason


HINT = "soak = { duration_s = 600, window_s = 30 } (seconds; duration at least one window, at most 10000 windows)"


@dataclass(frozen=True)
class SoakSettings:
    """``soak = { duration_s, window_s }``: how long to run the case, and the window the curve is cut into."""

    duration_s: float
    window_s: float

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> SoakSettings:
        """Checked values; :class:`SoakSettingError` naming the key otherwise."""
        for key in table:
            if key not in KEYS:
                raise SoakSettingError(key, f"unknown soak key {key!r} (allowed: {', '.join(KEYS)})")
        for key in KEYS:
            if key not in table:
                raise SoakSettingError(key, f"soak needs {key}")
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise SoakSettingError(key, f"{key} must be a number of seconds, got {value!r}")
            if not 0 < value <= MAX_DURATION_S:
                raise SoakSettingError(key, f"{key} must be > 0 and at most {MAX_DURATION_S:g} s, got {value}")
        duration, window = float(table["duration_s"]), float(table["window_s"])
        if window > duration:
            raise SoakSettingError("window_s", f"window_s ({window:g} s) is longer than duration_s ({duration:g} s)")
        if duration / window > MAX_WINDOWS:
            raise SoakSettingError("window_s", f"{duration / window:.0f} windows; at most {MAX_WINDOWS}")
        return cls(duration, window)

    def as_table(self) -> dict[str, float]:
        return {"duration_s": self.duration_s, "window_s": self.window_s}

    @property
    def n_windows(self) -> int:
        return max(1, math.ceil(self.duration_s / self.window_s - 1e-9))


@dataclass(frozen=True)
class ThrottleTest:
    """What counts as throttled in a snapshot: the profile's frequency floor and thermal status level."""

    min_freq_ratio: float = 0.9
    throttle_status: int = 2

    def evidence(self, snap: ThermalSnapshot) -> str | None:
        if snap.status is not None and snap.status >= self.throttle_status:
            return f"thermal status {snap.status} >= {self.throttle_status}"
        ratio = snap.freq_ratio
        if ratio is not None and ratio < self.min_freq_ratio:
            return f"cpufreq cap {ratio * 100:.0f}% of max (< {self.min_freq_ratio * 100:.0f}%)"
        return None

    def describe(self) -> str:
        return (f"throttled = cpufreq cap below {self.min_freq_ratio * 100:.0f}% of max or thermal status "
                f">= {self.throttle_status}")


@dataclass(frozen=True)
class RepetitionSeen:
    """One repetition of the soak: when its command returned (s since the start) and what it measured."""

    end_s: float
    repetition: Repetition


@dataclass
class SoakRecorder:
    """Collects repetitions and snapshots as the soak runs; :meth:`build` gives the :class:`Soak` record."""

    settings: SoakSettings
    test: ThrottleTest = field(default_factory=ThrottleTest)
    repetitions: list[RepetitionSeen] = field(default_factory=list)
    snapshots: list[tuple[float, ThermalSnapshot]] = field(default_factory=list)

    def add_repetition(self, end_s: float, repetition: Repetition) -> None:
        self.repetitions.append(RepetitionSeen(end_s, repetition))

    def add_snapshot(self, t_s: float, snap: ThermalSnapshot | None) -> None:
        if snap is not None:
            self.snapshots.append((t_s, snap))

    def window_of(self, t_s: float) -> int:
        """The window holding time ``t_s``; the last one also holds what ended after ``duration_s`` (the
        repetition running when the time ran out)."""
        return min(int(max(t_s, 0.0) // self.settings.window_s), self.settings.n_windows - 1)

    def build(self, elapsed_s: float, energy: Callable[[list[int]], Energy | None] | None = None,
              *, sampling_note: str = "") -> Soak:
        """The record: windows, time to first throttle, sustained/peak. ``energy(indices)`` gives the energy of
        the repetitions with those indices (None: the device measures none)."""
        w = self.settings.window_s
        count = self.settings.n_windows
        latencies: list[list[float]] = [[] for _ in range(count)]
        reps_in: list[list[int]] = [[] for _ in range(count)]
        for i, seen in enumerate(self.repetitions):
            reps_in[self.window_of(seen.end_s)].append(i)
            for t, value in iteration_times(seen):
                latencies[self.window_of(t)].append(value)
        snaps_in: list[list[ThermalSnapshot]] = [[] for _ in range(count)]
        for t, snap in self.snapshots:
            snaps_in[self.window_of(t)].append(snap)
        windows = []
        energy_method, simulated = None, False
        for k in range(count):
            window = window_figures(k, k * w, (k + 1) * w, latencies[k], len(reps_in[k]), snaps_in[k], self.test)
            if energy is not None:
                e = energy(reps_in[k]) if reps_in[k] else None
                if e is not None:
                    energy_method, simulated = e.method, simulated or e.simulated
                    window = replace(window, energy_per_inference_mj=e.per_inference_mj, energy_samples=e.samples,
                                     energy_reason=e.reason)
                elif not reps_in[k]:
                    window = replace(window, energy_reason="no repetition ended in this window")
            windows.append(window)
        onset, evidence = self.first_throttle()
        peak, sustained, n_sustained = sustained_peak(windows)
        return Soak(
            method=self.method(sampling_note), duration_s=self.settings.duration_s, window_s=w,
            elapsed_s=elapsed_s, windows=tuple(windows), snapshots=len(self.snapshots),
            time_to_throttle_s=onset, throttle_evidence=evidence, peak_ips=peak, sustained_ips=sustained,
            sustained_windows=n_sustained,
            sustained_peak_ratio=sustained / peak if peak and sustained is not None else None,
            energy_method=energy_method, energy_simulated=simulated,
        )

    def first_throttle(self) -> tuple[float | None, str | None]:
        """(seconds to the first throttled snapshot, its evidence), or (None, what the snapshots showed)."""
        for t, snap in self.snapshots:
            why = self.test.evidence(snap)
            if why is not None:
                return round(t, 3), why
        if not self.snapshots:
            return None, "no thermal snapshot (the device reads no thermal zones, cpufreq or thermalservice)"
        ratios = [s.freq_ratio for _, s in self.snapshots if s.freq_ratio is not None]
        statuses = [s.status for _, s in self.snapshots if s.status is not None]
        seen = [f"lowest cpufreq cap {min(ratios) * 100:.0f}% of max" if ratios else "no cpufreq",
                f"highest thermal status {max(statuses)}" if statuses else "no thermal status"]
        return None, f"not throttled in {len(self.snapshots)} snapshots ({', '.join(seen)})"

    def method(self, note: str = "") -> str:
        return (f"repetitions run back to back for {self.settings.duration_s:g} s ({len(self.repetitions)} "
                f"repetitions); iterations placed in time back from each repetition's end and cut into "
                f"{self.settings.window_s:g} s windows; p50/p90: linear quantiles of a window's iterations; "
                f"throughput = 1e6 / mean latency (inferences/s); peak = fastest window, sustained = median of "
                f"the last third of windows (windows with < {MIN_WINDOW_ITERATIONS} iterations left out); "
                f"thermal snapshot after each repetition ({len(self.snapshots)} in all), {self.test.describe()}"
                + (f"; {note}" if note else ""))


def iteration_times(seen: RepetitionSeen) -> list[tuple[float, float]]:
    """(end time s, latency us) of each measured iteration, back from the repetition's end (see module doc)."""
    rep = seen.repetition
    if not rep.samples_us:
        center = rep.center_us
        return [(seen.end_s, center)] if center is not None else []
    out, t = [], seen.end_s
    for value in reversed(rep.samples_us):
        out.append((t, value))
        t -= value / 1e6
    out.reverse()
    return out


def window_figures(index: int, start_s: float, end_s: float, latencies_us: Sequence[float], repetitions: int,
                   snaps: Sequence[ThermalSnapshot], test: ThrottleTest) -> SoakWindow:
    """One window's figures from its iterations and snapshots (energy is added by the caller)."""
    p50 = p90 = mean = ips = None
    if latencies_us:
        values = np.asarray(latencies_us, dtype=float)
        q50, q90 = np.quantile(values, [0.5, 0.9])
        p50, p90, mean = float(q50), float(q90), float(values.mean())
        ips = 1e6 / mean if mean > 0 else None
    statuses = [s.status for s in snaps if s.status is not None]
    ratios = [s.freq_ratio for s in snaps if s.freq_ratio is not None]
    return SoakWindow(
        index=index, start_s=round(start_s, 6), end_s=round(end_s, 6), iterations=len(latencies_us),
        repetitions=repetitions, p50_us=p50, p90_us=p90, mean_us=mean, throughput_ips=ips, snapshots=len(snaps),
        temps_c=dict(snaps[-1].zones_c) if snaps else {}, thermal_status=max(statuses) if statuses else None,
        freq_ratio=min(ratios) if ratios else None, throttled=any(test.evidence(s) for s in snaps),
    )


def sustained_peak(windows: Sequence[SoakWindow]) -> tuple[float | None, float | None, int]:
    """(peak, sustained, windows in the sustained median): see the module doc."""
    usable = [w.throughput_ips for w in windows
              if w.throughput_ips is not None and w.iterations >= MIN_WINDOW_ITERATIONS]
    if not usable:
        return None, None, 0
    tail = usable[-max(1, len(usable) // 3):]
    return max(usable), float(statistics.median(tail)), len(tail)


def summary_figures(soak: Soak) -> dict[str, Any]:
    """The derived figures for scripts (``harness run --json``): units in the names, counts beside them."""
    return {"duration_s": soak.duration_s, "window_s": soak.window_s, "elapsed_s": soak.elapsed_s,
            "windows": len(soak.windows), "snapshots": soak.snapshots, "time_to_throttle_s": soak.time_to_throttle_s,
            "throttle_evidence": soak.throttle_evidence, "peak_ips": soak.peak_ips, "sustained_ips": soak.sustained_ips,
            "sustained_windows": soak.sustained_windows, "sustained_peak_ratio": soak.sustained_peak_ratio}


def summary_line(soak: Soak) -> str:
    """One line for the terminal: windows, time to first throttle, sustained/peak, each with its unit."""
    onset = (f"first throttle at {soak.time_to_throttle_s:.1f} s ({soak.throttle_evidence})"
             if soak.time_to_throttle_s is not None else f"no throttle seen ({soak.throttle_evidence})")
    known = None not in (soak.sustained_peak_ratio, soak.sustained_ips, soak.peak_ips)
    ratio = (f"sustained/peak throughput {soak.sustained_peak_ratio:.2f} ({soak.sustained_ips:.1f} vs "
             f"{soak.peak_ips:.1f} inferences/s, 1e6/mean latency; sustained = median of the last "
             f"{soak.sustained_windows} window(s))" if known else "sustained/peak: no window with enough iterations")
    return (f"soak {soak.elapsed_s:.0f} s in {len(soak.windows)} windows of {soak.window_s:g} s: {onset}; {ratio}")
