"""The device's filesystem as its shell sees it, for the sync service (``adb push/pull/ls``).

The shell's mount namespace shows the host's directories with the sandbox bound at the device
directories (:mod:`isolation`); this maps a device path to the host file behind it the same way,
resolving symlinks in the device's view (a device link to ``/data/x`` means the sandbox's
``/data/x``, not the host's). Reads may reach whatever the shell can read (``adb pull /etc/hosts``);
writes only land under the writable device directories (``/data``, ``/sdcard``), anything else is
a read-only file system, as ``/system`` and the root are on a phone. So the sync service never
writes a host file outside the sandbox.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from pathlib import Path

from harness.testing.android.sandbox import CPU_DIR, DEVICE_DIRS, MAX_PATH_BYTES, Sandbox, host_cpus

WRITABLE_DIRS = ("/data", "/sdcard")
#: ``/sys`` subdirectories the namespace binds from the host (``isolation._namespace_script`` uses this list).
SYS_TOPS = ("devices", "fs", "kernel", "bus", "block", "dev", "module", "firmware", "power")
_HIDDEN_TOP = {"lost+found"}
_MAX_LINKS = 40


class ViewError(OSError):
    """A device path the device view refuses (its ``strerror`` goes to the host)."""

    def __init__(self, number: int, path: str) -> None:
        super().__init__(number, os.strerror(number), path)


def _within(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


class DeviceView:
    """Device paths → host paths, as the device's shell sees them."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self._cpufreq = {f"{CPU_DIR}/{cpu}/cpufreq" for cpu in host_cpus()}
        #: Directories that exist only as parents of device directories ("/sys", "/sys/class").
        self._parents: dict[str, set[str]] = {}
        for device_dir in DEVICE_DIRS:
            parent, child = posixpath.split(device_dir)
            while parent != "/" and parent not in DEVICE_DIRS:
                self._parents.setdefault(parent, set()).add(child)
                parent, child = posixpath.split(parent)

    def to_host(self, path: str) -> Path | None:
        """Host path behind a normalised device path, None when the device has no such path."""
        for device_dir in (*self._cpufreq, *DEVICE_DIRS):
            if _within(path, device_dir):
                return self._sandbox.root / path.lstrip("/")
        if path in self._parents:
            return self._sandbox.root / path.lstrip("/")
        parts = path.strip("/").split("/")
        if parts[0] in _HIDDEN_TOP:
            return None
        if parts[0] == "sys" and (len(parts) < 2 or parts[1] not in SYS_TOPS):
            return None
        return Path(path)

    def realpath(self, device_path: str, *, follow_last: bool = True) -> str:
        """The device path with every symlink resolved in the device's view (``follow_last=False``: as lstat)."""
        if len(device_path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
            raise ViewError(errno.ENAMETOOLONG, device_path)
        if "\0" in device_path or not device_path.startswith("/"):
            raise ViewError(errno.ENOENT, device_path)
        pending = [p for p in device_path.split("/") if p]
        resolved, links = "/", 0
        while pending:
            name = pending.pop(0)
            if name == ".":
                continue
            if name == "..":
                resolved = posixpath.dirname(resolved)
                continue
            candidate = posixpath.join(resolved, name)
            host = self.to_host(candidate)
            if host is not None and (pending or follow_last) and os.path.islink(host):
                links += 1
                if links > _MAX_LINKS:
                    raise ViewError(errno.ELOOP, device_path)
                target = os.readlink(host)
                resolved = "/" if target.startswith("/") else resolved
                pending = [p for p in target.split("/") if p] + pending
                continue
            resolved = candidate
        return resolved

    def for_read(self, device_path: str, *, follow_last: bool = True) -> Path:
        """Host path to read or stat; ViewError(ENOENT) when the device has no such path."""
        host = self.to_host(self.realpath(device_path, follow_last=follow_last))
        if host is None:
            raise ViewError(errno.ENOENT, device_path)
        return host

    def for_write(self, device_path: str) -> Path:
        """Host path to create (its last component not followed); ViewError(EROFS) outside /data and /sdcard."""
        real = self.realpath(device_path, follow_last=False)
        if not any(_within(real, top) and real != top for top in WRITABLE_DIRS):
            raise ViewError(errno.EROFS, device_path)
        host = self.to_host(real)
        if host is None:
            raise ViewError(errno.EROFS, device_path)
        return host

    def listing(self, device_path: str) -> list[tuple[str, Path]]:
        """(name, host path) of a directory's entries as the device shows them."""
        real = self.realpath(device_path)
        host = self.to_host(real)
        names: set[str] = set()
        if host is not None and host.is_dir():
            names = set(os.listdir(host))
        if real == "/":
            names = {n for n in names if n not in _HIDDEN_TOP} | {d.strip("/").split("/")[0] for d in DEVICE_DIRS}
        elif real == "/sys":
            names = {n for n in os.listdir("/sys") if n in SYS_TOPS} | self._parents.get(real, set())
        elif real in self._parents:
            names |= self._parents[real]
        entries = []
        for name in sorted(names):
            child = self.to_host(posixpath.join(real, name))
            if child is not None:
                entries.append((name, child))
        return entries


def may_access(st: os.stat_result, want: int) -> bool:
    """Permission bits as an unprivileged adbd (the shell user) meets them: the host's euid has no override.

    ``want`` is ``os.R_OK`` or ``os.W_OK``; the owner, group or other bits apply as the kernel picks them.
    """
    if st.st_uid == os.geteuid():
        bits = {os.R_OK: stat.S_IRUSR, os.W_OK: stat.S_IWUSR}[want]
    elif st.st_gid == os.getegid() or st.st_gid in os.getgroups():
        bits = {os.R_OK: stat.S_IRGRP, os.W_OK: stat.S_IWGRP}[want]
    else:
        bits = {os.R_OK: stat.S_IROTH, os.W_OK: stat.S_IWOTH}[want]
    return bool(st.st_mode & bits)
