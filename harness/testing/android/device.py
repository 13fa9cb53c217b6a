"""The virtual Android device: an ADB server on 127.0.0.1 backed by a sandbox directory.

Start one per test (``with VirtualDevice() as dev: ...``) or from the command line
(``harness virtual-device serve``). It runs its own event loop in a background
thread, so the calling thread stays free to drive ``adb`` or a backend against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

from harness.errors import DeviceError
from harness.testing.android import codec
from harness.testing.android.arm64 import start_emulation
from harness.testing.android.auth import AuthMode, KeyPolicy, decode_public_key
from harness.testing.android.connection import FEATURES, AdbConnection, ConnectionContext
from harness.testing.android.device_profile import DEFAULT_PROFILE, load_profile
from harness.testing.android.faults import FaultBox, Faults
from harness.testing.android.isolation import Isolation, device_environment, start_isolation
from harness.testing.android.netns import DeviceNetwork
from harness.testing.android.physics import Physics, PhysicsConfig
from harness.testing.android.sandbox import Sandbox
from harness.testing.android.services import make_opener
from harness.testing.android.shell_service import ProcessTable

log = logging.getLogger(__name__)


class VirtualDevice:
    """A device speaking the device side of ADB over TCP.

    ``auth``: ``none``, ``any``, ``keys`` (only ``keys``: paths of ``adbkey.pub``
    files or key texts) or ``reject``. ``root``: the sandbox directory (a temporary
    one, removed on stop, when omitted). ``reboot_s``: how long ``reboot:`` keeps
    the device offline. ``physics``: the battery/thermal/frequency model driven by the
    device's real CPU load (:mod:`harness.testing.android.physics`; None, the default: static files);
    tests force states through ``device.physics`` (charging, frequency cap, hot start).
    """

    def __init__(
        self,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        profile: str = DEFAULT_PROFILE,
        root: str | Path | None = None,
        auth: str | AuthMode = AuthMode.NONE,
        keys: Sequence[str | Path] = (),
        faults: Faults | None = None,
        isolation: str = "auto",
        reboot_s: float = 1.0,
        physics: PhysicsConfig | None = None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.port = 0
        self.profile = load_profile(profile)
        #: The arm64 userland under qemu-user, for a profile with ``emulation = "qemu-aarch64"``.
        self.emulation = start_emulation(isolation) if self.profile.emulation else None
        self._own_root = root is None
        self.sandbox = Sandbox(Path(root) if root else Path(tempfile.mkdtemp(prefix="eh-vdev-")), self.profile,
                               self.emulation)
        mode = AuthMode(auth) if isinstance(auth, str) else auth
        self.policy = KeyPolicy(mode, [decode_public_key(_key_text(k)) for k in keys])
        self.faults = FaultBox(faults)
        self._isolation_kind = isolation
        self.isolation: Isolation | None = None
        self.reboot_s = reboot_s
        self._physics_config = physics
        self.physics: Physics | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[AdbConnection] = set()
        self._online_at: asyncio.TimerHandle | None = None
        self.processes = ProcessTable()
        #: TCP links accepted so far (a host that reconnected by itself shows up here).
        self.links_accepted = 0

    # --- lifecycle ----------------------------------------------------------------
    def start(self) -> VirtualDevice:
        """Populate the sandbox, start isolation and listen; return self (address is known)."""
        self.sandbox.populate()
        if self.emulation is not None:  # what the harness matches the virtual-arm64 profile on, and records
            self.sandbox.write_properties({"edgeharness.emulated": f"qemu-aarch64: {self.emulation.describe()}"})
        self.isolation = start_isolation(self.sandbox, self._isolation_kind)
        if self._physics_config is not None:
            ns_pid = getattr(self.isolation, "pid", None)
            self.physics = Physics(self.sandbox.root, self._physics_config, namespace_pid=ns_pid).start()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"vdev-{id(self):x}", daemon=True)
        self._thread.start()
        try:
            self._call(self._listen(self._requested_port))
        except OSError as exc:
            self.stop()
            raise DeviceError(f"virtual device cannot listen on {self.host}:{self._requested_port}: {exc}") from None
        self.port = self._server.sockets[0].getsockname()[1] if self._server else 0
        self._requested_port = self.port
        self.sandbox.write_properties({"ro.serialno": f"EHV{self.port}"})
        log.info("virtual device listening on %s", self.address)
        return self

    def stop(self) -> None:
        """Close every connection, kill running commands, stop listening; safe to call twice."""
        if self.physics is not None:
            self.physics.stop()
            self.physics = None
        if self._loop is not None and self._loop.is_running():
            with contextlib.suppress(Exception):
                self._call(self._shutdown(), timeout_s=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._loop.close()
        self._loop = None
        if self.isolation is not None:
            self.isolation.close()
            self.isolation = None
        if self._own_root:
            self.sandbox.wipe()

    def __enter__(self) -> VirtualDevice:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> str:
        """``HOST:PORT``, the name ``adb connect`` and ``adb -s`` use."""
        return f"{self.host}:{self.port}"

    @property
    def serial(self) -> str:
        """The device's ``ro.serialno``."""
        return self.sandbox.properties().get("ro.serialno", "")

    @property
    def fault_log(self) -> list[str]:
        """Faults that fired, in order (``name: detail``)."""
        return list(self.faults.log)

    # --- test controls --------------------------------------------------------------
    def arm(self, faults: Faults) -> None:
        """Replace the armed faults (each one-shot fault clears itself when it fires)."""
        self.faults.arm(faults)

    def go_offline(self, seconds: float) -> None:
        """Drop every connection and refuse new ones for ``seconds``, then come back (like a reboot)."""
        self._call(self._offline(seconds))

    def is_online(self) -> bool:
        """True while the device accepts connections."""
        return self._server is not None

    def host_path(self, device_path: str) -> Path:
        """Host file behind a device path (raises ``PathRefused`` outside the sandbox)."""
        return self.sandbox.resolve(device_path)

    def set_property(self, key: str, value: str) -> None:
        """Change what ``getprop KEY`` answers from now on."""
        self.sandbox.write_properties({key: value})

    # --- event-loop side ------------------------------------------------------------
    def _call(self, coro: object, timeout_s: float = 30) -> object:
        assert self._loop is not None
        future: Future = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        return future.result(timeout=timeout_s)

    def _context(self) -> ConnectionContext:
        props = self.sandbox.properties

        def banner() -> bytes:
            return codec.banner(props(), FEATURES)

        return ConnectionContext(
            banner=banner,
            policy=self.policy,
            faults=self.faults,
            open_service=make_opener(
                self.sandbox, self._launch, self._reboot_soon, self.processes, self._network, lambda: self.serial
            ),
            name=self.address,
        )

    def _network(self) -> DeviceNetwork:
        return self.isolation.network if self.isolation is not None else DeviceNetwork()

    def _launch(self, command: str) -> tuple[list[str], dict[str, str]]:
        if self.isolation is None:
            raise DeviceError("virtual device is stopped", device=self.address, command=command)
        env = device_environment(self.sandbox.shell_environment())
        env["ANDROID_SERIAL"] = self.serial
        return self.isolation.argv(command), env

    async def _listen(self, port: int) -> None:
        ctx = self._context()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.links_accepted += 1
            connection = AdbConnection(reader, writer, ctx)
            self._connections.add(connection)
            try:
                await connection.run()
            finally:
                self._connections.discard(connection)

        self._server = await asyncio.start_server(handle, self.host, port, reuse_address=True)

    async def _close_all(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        await asyncio.gather(*(c.abort() for c in list(self._connections)), return_exceptions=True)

    async def _offline(self, seconds: float) -> None:
        self.faults.fire("offline", f"offline for {seconds}s", disarm=False)
        await self._close_all()
        self.processes.kill_all()  # like a reboot: nothing the host started survives
        if self._online_at is not None:
            self._online_at.cancel()
        loop = asyncio.get_running_loop()
        self._online_at = loop.call_later(seconds, lambda: loop.create_task(self._come_back()))

    async def _come_back(self) -> None:
        self._online_at = None
        for _ in range(50):
            try:
                await self._listen(self.port)
                self.faults.fire("online", "back online", disarm=False)
                return
            except OSError:
                await asyncio.sleep(0.1)
        log.error("virtual device %s could not listen again on port %d", self.address, self.port)

    async def _shutdown(self) -> None:
        if self._online_at is not None:
            self._online_at.cancel()
        await self._close_all()
        self.processes.kill_all()

    def _reboot_soon(self) -> None:
        assert self._loop is not None
        self._loop.call_later(0.2, lambda: self._loop.create_task(self._offline(self.reboot_s)))  # type: ignore[union-attr]


def _key_text(key: str | Path) -> str:
    """A key given as a path to ``adbkey.pub`` or as the key text itself."""
    text = str(key)
    if "/" in text or text.endswith(".pub"):
        path = Path(text)
        if path.is_file():
            return path.read_text()
    return text
