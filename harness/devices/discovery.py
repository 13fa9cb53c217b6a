"""Find and open devices of every backend by id.

Ids: ``host``; ``adb:HOST:PORT`` or an adb serial (Android); ``ios:UDID`` (iOS). Devices
come from ``--device``, ``ANDROID_SERIAL``, or an inventory file (``devices.toml``) that
lists a farm. Backends are imported lazily from :data:`BACKENDS` (no backend registers itself
on import): the iOS one needs the optional extra.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from harness import tomlfile
from harness.devices.base import Device
from harness.devices.host import HOST_ID, HostDevice
from harness.errors import DeviceNotFound, HarnessError, SuiteError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backend:
    """Where a backend lives: ``module`` is imported on first use (an optional extra may be missing)."""

    module: str
    opener: str  # device_id -> Device
    lister: str  # () -> iterable of device ids currently reachable
    install_hint: str


#: id prefix -> backend; nothing registers itself on import.
BACKENDS: dict[str, Backend] = {
    "adb": Backend("harness.devices.android", "open_android_device", "list_android_devices",
                   "pip install edgeharness (adb-shell is a core dependency)"),
    "ios": Backend("harness.devices.ios", "open_ios_device", "discover_ios_devices",
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


def open_device(device_id: str) -> Device:
    """Open a device by id; raise :class:`DeviceNotFound` with a hint when no backend knows it."""
    if device_id == HOST_ID:
        return HostDevice()
    prefix = device_id.split(":", 1)[0] if ":" in device_id else ""
    prefix = prefix if prefix in BACKENDS else "adb"  # a bare serial is an adb device
    opener: Callable[[str], Device] = getattr(_backend(prefix, device_id), BACKENDS[prefix].opener)
    return opener(device_id)


def inventory_ids(path: str | Path) -> list[str]:
    """Device ids listed in an inventory file: ``[[devices]]`` tables with ``id = "..."``."""
    path = Path(path)
    data = tomlfile.read(path, what="inventory file")
    devices = data.get("devices")
    if not isinstance(devices, list):
        raise SuiteError(path, "expected [[devices]] tables", key="devices")
    ids = []
    for i, entry in enumerate(devices):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise SuiteError(path, "each [[devices]] entry needs id = \"...\"", key=f"devices[{i}].id")
        ids.append(entry["id"])
    return ids


def selected_ids(cli_ids: Iterable[str] | None, inventory: str | Path | None = None) -> list[str]:
    """Devices to use: explicit ids, else the inventory, else ``$ANDROID_SERIAL``, else the host."""
    ids = [i for i in (cli_ids or []) if i]
    if ids:
        return list(dict.fromkeys(ids))
    if inventory:
        return inventory_ids(inventory)
    if os.environ.get("ANDROID_SERIAL"):
        return [os.environ["ANDROID_SERIAL"]]
    return [HOST_ID]


def describe(device_id: str) -> DeviceEntry:
    """Open a device and read its facts; an unreachable device is listed with the reason."""
    try:
        device = open_device(device_id)
        try:
            info = device.info()
        finally:
            device.close()
    except HarnessError as exc:
        platform = device_id.split(":", 1)[0] if ":" in device_id else "android"
        return DeviceEntry(device_id, platform, False, detail=str(exc))
    extra = ", ".join(f"{k}={v}" for k, v in info.extra.items())
    detail = f"{info.cpu or info.soc}; {info.cores or '?'} cores; {info.os}; {info.abi}"
    detail += f"; {extra}" if extra else ""
    return DeviceEntry(info.id, info.platform, True, info.profile, info.model, detail)


def list_devices(extra_ids: Iterable[str] = ()) -> list[DeviceEntry]:
    """The host, every device the backends can see, and any ids asked for explicitly."""
    ids = [HOST_ID]
    for prefix, backend in BACKENDS.items():
        try:
            ids.extend(getattr(_backend(prefix), backend.lister)())
        except HarnessError as exc:  # a missing extra or an unreachable usbmuxd: that backend lists nothing
            log.debug("%s backend lists no devices: %s", prefix, exc)
            continue
    ids.extend(extra_ids)
    return [describe(i) for i in dict.fromkeys(ids)]
