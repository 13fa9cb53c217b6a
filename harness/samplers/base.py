"""The sampler seam: what one sampler is, and what it hands back for each repetition.

A :class:`Sampler` serves one kind of reading (one name of :data:`harness.devices.base.PROBES`, or
``thermal`` for the zone/thermalservice/cpufreq snapshots). :class:`~harness.samplers.case.CaseSampling`
picks the samplers a device's ``capabilities().probes`` allow (never its ``platform``) and composes them:

```python
sampler.before_case()                      # optional: battery state, RAPL domains, thermal snapshot
with sampler.repetition(run) as slot:      # one repetition of the benchmark runs inside
    ...
slot.reading                               # Reading (method text, sample count, rows) or None
```

``run`` (:class:`~harness.samplers.run.RepetitionRun`) is what the samplers of one repetition share:
the wrapped benchmark's pid/marks files, the psutil poller of its host pid, and the ONE on-device
loop (``proc_status`` and ``power_supply`` both ask it for rows; it is started once, after every
sampler asked, and stopped before any sampler reads). A sampler that fails never fails the case:
its problem goes into the record and the case keeps its latency.

Why the iOS app readings (:mod:`harness.samplers.app`) are not samplers of this kind: an
:class:`~harness.devices.base.AppHost` runs no shell command to wrap and no loop to start; its
backend *pushes* the streams (log lines, battery registry, sysmontap rows) into
:class:`~harness.devices.base.AppObserver` objects while ``run_app`` runs, and the app runner needs
the log lines as its own raw output. The observers are chosen from the same ``probes`` names
(``app_log``, ``app_battery``, ``app_memory``) by :func:`harness.samplers.app.run_app_benchmark`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.samplers.run import RepetitionRun

#: What a failing sampler may raise without failing the case (anything else is a bug and propagates).
SAMPLER_ERRORS = (HarnessError, OSError, ValueError)


@dataclass(frozen=True)
class Reading:
    """What one sampler kept of one repetition.

    ``memory``: rows ``(unix_ns, VmHWM|VmRSS|RSS, kB)``; ``power``: rows ``(unix_ns, mW)``;
    ``other_cpu``: share (0..1) of all host CPUs other work used. ``samples``: how many readings.
    """

    sampler: str
    method: str
    samples: int
    memory: tuple[tuple[int, str, int], ...] = ()
    power: tuple[tuple[int, float], ...] = ()
    other_cpu: float | None = None


@dataclass
class Slot:
    """Filled when a sampler's repetition block ends (stays None when the sampler had nothing)."""

    reading: Reading | None = None


class Sampler(Protocol):
    """One job: one kind of reading (see module doc).

    ``name``: the probe it serves; ``label``: how its problems are named in a record;
    ``per_repetition``: False for samplers that only read around the case (thermal snapshots).
    """

    name: str
    label: str
    per_repetition: bool

    def before_case(self) -> None:
        """Per-case preparation before the first repetition (may raise one of :data:`SAMPLER_ERRORS`)."""

    def repetition(self, run: RepetitionRun) -> AbstractContextManager[Slot]:
        """Sample while the block runs; the yielded slot holds the reading once the block ended."""


class SamplerBase:
    """Defaults for the optional parts of :class:`Sampler`."""

    name = ""
    label = ""
    per_repetition = True

    def before_case(self) -> None:
        """Nothing to prepare by default."""


@dataclass(frozen=True)
class RepetitionReadings:
    """One repetition's benchmark window ``(start, end)`` unix ns (None: no marks) and each sampler's reading."""

    window: tuple[int, int] | None
    readings: tuple[Reading, ...] = ()

    def get(self, sampler: str) -> Reading | None:
        return next((r for r in self.readings if r.sampler == sampler), None)
