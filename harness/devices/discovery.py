"""Find and open devices of every backend by id.

Ids: ``host``; ``adb:HOST:PORT`` or an adb serial (Android, adbd directly); ``adb-server:SERIAL`` or
``adb-server:HOST:PORT/SERIAL`` (Android through the local or a lab host's adb server); ``ios:UDID`` (iOS).
A bare serial goes through the local adb server when that server answers and lists it, else to adbd
directly (USB, or TCP for ``HOST:PORT``). Devices come from ``--device``, ``ANDROID_SERIAL``, or an
inventory file (``devices.toml``) that lists a farm: ``[[devices]]`` and ``[[servers]]`` (every device of
an adb server). Backends are imported lazily from :data:`BACKENDS` (no backend registers itself
on import): the iOS one needs the optional extra.

This is the device layer's front: the environment (:class:`DeviceSettings`) is read here, once per
call unless the caller passes ``settings``, and handed to the backends' openers and listers.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

from harness import tomlfile
from harness.devices import adb_servers
from harness.devices.adb_servers import ServerAddress
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
    lister: str | None  # (DeviceSettings) -> iterable of device ids currently reachable (None: listed by its servers)
    install_hint: str


#: id prefix -> backend; nothing registers itself on import.
BACKENDS: dict[str, Backend] = {
    "adb": Backend("harness.devices.android", "open_android_device", "list_android_devices",
                   "pip install edgeharness (adb-shell is a core dependency)"),
    "adb-server": Backend("harness.devices.adb_server", "open_adb_server_device", None,
                          "pip install edgeharness (adbutils is a core dependency)"),
    "ios": Backend("harness.devices.ios", "open_ios_device", "list_ios_devices",
                   "pip install 'edgeharness[ios]'"),
    # Inference endpoints (docs/server.md): the id's scheme is the prefix (``kserve+http://HOST:PORT/MODEL``).
    "kserve+http": Backend("harness.devices.endpoint", "open_endpoint_device", "list_endpoint_devices",
                           "pip install 'edgeharness[server]' (tritonclient[http,grpc])"),
    "kserve+grpc": Backend("harness.devices.endpoint", "open_endpoint_device", "list_endpoint_devices",
                           "pip install 'edgeharness[server]' (tritonclient[http,grpc])"),
    "tfserving+http": Backend("harness.devices.endpoint", "open_endpoint_device", "list_endpoint_devices",
                              "pip install edgeharness"),
}
ENDPOINT_SCHEMES = ("kserve+http", "kserve+grpc", "tfserving+http")


def is_endpoint_id(device_id: str) -> bool:
    """True for an inference endpoint's id (``SCHEME://...`` with a scheme of :data:`ENDPOINT_SCHEMES`)."""
    scheme, sep, _ = device_id.partition("://")
    return bool(sep) and scheme in ENDPOINT_SCHEMES


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
    state: str = ""  #: the adb server's state of the device (``device``, ``unauthorized``, ...), when one lists it


ID_HINT = ("use `host`, `adb:HOST:PORT`, an adb serial, `adb-server:SERIAL`, `adb-server:HOST:PORT/SERIAL`, `ios:UDID` "
           "or an endpoint `kserve+http://HOST:PORT/MODEL` (also kserve+grpc://, tfserving+http://)")


def local_adb_server(settings: DeviceSettings) -> ServerAddress:
    """The local adb server as ``adb`` finds it (``$ADB_SERVER_SOCKET``, ``$ANDROID_ADB_SERVER_PORT``, 5037)."""
    try:
        return adb_servers.local_server(settings.adb_server_env())
    except ValueError as exc:
        raise UsageError(str(exc), hint="unset it, or set ANDROID_ADB_SERVER_PORT=PORT") from None


def _open_through_server(device_id: str, server: ServerAddress, serial: str, settings: DeviceSettings) -> Device:
    module = _backend("adb-server", device_id)
    opener: Callable[..., Device] = getattr(module, BACKENDS["adb-server"].opener)
    return opener(device_id, server=server, serial=serial, reconnect_window_s=settings.adb_reconnect_s)


def _local_server_lists(serial: str, settings: DeviceSettings) -> ServerAddress | None:
    """The local adb server when it answers and lists ``serial`` (the bare-serial rule), else None."""
    try:
        local = adb_servers.local_server(settings.adb_server_env())
        return local if _backend("adb-server").server_lists(local, serial) else None
    except (ValueError, HarnessError):
        return None


def open_device(device_id: str, settings: DeviceSettings | None = None) -> Device:
    """Open a device by id; raise :class:`DeviceNotFound` with a hint when no backend knows it.

    ``settings`` default to :meth:`DeviceSettings.from_env` (the environment, read now).
    """
    settings = settings or DeviceSettings.from_env()
    if device_id == HOST_ID:
        return HostDevice(cache_dir=settings.cache_dir, zygote=settings.host_zygote)
    problem = id_problem(device_id)
    if problem:
        raise DeviceNotFound(problem, hint=ID_HINT)
    if device_id.startswith(adb_servers.PREFIX):
        parsed = adb_servers.parse_device_id(device_id)
        return _open_through_server(device_id, parsed.server or local_adb_server(settings), parsed.serial, settings)
    prefix = device_id.partition("://")[0] if is_endpoint_id(device_id) else (
        device_id.split(":", 1)[0] if ":" in device_id else "")
    if prefix not in BACKENDS:  # a bare serial: the local adb server's when it lists it, else adbd directly
        server = _local_server_lists(device_id, settings)
        if server is not None:
            return _open_through_server(device_id, server, device_id, settings)
        prefix = "adb"
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
    if "://" in device_id:
        if not is_endpoint_id(device_id):
            return f"{device_id!r}: unknown endpoint scheme (known: {', '.join(ENDPOINT_SCHEMES)})"
        from harness.devices.endpoint.backend import parse_endpoint_id  # local: the form's one parser

        try:
            parse_endpoint_id(device_id)
        except ValueError as exc:
            return str(exc)
        return None
    if device_id.startswith("ios:"):
        return None if _IOS_UDID.fullmatch(device_id[4:]) else f"{device_id!r} has no UDID after ios: (ios:UDID)"
    if device_id.startswith(adb_servers.PREFIX):
        try:
            adb_servers.parse_device_id(device_id)
        except ValueError as exc:
            return str(exc)
        return None
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


@dataclass(frozen=True)
class Inventory:
    """An inventory file: device ids (``[[devices]]``) and adb servers whose every device is used (``[[servers]]``)."""

    ids: tuple[str, ...]
    servers: tuple[ServerAddress, ...]


def read_inventory(path: str | Path) -> Inventory:
    """Read ``[[devices]]`` (``id = "..."``) and ``[[servers]]`` (``address = "HOST:PORT"``) tables; repeats merged."""
    path = Path(path)
    text = tomlfile.read_text(path, ConfigError, what="inventory file")
    data = tomlfile.parse(text, path, ConfigError)
    src = tomlfile.Source(path, text, ConfigError, arrays=("devices", "servers"))
    hint = 'list each device as [[devices]] then id = "adb:HOST:PORT" (or a serial, ios:UDID, host)'
    server_hint = 'list each adb server as [[servers]] then address = "HOST:PORT" (e.g. "lab3:5037")'
    for key in data:
        if key not in ("devices", "servers"):
            raise src.error(f"unknown key {key!r}", key,
                            hint="an inventory has only [[devices]] and [[servers]] tables")
    devices = data.get("devices", [] if "servers" in data else None)
    if not isinstance(devices, list) or not all(isinstance(e, dict) for e in devices):
        raise src.error("expected [[devices]] tables", "devices", hint=hint)
    servers = data.get("servers", [])
    if not isinstance(servers, list) or not all(isinstance(e, dict) for e in servers):
        raise src.error("expected [[servers]] tables", "servers", hint=server_hint)
    if not devices and not servers:
        raise src.error("no devices or servers", "devices", hint=hint)
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
    addresses = []
    for i, entry in enumerate(servers):
        for key in entry:
            if key != "address":
                raise src.error(f"unknown key {key!r}", key, "servers", i, hint="allowed: address")
        if not isinstance(entry.get("address"), str):
            raise src.error('each [[servers]] entry needs address = "HOST:PORT"', "address", "servers", i,
                            hint=server_hint)
        try:
            addresses.append(adb_servers.parse_server_address(entry["address"]))
        except ValueError as exc:
            raise src.error(str(exc), "address", "servers", i, hint=server_hint) from None
    return Inventory(tuple(dict.fromkeys(ids)), tuple(dict.fromkeys(addresses)))


def inventory_ids(path: str | Path) -> list[str]:
    """Device ids listed in an inventory file's ``[[devices]]`` tables (repeats merged); servers not expanded."""
    return list(read_inventory(path).ids)


def server_device_ids(servers: Iterable[ServerAddress], settings: DeviceSettings | None = None) -> list[str]:
    """Every device each adb server lists (any state: an unusable one fails loudly, not silently skipped).

    A server that does not answer is an error: the inventory says the run needs it.
    """
    module = _backend("adb-server")
    local = _local_or_none(settings or DeviceSettings.from_env())
    ids = []
    for listing in module.list_servers(list(servers)):
        if listing.error is not None:
            raise DeviceNotFound(f"adb server {listing.server}: {listing.error}", hint=module.HINT_SERVER_DOWN)
        ids += [adb_servers.device_id(listing.server, serial, local) for serial, _ in listing.devices
                if adb_servers.serial_usable_in_id(serial)]
    return ids


def _local_or_none(settings: DeviceSettings) -> ServerAddress | None:
    try:
        return adb_servers.local_server(settings.adb_server_env())
    except ValueError:
        return None


def selected_ids(cli_ids: Iterable[str] | None, inventory: str | Path | None = None,
                 settings: DeviceSettings | None = None) -> list[str]:
    """Devices to use: explicit ids, else the inventory, else ``$ANDROID_SERIAL``, else the host."""
    ids = [i for i in (cli_ids or []) if i]
    for device_id in ids:
        problem = id_problem(device_id)
        if problem:
            raise UsageError(f"--device {problem}", hint=ID_HINT)
    if ids:
        return list(dict.fromkeys(ids))
    if inventory:
        found = read_inventory(inventory)
        return list(dict.fromkeys([*found.ids, *server_device_ids(found.servers, settings)]))
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
        platform = "android" if platform == "adb-server" else platform
        return DeviceEntry(device_id, platform, False, detail=str(exc))
    extra = ", ".join(f"{k}={v}" for k, v in info.extra.items())
    detail = f"{info.cpu or info.soc}; {info.cores or '?'} cores; {info.os}; {info.abi}"
    detail += f"; {extra}" if extra else ""
    return DeviceEntry(info.id, info.platform, True, info.profile, info.model, detail)


def server_entries(servers: Iterable[ServerAddress], local: ServerAddress | None) -> list[DeviceEntry | str]:
    """Every device the adb servers list: an id to describe when usable, else an entry with the state, reason, fix.

    ``local`` (the local server) is skipped quietly when it does not answer; any other server is listed
    as unreachable with the reason.
    """
    module = _backend("adb-server")
    out: list[DeviceEntry | str] = []
    for listing in module.list_servers([*([local] if local else []), *servers]):
        if listing.error is not None:
            if listing.server != local:
                out.append(DeviceEntry(f"{adb_servers.PREFIX}{listing.server}/*", "android", False,
                                       detail=f"{listing.error} (hint: {module.HINT_SERVER_DOWN})",
                                       state="no server"))
            continue
        for serial, state in listing.devices:
            if not adb_servers.serial_usable_in_id(serial):
                out.append(DeviceEntry(f"{adb_servers.PREFIX}{listing.server}/{serial!r}", "android", False,
                                       detail="the serial has characters an id cannot hold", state=state))
                continue
            meaning = adb_servers.state_meaning(state)
            device_id = adb_servers.device_id(listing.server, serial, local)
            out.append(device_id if meaning.usable else DeviceEntry(
                device_id, "android", False, detail=f"{meaning.reason} (hint: {meaning.hint})", state=state or "gone"))
    return out


def list_devices(extra_ids: Iterable[str] = (), servers: Iterable[ServerAddress] = (),
                 settings: DeviceSettings | None = None) -> list[DeviceEntry]:
    """The host, every device the backends and adb servers (the local one, plus ``servers``) can see, and any ids
    asked for explicitly."""
    settings = settings or DeviceSettings.from_env()
    ids: list[str] = [HOST_ID]
    listed: dict[str, DeviceEntry] = {}
    try:
        for item in server_entries(servers, _local_or_none(settings)):
            if isinstance(item, DeviceEntry):
                listed[item.id] = item
            else:
                ids.append(item)
    except DeviceNotFound as exc:  # adbutils is missing: the other backends still list
        log.debug("adb servers list no devices: %s", exc)
    served = set(ids[1:])
    for prefix, backend in BACKENDS.items():
        if backend.lister is None:
            continue
        try:
            ids.extend(getattr(_backend(prefix), backend.lister)(settings))
        except FileError:
            raise
        except HarnessError as exc:  # a missing extra or an unreachable usbmuxd: that backend lists nothing
            log.debug("%s backend lists no devices: %s", prefix, exc)
            continue
    ids.extend(extra_ids)
    entries = [describe(i, settings) for i in dict.fromkeys(ids) if i not in listed]
    entries = [replace(e, state="device") if e.id in served and e.reachable else e for e in entries]
    return entries + list(listed.values())
