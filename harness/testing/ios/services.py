"""The fake iPhone's plist and AFC services, one class per device service.

Each class serves one connection that lockdownd started: ``installation_proxy``,
``house_arrest`` (then AFC rooted at the app container), ``afc`` (the media partition),
``syslog_relay`` and ``diagnostics_relay``. Device side only; the host side is unmodified
pymobiledevice3.
"""

from __future__ import annotations

import asyncio
import plistlib
import shutil
import struct
import zipfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from harness.testing.ios.wire import read_plist, write_plist

if TYPE_CHECKING:
    from harness.testing.ios.device import DeviceState

AFC_MAGIC = b"CFA6LPAA"
AFC_HEADER = struct.Struct("<8sQQQQ")  # magic, entire_length, this_length, packet_num, opcode
OP_STATUS, OP_DATA, OP_READ_DIR, OP_REMOVE, OP_MAKE_DIR, OP_FILE_INFO, OP_DEVINFO = 1, 2, 3, 8, 9, 0x0A, 0x0B
OP_FILE_OPEN, OP_FILE_OPEN_RES, OP_READ, OP_WRITE, OP_FILE_CLOSE, OP_RENAME = 0x0D, 0x0E, 0x0F, 0x10, 0x14, 0x18
AFC_OK, AFC_UNKNOWN_PACKET, AFC_INVALID_ARG, AFC_NOT_FOUND, AFC_PERM_DENIED, AFC_IO = 0, 6, 7, 8, 10, 20
AFC_MODE_READ = 1


class AfcServer:
    """AFC over one stream, rooted at a host directory that no device path may escape."""

    def __init__(self, root: Path, state: DeviceState, *, count_push_bytes: bool = False) -> None:
        self.root = root.resolve()
        self.state = state
        self.count_push_bytes = count_push_bytes
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
        text = raw.split(b"\x00", 1)[0].decode("utf-8", "replace")
        parts = [p for p in PurePosixPath("/" + text).parts[1:] if p not in ("", ".")]
        if ".." in parts:
            return None
        path = self.root.joinpath(*parts)
        return path if path.resolve() == self.root or self.root in path.resolve().parents else None

    def _handle(self, opcode: int, body: bytes) -> tuple[int, bytes]:
        try:
            return self._dispatch(opcode, body)
        except FileNotFoundError:
            return _status(AFC_NOT_FOUND)
        except PermissionError:
            return _status(AFC_PERM_DENIED)
        except OSError:
            return _status(AFC_IO)

    def _dispatch(self, opcode: int, body: bytes) -> tuple[int, bytes]:
        if opcode in (OP_READ, OP_WRITE, OP_FILE_CLOSE):
            (handle,) = struct.unpack_from("<Q", body)
            fh = self.handles.get(handle)
            if fh is None:
                return _status(AFC_INVALID_ARG)
            if opcode == OP_READ:
                return OP_DATA, fh.read(struct.unpack_from("<Q", body, 8)[0])
            if opcode == OP_WRITE:
                fh.write(body[8:])
            else:
                self.handles.pop(handle).close()
            return _status(AFC_OK)
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
            return OP_DATA, b"".join(n.encode() + b"\x00" for n in [".", "..", *sorted(p.name for p in path.iterdir())])
        if opcode == OP_MAKE_DIR:
            path.mkdir(parents=True, exist_ok=True)
            return _status(AFC_OK)
        if opcode == OP_REMOVE:
            path.rmdir() if path.is_dir() else path.unlink()
            return _status(AFC_OK)
        return _status(AFC_UNKNOWN_PACKET)

    def _open(self, path: Path | None, mode: int) -> tuple[int, bytes]:
        if path is None:
            return _status(AFC_PERM_DENIED)
        fh = path.open("rb" if mode == AFC_MODE_READ else "wb")
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
            "st_size": st.st_size,
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
        await write_plist(writer, {"Status": "Complete"})
        root = app.container if request["Command"] == "VendContainer" else app.container / "Documents"
        await AfcServer(root, self.state, count_push_bytes=True).serve(reader, writer)


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
                {"CurrentList": [a.info() for a in self.state.apps.values()], "Status": "BrowsingApplications"},
                {"Status": "Complete"},
            ]
        if command == "Lookup":
            wanted = (request.get("ClientOptions") or {}).get("BundleIDs")
            return [
                {
                    "LookupResult": {b: a.info() for b, a in self.state.apps.items() if not wanted or b in wanted},
                    "Status": "Complete",
                }
            ]
        return [{"Error": "UnknownCommand", "ErrorDescription": f"unsupported command {command!r}"}]

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
    """``com.apple.syslog_relay``: every device log line, ``\\n\\x00``-terminated, as it happens."""

    def __init__(self, state: DeviceState) -> None:
        self.state = state

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue = self.state.subscribe_syslog()
        try:
            while True:
                line = await queue.get()
                writer.write(line.encode("utf-8", "replace") + b"\n\x00")
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            self.state.unsubscribe_syslog(queue)


class DiagnosticsRelayService:
    """``com.apple.mobile.diagnostics_relay``: IORegistry queries (the battery, IOPMPowerSource)."""

    def __init__(self, state: DeviceState) -> None:
        self.state = state

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_plist(reader)) is not None:
            if request.get("Request") == "IORegistry" and request.get("EntryClass") == "IOPMPowerSource":
                reply = {"Status": "Success", "Diagnostics": {"IORegistry": self.state.battery_registry()}}
            elif request.get("Request") == "Goodbye":
                reply = {"Status": "Success"}
            else:
                reply = {"Status": "UnknownRequest"}
            await write_plist(writer, reply)
