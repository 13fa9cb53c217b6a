"""The virtual device's filesystem: device paths mapped into one host directory.

Only the device directories below exist on the "device"; every other path is
refused, and a path that resolves (through ``..`` or symlinks) outside the
sandbox root is refused too, so the sync service never touches other host files.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

from harness.testing.android.arm64 import PYTHON as ARM64_PYTHON
from harness.testing.android.arm64 import Emulation
from harness.testing.android.device_profile import DeviceProfile

#: CPUs get ``cpufreq`` directories from the sandbox (the host's other CPU files stay visible).
CPU_DIR = "/sys/devices/system/cpu"
#: Device directories backed by the sandbox (the host's own /data, /sys are never touched).
DEVICE_DIRS = ("/data", "/sdcard", "/system", "/sys/class/power_supply", "/sys/class/thermal")
WORKDIRS = ("/data/local/tmp", "/sdcard/Download", "/system/bin", "/data/system/edgeharness", "/data/property")
MAX_PATH_BYTES = 1024
#: Runtime properties (``setprop``, ``VirtualDevice.set_property``), overlaid on the read-only ``/system/build.prop``.
RUNTIME_PROPS = "/data/property/runtime.prop"
#: Set by init on every boot of a real device.
BOOT_PROPERTIES = {"init.svc.adbd": "running"}
#: Android's shell (mksh, as ``/system/bin/sh``) and userland (toybox applets), when the host has them.
ANDROID_SHELL = "mksh"
ANDROID_USERLAND = "toybox"
#: toybox applets not linked: the device's own tools, toybox's incomplete shell, and ones that act on the whole host.
_SKIPPED_APPLETS = frozenset(
    {"sh", "getprop", "setprop", "dd", "reboot", "halt", "poweroff", "killall5", "swapon", "swapoff", "insmod",
     "rmmod", "hwclock", "fsfreeze", "switch_root", "pivot_root", "oneit", "freeramdisk", "devmem", "su", "login",
     "passwd", "mkswap", "losetup", "rtcwake", "watchdog", "blkdiscard", "eject", "partprobe"}
)  # fmt: skip


class PathRefused(Exception):
    """A device path outside the sandbox (its message is sent to the host in ``FAIL``)."""


class Sandbox:
    """Host directory ``root`` holding the device's files, plus its ``getprop`` state."""

    def __init__(self, root: Path, profile: DeviceProfile, emulation: Emulation | None = None) -> None:
        """``emulation``: the userland is arm64 code run by qemu-user (:mod:`harness.testing.android.arm64`)."""
        self.root = Path(root).resolve()
        self.profile = profile
        self.emulation = emulation

    def shell_environment(self) -> dict[str, str]:
        """Variables every device command needs besides the Android ones (qemu's sysroot when emulated)."""
        return self.emulation.environment() if self.emulation else {}

    def populate(self) -> None:
        """Create the device tree, tools, properties and sensor files (idempotent)."""
        for device_dir in (*DEVICE_DIRS, *WORKDIRS):
            self.host_dir(device_dir).mkdir(parents=True, exist_ok=True)
        (self.host_dir("/system") / "build.prop").unlink(missing_ok=True)
        self.write_properties()
        self.write_properties(BOOT_PROPERTIES)
        self._install_tools()
        self._install_userland()
        self._write_sensors()

    def host_dir(self, device_dir: str) -> Path:
        """Host directory backing a device directory from :data:`DEVICE_DIRS` (no checks)."""
        return self.root / device_dir.lstrip("/")

    def write_properties(self, updates: dict[str, str] | None = None) -> None:
        """Without ``updates``: write ``/system/build.prop`` from the profile; with: set runtime properties.

        ``getprop`` reads build.prop overlaid by :data:`RUNTIME_PROPS`, which ``setprop`` on the
        device writes too (``/system`` is read-only there, as on a phone).
        """
        if updates is None:
            path, props = self.host_dir("/system") / "build.prop", dict(self.profile.properties)
        else:
            path = self.root / RUNTIME_PROPS.lstrip("/")
            props = _read_props(path)
            props.update(updates)
        lines = [f"{k}={v.replace(chr(10), ' ')}" for k, v in sorted(props.items())]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.replace(path)

    def properties(self) -> dict[str, str]:
        """Current properties as ``getprop`` would print them."""
        props = _read_props(self.host_dir("/system") / "build.prop")
        props.update(_read_props(self.root / RUNTIME_PROPS.lstrip("/")))
        return props

    def _install_tools(self) -> None:
        bin_dir = self.host_dir("/system/bin")
        for tool in resources.files("harness.testing.android").joinpath("tools").iterdir():
            if tool.name.startswith(".") or tool.name.startswith("_"):
                continue
            target = bin_dir / tool.name
            target.unlink(missing_ok=True)  # never write through a link left by an earlier populate
            target.write_bytes(tool.read_bytes())
            target.chmod(0o755)
        python = bin_dir / "python3"
        python.unlink(missing_ok=True)
        if self.profile.has_python:
            python.write_text(f'#!/bin/sh\nexec {self._python_command()} "$@"\n', encoding="utf-8")
            python.chmod(0o755)

    def _python_command(self) -> str:
        """The device's python3: the harness's own, or the sysroot's arm64 Python 3.11 (through binfmt or qemu)."""
        if self.emulation is None:
            return _sh_quote(sys.executable)
        sysroot = self.emulation.sysroot
        if self.emulation.binfmt:
            return _sh_quote(str(sysroot.python))
        return " ".join(_sh_quote(a) for a in sysroot.explicit(ARM64_PYTHON))

    def _install_userland(self) -> None:
        """``/system/bin/sh`` is mksh and toybox's applets are linked in, as on Android (host ``sh`` without mksh).

        On the arm64 device with binfmt_misc they are the sysroot's arm64 builds; without it the host's
        shell stays and only ``uname`` (besides ``python3``) runs the arm64 toybox through qemu explicitly.
        """
        bin_dir = self.host_dir("/system/bin")
        emulation = self.emulation
        if emulation is not None and emulation.binfmt:
            shell, toybox = str(emulation.sysroot.root / "bin/mksh"), str(emulation.sysroot.root / "bin/toybox")
            lister = emulation.sysroot.explicit("/bin/toybox")
        else:
            shell, toybox = shutil.which(ANDROID_SHELL) or "/bin/sh", shutil.which(ANDROID_USERLAND) or ""
            lister = [toybox]
        _relink(bin_dir / "sh", shell)
        if toybox:
            listing = subprocess.run(lister, capture_output=True, text=True, timeout=60).stdout
            for applet in listing.split():
                if applet not in _SKIPPED_APPLETS and re.fullmatch(r"[a-z0-9][a-z0-9._-]*", applet):
                    _relink(bin_dir / applet, toybox)
        if emulation is not None and not emulation.binfmt:
            uname = bin_dir / "uname"
            uname.unlink(missing_ok=True)
            argv = " ".join(_sh_quote(a) for a in emulation.sysroot.explicit("/bin/toybox"))
            uname.write_text(f'#!/bin/sh\nexec {argv} uname "$@"\n', encoding="utf-8")
            uname.chmod(0o755)

    def _write_sensors(self) -> None:
        s = self.profile.sensors
        battery = self.host_dir("/sys/class/power_supply") / "battery"
        battery.mkdir(parents=True, exist_ok=True)
        values = {
            "type": "Battery",
            "status": s.battery_status,
            "present": "1",
            "capacity": str(s.battery_capacity_pct),
            "voltage_now": str(s.battery_voltage_uv),
            "current_now": str(s.battery_current_ua),
            "temp": str(s.battery_temp_decic),
            "technology": "Li-ion",
            "health": "Good",
        }
        for name, value in values.items():
            (battery / name).write_text(value + "\n")
        uevent = "".join(f"POWER_SUPPLY_{k.upper()}={v}\n" for k, v in values.items() if k != "type")
        (battery / "uevent").write_text("POWER_SUPPLY_NAME=battery\n" + uevent)
        thermal = self.host_dir("/sys/class/thermal")
        usb = self.host_dir("/sys/class/power_supply") / "usb"
        usb.mkdir(parents=True, exist_ok=True)
        for name, value in {"type": "USB", "online": "0"}.items():
            (usb / name).write_text(value + "\n")
        for cpu in host_cpus():
            cpufreq = self.root / CPU_DIR.lstrip("/") / cpu / "cpufreq"
            cpufreq.mkdir(parents=True, exist_ok=True)
            for name in ("scaling_cur_freq", "scaling_max_freq", "cpuinfo_max_freq"):
                (cpufreq / name).write_text(f"{s.cpu_max_freq_khz}\n")
            (cpufreq / "scaling_governor").write_text("schedutil\n")  # Android's default governor
        for index, (zone_type, millideg) in enumerate(s.thermal_zones):
            zone = thermal / f"thermal_zone{index}"
            zone.mkdir(parents=True, exist_ok=True)
            (zone / "type").write_text(zone_type + "\n")
            (zone / "temp").write_text(f"{millideg}\n")

    def resolve(self, device_path: str) -> Path:
        """Host path for a device path; raise :class:`PathRefused` when it leaves the sandbox.

        Symlinks are followed on the host, so a link planted on the device that points
        at ``/etc`` is refused rather than followed.
        """
        if len(device_path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
            raise PathRefused(f"path longer than {MAX_PATH_BYTES} bytes")
        if "\0" in device_path or not device_path.startswith("/"):
            raise PathRefused(f"not an absolute device path: {device_path!r}")
        normal = posixpath.normpath(device_path)
        if normal.startswith("//"):
            normal = "/" + normal.lstrip("/")
        if not any(normal == d or normal.startswith(d + "/") for d in DEVICE_DIRS):
            raise PathRefused(f"{device_path}: outside the device sandbox ({', '.join(DEVICE_DIRS)})")
        host = self.root / normal.lstrip("/")
        real = Path(os.path.realpath(host))
        if real != self.root and self.root not in real.parents:
            raise PathRefused(f"{device_path}: resolves outside the device sandbox")
        return host

    def wipe(self) -> None:
        """Remove the whole sandbox directory."""
        shutil.rmtree(self.root, ignore_errors=True)


def host_cpus() -> list[str]:
    """``cpuN`` directories of the host, which the device shows with simulated ``cpufreq``."""
    base = Path(CPU_DIR)
    return sorted((p.name for p in base.glob("cpu[0-9]*") if p.name[3:].isdigit()), key=lambda n: int(n[3:]))


def _relink(link: Path, target: str) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def _read_props(path: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            key, sep, value = line.partition("=")
            if sep and key and not key.startswith("#"):
                props[key] = value
    return props


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"
