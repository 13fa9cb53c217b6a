"""The fake iPhone's RemoteServiceDiscovery (iOS 17+): what a tunnel's far end serves, on loopback TCP.

On a real iOS 17+ phone the host reaches developer services only through a tunnel (TUN device,
CDTunnel/QUIC, RemotePairing). Inside it, ``remoted`` answers on the RSD port with RemoteXPC over
HTTP/2: the host sends its handshake, the phone replies with ``peer_info`` (``Properties`` and the
``Services`` map of name -> port). Every service then has its own TCP port:

* ``com.apple.instruments.dtservicehub``: DTX straight away (the same DVT server as over lockdown);
* ``*.shim.remote``: lockdown-style services after an ``RSDCheckin`` plist exchange
  (house_arrest/AFC, installation_proxy, diagnostics_relay, syslog_relay, os_trace_relay, ...);
* ``com.apple.mobile.lockdown.remote.trusted``: lockdownd's values, no pairing (the tunnel is paired).

This module serves exactly that far end on ``127.0.0.1``: the creation of the tunnel itself is out of
reach (see ``docs/ios.md``). The HTTP/2 framing is ``hyperframe`` (the library pymobiledevice3 itself
uses) and the XPC messages are pymobiledevice3's own ``remote.xpc_message`` classes; the services behind
the ports are the fake's existing ones (:data:`harness.testing.ios.device.SERVICES`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from hyperframe.exceptions import HyperframeError
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from pymobiledevice3.remote.xpc_message import (
    XpcFlags,
    XpcInt64Type,
    XpcUInt64Type,
    XpcWrapper,
    XpcWrapperHeader,
    create_xpc_wrapper,
    decode_xpc_object,
)

from harness.testing.ios.lockdownd import DVT_SERVICES, Lockdownd
from harness.testing.ios.wire import close_quietly, read_plist, write_plist

if TYPE_CHECKING:
    from harness.testing.ios.device import DeviceState

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER = 9
ROOT_CHANNEL, REPLY_CHANNEL = 1, 3
WINDOW = 16 * 1024 * 1024
MAX_FRAME = 16384  # HTTP/2's default SETTINGS_MAX_FRAME_SIZE
DTSERVICEHUB = "com.apple.instruments.dtservicehub"
LOCKDOWN_TRUSTED = "com.apple.mobile.lockdown.remote.trusted"
SHIM_SUFFIX = ".shim.remote"
#: What a stalled host gets before the fake drops its connection (it never waits forever on one).
READ_TIMEOUT_S = 600.0

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def xpc_value(value: Any) -> Any:
    """A Python value as pymobiledevice3's XPC builder takes it: ints become explicit (u)int64."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return XpcUInt64Type(value) if value >= 0 else XpcInt64Type(value)
    if isinstance(value, dict):
        return {str(k): xpc_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [xpc_value(v) for v in value]
    return value


class RemoteXpcPeer:
    """The device end of one RemoteXPC (HTTP/2) connection: frames in, XPC messages out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._partial: dict[int, bytes] = {}
        self._open_streams: set[int] = set()
        self._next_id = 2  # the listener's own messages are even
        self.last_message_id = 0
        self.last_wants_reply = False

    async def read_frame(self) -> Frame:
        header = await asyncio.wait_for(self.reader.readexactly(FRAME_HEADER), READ_TIMEOUT_S)
        frame, length = Frame.parse_frame_header(memoryview(header))
        frame.parse_body(memoryview(await self.reader.readexactly(length)))
        return frame

    def send(self, *frames: Frame) -> None:
        for frame in frames:
            self.writer.write(frame.serialize())

    async def accept(self) -> None:
        """Read the client's preface; answer with our settings and a large window, as ``remoted`` does."""
        preface = await asyncio.wait_for(self.reader.readexactly(len(HTTP2_PREFACE)), READ_TIMEOUT_S)
        if preface != HTTP2_PREFACE:
            raise ConnectionError("not an HTTP/2 client preface")
        self.send(SettingsFrame(settings={SettingsFrame.MAX_CONCURRENT_STREAMS: 100,
                                          SettingsFrame.INITIAL_WINDOW_SIZE: WINDOW}),
                  WindowUpdateFrame(stream_id=0, window_increment=WINDOW - 65535))
        await self.writer.drain()

    async def next_message(self) -> dict[str, Any] | None:
        """The next non-empty XPC dictionary the host sends; None when it closes the connection."""
        while True:
            try:
                frame = await self.read_frame()
            except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
                return None
            if isinstance(frame, GoAwayFrame):
                return None
            if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                self.send(SettingsFrame(flags=["ACK"]))
            elif isinstance(frame, PingFrame) and "ACK" not in frame.flags:
                self.send(PingFrame(flags=["ACK"], opaque_data=frame.opaque_data))
            elif isinstance(frame, DataFrame) and frame.data:
                if frame.body_len:
                    self.send(WindowUpdateFrame(stream_id=0, window_increment=frame.body_len))
                message = self._take(frame.stream_id, bytes(frame.data))
                if message:
                    await self.writer.drain()
                    return message
            await self.writer.drain()

    def _take(self, stream_id: int, data: bytes) -> dict[str, Any] | None:
        buf = self._partial.pop(stream_id, b"") + data
        if len(buf) < XpcWrapperHeader.SIZE or len(buf) < XpcWrapperHeader.SIZE + XpcWrapperHeader.parse(buf).size:
            self._partial[stream_id] = buf  # the rest of the message comes in the next DATA frame
            return None
        wrapper = XpcWrapper.parse(buf)
        if wrapper.payload is None:
            return None
        decoded = decode_xpc_object(wrapper.payload)
        if not isinstance(decoded, dict) or not decoded:
            return None
        self.last_message_id = wrapper.message_id
        self.last_wants_reply = bool(wrapper.flags & XpcFlags.WANTING_REPLY)
        return decoded

    async def send_message(self, body: dict[str, Any], *, reply_to: int | None = None) -> None:
        """Send one XPC dictionary: a reply (to message ``reply_to``) goes on the reply channel with the
        REPLY flag; anything else (the handshake's ``peer_info``, a relayed notification) on the root channel."""
        wrapper = XpcWrapper.parse(create_xpc_wrapper(xpc_value(body)))
        if reply_to is None:
            stream_id, wrapper.message_id = ROOT_CHANNEL, self._next_id
            self._next_id += 2
        else:
            stream_id, wrapper.message_id = REPLY_CHANNEL, reply_to
            wrapper.flags |= XpcFlags.REPLY
        if stream_id not in self._open_streams:
            self._open_streams.add(stream_id)
            self.send(HeadersFrame(stream_id=stream_id, flags=["END_HEADERS"]))
        data = wrapper.build()
        for offset in range(0, len(data), MAX_FRAME):
            self.send(DataFrame(stream_id=stream_id, data=data[offset:offset + MAX_FRAME]))
        await self.writer.drain()


async def serve_xpc(peer: RemoteXpcPeer,
                    handle: Callable[[RemoteXpcPeer, dict[str, Any]], Awaitable[dict[str, Any] | None]]) -> None:
    """A RemoteXPC service on ``peer``: ``handle`` answers each request (its dict is sent back, if any)."""
    await peer.accept()
    while (message := await peer.next_message()) is not None:
        answer = await handle(peer, message)
        if answer is not None:
            await peer.send_message(answer, reply_to=peer.last_message_id if peer.last_wants_reply else None)


def shim_names() -> dict[str, str]:
    """``NAME.shim.remote`` -> the lockdown service behind it, for every non-DVT service the fake has."""
    from harness.testing.ios.device import SERVICES

    return {f"{name}{SHIM_SUFFIX}": name for name in SERVICES if name not in DVT_SERVICES}


class RsdServer:
    """The RSD port and one loopback TCP listener per service it advertises."""

    def __init__(self, state: DeviceState) -> None:
        self.state = state
        self.address: tuple[str, int] | None = None
        self.ports: dict[str, int] = {}
        self.remote_xpc: set[str] = set()  # services that speak RemoteXPC (HTTP/2) rather than lockdown plists
        self.features: dict[str, list[str]] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self.uuid = uuid.uuid5(uuid.NAMESPACE_URL, f"edgeharness-fake-rsd:{state.udid}")

    async def start(self, port: int = 0) -> tuple[str, int]:
        """Listen on the service ports, then on the RSD port (``0``: a free one); returns the RSD address."""
        from harness.testing.ios.remote_services import FEATURES, REMOTE_XPC_SERVICES

        self.features = FEATURES

        handlers: dict[str, Handler] = {DTSERVICEHUB: self._dvt, LOCKDOWN_TRUSTED: self._lockdown}
        for shim, name in shim_names().items():
            handlers[shim] = self._shim(name)
        for name, server in REMOTE_XPC_SERVICES.items():
            handlers[name] = functools.partial(server, self.state)
            self.remote_xpc.add(name)
        for name, handler in handlers.items():
            self.ports[name] = await self._listen(handler, 0)
        self.address = (HOST, await self._listen(self._rsd, port))
        return self.address

    async def _listen(self, handler: Handler, port: int) -> int:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, ValueError, HyperframeError) as exc:
                # a peer that went away, or sent frames or XPC that do not parse (untrusted input): drop it
                log.debug("fake RSD connection ended: %r", exc)
            except asyncio.CancelledError:
                # the fake is stopping; ending quietly keeps Python 3.11's stream callback from logging it
                return
            finally:
                await close_quietly(writer)

        server = await asyncio.start_server(serve, HOST, port)
        self._servers.append(server)
        return server.sockets[0].getsockname()[1]

    def close(self) -> None:
        for server in self._servers:
            server.close()

    # --- the RSD port ---------------------------------------------------------------
    async def _rsd(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def handle(peer: RemoteXpcPeer, message: dict[str, Any]) -> dict[str, Any] | None:
            return self.peer_info() if message.get("MessageType") == "Handshake" else None

        await serve_xpc(RemoteXpcPeer(reader, writer), handle)

    def peer_info(self) -> dict[str, Any]:
        """What ``remoted`` answers a host's handshake with: the device's properties and its services."""
        values = self.state.lockdown_values()
        props = {
            "UniqueDeviceID": self.state.udid,
            "ProductType": values["ProductType"],
            "OSVersion": values["ProductVersion"],
            "BuildVersion": values["BuildVersion"],
            "HardwareModel": values["HardwareModel"],
            "HWModelStr": values["HardwareModel"],
            "DeviceClass": values["DeviceClass"],
            "CPUArchitecture": values["CPUArchitecture"],
            "UniqueChipID": values["UniqueChipID"],
            "ChipID": values["ChipID"],
            "SerialNumber": values["SerialNumber"],
            "ProductName": "iPhone OS",
            "HumanReadableProductVersionString": values["ProductVersion"],
            "DeviceSupportsLockdown": True,
            "SensitivePropertiesVisible": True,
            "RemoteXPCVersionFlags": 0x0100000000000006,
            "IsVirtualDevice": False,
        }
        services = {name: {"Entitlement": _entitlement(name), "Port": str(port), "Properties": self._properties(name)}
                    for name, port in self.ports.items()}
        return {"MessageType": "Handshake", "MessagingProtocolVersion": 7, "UUID": self.uuid,
                "Properties": props, "Services": services}

    def _properties(self, name: str) -> dict[str, Any]:
        if name in self.remote_xpc:
            return {"UsesRemoteXPC": True, "ServiceVersion": 1,
                    **({"Features": self.features[name]} if name in self.features else {})}
        return {"ServiceVersion": 2} if name.endswith(SHIM_SUFFIX) else {}

    # --- the service ports ------------------------------------------------------------
    async def _checkin(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, error: str | None) -> bool:
        """The ``RSDCheckin`` exchange a shim service starts with; False when it failed (``error``) or the host
        broke it off."""
        request = await read_plist(reader)
        if request is None or request.get("Request") != "RSDCheckin":
            return False
        await write_plist(writer, {"Request": "RSDCheckin"})
        await write_plist(writer, {"Request": "StartService", **({"Error": error} if error else {})})
        return error is None

    def _shim(self, name: str) -> Handler:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            from harness.testing.ios.device import SERVICES

            # a locked phone refuses its services, as lockdownd's StartService does
            if await self._checkin(reader, writer, "PasswordProtected" if self.state.faults.locked else None):
                await SERVICES[name](self.state, reader, writer)
        return serve

    async def _lockdown(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await self._checkin(reader, writer, None):
            await Lockdownd(self.state, remote=True).serve(reader, writer)

    async def _dvt(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from harness.testing.ios.dvt import serve_dvt

        await serve_dvt(self.state, reader, writer)


def _entitlement(name: str) -> str:
    """The entitlement ``remoted`` lists for a service (the shims and lockdown need a trusted peer)."""
    return "com.apple.private.dt.instruments.dtservicehub" if name == DTSERVICEHUB else LOCKDOWN_TRUSTED
