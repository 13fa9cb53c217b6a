"""Find and open devices of every backend by id.

Ids: ``host``; ``adb:HOST:PORT`` or an adb serial (Android); ``ios:UDID`` (iOS). Devices
come from ``--device``, ``ANDROID_SERIAL``, or an inventory file (``devices.toml``) that
lists a farm. Backends are imported lazily: the iOS one needs the optional extra.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from harness import tomlfile
from harness.devices.base import Device
from harness.devices.host import HOST_ID, HostDevice
from harness.errors import DeviceNotFound, HarnessError, SuiteError

# Backends register an opener for their id prefix: prefix -> (device_id -> Device).
_OPENERS: dict[str, Callable[[str], Device]] = {}
# Backends register a lister: () -> iterable of device ids currently reachable.
_LISTERS: dict[str, Callable[[], Iterable[str]]] = {}


def register_backend(prefix: str, opener: Callable[[str], Device],
                     lister: Callable[[], Iterable[str]] | None = None) -> None:
    _OPENERS[prefix] = opener
    if lister is not None:
        _LISTERS[prefix] = lister


def _load_backends() -> None:
    """Import optional backends so they register themselves (missing ones are simply absent)."""
    for module in ("harness.devices.android", "harness.devices.ios"):
        try:
            __import__(module)
        except ImportError:
            continue


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
    _load_backends()
    prefix = device_id.split(":", 1)[0] if ":" in device_id else ""
    if prefix in _OPENERS:
        return _OPENERS[prefix](device_id)
    if prefix == "ios":
        raise DeviceNotFound(f"cannot open {device_id}: the iOS backend is not installed",
                             hint="pip install 'edgeharness[ios]'")
    if "adb" in _OPENERS:
        return _OPENERS["adb"](device_id)  # a bare serial is an adb device
    raise DeviceNotFound(f"no backend can open device {device_id!r}",
                         hint="use `host`, `adb:HOST:PORT`, an adb serial, or `ios:UDID`")


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
    _load_backends()
    ids = [HOST_ID]
    for lister in _LISTERS.values():
        try:
            ids.extend(lister())
        except HarnessError:
            continue
    ids.extend(extra_ids)
    return [describe(i) for i in dict.fromkeys(ids)]
