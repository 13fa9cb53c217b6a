"""Where adb servers are and what their device states mean: pure parsing, no network, no adbutils.

Ids (see ``docs/android.md``): ``adb-server:SERIAL`` is a device of the local adb server (the one
``adb devices`` talks to: ``$ADB_SERVER_SOCKET`` ``tcp:[HOST:]PORT``, else ``$ANDROID_ADB_SERVER_PORT``,
else 5037 on 127.0.0.1); ``adb-server:HOST:PORT/SERIAL`` is a device of the server on a lab host.
The environment is read only by the fronts (:func:`local_server` takes the mapping to read).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

PREFIX = "adb-server:"
DEFAULT_SERVER_PORT = 5037
_HOST = re.compile(r"[A-Za-z0-9._-]+")
_PORT = re.compile(r"[0-9]{1,5}")
_SERIAL_CHARS = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space: what adb prints in `adb devices`


@dataclass(frozen=True)
class ServerAddress:
    """An adb server's TCP address."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


LOCAL_DEFAULT = ServerAddress("127.0.0.1", DEFAULT_SERVER_PORT)


def parse_server_address(text: str, *, default_host: str = "127.0.0.1") -> ServerAddress:
    """``HOST:PORT``, ``HOST`` (port 5037), ``[IPV6]:PORT`` or ``PORT``; ValueError saying what is wrong."""
    if not text or any(c.isspace() or not c.isprintable() for c in text):
        raise ValueError(f"adb server address {text!r} is empty or has white space or control characters")
    if text.startswith("["):
        host, close, rest = text[1:].partition("]")
        if not close or not host or (rest and not rest.startswith(":")):
            raise ValueError(f"adb server address {text!r}: an IPv6 address is written [ADDRESS]:PORT")
        port = rest[1:] or str(DEFAULT_SERVER_PORT)
    elif text.isdigit():
        host, port = default_host, text
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            host, port = text, str(DEFAULT_SERVER_PORT)
        if not _HOST.fullmatch(host):
            raise ValueError(f"adb server address {text!r}: {host!r} is not a host name or address")
    if not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise ValueError(f"adb server address {text!r}: port {port!r} is not a number in 1..65535")
    return ServerAddress(host, int(port))


def local_server(env: Mapping[str, str]) -> ServerAddress:
    """The local adb server as the ``adb`` client finds it in ``env``: ``ADB_SERVER_SOCKET`` (``tcp:...``),
    else ``ANDROID_ADB_SERVER_PORT``, else 127.0.0.1:5037. ValueError for a form this backend cannot use."""
    socket_spec = env.get("ADB_SERVER_SOCKET", "").strip()
    if socket_spec:
        kind, _, rest = socket_spec.partition(":")
        if kind != "tcp" or not rest:
            raise ValueError(f"ADB_SERVER_SOCKET={socket_spec!r}: only tcp:[HOST:]PORT is supported")
        return parse_server_address(rest)
    port = env.get("ANDROID_ADB_SERVER_PORT", "").strip()
    if port:
        if not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
            raise ValueError(f"ANDROID_ADB_SERVER_PORT={port!r} is not a number in 1..65535")
        return ServerAddress("127.0.0.1", int(port))
    return LOCAL_DEFAULT


@dataclass(frozen=True)
class ServerDeviceId:
    """A parsed ``adb-server:`` id: ``server`` None means the local server."""

    server: ServerAddress | None
    serial: str


def parse_device_id(device_id: str) -> ServerDeviceId:
    """``adb-server:SERIAL`` or ``adb-server:HOST:PORT/SERIAL``; ValueError saying what is wrong."""
    if not device_id.startswith(PREFIX):
        raise ValueError(f"{device_id!r} is not an adb-server id (adb-server:SERIAL or adb-server:HOST:PORT/SERIAL)")
    rest = device_id[len(PREFIX):]
    server_text, slash, serial = rest.partition("/")
    if not slash:
        server_text, serial = "", rest
    elif not server_text:
        raise ValueError(f"{device_id!r} names no server before '/' (adb-server:HOST:PORT/SERIAL)")
    if not serial:
        raise ValueError(f"{device_id!r} names no device serial (adb-server:SERIAL or adb-server:HOST:PORT/SERIAL)")
    if not _SERIAL_CHARS.fullmatch(serial):
        raise ValueError(f"{device_id!r}: the serial has characters adb never prints")
    return ServerDeviceId(parse_server_address(server_text) if server_text else None, serial)


def device_id(server: ServerAddress, serial: str, local: ServerAddress | None) -> str:
    """The id of ``serial`` on ``server``: the short form for the local server."""
    return f"{PREFIX}{serial}" if server == local else f"{PREFIX}{server}/{serial}"


def serial_usable_in_id(serial: str) -> bool:
    """A serial a device reported that can stand in an id (no '/', white space or control characters)."""
    return bool(_SERIAL_CHARS.fullmatch(serial)) and "/" not in serial


def parse_devices(text: str) -> list[tuple[str, str]]:
    """``host:devices`` output (``SERIAL<TAB>STATE`` lines) → ``[(serial, state)]``; the state may hold spaces
    (``no permissions (user in plugdev group; ...)``)."""
    rows = []
    for line in text.splitlines():
        serial, tab, state = line.partition("\t")
        if tab and serial:
            rows.append((serial, state.strip()))
    return rows


@dataclass(frozen=True)
class StateMeaning:
    """What a server state means for the harness: usable or not, why, the fix, and whether waiting may help."""

    usable: bool
    reason: str
    hint: str
    transient: bool


_MEANINGS = {
    "device": StateMeaning(True, "ready", "", False),
    "unauthorized": StateMeaning(
        False, "the phone has not accepted the adb server's key",
        "unlock the phone and accept the 'Allow USB debugging?' prompt (tick 'Always allow'); the key is the one "
        "of the user running the adb server (~/.android/adbkey on the lab host)", True),
    "authorizing": StateMeaning(False, "the adb server is still authenticating with the device",
                                "wait a few seconds; if it stays, replug the cable", True),
    "connecting": StateMeaning(False, "the adb server is still connecting to the device",
                               "wait a few seconds; if it stays, replug the cable", True),
    "offline": StateMeaning(
        False, "the adb server sees the device but it does not answer (booting, adbd restarting, USB reset)",
        "wait for it to finish booting; else replug the cable or run `adb reconnect` on the server's host", True),
    "no permissions": StateMeaning(
        False, "the adb server's user may not open the USB device",
        "install udev rules for Android devices (Debian: apt install android-sdk-platform-tools-common; or a "
        "rule with your vendor id and GROUP=\"plugdev\"), add the user to plugdev, replug, then `adb kill-server`",
        False),
    "": StateMeaning(False, "the adb server does not list the device",
                     "check the cable and `adb devices` on the server's host; for a network device run "
                     "`adb connect HOST:PORT` there", True),
}


def state_meaning(state: str) -> StateMeaning:
    """What a ``host:devices`` state means (``''``: the device is not listed)."""
    known = _MEANINGS.get(state) or _MEANINGS.get(state.split(" (", 1)[0])
    if known is not None:
        return known
    if state in ("bootloader", "recovery", "sideload", "rescue", "host"):
        return StateMeaning(False, f"the device is in {state} mode, not running Android",
                            "reboot it into Android (`adb reboot` on the server's host)", True)
    return StateMeaning(False, f"unknown adb server state {state!r}", "check `adb devices` on the server's host", True)
