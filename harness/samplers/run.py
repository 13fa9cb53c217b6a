"""What the samplers of one repetition share: the wrapped benchmark's files and the sources they poll.

Every shell command of the repetition is wrapped (:func:`harness.samplers.probe.wrap_benchmark`) to
write its pid and ``S``/``E`` marks into :attr:`RepetitionRun.paths`; the last wrapped command is the
benchmark. Samplers *ask* for a shared source while entering their repetition block
(:meth:`RepetitionRun.host_process`, :meth:`RepetitionRun.device_memory`, :meth:`RepetitionRun.device_power`);
:meth:`RepetitionRun.sources` then starts what was asked -- one psutil poller of the host pid, ONE
on-device loop for memory and power together -- waits the idle time power samplers need, and on
exit stops them and reads the marks, before any sampler reads its rows.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from harness.devices.base import ShellDevice
from harness.samplers import probe
from harness.samplers.base import SAMPLER_ERRORS
from harness.samplers.memory import HostMemoryPoller

MAX_PROBE_S = 3600.0


class RepetitionRun:
    """One repetition being sampled (see module doc). ``interval_s``: the on-device loop's period."""

    def __init__(self, device: ShellDevice, interval_s: float) -> None:
        self.device = device
        self.paths = probe.new_paths(device)
        self.interval_s = interval_s
        self.on_host = device.capabilities().shares_host_fs  # pid and marks files are host paths
        self.trace = probe.Trace()
        self.problems: list[str] = []
        self._poller: HostMemoryPoller | None = None
        self._power: tuple[str, str] | None = None
        self._memory = False
        self._cpu = False
        self._idle_s = 0.0

    # -- what samplers ask for (while entering their block) -----------------------------------
    def host_process(self) -> HostMemoryPoller:
        """The psutil poller of the benchmark's host pid (one per repetition, shared)."""
        if not self.on_host:
            raise ValueError("the benchmark's pid is not a host pid on this device")
        if self._poller is None:
            self._poller = HostMemoryPoller(Path(self.paths.pid))
        return self._poller

    def device_memory(self) -> None:
        """Ask the on-device loop for ``/proc/<pid>/status`` rows (``trace.memory``)."""
        self._memory = True

    def device_cpu(self) -> None:
        """Ask the on-device loop for ``/proc/stat`` and the benchmark's ``/proc/<pid>/stat`` rows (``trace.cpu``)."""
        self._cpu = True

    def device_power(self, current_path: str, voltage_path: str) -> None:
        """Ask the on-device loop for raw current/voltage rows (``trace.power``)."""
        self._power = (current_path, voltage_path)

    def idle(self, seconds: float) -> None:
        """Wait this long after the sources started, before the benchmark (idle power baseline)."""
        self._idle_s = max(self._idle_s, seconds)

    @property
    def device_loop(self) -> bool:
        return self._memory or self._cpu or self._power is not None

    # -- the shared sources --------------------------------------------------------------------
    @contextlib.contextmanager
    def sources(self) -> Iterator[None]:
        """Start what was asked for (raises when it cannot), yield, then stop it all and read the marks."""
        if self.device_loop:
            current, voltage = self._power or (None, None)
            probe.start(self.device, self.paths, interval_s=self.interval_s,
                        max_samples=int(MAX_PROBE_S / self.interval_s), current_path=current,
                        voltage_path=voltage, poll_memory=self._memory, poll_cpu=self._cpu)
        elif self.on_host:
            Path(self.paths.directory).mkdir(parents=True, exist_ok=True)
        else:
            probe.prepare(self.device, self.paths)
        if self._poller is not None:
            self._poller.start()
        try:
            if self._idle_s:
                time.sleep(self._idle_s)
            yield
        finally:
            if self._poller is not None:
                self._poller.stop()
            self.trace = self._collect()

    def _collect(self) -> probe.Trace:
        """Stop the device loop (or read the host marks file) and clean the probe directory."""
        try:
            if self.device_loop:
                return probe.parse_trace(probe.stop(self.device, self.paths, linger_s=self.interval_s * 2))
            if not self.on_host:
                return probe.parse_trace(probe.stop(self.device, self.paths, linger_s=0))
        except SAMPLER_ERRORS as exc:
            self.problems.append(f"probe stop: {exc}")
            return probe.Trace()
        try:
            marks = Path(self.paths.marks).read_text()
        except OSError as exc:
            self.problems.append(f"marks: {exc}")
            marks = ""
        with contextlib.suppress(OSError):
            for path in (self.paths.marks, self.paths.pid):
                Path(path).unlink(missing_ok=True)
            Path(self.paths.directory).rmdir()
        return probe.parse_trace("\n".join(f"K {line}" for line in marks.splitlines()))
