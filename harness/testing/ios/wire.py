"""Framing shared by the fake iPhone's daemons: usbmuxd packets and length-prefixed plists.

Device side only. The formats are the ones pymobiledevice3 speaks (see ``shared/IOS.md`` §3.5):
usbmuxd packets carry a 16-byte little-endian header; lockdownd and the plist services use a
big-endian u32 length then an XML plist.
"""

from __future__ import annotations

import asyncio
import plistlib
import struct
from typing import Any

USBMUX_HEADER = struct.Struct("<IIII")  # length (incl. header), version, message, tag
USBMUX_PLIST_VERSION = 1
USBMUX_PLIST_MESSAGE = 8


async def read_usbmux(reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
    """Read one plist usbmuxd request; return its tag and decoded body."""
    header = await reader.readexactly(USBMUX_HEADER.size)
    length, _version, _message, tag = USBMUX_HEADER.unpack(header)
    body = await reader.readexactly(length - USBMUX_HEADER.size)
    return tag, plistlib.loads(body)


def usbmux_packet(tag: int, body: dict[str, Any]) -> bytes:
    """One plist usbmuxd reply (version 1, so the client stays in plist mode)."""
    payload = plistlib.dumps(body)
    return (
        USBMUX_HEADER.pack(USBMUX_HEADER.size + len(payload), USBMUX_PLIST_VERSION, USBMUX_PLIST_MESSAGE, tag) + payload
    )


async def read_plist(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """Read one length-prefixed plist; None at a clean end of stream."""
    try:
        (length,) = struct.unpack(">I", await reader.readexactly(4))
    except asyncio.IncompleteReadError:
        return None
    return plistlib.loads(await reader.readexactly(length))


async def write_plist(writer: asyncio.StreamWriter, body: dict[str, Any]) -> None:
    """Write one length-prefixed XML plist."""
    payload = plistlib.dumps(body)
    writer.write(struct.pack(">I", len(payload)) + payload)
    await writer.drain()


async def close_quietly(writer: asyncio.StreamWriter) -> None:
    """Close a stream, ignoring a peer that already went away."""
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass
