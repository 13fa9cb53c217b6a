"""The host device: LiteRT on this machine's own CPU, the embedded default.

Commands run in a fresh process group so a timeout kills the benchmark and anything it
spawned. Files are already on the host, so staging is a no-op (``shares_host_fs``).
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from harness import profiles
from harness.devices.base import Capabilities, ShellDevice, ShellResult
from harness.errors import CommandTimeout
from harness.results import DeviceInfo

HOST_ID = "host"


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

    def __init__(self, device_id: str = HOST_ID) -> None:
        super().__init__(device_id)

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
        start = time.monotonic()
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            raise CommandTimeout(
                f"command timed out after {timeout_s:g} s and was killed",
                timeout_s=timeout_s,
                device=self.id,
                command=command,
                output=out.decode("utf-8", "replace"),
            ) from None
        except BaseException:
            # Ctrl-C or an error in the harness: the command runs in its own session, so nothing else would
            # stop it, and an orphaned benchmark would keep a core busy under the next measurements.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        return ShellResult(command, out.decode("utf-8", "replace"), proc.returncode, time.monotonic() - start)

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
        return str(Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "edgeharness")) / "host-work")

    def python(self) -> str:
        return sys.executable
