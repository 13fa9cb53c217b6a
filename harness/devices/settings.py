"""What the device layer takes from the environment, read once by a front and passed down explicitly.

Backends never read ``os.environ``: :func:`harness.devices.discovery.open_device` (the front every
caller goes through) builds a :class:`DeviceSettings` with :meth:`DeviceSettings.from_env` unless it
is given one, and hands each backend's opener the fields it needs.

| variable | field | used by |
|---|---|---|
| ``HARNESS_CACHE`` | ``cache_dir`` | host work folder, fallback adb key, iOS pair records |
| ``HARNESS_ADB_KEY`` / ``ANDROID_USER_HOME`` | ``adb_key`` | the adb key (else ``~/.android/adbkey``) |
| ``HARNESS_ADB_RECONNECT_S`` | ``adb_reconnect_s`` | how long a broken adb link is retried |
| ``HARNESS_ADB_DEVICES`` / ``HARNESS_INVENTORY`` | ``adb_devices`` / ``inventory`` | ``harness devices`` |
| ``USBMUXD_SOCKET_ADDRESS`` | ``usbmux_address`` | the iOS backend's usbmuxd |
| ``HARNESS_TUNNELD`` (``HOST:PORT``) | ``tunneld_address`` | iOS 17+: a ``pymobiledevice3 remote tunneld`` |
| ``ANDROID_SERIAL`` | ``android_serial`` | the default device when none is named |
| ``ADB_SERVER_SOCKET``, ``ANDROID_ADB_SERVER_PORT`` | ``adb_server_socket``, ``adb_server_port`` | adb server |
| ``HARNESS_HOST_ZYGOTE`` (on unless ``0``) | ``host_zygote`` | the host's preloaded pyrunner zygote |
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UsageError

DEFAULT_RECONNECT_S = 10.0
TUNNELD_DEFAULT_PORT = 49151  # pymobiledevice3's tunneld


def default_cache_dir() -> Path:
    """``~/.cache/edgeharness`` (what ``HARNESS_CACHE`` replaces)."""
    return Path.home() / ".cache" / "edgeharness"


def sdk_key_path(android_user_home: str | os.PathLike[str] | None = None) -> Path:
    """The Android SDK's adb key: ``ANDROID_USER_HOME/adbkey``, else ``~/.android/adbkey``."""
    base = Path(android_user_home) if android_user_home else Path.home() / ".android"
    return base / "adbkey"


@dataclass(frozen=True)
class DeviceSettings:
    """Device-layer settings; every field has the default a user without environment variables gets."""

    cache_dir: Path
    adb_key: Path
    adb_reconnect_s: float = DEFAULT_RECONNECT_S
    adb_devices: tuple[str, ...] = ()
    inventory: Path | None = None
    usbmux_address: str | None = None
    tunneld_address: tuple[str, int] | None = None
    android_serial: str | None = None
    adb_server_socket: str | None = None
    adb_server_port: str | None = None
    host_zygote: bool = True

    def adb_server_env(self) -> dict[str, str]:
        """The local adb server's variables, as the ``adb`` client reads them."""
        return {k: v for k, v in (("ADB_SERVER_SOCKET", self.adb_server_socket),
                                  ("ANDROID_ADB_SERVER_PORT", self.adb_server_port)) if v}

    @classmethod
    def defaults(cls) -> DeviceSettings:
        """The settings of an empty environment."""
        return cls.from_env({})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DeviceSettings:
        """Read the variables in the module table from ``environ`` (default ``os.environ``)."""
        env = os.environ if environ is None else environ
        explicit_key = env.get("HARNESS_ADB_KEY")
        return cls(
            cache_dir=Path(env["HARNESS_CACHE"]).expanduser() if env.get("HARNESS_CACHE") else default_cache_dir(),
            adb_key=Path(explicit_key).expanduser() if explicit_key else sdk_key_path(env.get("ANDROID_USER_HOME")),
            adb_reconnect_s=_seconds(env, "HARNESS_ADB_RECONNECT_S", DEFAULT_RECONNECT_S),
            adb_devices=tuple(i for i in env.get("HARNESS_ADB_DEVICES", "").replace(",", " ").split() if i),
            inventory=Path(env["HARNESS_INVENTORY"]) if env.get("HARNESS_INVENTORY") else None,
            usbmux_address=env.get("USBMUXD_SOCKET_ADDRESS") or None,
            tunneld_address=parse_tunneld_address(env["HARNESS_TUNNELD"]) if env.get("HARNESS_TUNNELD") else None,
            android_serial=env.get("ANDROID_SERIAL") or None,
            adb_server_socket=env.get("ADB_SERVER_SOCKET") or None,
            adb_server_port=env.get("ANDROID_ADB_SERVER_PORT") or None,
            host_zygote=env.get("HARNESS_HOST_ZYGOTE", "1").strip().lower() not in ("0", "no", "off", "false"),
        )


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{name}={text!r} is not a number of seconds >= 0", hint=f"e.g. {name}={default:g}")
    return value


def parse_tunneld_address(text: str, source: str = "HARNESS_TUNNELD") -> tuple[str, int]:
    """``HOST:PORT`` of a ``pymobiledevice3 remote tunneld`` (``HOST`` alone: port 49151; ``[v6]:PORT``)."""
    spec = text.strip()
    host, sep, port_text = spec.rpartition(":")
    if not sep or (":" in host and not host.startswith("[")):  # no port, or a bare IPv6 address
        host, port_text = spec, str(TUNNELD_DEFAULT_PORT)
    host = host.strip("[]")
    try:
        port = int(port_text)
        if ":" in host:
            ipaddress.IPv6Address(host)
    except ValueError:
        port = 0
    if not host or not 0 < port < 65536:
        raise UsageError(f"{source}={text!r} is not a tunneld address", hint="use HOST:PORT, e.g. 127.0.0.1:49151")
    return host, port
