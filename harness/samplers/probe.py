"""The on-device background sampler: a small ``sh`` loop started through the device shell.

Why on the device: sampling ``current_now`` over adb round trips (tens of ms each, jittery)
would measure the link, not the battery. The loop runs detached (``setsid``, own session, so
the shell service that started it can close), uses shell builtins only (``read``) except one
``date +%s%N`` per sample, and writes one line per reading to a file we read back afterwards:

``P <unix_ns> <current_raw> <voltage_raw>``   power supply, raw values and raw sign as printed
``M <unix_ns> VmHWM:|VmRSS: <kB>``             ``/proc/<pid>/status`` of the benchmark (pid file)
``C <unix_ns> cpu <user> <nice> <system> ...``  the first line of ``/proc/stat`` (all CPUs, clock ticks)
``T <unix_ns> <the benchmark's /proc/<pid>/stat line>``   its CPU ticks so far

It stops when the stop file appears or after ``max_samples`` (so a dead harness never leaves it
running for long). The benchmark command is wrapped by :func:`wrap_benchmark` to write its pid
and ``S``/``E`` marks (same clock, ``date +%s%N``), which align the trace with the benchmark.
"""

from __future__ import annotations

import posixpath
import secrets
import shlex
from dataclasses import dataclass

from harness.devices.base import Device, ShellDevice

q = shlex.quote
_OPERATORS = set(";&|<>()`$\n")


@dataclass(frozen=True)
class ProbePaths:
    """Device files of one probe (all under the device's work directory)."""

    directory: str

    @property
    def trace(self) -> str:
        return posixpath.join(self.directory, "trace.txt")

    @property
    def marks(self) -> str:
        return posixpath.join(self.directory, "marks.txt")

    @property
    def pid(self) -> str:
        return posixpath.join(self.directory, "bench.pid")

    @property
    def stop(self) -> str:
        return posixpath.join(self.directory, "stop")


@dataclass(frozen=True)
class Trace:
    """What a probe recorded: power rows ``(unix_ns, current_raw, voltage_raw)``, memory rows
    ``(unix_ns, key, kB)`` and benchmark marks ``(kind, unix_ns)`` (``S`` start, ``E`` end)."""

    power: tuple[tuple[int, int, int], ...] = ()
    memory: tuple[tuple[int, str, int], ...] = ()
    marks: tuple[tuple[str, int], ...] = ()
    cpu: tuple[tuple[int, int, int], ...] = ()  # (unix_ns, busy ticks, total ticks) of all CPUs
    proc: tuple[tuple[int, int], ...] = ()  # (unix_ns, the benchmark's user+system ticks, children's included)

    def last_window(self) -> tuple[int, int] | None:
        """The last benchmark command's (start, end) in unix ns, or None when it did not end."""
        starts = [t for k, t in self.marks if k == "S"]
        ends = [t for k, t in self.marks if k == "E"]
        if not starts or not ends or ends[-1] < starts[-1]:
            return None
        return starts[-1], ends[-1]


def new_paths(device: Device) -> ProbePaths:
    """A fresh probe directory under the device's work directory (random name, nothing device-supplied)."""
    return ProbePaths(posixpath.join(device.workdir(), "probe", secrets.token_hex(6)))


def loop_script(paths: ProbePaths, *, interval_s: float, max_samples: int, current_path: str | None,
                voltage_path: str | None, poll_memory: bool, poll_cpu: bool = False) -> str:
    """The sampling loop (POSIX sh, toybox/mksh compatible)."""
    power = ""
    if current_path and voltage_path:
        power = (f'c=; v=; read -r c < {q(current_path)}; read -r v < {q(voltage_path)}; '
                 f'echo "P $t ${{c:-x}} ${{v:-x}}"; ')
    memory = ""
    if poll_memory:
        memory = (f'if [ -s {q(paths.pid)} ]; then read -r p < {q(paths.pid)}; '
                  f'while read -r k n u; do case "$k" in VmHWM:|VmRSS:) echo "M $t $k $n";; esac; '
                  f'done < "/proc/$p/status" 2>/dev/null; fi; ')
    cpu = ""
    if poll_cpu:
        cpu = ('read -r a < /proc/stat; echo "C $t $a"; '
               f'if [ -s {q(paths.pid)} ]; then read -r p < {q(paths.pid)}; s=; '
               'read -r s < "/proc/$p/stat" 2>/dev/null; [ -n "$s" ] && echo "T $t $s"; fi; ')
    return (f'i=0; while [ ! -e {q(paths.stop)} ] && [ "$i" -lt {int(max_samples)} ]; do '
            f't=$(date +%s%N); {power}{memory}{cpu}sleep {interval_s:g}; i=$((i+1)); '
            f'done > {q(paths.trace)} 2>/dev/null')


def _prepare_command(paths: ProbePaths) -> str:
    return f"mkdir -p {q(paths.directory)} && : > {q(paths.marks)} && rm -f {q(paths.stop)} {q(paths.pid)}"


def prepare(device: ShellDevice, paths: ProbePaths) -> None:
    """Create the probe directory for the benchmark wrapper's pid and marks, without a sampling loop."""
    device.shell(_prepare_command(paths), timeout_s=30).check(device.id)


def start(device: ShellDevice, paths: ProbePaths, **loop: object) -> None:
    """Create the probe directory and start the loop detached; returns at once."""
    script = loop_script(paths, **loop)  # type: ignore[arg-type]
    cmd = f"{_prepare_command(paths)} && (setsid sh -c {q(script)} </dev/null >/dev/null 2>&1 &)"
    device.shell(cmd, timeout_s=30).check(device.id)


def stop(device: ShellDevice, paths: ProbePaths, *, linger_s: float = 0.5) -> str:
    """Stop the loop, return ``trace`` + ``marks`` text, and remove the probe directory."""
    out = device.shell(
        f"touch {q(paths.stop)}; sleep {linger_s:g}; cat {q(paths.trace)} 2>/dev/null; "
        f"sed 's/^/K /' {q(paths.marks)} 2>/dev/null; rm -rf {q(paths.directory)}",
        timeout_s=30 + linger_s,
    )
    return out.output


def wrap_benchmark(command: str, paths: ProbePaths) -> str:
    """``command`` started in the background so its pid is known at start; marks around it; same exit code.

    A simple command (one argv, no shell operators) is ``exec``'d in the child, so the pid file holds the
    benchmark itself; a compound command keeps a subshell in between (its pid is the subshell's).
    """
    body = f"exec {command}" if _is_simple(command) else command
    return (f'echo "S $(date +%s%N)" >> {q(paths.marks)}; ( {body} ) & p=$!; echo "$p" > {q(paths.pid)}; '
            f'wait "$p"; rc=$?; echo "E $(date +%s%N)" >> {q(paths.marks)}; exit "$rc"')


def _is_simple(command: str) -> bool:
    return bool(command.strip()) and not (_OPERATORS & set(_strip_quoted(command)))


def _strip_quoted(command: str) -> str:
    """The command with single- and double-quoted parts removed (operators inside quotes are text)."""
    out, quote = [], ""
    for ch in command:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        else:
            out.append(ch)
    return "".join(out)


def parse_trace(text: str) -> Trace:
    """Probe output back into rows; malformed or unreadable (``x``) readings are skipped."""
    power: list[tuple[int, int, int]] = []
    memory: list[tuple[int, str, int]] = []
    marks: list[tuple[str, int]] = []
    cpu: list[tuple[int, int, int]] = []
    proc: list[tuple[int, int]] = []
    for line in text.splitlines():
        parts = line.split()
        try:
            if len(parts) == 4 and parts[0] == "P":
                power.append((int(parts[1]), int(parts[2]), int(parts[3])))
            elif len(parts) == 4 and parts[0] == "M":
                memory.append((int(parts[1]), parts[2].rstrip(":"), int(parts[3])))
            elif len(parts) == 3 and parts[0] == "K" and parts[1] in ("S", "E"):
                marks.append((parts[1], int(parts[2])))
            elif len(parts) >= 7 and parts[0] == "C" and parts[2] == "cpu":
                cpu.append(_cpu_row(int(parts[1]), parts[3:]))
            elif len(parts) > 2 and parts[0] == "T":
                proc.append((int(parts[1]), _proc_ticks(line)))
        except ValueError:
            continue
    return Trace(tuple(power), tuple(memory), tuple(marks), tuple(cpu), tuple(proc))


def _cpu_row(t: int, fields: list[str]) -> tuple[int, int, int]:
    """``(t, busy, total)`` ticks from ``/proc/stat``'s ``cpu`` line: user nice system idle iowait irq softirq
    steal (guest time is already inside user); busy = total - idle - iowait."""
    ticks = [int(x) for x in fields[:8]]
    if any(x < 0 for x in ticks):
        raise ValueError("negative ticks")
    total = sum(ticks)
    return t, total - ticks[3] - (ticks[4] if len(ticks) > 4 else 0), total


def _proc_ticks(line: str) -> int:
    """utime + stime + cutime + cstime of a ``/proc/<pid>/stat`` line (the name in parentheses may hold spaces)."""
    rest = line.rpartition(")")[2].split()
    if len(rest) < 15:
        raise ValueError("short /proc/<pid>/stat line")
    ticks = [int(x) for x in rest[11:15]]
    if any(x < 0 for x in ticks):
        raise ValueError("negative ticks")
    return sum(ticks)
