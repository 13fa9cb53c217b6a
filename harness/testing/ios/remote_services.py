"""The fake iPhone's native RemoteXPC services (iOS 17+, reached only through RSD; ``UsesRemoteXPC``).

Unlike the ``*.shim.remote`` services, these speak RemoteXPC messages (HTTP/2, see ``rsd.py``) rather
than lockdown plists:

* ``com.apple.timed.remote``: ``timed`` answers SNTP (RFC 4330) packets carried in XPC messages. The
  fake's clock is the host's, so the measured offset is the transport's noise, not a phone's drift.
* ``com.apple.mobile.notification_proxy.remote`` (and the insecure variant): Darwin notifications,
  ``ObserveNotification``/``PostNotification``/``RelayNotification``; shared with the lockdown-style
  notification_proxy, so a post on one is relayed to observers on the other, as on a phone.
* ``com.apple.mobile.storage_mounter_proxy.bridge``: the image mounter's commands, same implementation;
* ``com.apple.remote.installcoordination_proxy``: the read-only ``Query`` of an app's install record;
* ``com.apple.security.cryptexd.remote``: personalization identifiers and the (empty) list of cryptexes.
"""

from __future__ import annotations

import asyncio
import hashlib
import plistlib
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from harness.testing.ios import system_services
from harness.testing.ios.rsd import RemoteXpcPeer, serve_xpc

if TYPE_CHECKING:
    from harness.testing.ios.device import DeviceState

NTP_UNIX_EPOCH_DELTA = 2208988800
SNTP_SIZE = 48
SNTP_SERVER_HEADER = (4 << 3) | 4  # LI 0, version 4, mode 4 (server)
ROOT_DISPERSION = 0x8000  # 0.5 s in NTP short format: what an automatically set phone clock claims
REFERENCE_ID = b"GPSs"
CFURL_MAGIC = uuid.UUID("C3853DCC-9776-4114-B6C1-FD9F51944A6D")  # CoreFoundation's NSURL-in-XPC marker

XpcServer = Callable[["DeviceState", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def ntp_timestamp(unix_time: float) -> bytes:
    seconds = int(unix_time)
    return struct.pack(">II", seconds + NTP_UNIX_EPOCH_DELTA, int((unix_time - seconds) * (1 << 32)))


def sntp_reply(request: bytes, received: float, now: float) -> bytes | None:
    """The server packet answering an SNTP client ``request`` (None when it is not one)."""
    if len(request) != SNTP_SIZE or request[0] & 0x7 != 3:
        return None
    header = bytes([SNTP_SERVER_HEADER, 1, 0, 0xEC]) + bytes(4) + struct.pack(">I", ROOT_DISPERSION) + REFERENCE_ID
    # reference, originate (the client's transmit time, echoed), receive, transmit
    return header + ntp_timestamp(now) + request[40:48] + ntp_timestamp(received) + ntp_timestamp(now)


async def serve_timed(state: DeviceState, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    async def handle(peer: RemoteXpcPeer, message: dict[str, Any]) -> dict[str, Any] | None:
        received = time.time()
        payload = message.get("TimesyncPayload")
        if message.get("MessageType") != "Timesync" or not isinstance(payload, bytes):
            return None
        answer = sntp_reply(payload, received, time.time())
        return {"TimesyncPayload": answer} if answer is not None else None

    await serve_xpc(RemoteXpcPeer(reader, writer), handle)


async def serve_notification_proxy(state: DeviceState, reader: asyncio.StreamReader,
                                   writer: asyncio.StreamWriter) -> None:
    observed: set[str] = set()
    client = RemoteXpcPeer(reader, writer)

    async def relay(name: str) -> None:
        if name in observed:
            await client.send_message({"Command": "RelayNotification", "Name": name})

    async def handle(peer: RemoteXpcPeer, message: dict[str, Any]) -> dict[str, Any] | None:
        command, name = message.get("Command"), str(message.get("Name", ""))
        if command == "ObserveNotification":
            observed.add(name)
        elif command == "PostNotification":
            for listener in list(state.notification_listeners):
                await listener(name)
        return None

    state.notification_listeners.append(relay)
    try:
        await serve_xpc(client, handle)
    finally:
        state.notification_listeners.remove(relay)


async def serve_storage_mounter_bridge(state: DeviceState, reader: asyncio.StreamReader,
                                       writer: asyncio.StreamWriter) -> None:
    """``storage_mounter_proxy.bridge``: the image mounter's commands in ``XPCRequestDictionary``, answered by the
    same implementation as the ``mobile_image_mounter`` shim (so both always agree)."""
    mounter = system_services.ImageMounterService(state)

    async def handle(peer: RemoteXpcPeer, message: dict[str, Any]) -> dict[str, Any] | None:
        request = message.get("XPCRequestDictionary")
        if not isinstance(request, dict):
            return {"Error": "InvalidRequest", "DetailedError": "no XPCRequestDictionary"}
        return mounter.handle(request)

    await serve_xpc(RemoteXpcPeer(reader, writer), handle)


async def serve_install_coordination(state: DeviceState, reader: asyncio.StreamReader,
                                     writer: asyncio.StreamWriter) -> None:
    """``installcoordination_proxy``: the read-only ``Query`` (request type 4) of LaunchServices' install record.

    Like the daemon, a request without both version keys gets no answer; replies are fresh messages.
    """
    async def handle(peer: RemoteXpcPeer, message: dict[str, Any]) -> dict[str, Any] | None:
        if message.get("RequestVersion") != 1 or message.get("ProtocolVersion") != 1:
            return None
        bundle_id = str(message.get("BundleID", ""))
        app = state.apps.get(bundle_id) or state.system_apps.get(bundle_id)
        if message.get("RequestType") != 4 or app is None:
            what = f"no application {bundle_id!r} is installed" if app is None else "only Query is supported"
            return {"Success": False, "ErrorData": _archived_error(what)}
        return {"Success": True, "DBUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"fake-lsdb:{state.udid}")).upper(),
                "DBSequence": 1000 + len(state.apps),
                "InstallPath": {"com.apple.CFURL.magic": CFURL_MAGIC, "com.apple.CFURL.base": None,
                                "com.apple.CFURL.string": f"file://{app.info().get('Path', '')}/"},
                "PersistentIdentifier": hashlib.sha256(bundle_id.encode()).digest()[:16]}

    await serve_xpc(RemoteXpcPeer(reader, writer), handle)


def _archived_error(description: str) -> bytes:
    """An ``NSKeyedArchiver`` plist of an NSError, reduced to what a host reads from it (its description)."""
    return plistlib.dumps({"$archiver": "NSKeyedArchiver", "$version": 100000,
                           "$objects": ["$null", description], "$top": {"root": plistlib.UID(1)}},
                          fmt=plistlib.FMT_BINARY)


async def serve_cryptexd(state: DeviceState, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """``cryptexd``: the read-only routines. No cryptex is installed (the DDI is an image mount on the fake)."""
    async def handle(peer: RemoteXpcPeer, message: dict[str, Any]) -> dict[str, Any] | None:
        routine = message.get("routine")
        if routine == "read-personalization-id":
            ids = system_services.personalization_identifiers(state)
            return {"argv": {"img4_chip_chip": ids["ChipID"], "img4_chip_bord": ids["BoardId"],
                             "img4_chip_ecid": ids["UniqueChipID"], "img4_chip_sdom": ids["SecurityDomain"]}}
        if routine == "copy-installed":
            return {"error": 0, "argv": {"remote-cryptex-array": []}}
        return {"error": 45}  # ENOTSUP: installing needs a signed cryptex the fake cannot check

    await serve_xpc(RemoteXpcPeer(reader, writer), handle)


#: Native RemoteXPC services the fake's RSD advertises (``UsesRemoteXPC``), by name.
REMOTE_XPC_SERVICES: dict[str, XpcServer] = {
    "com.apple.timed.remote": serve_timed,
    "com.apple.mobile.notification_proxy.remote": serve_notification_proxy,
    "com.apple.mobile.insecure_notification_proxy.remote": serve_notification_proxy,
    "com.apple.mobile.storage_mounter_proxy.bridge": serve_storage_mounter_bridge,
    "com.apple.remote.installcoordination_proxy": serve_install_coordination,
    "com.apple.security.cryptexd.remote": serve_cryptexd,
}

#: ``Features`` a service lists in ``peer_info`` (clients check them before calling).
FEATURES: dict[str, list[str]] = {"com.apple.security.cryptexd.remote": ["ReadIdentifiers"]}
