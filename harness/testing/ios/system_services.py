"""The fake iPhone's smaller system services: SpringBoard, the image mounter and crash reports.

``springboardservices`` (icon state and icon PNGs), ``mobile_image_mounter`` (the Developer image
is mounted, which is what lets DVT answer on iOS < 17), ``crashreportmover`` (acknowledges a
flush with ``ping``) and ``crashreportcopymobile`` (AFC over the phone's crash-report folder).
Device side only; the host side is unmodified pymobiledevice3.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import zlib
from typing import TYPE_CHECKING, Any

from harness.testing.ios.services import AfcServer
from harness.testing.ios.wire import read_plist, write_plist

if TYPE_CHECKING:
    from harness.testing.ios.device import DeviceState


def png_icon(seed: str, size: int = 8) -> bytes:
    """A small, valid PNG in a colour derived from ``seed`` (an app icon stand-in)."""
    r, g, b = hashlib.sha256(seed.encode()).digest()[:3]
    raw = b"".join(b"\x00" + bytes((r, g, b)) * size for _ in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


class SpringBoardServices:
    """``com.apple.springboardservices``: the home-screen layout (dock first) and app icons."""

    def __init__(self, state: DeviceState) -> None:
        self.state = state

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_plist(reader)) is not None:
            await write_plist(writer, self._handle(request))

    def _handle(self, request: dict[str, Any]) -> Any:
        command = request.get("command")
        if command == "getIconState":
            return self.state.icon_state()
        if command == "setIconState":
            self.state.icon_layout = request.get("iconState")
            return {}
        if command in ("getIconPNGData", "getHomeScreenWallpaperPNGData"):
            return {"pngData": png_icon(str(request.get("bundleId", "wallpaper")))}
        if command == "getInterfaceOrientation":
            return {"interfaceOrientation": 1}
        if command == "getHomeScreenIconMetrics":
            return {"homeScreenIconColumns": 4.0, "homeScreenIconRows": 6.0, "homeScreenIconDockMaxCount": 4.0}
        return {"Error": "UnknownCommand"}


class ImageMounterService:
    """``com.apple.mobile.mobile_image_mounter``: reports the Developer disk image as mounted."""

    SIGNATURE = hashlib.sha384(b"edgeharness fake DeveloperDiskImage").digest()

    def __init__(self, state: DeviceState) -> None:
        self.state = state

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_plist(reader)) is not None:
            await write_plist(writer, self.handle(request))

    def image(self) -> tuple[str, str]:
        """The mounted image's type and path: the personalized DDI from iOS 17, the Developer image before."""
        return ("Personalized", "/System/Developer") if self.state.major_version >= 17 else ("Developer", "/Developer")

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request's reply (also what ``storage_mounter_proxy.bridge`` answers over RemoteXPC)."""
        command = request.get("Command")
        image_type, mount_path = self.image()
        if command == "LookupImage":
            mounted = request.get("ImageType") == image_type
            return {"ImageSignature": [self.SIGNATURE] if mounted else [], "Status": "Complete"}
        if command == "CopyDevices":
            return {"EntryList": [{"DiskImageType": image_type, "IsMounted": True,
                                   "ImageSignature": self.SIGNATURE, "MountPath": mount_path}],
                    "Status": "Complete"}
        if command == "QueryDeveloperModeStatus":
            return {"DeveloperModeStatus": True, "Status": "Complete"}
        if command == "QueryPersonalizationIdentifiers":
            return {"PersonalizationIdentifiers": personalization_identifiers(self.state), "Status": "Complete"}
        if command == "QueryNonce":
            return {"PersonalizationNonce": hashlib.sha384(f"nonce:{self.state.udid}".encode()).digest(),
                    "Status": "Complete"}
        if command in ("MountImage", "ReceiveBytes"):
            return {"Error": "ImageMountFailed", "DetailedError": "the fake iPhone cannot mount disk images"}
        return {"Error": "UnknownCommand"}


def personalization_identifiers(state: DeviceState) -> dict[str, Any]:
    """What a personalized image is signed for: the phone's board, chip and ECID (from its lockdown values)."""
    values = state.lockdown_values()
    return {"BoardId": values["BoardId"], "ChipID": values["ChipID"], "UniqueChipID": values["UniqueChipID"],
            "SecurityDomain": 1, "CertificateSecurityMode": True, "EffectiveSecurityModeAp": True,
            "EffectiveProductionStatusAp": True, "CertificateProductionStatus": True}


async def serve_crash_mover(state: DeviceState, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """``com.apple.crashreportmover``: move pending reports (none on the fake), then say ``ping``."""
    writer.write(b"ping\x00")
    await writer.drain()
    await reader.read()


async def serve_crash_copy(state: DeviceState, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """``com.apple.crashreportcopymobile``: AFC rooted at the phone's crash-report folder."""
    await AfcServer(state.crash_root, state).serve(reader, writer)


class NotificationProxyService:
    """``com.apple.mobile.notification_proxy``: observe and post Darwin notifications.

    A ``PostNotification`` reaches every connection that observes that name (as
    ``RelayNotification``); ``Shutdown`` is answered with ``ProxyDeath``.
    """

    def __init__(self, state: DeviceState) -> None:
        self.state = state

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        observed: set[str] = set()

        async def relay(name: str) -> None:
            if name in observed:
                await write_plist(writer, {"Command": "RelayNotification", "Name": name})

        self.state.notification_listeners.append(relay)
        try:
            while (request := await read_plist(reader)) is not None:
                command, name = request.get("Command"), str(request.get("Name", ""))
                if command == "ObserveNotification":
                    observed.add(name)
                elif command == "PostNotification":
                    for listener in list(self.state.notification_listeners):
                        await listener(name)
                elif command == "Shutdown":
                    await write_plist(writer, {"Command": "ProxyDeath"})
                    return
        except (ConnectionError, OSError):
            return
        finally:
            self.state.notification_listeners.remove(relay)
