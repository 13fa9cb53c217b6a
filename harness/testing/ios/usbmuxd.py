"""The fake usbmuxd: plist protocol on a UNIX socket, one attached device.

Speaks what pymobiledevice3's ``PlistMuxConnection`` sends: ``ReadBUID``, ``ListDevices``,
``Listen``, ``ReadPairRecord``, ``SavePairRecord`` and ``Connect``. After a successful
``Connect`` the same socket becomes the raw stream to the device port, handed to the
device's :meth:`route` (lockdownd on 62078, else a service port lockdownd started).
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Any

from harness.testing.ios.wire import close_quietly, read_usbmux, usbmux_packet

if TYPE_CHECKING:
    from harness.testing.ios.device import DeviceState

RESULT_OK, RESULT_BADDEV, RESULT_CONNREFUSED = 0, 2, 3
BUID = "7E5A1D2C-0000-4000-8000-EDGEHARNESS0"


class Usbmuxd:
    """One client connection's worth of usbmuxd protocol for a single fake device."""

    def __init__(self, state: DeviceState) -> None:
        self.state = state

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer requests until the client closes or asks to connect to a device port."""
        try:
            while True:
                try:
                    tag, request = await read_usbmux(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                reply, route_port = self._handle(request)
                writer.write(usbmux_packet(tag, reply))
                await writer.drain()
                if route_port is not None:
                    await self.state.route(route_port, reader, writer)
                    return
        finally:
            await close_quietly(writer)

    def _handle(self, request: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
        kind = request.get("MessageType")
        if kind == "ReadBUID":
            return {"BUID": BUID}, None
        if kind == "ListDevices":
            return {"DeviceList": [self._attached()] if self.state.attached else []}, None
        if kind == "Listen":
            return _result(RESULT_OK), None
        if kind == "ReadPairRecord":
            record = self.state.usbmux_pair_records.get(request.get("PairRecordID", ""))
            return ({"PairRecordData": record} if record else _result(RESULT_BADDEV)), None
        if kind == "SavePairRecord":
            self.state.usbmux_pair_records[request["PairRecordID"]] = bytes(request["PairRecordData"])
            return _result(RESULT_OK), None
        if kind == "Connect":
            port = socket.ntohs(int(request.get("PortNumber", 0)))
            if request.get("DeviceID") != self.state.device_id or not self.state.accepts(port):
                return _result(RESULT_CONNREFUSED), None
            return _result(RESULT_OK), port
        return _result(1), None

    def _attached(self) -> dict[str, Any]:
        return {
            "MessageType": "Attached",
            "DeviceID": self.state.device_id,
            "Properties": {
                "SerialNumber": self.state.udid,
                "ConnectionType": "USB",
                "DeviceID": self.state.device_id,
                "LocationID": 0,
                "ProductID": 0x12A8,
            },
        }


def _result(number: int) -> dict[str, Any]:
    return {"MessageType": "Result", "Number": number}
