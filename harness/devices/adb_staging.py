"""What every ADB backend does the same way above its transport: staging files, facts, capabilities.

Two backends reach Android devices: :mod:`harness.devices.android` talks to adbd directly (adb-shell),
:mod:`harness.devices.adb_server` goes through an adb server (adbutils). Both stage a file the same
way (sha256 check against a digest cached on the device, temporary name, size check, rename) and read
the same ``getprop`` facts; :class:`AdbShellDevice` holds that once, and each backend supplies only
the byte transfer (:meth:`AdbShellDevice._send_file`, :meth:`AdbShellDevice._recv_file`) and ``shell``.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import os
import posixpath
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import profiles
from harness.devices import adb_commands as cmds
from harness.devices.base import Capabilities, ShellDevice, sha256_file
from harness.errors import DeviceError, HarnessError
from harness.results import DeviceInfo

WORKDIR = "/data/local/tmp/edgeharness"
MIN_TRANSFER_BYTES_PER_S = 250_000  # push budget: 30 s + size at this rate
PULL_BUDGET_S = 3600.0
HINT_ACCEPT_KEY = ("unlock the phone and accept the 'Allow USB debugging?' prompt for this computer's key "
                   "(tick 'Always allow'), then run again; on a farm, add the key's .pub to the device")
#: What an Android device can report, whichever transport reaches it.
ANDROID_PROBES = frozenset({"proc_status", "proc_stat", "power_supply", "thermal_zones", "thermalservice",
                            "cpufreq"})


class DeviceLogger(logging.LoggerAdapter):
    """Every log line carries the device id."""

    def process(self, msg: str, kwargs: Any) -> tuple[str, Any]:
        return f"[{self.extra['device']}] {msg}", kwargs


class AdbShellDevice(ShellDevice):
    """An Android device reached over some ADB transport: staging, facts and capabilities on top of ``shell``."""

    platform = "android"

    def __init__(self, device_id: str, logger: logging.Logger) -> None:
        super().__init__(device_id)
        self.log = DeviceLogger(logger, {"device": device_id})
        self._left_temps: list[str] = []  # push temporaries we could not remove (link down); next push does
        self._info: DeviceInfo | None = None
        self._python: str | None | bool = False  # False: not looked up yet
        self._hash_cache: dict[tuple[str, int, int, int], str] = {}

    def capabilities(self) -> Capabilities:
        return Capabilities(shell=True, probes=ANDROID_PROBES)  # noqa: S604 - a capability flag, not a subprocess

    # -- what a transport supplies ---------------------------------------------------------
    @abc.abstractmethod
    def _send_file(self, local: Path, remote: str, budget_s: float) -> None:
        """Copy ``local`` to the device path ``remote`` (mode 0600) within ``budget_s``; raise DeviceError."""

    @abc.abstractmethod
    def _recv_file(self, remote: str, local: str) -> None:
        """Copy the device file ``remote`` into the host file ``local`` (already created by the caller)."""

    # -- files --------------------------------------------------------------------------
    def _local_sha256(self, local: Path) -> str:
        """sha256 of a host file, cached on (path, size, mtime, inode) so re-staging a big model is cheap."""
        st = local.stat()
        key = (str(local.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
        digest = self._hash_cache.get(key)
        if digest is None:
            digest = self._hash_cache[key] = sha256_file(local)
        return digest

    def remote_digest(self, remote: str) -> tuple[str, str] | None:
        """``(algorithm, hex)`` of a device file: sha256 (md5 on devices without it), None when absent or unknown.

        The device hashes the file once; the answer is cached next to it (``.NAME.eh-digest``) with the
        file's size, inode, mtime and ctime, and reused while those are unchanged, so re-staging a
        100 MB model costs one round trip instead of a full read on the phone.
        """
        probe = cmds.parse_probe(self.shell(cmds.probe_command(remote), timeout_s=30).output)
        if not probe.exists:
            return None
        if probe.cached is not None:
            return probe.cached
        return cmds.parse_digest(self.shell(cmds.hash_command(remote), timeout_s=300).output)

    def push(self, local: Path, remote: str, *, executable: bool = False) -> bool:
        """Copy ``local`` to ``remote`` atomically (temporary name, then rename); False when the device has it.

        ``executable`` makes the file mode 755 (for tools such as ``benchmark_model``), else 644.
        """
        local = Path(local)
        if not local.is_file():
            raise DeviceError(f"cannot push {local}: not a file", device=self.id)
        size_bytes = local.stat().st_size
        digest = self._local_sha256(local)
        there = self.remote_digest(remote)
        if there is not None and there[1] == (digest if there[0] == "sha256" else _md5_file(local)):
            if executable:
                self.shell(f"chmod 755 {cmds.q(remote)}", timeout_s=30).check(self.id)
            self.log.info("push %s: skipped, same %s on the device", remote, there[0])
            return False
        self.shell(cmds.prepare_push_command(remote, self._left_temps), timeout_s=30).check(self.id)
        self._left_temps.clear()
        temp = cmds.temp_path(remote, cmds.new_token())
        started = time.monotonic()
        try:
            self._send_file(local, temp, 30.0 + size_bytes / MIN_TRANSFER_BYTES_PER_S)
        except DeviceError:
            self._best_effort_remove(temp)
            raise
        except KeyboardInterrupt:  # a stopped run: the temporary goes with the next push
            self._left_temps.append(temp)
            raise
        finish = self.shell(cmds.finish_push_command(temp, remote, size_bytes, digest, executable), timeout_s=60)
        if finish.exit_code != 0:
            raise DeviceError(f"push {remote}: the device copy is incomplete; removed it", device=self.id,
                              command=finish.command, output=finish.output, command_exit_code=finish.exit_code)
        elapsed_s = time.monotonic() - started
        self.log.info("pushed %s (%d bytes, %.1f MB/s)", remote, size_bytes, size_bytes / 1e6 / max(elapsed_s, 1e-9))
        return True

    def _best_effort_remove(self, path: str) -> None:
        try:
            self.shell(cmds.remove_command(path), timeout_s=10)
        except HarnessError:
            self._left_temps.append(path)  # the link is down: the next push removes it

    def pull(self, remote: str, local: Path) -> Path:
        """Copy ``remote`` into the file ``local`` (or ``local/<basename>`` when it is a folder); nowhere else."""
        local = Path(local)
        if local.is_dir():
            name = posixpath.basename(remote.rstrip("/"))
            if name in ("", ".", "..") or "\0" in name:
                raise DeviceError(f"cannot derive a file name from {remote!r}", device=self.id,
                                  hint="pass the destination file path")
            local = local / name
        fd, temp = tempfile.mkstemp(prefix=f".{local.name[:100]}.", suffix=".part", dir=local.parent)
        os.close(fd)
        try:
            self._recv_file(remote, temp)
            os.chmod(temp, 0o644)
            os.replace(temp, local)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
        return local

    # -- facts --------------------------------------------------------------------------
    def workdir(self) -> str:
        return WORKDIR

    def python(self) -> str | None:
        """The device's ``python3`` (Linux boards, the virtual device), or None on a stock phone."""
        if self._python is False:
            found = self.shell("command -v python3", timeout_s=30)
            path = found.output.strip().splitlines()[-1] if found.exit_code == 0 and found.output.strip() else ""
            self._python = path if path.startswith("/") else None
        return self._python  # type: ignore[return-value]

    def facts(self) -> dict[str, str]:
        """All ``getprop`` properties (what profiles match on)."""
        return cmds.parse_getprop(self.shell(cmds.FACTS_COMMAND, timeout_s=30).output)

    def info(self) -> DeviceInfo:
        if self._info is None:
            out = self.shell(cmds.FACTS_COMMAND, timeout_s=30).output
            self._info = device_info(self.id, cmds.parse_getprop(out), cmds.parse_cores(out))
        return self._info


def device_info(device_id: str, props: dict[str, str], cores: int | None) -> DeviceInfo:
    """Facts from ``getprop`` matched to a profile (``generic-android`` when none fits)."""
    profile = profiles.match(props, "android")
    soc_model = props.get("ro.soc.model", "")
    soc_vendor = props.get("ro.soc.manufacturer", "")
    release, sdk = props.get("ro.build.version.release", "?"), props.get("ro.build.version.sdk", "?")
    extra = {k: v for k, v in (
        ("manufacturer", props.get("ro.product.manufacturer", "")),
        ("board_platform", props.get("ro.board.platform", "")),
        ("sdk", sdk),
        ("serial", props.get("ro.serialno", "")),
    ) if v}
    return DeviceInfo(
        id=device_id,
        platform="android",
        model=props.get("ro.product.model", "") or profile.marketing_name,
        soc=profile.soc or soc_model or props.get("ro.board.platform", ""),
        os=f"Android {release} (SDK {sdk})",
        abi=props.get("ro.product.cpu.abi", ""),
        profile=profile.name,
        cpu=" ".join(p for p in (soc_vendor, soc_model) if p) or props.get("ro.hardware", ""),
        cores=cores,
        device_class=profile.device_class,
        extra=extra,
        emulated=props.get("edgeharness.emulated", "") or (profile.emulation and f"{profile.emulation} (its profile)"),
    )


def _md5_file(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
