"""Drive the real AOSP ``adb`` client against virtual devices, isolated from any other adb server.

Each :class:`AdbClient` gets its own server port (``ANDROID_ADB_SERVER_PORT``) and
its own ``HOME`` (so its own ``~/.android/adbkey``): parallel test sessions and a
developer's own adb server never see each other's devices.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from harness.errors import DeviceError


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AdbClient:
    """The real ``adb`` binary with a private server; call :meth:`close` to kill that server."""

    def __init__(self, home: Path, adb: str | None = None) -> None:
        found = adb or shutil.which("adb")
        if not found:
            raise DeviceError("the adb client is not installed", hint="apt-get install adb (Debian package 'adb')")
        self.adb = found
        self.home = Path(home)
        (self.home / ".android").mkdir(parents=True, exist_ok=True)
        self.server_port = _free_port()
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "ANDROID_ADB_SERVER_PORT": str(self.server_port),
            "ANDROID_SDK_HOME": str(self.home),
        }

    @property
    def public_key_path(self) -> Path:
        """``adbkey.pub`` of this client (exists once the server has started)."""
        return self.home / ".android" / "adbkey.pub"

    def run(self, *args: str, timeout_s: float = 60, serial: str | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run ``adb [-s SERIAL] ARGS`` with stdin closed; output is bytes."""
        argv = [self.adb, *(["-s", serial] if serial else []), *args]
        return subprocess.run(argv, capture_output=True, env=self.env, stdin=subprocess.DEVNULL, timeout=timeout_s)

    def start_server(self) -> None:
        """Start the private server (this also creates the client's key pair)."""
        self.run("start-server")

    def state(self, serial: str) -> str:
        """``device``, ``unauthorized``, ``offline`` … as ``adb devices`` shows it, or '' when absent."""
        out = self.run("devices").stdout.decode(errors="replace")
        for line in out.splitlines()[1:]:
            name, _, state = line.partition("\t")
            if name == serial:
                return state.strip()
        return ""

    def connect(self, address: str, *, timeout_s: float = 15, want: str = "device") -> str:
        """``adb connect`` and wait until the device shows ``want``; return the last state seen."""
        deadline = time.monotonic() + timeout_s
        state = ""
        while time.monotonic() < deadline:
            if state == "offline":  # adb keeps a dead TCP transport listed: drop it, then reconnect
                self.run("disconnect", address, timeout_s=timeout_s)
                state = ""
            if state == "":
                self.run("connect", address, timeout_s=timeout_s)
            state = self.state(address)
            if state == want:
                return state
            time.sleep(0.2)
        return state

    def close(self) -> None:
        """Kill this client's private server."""
        self.run("kill-server", timeout_s=15)
