"""The fake iPhone's plist and AFC services, one class per device service.

Each class serves one connection that lockdownd started: ``installation_proxy``,
``house_arrest`` (then AFC rooted at the app container), ``afc`` (the media partition),
``syslog_relay`` and ``diagnostics_relay``. Device side only; the host side is unmodified
pymobiledevice3.
"""

from __future__ import annotations

import asyncio
import errno
import os
import plistlib
import shutil
import struct
import time
import uuid
import zipfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from pymobiledevice3.services.afc import AfcError, AfcFileSeekRequest, AfcOpcode
from pymobiledevice3.services.os_trace import SyslogLogLevel, _SyslogRecordHeader

from harness.testing.ios.wire import read_plist, write_plist

if TYPE_CHECKING:
    from harness.testing.ios.device import DeviceState

AFC_MAGIC = b"CFA6LPAA"
AFC_HEADER = struct.Struct("<8sQQQQ")  # magic, entire_length, this_length, packet_num, opcode
OP_STATUS, OP_DATA, OP_READ_DIR, OP_REMOVE, OP_MAKE_DIR, OP_FILE_INFO, OP_DEVINFO = 1, 2, 3, 8, 9, 0x0A, 0x0B
OP_FILE_OPEN, OP_FILE_OPEN_RES, OP_READ, OP_WRITE, OP_FILE_CLOSE, OP_RENAME = 0x0D, 0x0E, 0x0F, 0x10, 0x14, 0x18
AFC_OK, AFC_UNKNOWN_PACKET, AFC_INVALID_ARG, AFC_NOT_FOUND, AFC_PERM_DENIED, AFC_IO = 0, 6, 7, 8, 10, 20
AFC_MODE_READ = 1
#: AFC fopen modes (r, r+, w, w+, a, a+) as open(2) flags.
AFC_OPEN_FLAGS = {
    1: os.O_RDONLY,
    2: os.O_RDWR | os.O_CREAT,
    3: os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    4: os.O_RDWR | os.O_CREAT | os.O_TRUNC,
    5: os.O_WRONLY | os.O_APPEND | os.O_CREAT,
    6: os.O_RDWR | os.O_APPEND | os.O_CREAT,
}
#: What afcd answers for a host errno (anything else is an I/O error).
AFC_ERRNO = {
    errno.ENOENT: AfcError.OBJECT_NOT_FOUND,
    errno.ENOTDIR: AfcError.OBJECT_NOT_FOUND,
    errno.EEXIST: AfcError.OBJECT_EXISTS,
    errno.EISDIR: AfcError.OBJECT_IS_DIR,
    errno.ENOTEMPTY: AfcError.DIR_NOT_EMPTY,
    errno.EACCES: AfcError.PERM_DENIED,
    errno.EPERM: AfcError.PERM_DENIED,
    errno.ENOSPC: AfcError.NO_SPACE_LEFT,
}


class AfcServer:
    """AFC over one stream, rooted at a host directory that no device path may escape."""

    def __init__(
        self, root: Path, state: DeviceState, *, count_push_bytes: bool = False, visible: tuple[str, ...] = ()
    ) -> None:
        self.root = root.resolve()
        self.state = state
        self.count_push_bytes = count_push_bytes
        self.visible = visible  # when set, the only top-level names (house_arrest VendDocuments: "Documents")
        self.handles: dict[int, Any] = {}
        self.next_handle = 1

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer AFC packets until the host closes, or a drop fault cuts the link."""
        try:
            while True:
                try:
                    header = await reader.readexactly(AFC_HEADER.size)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                magic, entire, _this, packet_num, opcode = AFC_HEADER.unpack(header)
                if magic != AFC_MAGIC:
                    return
                body = await reader.readexactly(entire - AFC_HEADER.size)
                if opcode == OP_WRITE and self.count_push_bytes and self.state.take_push_drop(len(body) - 8):
                    writer.transport.abort()
                    return
                reply_op, payload = self._handle(opcode, body)
                length = AFC_HEADER.size + len(payload)
                writer.write(AFC_HEADER.pack(AFC_MAGIC, length, length, packet_num, reply_op) + payload)
                await writer.drain()
        finally:
            for fh in self.handles.values():
                fh.close()

    def _path(self, raw: bytes) -> Path | None:
        """The host path of a device path, or None when it would leave the root (through a symlink).

        Like afcd, ``.`` and ``..`` are resolved by name and ``..`` stops at the root, so
        ``/../../x`` is ``/x``. A name outside ``visible`` does not exist.
        """
        text = raw.split(b"\x00", 1)[0].decode("utf-8", "replace")
        parts: list[str] = []
        for part in PurePosixPath("/" + text).parts[1:]:
            if part == "..":
                if parts:
                    parts.pop()
            elif part not in ("", "."):
                parts.append(part)
        if self.visible and parts and parts[0] not in self.visible:
            raise FileNotFoundError(errno.ENOENT, "not vended", text)
        path = self.root.joinpath(*parts)
        return path if path.resolve() == self.root or self.root in path.resolve().parents else None

    def _handle(self, opcode: int, body: bytes) -> tuple[int, bytes]:
        try:
            return self._dispatch(opcode, body)
        except OSError as exc:
            if opcode == OP_READ_DIR and exc.errno == errno.ENOTDIR:
                return _status(AfcError.READ_ERROR)
            if opcode == OP_MAKE_DIR and exc.errno == errno.ENOTDIR:
                return _status(AfcError.OBJECT_EXISTS)
            return _status(AFC_ERRNO.get(exc.errno, AFC_IO))

    def _dispatch(self, opcode: int, body: bytes) -> tuple[int, bytes]:
        if opcode in (OP_READ, OP_WRITE, OP_FILE_CLOSE, AfcOpcode.FILE_SEEK, AfcOpcode.FILE_TELL,
                      AfcOpcode.FILE_SET_SIZE):
            return self._file_op(opcode, body)
        if opcode == OP_DEVINFO:
            usage = shutil.disk_usage(self.root)
            return OP_DATA, _kv(
                {"Model": "iPhone", "FSTotalBytes": usage.total, "FSFreeBytes": usage.free, "FSBlockSize": 4096}
            )
        if opcode == OP_FILE_OPEN:
            (mode,) = struct.unpack_from("<Q", body)
            return self._open(self._path(body[8:]), mode)
        if opcode == OP_RENAME:
            src_raw, dst_raw = body.split(b"\x00")[:2]
            src, dst = self._path(src_raw), self._path(dst_raw)
            if src is None or dst is None:
                return _status(AFC_PERM_DENIED)
            src.rename(dst)
            return _status(AFC_OK)
        path = self._path(body)
        if path is None:
            return _status(AFC_PERM_DENIED)
        if opcode == OP_FILE_INFO:
            return OP_DATA, _stat(path)
        if opcode == OP_READ_DIR:
            names = sorted(p.name for p in path.iterdir())
            if self.visible and path == self.root:
                names = [n for n in names if n in self.visible]
            return OP_DATA, b"".join(n.encode() + b"\x00" for n in [".", "..", *names])
        if opcode == OP_MAKE_DIR:
            path.mkdir(parents=True, exist_ok=True)
            return _status(AFC_OK)
        if opcode == OP_REMOVE:
            path.rmdir() if path.is_dir() else path.unlink()
            return _status(AFC_OK)
        return _status(AFC_UNKNOWN_PACKET)

    def _file_op(self, opcode: int, body: bytes) -> tuple[int, bytes]:
        """Operations on an open handle: read, write, seek, tell, truncate, close."""
        (handle,) = struct.unpack_from("<Q", body)
        fh = self.handles.get(handle)
        if fh is None:
            return _status(AFC_INVALID_ARG)
        if opcode == OP_READ:
            return OP_DATA, fh.read(struct.unpack_from("<Q", body, 8)[0])
        if opcode == OP_WRITE:
            fh.write(body[8:])
        elif opcode == AfcOpcode.FILE_SEEK:
            seek = AfcFileSeekRequest.parse(body)
            fh.seek(seek.offset, seek.whence)
        elif opcode == AfcOpcode.FILE_TELL:
            return AfcOpcode.FILE_TELL_RES, struct.pack("<Q", fh.tell())
        elif opcode == AfcOpcode.FILE_SET_SIZE:
            fh.truncate(struct.unpack_from("<Q", body, 8)[0])
        else:
            self.handles.pop(handle).close()
        return _status(AFC_OK)

    def _open(self, path: Path | None, mode: int) -> tuple[int, bytes]:
        if path is None:
            return _status(AFC_PERM_DENIED)
        if mode not in AFC_OPEN_FLAGS:
            return _status(AFC_INVALID_ARG)
        flags = AFC_OPEN_FLAGS[mode]
        fd = os.open(path, flags, 0o644)
        try:
            fh = os.fdopen(fd, "rb" if flags == os.O_RDONLY else "r+b" if flags & os.O_RDWR else "wb" if not
                           flags & os.O_APPEND else "ab", buffering=0)
        except OSError:
            os.close(fd)
            raise
        if path.is_dir():
            fh.close()
            return _status(AfcError.OBJECT_IS_DIR)
        handle, self.next_handle = self.next_handle, self.next_handle + 1
        self.handles[handle] = fh
        return OP_FILE_OPEN_RES, struct.pack("<Q", handle)


def _status(code: int) -> tuple[int, bytes]:
    return OP_STATUS, struct.pack("<Q", code)


def _kv(values: dict[str, Any]) -> bytes:
    return b"".join(f"{k}\x00{v}\x00".encode() for k, v in values.items())


def _stat(path: Path) -> bytes:
    st = path.stat()
    return _kv(
        {
            # afcd on APFS reports 64 bytes for a directory (the host file system's figure means nothing here)
            "st_size": 64 if path.is_dir() else st.st_size,
            "st_blocks": st.st_blocks,
            "st_nlink": st.st_nlink,
            "st_ifmt": "S_IFDIR" if path.is_dir() else "S_IFREG",
            "st_mtime": st.st_mtime_ns,
            "st_birthtime": st.st_mtime_ns,
        }
    )


class AfcService:
    """``com.apple.afc``: AFC on the media partition (where installation_proxy stages packages)."""

    def __init__(self, state: DeviceState) -> None:
        self.state = state

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await AfcServer(self.state.media_root, self.state).serve(reader, writer)


class HouseArrestService:
    """``com.apple.mobile.house_arrest``: one vend command, then AFC rooted at the app's container."""

    def __init__(self, state: DeviceState) -> None:
        self.state = state

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_plist(reader)
        if request is None:
            return
        app = self.state.apps.get(request.get("Identifier", ""))
        if app is None or request.get("Command") not in ("VendContainer", "VendDocuments"):
            await write_plist(writer, {"Error": "ApplicationLookupFailed"})
            return
        if request["Command"] == "VendDocuments" and not app.file_sharing:
            await write_plist(writer, {"Error": "InstallationLookupFailed"})
            return
        await write_plist(writer, {"Status": "Complete"})
        # VendDocuments shows only Documents/, still at /Documents, as on a phone
        visible = ("Documents",) if request["Command"] == "VendDocuments" else ()
        await AfcServer(app.container, self.state, count_push_bytes=True, visible=visible).serve(reader, writer)


class InstallationProxyService:
    """``com.apple.mobile.installation_proxy``: Install/Upgrade from staged ipa, Uninstall, Browse, Lookup."""

    def __init__(self, state: DeviceState) -> None:
        self.state = state

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_plist(reader)) is not None:
            for reply in self._handle(request):
                await write_plist(writer, reply)

    def _handle(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        command = request.get("Command")
        if command in ("Install", "Upgrade"):
            return self._install(str(request.get("PackagePath", "")))
        if command == "Uninstall":
            self.state.uninstall(request.get("ApplicationIdentifier", ""))
            return [{"PercentComplete": 50, "Status": "RemovingApplication"}, {"Status": "Complete"}]
        if command == "Browse":
            return [
                {"CurrentList": list(self._select(request).values()), "Status": "BrowsingApplications"},
                {"Status": "Complete"},
            ]
        if command == "Lookup":
            return [{"LookupResult": self._select(request), "Status": "Complete"}]
        return [{"Error": "UnknownCommand", "ErrorDescription": f"unsupported command {command!r}"}]

    def _select(self, request: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Apps matching ``ClientOptions`` (``ApplicationType``, ``BundleIDs``), cut to ``ReturnAttributes``."""
        options = request.get("ClientOptions") or {}
        kind = options.get("ApplicationType", "Any")
        wanted = options.get("BundleIDs")
        attributes = options.get("ReturnAttributes")
        infos = [*(a.info() for a in self.state.system_apps.values()), *(a.info() for a in self.state.apps.values())]
        selected = {}
        for info in infos:
            bundle_id = info["CFBundleIdentifier"]
            if kind not in ("Any", info["ApplicationType"]) or (wanted and bundle_id not in wanted):
                continue
            if attributes:
                info = {k: v for k, v in info.items() if k in attributes}
                if "StaticDiskUsage" in attributes:
                    info.setdefault("StaticDiskUsage", 0)
                    info.setdefault("DynamicDiskUsage", 0)
            selected[bundle_id] = info
        return selected

    def _install(self, package_path: str) -> list[dict[str, Any]]:
        if self.state.faults.install_error:
            return [
                {"PercentComplete": 20, "Status": "VerifyingApplication"},
                {
                    "Error": self.state.faults.install_error,
                    "ErrorDescription": "The application could not be verified (fake iPhone fault).",
                },
            ]
        package = AfcServer(self.state.media_root, self.state)._path(package_path.encode())
        if package is None or not package.is_file():
            return [{"Error": "PackageNotFound", "ErrorDescription": f"no package at {package_path}"}]
        try:
            info = read_ipa_info(package)
        except (zipfile.BadZipFile, KeyError, plistlib.InvalidFileException) as exc:
            return [{"Error": "PackageInspectionFailed", "ErrorDescription": str(exc)}]
        self.state.install(info)
        return [
            {"PercentComplete": 40, "Status": "CopyingApplication"},
            {"PercentComplete": 90, "Status": "GeneratingApplicationMap"},
            {"Status": "Complete"},
        ]


def read_ipa_info(package: Path) -> dict[str, Any]:
    """The Info.plist of the one ``Payload/*.app`` in an ipa."""
    with zipfile.ZipFile(package) as zf:
        name = next(
            n for n in zf.namelist() if n.startswith("Payload/") and n.endswith(".app/Info.plist") and n.count("/") == 2
        )
        return plistlib.loads(zf.read(name))


class SyslogRelayService:
    """``com.apple.syslog_relay``: every device log line, ``\\n\\x00``-terminated, as it happens.

    Like a phone, where some daemon always logs, a new client gets a line at once (the relay's own).
    """

    def __init__(self, state: DeviceState) -> None:
        self.state = state

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue = self.state.subscribe_syslog()
        name = str(self.state.values.get("DeviceName", "iPhone"))
        try:
            self.state.log("syslogd", self.state.system_pid("syslogd"), "syslog_relay client attached")
            while True:
                record = await queue.get()
                writer.write(record.line(name).encode("utf-8", "replace") + b"\n\x00")
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            self.state.unsubscribe_syslog(queue)


#: os_log levels by the syslog level word.
OS_TRACE_LEVELS = {"Notice": SyslogLogLevel.NOTICE, "Info": SyslogLogLevel.INFO, "Debug": SyslogLogLevel.DEBUG,
                   "Error": SyslogLogLevel.ERROR, "Fault": SyslogLogLevel.FAULT}


class OsTraceRelayService:
    """``com.apple.os_trace_relay``: ``PidList`` and the binary ``StartActivity`` stream (``syslog live``).

    Records are built with pymobiledevice3's own ``_SyslogRecordHeader``, so the client's parser reads them.
    """

    def __init__(self, state: DeviceState) -> None:
        self.state = state

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_plist(reader)
        if request is None:
            return
        kind = request.get("Request")
        if kind == "PidList":
            payload = {str(pid): {"ProcessName": name} for pid, name in self.state.process_names().items()}
            body = plistlib.dumps({"Status": "RequestSuccessful", "Payload": payload})
            writer.write(b"\x01" + struct.pack(">I", len(body)) + body)
            await writer.drain()
            return
        if kind != "StartActivity":
            body = plistlib.dumps({"Status": "RequestFailed", "Error": f"unsupported request {kind!r}"})
            writer.write(struct.pack("<I", 4) + struct.pack("<I", len(body)) + body)
            await writer.drain()
            return
        only_pid = int(request.get("Pid", -1))
        queue = self.state.subscribe_syslog()
        try:
            body = plistlib.dumps({"Status": "RequestSuccessful"})
            writer.write(struct.pack("<I", 4) + struct.pack("<I", len(body)) + body)
            self.state.log("syslogd", self.state.system_pid("syslogd"), "os_trace_relay activity stream started")
            while True:
                record = await queue.get()
                if only_pid not in (-1, record.pid):
                    continue
                data = os_trace_record(record, self.state.process_path(record.pid) or f"/usr/libexec/{record.process}")
                writer.write(b"\x02" + struct.pack("<I", len(data)) + data)
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            self.state.unsubscribe_syslog(queue)


def os_trace_record(record: Any, executable: str) -> bytes:
    """One binary os_trace record: the client's header struct, then filename, image name and message."""
    image = executable.encode() + b"\x00"
    message = record.message.encode("utf-8", "replace") + b"\x00"
    seconds = int(record.time)
    header = _SyslogRecordHeader(
        _unknown0=bytes(9), pid=record.pid, procid=record.pid, process_image_uuid=uuid.UUID(int=record.pid),
        _unknown1=bytes(18), seconds=seconds, _unknown2=0, microseconds=int((record.time - seconds) * 1e6),
        _unknown3=0, level=OS_TRACE_LEVELS.get(record.level, SyslogLogLevel.NOTICE), _unknown4=bytes(6),
        mach_timestamp=time.monotonic_ns(), thread_id=record.pid, image_uuid=uuid.UUID(int=record.pid),
        image_name_size=len(image), message_size=len(message), _unknown5=0, sender_image_offset=0,
        subsystem_size=0, category_size=0, _unknown6=0,
    )
    return header.build() + executable.encode() + b"\x00" + image + message


class DiagnosticsRelayService:
    """``com.apple.mobile.diagnostics_relay``: diagnostics reports, IORegistry entries, MobileGestalt."""

    def __init__(self, state: DeviceState) -> None:
        self.state = state

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_plist(reader)) is not None:
            await write_plist(writer, self._handle(request))
            if request.get("Request") == "Goodbye":
                return

    def _handle(self, request: dict[str, Any]) -> dict[str, Any]:
        kind = request.get("Request")
        if kind == "IORegistry":
            entry = self._ioregistry(request.get("EntryClass"), request.get("EntryName"))
            return {"Status": "Success", "Diagnostics": {"IORegistry": entry}}
        if kind in ("All", "WiFi", "GasGauge", "NAND", "HDMI"):
            report = self._report()
            return {"Status": "Success", "Diagnostics": report if kind == "All" else {kind: report[kind]}}
        if kind == "MobileGestalt":
            return {"Status": "Success", "Diagnostics": {"MobileGestalt": self._gestalt(request)}}
        if kind in ("Goodbye", "Sleep"):
            return {"Status": "Success"}
        return {"Status": "UnknownRequest"}

    def _ioregistry(self, entry_class: Any, entry_name: Any) -> dict[str, Any]:
        battery = self.state.battery_registry()
        if entry_class == "IOPMPowerSource" or entry_name == "AppleSmartBattery":
            return battery
        if entry_class is None and entry_name is None:
            # the root of the IOService plane, with the battery below it
            return {"IORegistryEntryName": "Root", "IOKitBuildVersion": "Darwin Kernel Version 22.6.0",
                    "IORegistryEntryChildren": [{"IORegistryEntryName": "AppleSmartBattery", **battery}]}
        return {}

    def _report(self) -> dict[str, Any]:
        battery = self.state.battery_registry()
        return {
            "GasGauge": {"Status": "Success", "CycleCount": 120, "FullChargeCapacity": 3100,
                         "DesignCapacity": 3240, "NominalChargeCapacity": 3050,
                         "Voltage": battery.get("Voltage", 0), "InstantAmperage": battery.get("InstantAmperage", 0)},
            "HDMI": {"Status": "Success", "Connection": "Unknown"},
            "NAND": {"Status": "Success"},
            "WiFi": {"Status": "Success", "Active": "true"},
        }

    def _gestalt(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.state.version_tuple() >= (17, 4):
            return {"Status": "MobileGestaltDeprecated"}
        values = self.state.lockdown_values()
        known = {**values, "HWModelStr": values.get("HardwareModel"), "ProductName": "iPhone OS",
                 "SerialNumber": values.get("SerialNumber"), "UniqueDeviceID": values.get("UniqueDeviceID")}
        keys = request.get("MobileGestaltKeys") or []
        return {"Status": "Success", **{k: known[k] for k in keys if known.get(k) is not None}}
