"""Find and open devices of every backend by id.

Ids: ``host``; ``adb:HOST:PORT`` or an adb serial (Android); ``ios:UDID`` (iOS). Devices
come from ``--device``, ``ANDROID_SERIAL``, or an inventory file (``devices.toml``) that
lists a farm. Backends are imported lazily from :data:`BACKENDS` (no backend registers itself
on import): the iOS one needs the optional extra.

This is the device layer's front: the environment (:class:`DeviceSettings`) is read here, once per
call unless the caller passes ``settings``, and handed to the backends' openers and listers.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from harness import tomlfile
from harness.devices.base import Device
from harness.devices.host import HOST_ID, HostDevice
from harness.devices.settings import DeviceSettings
from harness.errors import ConfigError, DeviceNotFound, FileError, HarnessError, UsageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backend:
    """Where a backend lives: ``module`` is imported on first use (an optional extra may be missing)."""

    module: str
    opener: str  # (device_id, DeviceSettings) -> Device
    lister: str  # (DeviceSettings) -> iterable of device ids currently reachable
    install_hint: str


#: id prefix -> backend; nothing registers itself on import.
BACKENDS: dict[str, Backend] = {
    "adb": Backend("harness.devices.android", "open_android_device", "list_android_devices",
                   "pip install edgeharness (adb-shell is a core dependency)"),
    "ios": Backend("harness.devices.ios", "open_ios_device", "list_ios_devices",
                   "pip install 'edgeharness[ios]'"),
}


def _backend(prefix: str, device_id: str | None = None) -> ModuleType:
    """The backend module for ``prefix``, imported now; DeviceNotFound with a hint when its extra is missing."""
    backend = BACKENDS[prefix]
    try:
        return importlib.import_module(backend.module)
    except ImportError as exc:
        what = f"cannot open {device_id}: " if device_id else ""
        raise DeviceNotFound(f"{what}the {prefix} backend is not installed ({exc})", hint=backend.install_hint) from exc


@dataclass(frozen=True)
class DeviceEntry:
    """One line of ``harness devices``."""

    id: str
    platform: str
    reachable: bool
    profile: str = ""
    model: str = ""
    detail: str = ""


def open_device(device_id: str, settings: DeviceSettings | None = None) -> Device:
    """Open a device by id; raise :class:`DeviceNotFound` with a hint when no backend knows it.

    ``settings`` default to :meth:`DeviceSettings.from_env` (the environment, read now).
    """
    settings = settings or DeviceSettings.from_env()
    if device_id == HOST_ID:
        return HostDevice(cache_dir=settings.cache_dir)
    problem = id_problem(device_id)
    if problem:
        raise DeviceNotFound(problem, hint="use `host`, `adb:HOST:PORT`, an adb serial, or `ios:UDID`")
    prefix = device_id.split(":", 1)[0] if ":" in device_id else ""
    prefix = prefix if prefix in BACKENDS else "adb"  # a bare serial is an adb device
    opener: Callable[[str, DeviceSettings], Device] = getattr(_backend(prefix, device_id), BACKENDS[prefix].opener)
    return opener(device_id, settings)


_INVENTORY_KEYS = ("id",)
_PORT = re.compile(r"[0-9]{1,5}")
_IOS_UDID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")


def id_problem(device_id: str) -> str | None:
    """Why ``device_id`` is not a device id (see the module doc), or None when it reads as one.

    Only the form is checked (no device is contacted): an empty id, white space or control characters,
    ``adb:`` without an address, a port that is not 1..65535, ``ios:`` without a UDID.
    """
    if not device_id:
        return "empty device id"
    if any(c.isspace() or not c.isprintable() for c in device_id):
        return f"device id {device_id!r} contains white space or control characters"
    if device_id.startswith("ios:"):
        return None if _IOS_UDID.fullmatch(device_id[4:]) else f"{device_id!r} has no UDID after ios: (ios:UDID)"
    adb = device_id.startswith("adb:")
    rest = device_id[4:] if adb else device_id
    if adb and not rest:
        return "'adb:' names no device (adb:HOST:PORT or adb:SERIAL)"
    if rest.startswith("["):  # [IPv6]:PORT
        host, close, port = rest[1:].partition("]")
        if not close or not host or (port and not port.startswith(":")):
            return f"{device_id!r}: an IPv6 address is written adb:[ADDRESS]:PORT"
        port = port[1:]
        if not port:
            return None  # the default port
    else:
        host, sep, port = rest.rpartition(":")
        if not sep or not (adb or port.isdigit()):
            return None  # adb:HOST, a bare serial, or another backend's id
    if not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
        return f"{device_id!r}: port {port!r} is not a number in 1..65535"
    return None


def inventory_ids(path: str | Path) -> list[str]:
    """Device ids listed in an inventory file: ``[[devices]]`` tables with ``id = "..."`` (repeats merged)."""
    path = Path(path)
    text = tomlfile.read_text(path, ConfigError, what="inventory file")
    data = tomlfile.parse(text, path, ConfigError)
    src = tomlfile.Source(path, text, ConfigError, arrays=("devices",))
    hint = 'list each device as [[devices]] then id = "adb:HOST:PORT" (or a serial, ios:UDID, host)'
    for key in data:
        if key != "devices":
            raise src.error(f"unknown key {key!r}", key, hint="an inventory has only [[devices]] tables")
    devices = data.get("devices")
    if not isinstance(devices, list) or not all(isinstance(e, dict) for e in devices):
        raise src.error("expected [[devices]] tables", "devices", hint=hint)
    if not devices:
        raise src.error("no devices", "devices", hint=hint)
    ids = []
    for i, entry in enumerate(devices):
        for key in entry:
            if key not in _INVENTORY_KEYS:
                raise src.error(f"unknown key {key!r}", key, "devices", i,
                                hint=f"allowed: {', '.join(_INVENTORY_KEYS)}")
        if not isinstance(entry.get("id"), str):
            raise src.error('each [[devices]] entry needs id = "..."', "id", "devices", i, hint=hint)
        problem = id_problem(entry["id"])
        if problem:
            raise src.error(problem, "id", "devices", i, hint=hint)
        ids.append(entry["id"])
    return list(dict.fromkeys(ids))


def selected_ids(cli_ids: Iterable[str] | None, inventory: str | Path | None = None,
                 settings: DeviceSettings | None = None) -> list[str]:
    """Devices to use: explicit ids, else the inventory, else ``$ANDROID_SERIAL``, else the host."""
    ids = [i for i in (cli_ids or []) if i]
    for device_id in ids:
        problem = id_problem(device_id)
        if problem:
            raise UsageError(f"--device {problem}", hint="use `host`, `adb:HOST:PORT`, an adb serial, or `ios:UDID`")
    if ids:
        return list(dict.fromkeys(ids))
    if inventory:
        return inventory_ids(inventory)
    serial = (settings or DeviceSettings.from_env()).android_serial
    return [serial] if serial else [HOST_ID]


def describe(device_id: str, settings: DeviceSettings | None = None) -> DeviceEntry:
    """Open a device and read its facts; an unreachable device is listed with the reason."""
    try:
        device = open_device(device_id, settings)
        try:
            info = device.info()
        finally:
            device.close()
    except FileError:
        raise  # a broken profile or inventory is the user's file to fix, not an unreachable device
    except HarnessError as exc:
        platform = device_id.split(":", 1)[0] if ":" in device_id else "android"
        return DeviceEntry(device_id, platform, False, detail=str(exc))
    extra = ", ".join(f"{k}={v}" for k, v in info.extra.items())
    detail = f"{info.cpu or info.soc}; {info.cores or '?'} cores; {info.os}; {info.abi}"
    detail += f"; {extra}" if extra else ""
    return DeviceEntry(info.id, info.platform, True, info.profile, info.model, detail)


def list_devices(extra_ids: Iterable[str] = (), settings: DeviceSettings | None = None) -> list[DeviceEntry]:
    """The host, every device the backends can see, and any ids asked for explicitly."""
    settings = settings or DeviceSettings.from_env()
    ids = [HOST_ID]
    for prefix, backend in BACKENDS.items():
        try:
            ids.extend(getattr(_backend(prefix), backend.lister)(settings))
        except FileError:
            raise
        except HarnessError as exc:  # a missing extra or an unreachable usbmuxd: that backend lists nothing
            log.debug("%s backend lists no devices: %s", prefix, exc)
            continue
    ids.extend(extra_ids)
    return [describe(i, settings) for i in dict.fromkeys(ids)]
