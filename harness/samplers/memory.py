"""Resident memory of the benchmark process: peak and steady, with the method that gave each number.

Methods, best first for the peak:
- the runner's own ``ru_maxrss`` / the tool's footprint lines (the kernel's high-water mark, exact),
- ``/proc/<pid>/status`` ``VmHWM`` polled on the device by the probe loop (Android/Linux),
- psutil polling of the benchmark child's RSS (host; a peak between two polls can be missed),
- ``dumpsys meminfo`` TOTAL PSS (app-based runners on Android: proportional, shared pages split).
Steady = median RSS of the polls taken while the benchmark ran. MB = 2^20 bytes.
"""

from __future__ import annotations

import contextlib
import shlex
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from harness.devices.base import ShellDevice
from harness.devices.host import benchmark_pid
from harness.results import Memory
from harness.samplers.base import Reading, SamplerBase, Slot
from harness.samplers.parsers import parse_meminfo

if TYPE_CHECKING:
    from harness.samplers.run import RepetitionRun

KB_PER_MB = 1024.0


@dataclass(frozen=True)
class PolledMemory:
    """Polled readings of one repetition, MB."""

    method: str
    peak_mb: float | None
    steady_mb: float | None
    samples: int


class HostMemoryPoller:
    """Polls the RSS of the process whose pid appears in ``pid_file`` (host), every ``interval_s``."""

    method_template = "psutil RSS of the benchmark child every {ms:g} ms"

    def __init__(self, pid_file: Path, interval_s: float = 0.02) -> None:
        self._pid_file = pid_file
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._rows: list[tuple[int, str, int]] = []
        self.cpu_s: float | None = None  # the child's user+system CPU seconds at the last poll
        self._thread = threading.Thread(target=self._run, name="memory-poller", daemon=True)

    def start(self) -> HostMemoryPoller:
        self._thread.start()
        return self

    def _run(self) -> None:
        proc: psutil.Process | None = None
        while not self._stop.is_set():
            try:
                if proc is None and self._pid_file.is_file():
                    text = self._pid_file.read_text().strip()
                    target = benchmark_pid(int(text)) if text.isdigit() else None  # a zygote's child: itself
                    proc = psutil.Process(target) if target is not None else None
                if proc is not None:
                    self._rows.append((time.time_ns(), "RSS", proc.memory_info().rss // 1024))
                    cpu = proc.cpu_times()
                    self.cpu_s = cpu.user + cpu.system
            except (psutil.NoSuchProcess, psutil.AccessDenied, OSError, ValueError):
                pass
            self._stop.wait(self.interval_s)

    def stop(self) -> tuple[tuple[int, str, int], ...]:
        """Rows ``(unix_ns, "RSS", kB)``."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        return self.rows

    @property
    def rows(self) -> tuple[tuple[int, str, int], ...]:
        """The rows polled so far ``(unix_ns, "RSS", kB)``."""
        return tuple(self._rows)


class HostProcessMemory(SamplerBase):
    """``host_process``: RSS of the benchmark's host pid, from the repetition's shared psutil poller."""

    name = "host_process"
    label = "memory"

    @contextlib.contextmanager
    def repetition(self, run: RepetitionRun) -> Iterator[Slot]:
        poller, slot = run.host_process(), Slot()
        yield slot
        rows = poller.rows
        method = HostMemoryPoller.method_template.format(ms=poller.interval_s * 1000)
        slot.reading = Reading(self.name, method, len(rows), memory=rows)


class ProcStatusMemory(SamplerBase):
    """``proc_status``: ``/proc/<pid>/status`` VmHWM/VmRSS rows from the repetition's on-device loop."""

    name = "proc_status"
    label = "memory"

    @contextlib.contextmanager
    def repetition(self, run: RepetitionRun) -> Iterator[Slot]:
        run.device_memory()
        slot = Slot()
        yield slot
        rows = run.trace.memory
        method = f"/proc/<pid>/status VmHWM/VmRSS polled on the device every {run.interval_s * 1000:g} ms"
        slot.reading = Reading(self.name, method, sum(1 for _, key, _ in rows if key == "VmRSS"), memory=rows)


def summarize(rows: Sequence[tuple[int, str, int]], window: tuple[int, int] | None, method: str) -> PolledMemory:
    """Rows ``(unix_ns, VmHWM|VmRSS|RSS, kB)`` of one repetition: peak = highest VmHWM (else RSS) seen;
    steady = median RSS inside the measured ``window`` (unix ns), else over all rows."""
    hwm = [kb for _, key, kb in rows if key == "VmHWM"]
    rss = [(t, kb) for t, key, kb in rows if key in ("VmRSS", "RSS")]
    inside = [kb for t, kb in rss if window and window[0] <= t <= window[1]] or [kb for _, kb in rss]
    peak = max(hwm or [kb for _, kb in rss] or [0])
    return PolledMemory(
        method=method,
        peak_mb=peak / KB_PER_MB if peak else None,
        steady_mb=statistics.median(inside) / KB_PER_MB if inside else None,
        samples=len(rss),
    )


def meminfo_pss(device: ShellDevice, process: str | int) -> PolledMemory:
    """``dumpsys meminfo PROCESS`` TOTAL PSS, for app-based runners (one reading)."""
    out = device.shell(f"dumpsys meminfo {shlex.quote(str(process))}", timeout_s=30).output
    return pss_from_meminfo(out)


def pss_from_meminfo(text: str) -> PolledMemory:
    info = parse_meminfo(text)
    pss = info.total_pss_kb / KB_PER_MB if info.total_pss_kb is not None else None
    return PolledMemory(method="dumpsys meminfo TOTAL PSS", peak_mb=None, steady_mb=pss,
                        samples=1 if pss is not None else 0)



def combine(runner: Memory | None, polled: Sequence[PolledMemory]) -> Memory | None:
    """The runner's memory record completed with the polled readings; ``method`` names every source used.

    The peak stays the runner's kernel high-water mark when it has one (a poll can miss a short spike);
    otherwise the polled peak. The steady RSS (median over polls) goes in ``notes`` with its sample count.
    """
    usable = [p for p in polled if p.samples]
    if not usable:
        return runner
    peaks = [p.peak_mb for p in usable if p.peak_mb is not None]
    steadies = [p.steady_mb for p in usable if p.steady_mb is not None]
    n = sum(p.samples for p in usable)
    poll_method = usable[0].method
    steady = statistics.median(steadies) if steadies else None
    polled_peak = max(peaks) if peaks else None
    notes = "; ".join(x for x in (
        f"steady RSS {steady:.1f} MB (median over the measured window; {n} polls in all)" if steady is not None else "",
        f"polled peak {polled_peak:.1f} MB" if polled_peak is not None else "",
    ) if x)
    if runner is None or runner.peak_rss_mb is None:
        base = runner or Memory(method="")
        method = f"peak and steady: {poll_method}" + (f"; {base.method}" if base.method else "")
        return replace(base, method=method, peak_rss_mb=polled_peak, steady_rss_mb=steady,
                       samples=base.samples + n, notes="; ".join(x for x in (base.notes, notes) if x))
    method = f"peak: {runner.method}; steady: {poll_method}"
    return replace(runner, method=method, steady_rss_mb=steady, samples=runner.samples + n,
                   notes="; ".join(x for x in (runner.notes, notes) if x))
