"""How much of the host's CPU other work took while a benchmark ran.

On a shared machine (a CI runner, a laptop with a browser open) other processes compete for the
cores: latency rises and spreads, and multi-threaded cases suffer most. The reading, per repetition:

    other = (system busy CPU time - the benchmark child's CPU time) / (wall time x CPUs)

System busy time is psutil's ``cpu_times()`` summed over every state but idle and iowait, taken at the
start and end of the repetition; the child's CPU time is its last ``cpu_times()`` seen by the memory
poller (every 20 ms, so at most one poll interval of it is missed). 0 means the benchmark had the
machine to itself (the harness's own sampler threads count as other work, a few percent at most);
0.5 means other work kept half of all CPUs busy.

On an Android or Linux device (probe ``proc_stat``, :class:`ProcStatSampler`) the same reading comes from
the device's own counters, polled by the repetition's on-device loop (:mod:`harness.samplers.probe`):

    other = (busy ticks of all CPUs - the benchmark's ticks) / total ticks of all CPUs

``/proc/stat``'s ``cpu`` line over the benchmark's window (the loop's rows bracketing its start/end
marks), the benchmark's ``utime+stime`` (and its reaped children's) from the last ``/proc/<pid>/stat`` row
seen before it exited: at most one loop interval of its own time is missed and counted as other work, as
is the sampling loop itself (a shell builtin ``read`` per tick, well under 1% of a CPU).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psutil

from harness.samplers import probe
from harness.samplers.base import Reading, SamplerBase, Slot

if TYPE_CHECKING:
    from harness.samplers.run import RepetitionRun

METHOD = ("psutil: system busy CPU time minus the benchmark child's CPU time, over each repetition's wall time "
          "x CPUs; median over repetitions")


def _busy_s(times: Any) -> float:
    fields = times._asdict()
    return sum(v for k, v in fields.items() if k not in ("idle", "iowait", "guest", "guest_nice"))


@dataclass
class HostCpuMeter:
    """Started with a repetition, stopped with the child's CPU seconds: the share other work took."""

    started_s: float = 0.0
    busy0_s: float = 0.0

    def start(self) -> HostCpuMeter:
        self.started_s, self.busy0_s = time.monotonic(), _busy_s(psutil.cpu_times())
        return self

    def stop(self, child_cpu_s: float | None) -> float | None:
        """Share of all CPUs (0..1) other work used, or None when the child's CPU time is unknown."""
        wall_s = time.monotonic() - self.started_s
        if child_cpu_s is None or wall_s <= 0:
            return None
        busy_s = _busy_s(psutil.cpu_times()) - self.busy0_s
        cpus = psutil.cpu_count() or 1
        return min(1.0, max(0.0, (busy_s - child_cpu_s) / (wall_s * cpus)))


class HostCpuSampler(SamplerBase):
    """``host_cpu``: the share of the host's CPUs other work took during the repetition.

    The benchmark child's CPU seconds come from the repetition's shared psutil poller (the one
    ``host_process`` reads memory from), so the pid is polled once for both readings.
    """

    name = "host_cpu"
    label = "cpu"

    @contextlib.contextmanager
    def repetition(self, run: RepetitionRun) -> Iterator[Slot]:
        poller, slot = run.host_process(), Slot()
        meter = HostCpuMeter().start()
        yield slot
        other = meter.stop(poller.cpu_s)
        slot.reading = Reading(self.name, METHOD, 1 if other is not None else 0, other_cpu=other)


DEVICE_METHOD = ("/proc/stat on the device: busy ticks of all CPUs minus the benchmark's /proc/<pid>/stat ticks, "
                 "over total ticks, in each repetition's window; median over repetitions")


def device_other_share(trace: probe.Trace) -> float | None:
    """Share (0..1) of the device's CPUs other work used in the benchmark's window, or None when unknown."""
    window = trace.last_window()
    if window is None or len(trace.cpu) < 2:
        return None
    start, end = window
    before = [row for row in trace.cpu if row[0] <= start]
    after = [row for row in trace.cpu if row[0] >= end]
    first = before[-1] if before else trace.cpu[0]
    last = after[0] if after else trace.cpu[-1]
    busy, total = last[1] - first[1], last[2] - first[2]
    ticks = [n for t, n in trace.proc if t >= start]
    if total <= 0 or not ticks:
        return None
    return min(1.0, max(0.0, (busy - max(ticks)) / total))


class ProcStatSampler(SamplerBase):
    """``proc_stat``: the share of the device's CPUs other work took during the repetition (see module doc)."""

    name = "proc_stat"
    label = "cpu"

    @contextlib.contextmanager
    def repetition(self, run: RepetitionRun) -> Iterator[Slot]:
        slot = Slot()
        run.device_cpu()
        yield slot
        other = device_other_share(run.trace)
        slot.reading = Reading(self.name, DEVICE_METHOD, len(run.trace.cpu), other_cpu=other)


def summarize(fractions: Sequence[float | None]) -> float | None:
    """One figure per case: the median over repetitions that have one."""
    known = [f for f in fractions if f is not None]
    return statistics.median(known) if known else None


def peak(fractions: Sequence[float | None]) -> float | None:
    """The largest share over repetitions (what the drift's attribution reads: contention in any part of the run)."""
    known = [f for f in fractions if f is not None]
    return max(known) if known else None
