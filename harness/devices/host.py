"""The host device: LiteRT on this machine's own CPU, the embedded default.

Commands run in a fresh process group so a timeout kills the benchmark and anything it
spawned. Files are already on the host, so staging is a no-op (``shares_host_fs``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import select
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import psutil

from harness import profiles
from harness.devices.base import AFTER_STOP_S, Capabilities, ShellDevice, ShellResult
from harness.devices.output import BoundedOutput
from harness.devices.settings import default_cache_dir
from harness.errors import CommandTimeout, RunInterrupted
from harness.results import DeviceInfo

HOST_ID = "host"
ZYGOTE = Path(__file__).resolve().parent.parent / "runners" / "zygote.py"
ZYGOTE_CLIENT = ZYGOTE.with_name("zygote_client.sh")
ZYGOTE_READY_S = 120.0  # importing LiteRT on a loaded 2-core machine
log = logging.getLogger("harness.devices.host")
POLL_S = 0.1  # how often a waiting shell looks at its deadline and the run's cancellation token
READ_BYTES = 1 << 16


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "Processor"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def runtime_version() -> str:
    """Installed LiteRT runtime and version, e.g. ``ai-edge-litert 2.3.0``."""
    for dist in ("ai-edge-litert", "tflite-runtime"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "none"


class HostDevice(ShellDevice):
    """This machine."""

    platform = "host"
    shares_host_fs = True

    def __init__(self, device_id: str = HOST_ID, *, cache_dir: Path | None = None, zygote: bool = False) -> None:
        """``cache_dir``: the harness's cache folder (default ``~/.cache/edgeharness``); work files go to
        its ``host-work`` folder. ``zygote``: fork each pyrunner repetition from a preloaded process
        (:meth:`pyrunner_launcher`); False runs every repetition as a fresh Python."""
        super().__init__(device_id)
        self.cache_dir = cache_dir or default_cache_dir()
        self.zygote = zygote
        self._zygote: _Zygote | None = None
        self.zygote_off_reason: str | None = None if zygote else "turned off"

    def pyrunner_launcher(self) -> tuple[str, ...]:
        """``/bin/sh zygote_client.sh FOLDER/req ZYGOTE_PID --`` once the zygote runs (started on first use), else ().

        Each repetition is still its own process (forked, own session, own memory high-water mark);
        what it no longer pays is the interpreter start and the numpy/LiteRT imports (the client is a
        POSIX sh script, not a Python). When the zygote cannot start, or has died, every repetition is a
        fresh process and the reason is logged once.
        """
        if self.zygote_off_reason is not None:
            return ()
        if self._zygote is not None and self._zygote.proc.poll() is not None:
            self.zygote_off_reason = f"the zygote ended (exit code {self._zygote.proc.returncode})"
            log.warning("host: every repetition runs as a fresh process from now on: %s", self.zygote_off_reason)
            self.close()
            return ()
        if self._zygote is None:
            try:
                self._zygote = _Zygote.start(Path(self.workdir()))
            except (OSError, RuntimeError) as exc:
                self.zygote_off_reason = str(exc)
                log.warning("host: every repetition runs as a fresh process: %s", exc)
                return ()
        return ("/bin/sh", str(ZYGOTE_CLIENT), self._zygote.requests, str(self._zygote.proc.pid), "--")

    def close(self) -> None:
        if self._zygote is not None:
            self._zygote.stop()
            self._zygote = None

    def capabilities(self) -> Capabilities:
        return Capabilities(shell=True, shares_host_fs=True, probes=frozenset(  # noqa: S604 - a flag, not a subprocess
            {"host_process", "host_cpu", "rapl", "thermal_zones", "cpufreq"}))

    def info(self) -> DeviceInfo:
        profile = profiles.find("host")
        return DeviceInfo(
            id=self.id,
            platform="host",
            model=platform.node() or "host",
            soc=_cpu_model(),
            os=f"{platform.system()} {platform.release()}",
            abi=platform.machine(),
            profile=profile.name if profile else "host",
            cpu=_cpu_model(),
            cores=os.cpu_count(),
            device_class=profile.device_class if profile else "desktop",
            extra={"python": platform.python_version(), "runtime": runtime_version()},
        )

    def shell(self, command: str, timeout_s: float = 60.0) -> ShellResult:
        """Run ``command`` with ``/bin/sh``; stdout and stderr merged, kept bounded (:class:`BoundedOutput`).

        The limit holds even when the command leaves a daemon holding its output open: at the deadline
        (or when the run is cancelled) the whole tree is killed and reading stops.
        """
        start = time.monotonic()
        out = BoundedOutput()
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert proc.stdout is not None
        try:
            stopped = self._collect(proc, out, start + timeout_s)
            if stopped:
                _kill_tree(proc)
                _drain(proc.stdout.fileno(), out)  # what the killed command had printed last
        except BaseException:
            # Ctrl-C or an error in the harness: the command runs in its own session, so nothing else would
            # stop it, and an orphaned benchmark would keep a core busy under the next measurements.
            _kill_tree(proc)
            raise
        finally:
            proc.stdout.close()
        if stopped == "cancelled":
            raise RunInterrupted(f"[{self.id}] command stopped and killed: the run was interrupted")
        if stopped == "timeout":
            raise CommandTimeout(
                f"command timed out after {timeout_s:g} s and was killed",
                timeout_s=timeout_s,
                device=self.id,
                command=command,
                output=out.text(),
            )
        return ShellResult(command, out.text(), proc.returncode, time.monotonic() - start)

    def _collect(self, proc: subprocess.Popen, out: BoundedOutput, deadline: float) -> str | None:
        """Read until the command ends: None, or ``timeout`` / ``cancelled`` (the tree is still to kill)."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        late = self.cancelled()  # started after the stop: a cleanup command, given AFTER_STOP_S
        if late:
            deadline = min(deadline, time.monotonic() + AFTER_STOP_S)
        expired = "cancelled" if late else "timeout"
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                if not late and self.cancelled():
                    return "cancelled"
                left = deadline - time.monotonic()
                if left <= 0:
                    return expired
                if selector.select(min(POLL_S, left)):
                    chunk = os.read(fd, READ_BYTES)
                    if not chunk:
                        break
                    out.feed(chunk)
        while True:  # output closed: wait for the exit (a command may close its output and keep running)
            if not late and self.cancelled():
                return "cancelled"
            left = deadline - time.monotonic()
            if left <= 0:
                return expired
            if _wait_exit(proc, min(POLL_S, left)):
                return None

    def push(self, local: Path, remote: str) -> bool:
        target = Path(remote)
        if target.resolve() == Path(local).resolve():
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        shutil.copyfile(local, tmp)
        os.replace(tmp, target)
        return True

    def pull(self, remote: str, local: Path) -> Path:
        shutil.copyfile(remote, local)
        return local

    def workdir(self) -> str:
        return str(self.cache_dir / "host-work")

    def python(self) -> str:
        return sys.executable


def benchmark_pid(pid: int) -> int | None:
    """The process whose memory is the benchmark's: ``pid`` itself, or, when ``pid`` is the zygote's client,
    the child it forked (None until the client has named it)."""
    try:
        cmdline = psutil.Process(pid).cmdline()
    except psutil.Error:
        return pid
    if str(ZYGOTE_CLIENT) not in cmdline[:5]:
        return pid
    at = cmdline.index(str(ZYGOTE_CLIENT))
    if at + 1 >= len(cmdline):
        return pid
    try:
        text = (Path(cmdline[at + 1]).parent / f"{pid}.child").read_text(encoding="ascii").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class _Zygote:
    """The running zygote (``runners/zygote.py``): its process and its request FIFO in a private folder."""

    def __init__(self, proc: subprocess.Popen, folder: str) -> None:
        self.proc = proc
        self.folder = folder
        self.requests = os.path.join(folder, "req")

    @classmethod
    def start(cls, workdir: Path) -> _Zygote:
        """Start it and wait until it has imported LiteRT; raise OSError/RuntimeError with the reason."""
        workdir.mkdir(parents=True, exist_ok=True)
        folder = tempfile.mkdtemp(prefix="zygote-", dir=workdir)  # 0700: only this user reaches its FIFOs
        with open(os.path.join(folder, "log"), "wb") as err:  # never a pipe nobody reads
            proc = subprocess.Popen([sys.executable, str(ZYGOTE), folder], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=err, start_new_session=True)
        zygote = cls(proc, folder)
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            ready = selector.select(ZYGOTE_READY_S) and proc.stdout.readline() == b"ready\n"
        if not ready:
            lines: list[str] = []
            with contextlib.suppress(OSError), open(os.path.join(folder, "log"), "rb") as fh:
                lines = fh.read(4000).decode("utf-8", "replace").strip().splitlines()
            zygote.stop()
            raise RuntimeError(f"the zygote did not start ({lines[-1] if lines else 'no output'})")
        return zygote

    def stop(self) -> None:
        """Close its stdin (it ends itself and kills any child left); kill it if it does not."""
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _wait_exit(proc: subprocess.Popen, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for ``proc`` to end; True when it has (and is reaped).

    A pidfd wakes the moment it ends; ``Popen.wait(timeout)`` polls with sleeps that double up to
    50 ms, which added milliseconds to every short command (a zygote repetition's client ends a
    moment after its output closes). Without pidfds (Linux < 5.3), that poll.
    """
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd, or the pid is gone (already reaped by us: wait says so)
        try:
            proc.wait(timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        if not select.select([fd], [], [], timeout_s)[0]:
            return False
    finally:
        os.close(fd)
    proc.wait()
    return True


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a command's process group, every descendant, and whatever still holds its output pipe.

    A daemon (``setsid cmd &``) leaves the group and the session, and its parent may be gone
    already; it is found by its descendant link while the parent lives, or by the pipe it writes to.
    Everything is stopped (SIGSTOP) before the second look, so nothing forks away in between.
    """
    pipe = os.fstat(proc.stdout.fileno()).st_ino if proc.stdout is not None else None
    seen: set[int] = set()
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        found = _descendants(proc.pid) | (_pipe_writers(pipe) if pipe is not None else set())
        seen |= found
        for pid in seen - {os.getpid()}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def _drain(fd: int, out: BoundedOutput, budget_s: float = 0.5) -> None:
    """Read what is left in a pipe whose writers were killed (EOF at once), never longer than ``budget_s``."""
    end = time.monotonic() + budget_s
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while (left := end - time.monotonic()) > 0 and selector.select(left):
            chunk = os.read(fd, READ_BYTES)
            if not chunk:
                return
            out.feed(chunk)


def _descendants(pid: int) -> set[int]:
    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return set()


def _pipe_writers(inode: int) -> set[int]:
    """Processes holding the write end of pipe ``inode`` (Linux ``/proc``; empty elsewhere)."""
    target = f"pipe:[{inode}]"
    found: set[int] = set()
    try:
        entries = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return found
    for pid in entries:
        try:
            for fd in os.scandir(f"/proc/{pid}/fd"):
                if os.readlink(fd.path) == target and _writes(pid, fd.name):
                    found.add(int(pid))
                    break
        except OSError:
            continue
    return found


def _writes(pid: str, fd: str) -> bool:
    """Whether ``/proc/PID/fdinfo/FD`` is open for writing (the harness's own read end is not)."""
    with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("flags:"):
                return int(line.split()[1], 8) & os.O_ACCMODE != os.O_RDONLY
    return False
