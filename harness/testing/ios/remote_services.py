"""The fake iPhone's native RemoteXPC services (iOS 17+, reached only through RSD; ``UsesRemoteXPC``).

Unlike the ``*.shim.remote`` services, these speak RemoteXPC messages (HTTP/2, see ``rsd.py``) rather
than lockdown plists:

* ``com.apple.timed.remote``: ``timed`` answers SNTP (RFC 4330) packets carried in XPC messages. The
  fake's clock is the host's, so the measured offset is the transport's noise, not a phone's drift.
* ``com.apple.mobile.notification_proxy.remote`` (and the insecure variant): Darwin notifications,
  ``ObserveNotification``/``PostNotification``/``RelayNotification``; shared with the lockdown-style
  notification_proxy, so a post on one is relayed to observers on the other, as on a phone.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from harness.testing.ios.rsd import RemoteXpcPeer, serve_xpc

if TYPE_CHECKING:
    from harness.testing.ios.device import DeviceState

NTP_UNIX_EPOCH_DELTA = 2208988800
SNTP_SIZE = 48
SNTP_SERVER_HEADER = (4 << 3) | 4  # LI 0, version 4, mode 4 (server)
ROOT_DISPERSION = 0x8000  # 0.5 s in NTP short format: what an automatically set phone clock claims
REFERENCE_ID = b"GPSs"

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


#: Native RemoteXPC services the fake's RSD advertises (``UsesRemoteXPC``), by name.
REMOTE_XPC_SERVICES: dict[str, XpcServer] = {
    "com.apple.timed.remote": serve_timed,
    "com.apple.mobile.notification_proxy.remote": serve_notification_proxy,
    "com.apple.mobile.insecure_notification_proxy.remote": serve_notification_proxy,
}
