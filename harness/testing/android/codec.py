"""ADB message codec: the 24-byte header, checksums, command names.

Pure functions, no I/O, so the wire format can be tested on its own (as
adb-shell's ``adb_message.py`` does on the host side).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

HEADER_FORMAT = "<6I"
HEADER_SIZE = struct.calcsize(HEADER_FORMAT)

VERSION_CHECKSUMMED = 0x01000000
VERSION_SKIP_CHECKSUM = 0x01000001
MAX_PAYLOAD_BYTES = 1024 * 1024

AUTH_TOKEN = 1
AUTH_SIGNATURE = 2
AUTH_RSAPUBLICKEY = 3


def _cmd(name: bytes) -> int:
    return int.from_bytes(name, "little")


CNXN = _cmd(b"CNXN")
AUTH = _cmd(b"AUTH")
OPEN = _cmd(b"OPEN")
OKAY = _cmd(b"OKAY")
CLSE = _cmd(b"CLSE")
WRTE = _cmd(b"WRTE")
STLS = _cmd(b"STLS")
KNOWN_COMMANDS = frozenset({CNXN, AUTH, OPEN, OKAY, CLSE, WRTE, STLS})


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid ADB message (the connection is dropped)."""


def command_name(command: int) -> str:
    """Four-letter name of a command word, for logs (``'CNXN'``), or its hex when unprintable."""
    raw = command.to_bytes(4, "little")
    return raw.decode("ascii") if raw.isalpha() else f"0x{command:08x}"


def checksum(data: bytes) -> int:
    """Byte sum of the payload, as protocol version 0x01000000 requires.

    numpy, not ``sum(data)``: adb-shell speaks only that version, so every 64 KiB of a push is
    summed, and the pure-Python loop (~8 ms/MB) capped pushes at a fifth of the real client's speed.
    """
    return int(np.frombuffer(data, dtype=np.uint8).sum(dtype=np.uint64)) & 0xFFFFFFFF


@dataclass(frozen=True)
class Message:
    """One ADB message: command, two arguments and a payload."""

    command: int
    arg0: int
    arg1: int
    data: bytes = b""

    @property
    def name(self) -> str:
        return command_name(self.command)

    def pack(self, *, corrupt_checksum: bool = False) -> bytes:
        """Header plus payload; ``corrupt_checksum`` flips the checksum (fault injection)."""
        check = checksum(self.data)
        if corrupt_checksum:
            check ^= 0xFFFFFFFF
        header = struct.pack(
            HEADER_FORMAT, self.command, self.arg0, self.arg1, len(self.data), check, self.command ^ 0xFFFFFFFF
        )
        return header + self.data


@dataclass(frozen=True)
class Header:
    """A decoded header, before its payload is read."""

    command: int
    arg0: int
    arg1: int
    data_length: int
    data_check: int


def unpack_header(raw: bytes, *, max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> Header:
    """Decode and validate a 24-byte header; raise :class:`ProtocolError` on a bad one."""
    if len(raw) != HEADER_SIZE:
        raise ProtocolError(f"header is {len(raw)} bytes, expected {HEADER_SIZE}")
    command, arg0, arg1, length, check, magic = struct.unpack(HEADER_FORMAT, raw)
    if magic != command ^ 0xFFFFFFFF:
        raise ProtocolError(f"bad magic 0x{magic:08x} for command {command_name(command)}")
    if command not in KNOWN_COMMANDS:
        raise ProtocolError(f"unknown command {command_name(command)}")
    if length > max_payload_bytes:
        raise ProtocolError(f"payload of {length} bytes exceeds maxdata {max_payload_bytes}")
    return Header(command, arg0, arg1, length, check)


def verify_payload(header: Header, data: bytes, version: int) -> None:
    """Check a payload's checksum when the negotiated version requires it."""
    if version <= VERSION_CHECKSUMMED and header.data_check != checksum(data):
        raise ProtocolError(f"checksum mismatch on {command_name(header.command)}")


def banner(properties: dict[str, str], features: list[str]) -> bytes:
    """The device's CNXN banner: ``device::ro.product.name=…;…;features=…``."""
    keys = ("ro.product.name", "ro.product.model", "ro.product.device")
    parts = [f"{key}={properties.get(key, '')}" for key in keys]
    parts.append("features=" + ",".join(features))
    return ("device::" + ";".join(parts) + ";").encode()


def parse_host_banner(data: bytes) -> tuple[str, frozenset[str]]:
    """Split a host CNXN banner into (system type, features); never raises on odd text."""
    text = data.rstrip(b"\0").decode("utf-8", "replace")
    kind, _, rest = text.partition(":")
    features: frozenset[str] = frozenset()
    for part in rest.split(";"):
        key, _, value = part.partition("=")
        if key.strip(":") == "features":
            features = frozenset(f for f in value.split(",") if f)
    return kind, features
