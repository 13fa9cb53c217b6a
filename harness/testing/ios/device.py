"""``FakeIPhone``: a wire-level fake iPhone behind a fake usbmuxd on a temporary UNIX socket.

The fake sits at the lowest transport boundary only: unmodified pymobiledevice3 client code
connects to its usbmuxd socket (``USBMUXD_SOCKET_ADDRESS`` or ``usbmux_address``) and speaks
real usbmuxd, lockdownd (with a real TLS session), installation_proxy, house_arrest + AFC,
syslog_relay, os_trace_relay, diagnostics_relay, springboardservices, the image mounter, crash
reports and DVT/DTX to it (usbmuxd also on loopback TCP with ``usbmux_tcp_port``). As an iOS 17+
phone (``tunnel=True``, the default from ProductVersion 17) it also serves the far end of a tunnel on
loopback TCP: RemoteServiceDiscovery (RemoteXPC over HTTP/2, ``rsd.py``) with DVT and the
``*.shim.remote`` services, and a tunneld listing it (``tunneld.py``). An idle phone
shows stock apps and daemons (see ``system.py``). Apps "run" as host processes in the
app's container directory. What it cannot prove: code signing, DDI mounting, creating the iOS 17
tunnel itself (TUN, CDTunnel, QUIC, RemotePairing), real battery update rates and real device timing.

The daemons run on their own event loop in a background thread, so a synchronous test and
the harness's own per-device loop can both talk to it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import plistlib
import shutil
import signal
import ssl
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from harness.testing.ios import services, system, system_services
from harness.testing.ios.dvt import serve_dvt
from harness.testing.ios.lockdownd import Lockdownd, server_tls_context
from harness.testing.ios.rsd import RsdServer
from harness.testing.ios.tunneld import FakeTunneld
from harness.testing.ios.usbmuxd import Usbmuxd

LOCKDOWN_PORT = 62078
BENCH_BUNDLE_ID = "com.edgeharness.bench"
APP_SCRIPT = Path(__file__).with_name("benchmark_app.py")
PYRUNNER = Path(__file__).resolve().parents[2] / "runners" / "pyrunner.py"
TRUST_ANSWERS = ("accept", "pending", "deny", "pending_then_deny", "pending_then_accept")


@dataclass(frozen=True)
class FakeFaults:
    """Faults the fake injects (all off by default).

    ``trust``: how the Trust prompt answers ``Pair`` (see :data:`TRUST_ANSWERS`);
    ``locked``: StartService answers ``PasswordProtected``; ``install_error``: installation_proxy
    fails with this error code; ``drop_push_after_bytes``: the first house_arrest push that
    reaches this many bytes loses its socket; ``app_hangs``: the app never finishes.
    """

    trust: str = "accept"
    locked: bool = False
    install_error: str | None = None
    drop_push_after_bytes: int | None = None
    app_hangs: bool = False

    def __post_init__(self) -> None:
        if self.trust not in TRUST_ANSWERS:
            raise ValueError(f"trust must be one of {TRUST_ANSWERS}, not {self.trust!r}")


@dataclass
class FakeApp:
    """An installed app: its Info.plist facts and container directory."""

    bundle_id: str
    version: str
    container: Path
    name: str = "EdgeBench"
    file_sharing: bool = True

    def info(self) -> dict[str, Any]:
        """installation_proxy's view: device paths (a data container and a bundle path), never host paths."""
        ident = str(uuid.uuid5(uuid.NAMESPACE_URL, f"edgeharness-fake:{self.bundle_id}")).upper()
        return {
            "CFBundleIdentifier": self.bundle_id,
            "CFBundleShortVersionString": self.version,
            "CFBundleVersion": self.version,
            "CFBundleName": self.name,
            "CFBundleDisplayName": self.name,
            "CFBundleExecutable": self.name,
            "ApplicationType": "User",
            "UIFileSharingEnabled": self.file_sharing,
            "Container": f"/private/var/mobile/Containers/Data/Application/{ident}",
            "Path": f"/private/var/containers/Bundle/Application/{ident}/{self.name}.app",
            "Entitlements": {"get-task-allow": True, "application-identifier": f"TEAMID.{self.bundle_id}"},
        }


DEFAULT_VALUES: dict[str, Any] = {
    "ProductType": "iPhone14,5",
    "ProductVersion": "16.7.2",
    "BuildVersion": "20H115",
    "HardwareModel": "D17AP",
    "HardwarePlatform": "t8110",
    "CPUArchitecture": "arm64e",
    "DeviceClass": "iPhone",
    "DeviceName": "edgeharness fake iPhone",
    "ChipID": 0x8110,
}


@dataclass(frozen=True)
class LogRecord:
    """One device log message: what syslog_relay prints and os_trace_relay encodes."""

    time: float
    process: str
    pid: int
    level: str
    message: str

    def line(self, device_name: str) -> str:
        """syslogd's text form: ``Mon DD HH:MM:SS DeviceName process[pid] <Level>: message``."""
        stamp = time.strftime("%b %d %H:%M:%S", time.localtime(self.time))
        return f"{stamp} {device_name} {self.process}[{self.pid}] <{self.level}>: {self.message}"


@dataclass
class DeviceState:
    """Everything the fake's daemons share: identity, pairings, apps, processes, logs."""

    root: Path
    udid: str
    values: dict[str, Any]
    faults: FakeFaults
    sysmon_interval_s: float
    battery: dict[str, Any]
    device_id: int = 1
    attached: bool = True
    usbmux_pair_records: dict[str, bytes] = field(default_factory=dict)
    host_pairings: dict[str, dict[str, Any]] = field(default_factory=dict)
    apps: dict[str, FakeApp] = field(default_factory=dict)
    processes: dict[int, tuple[str, asyncio.subprocess.Process]] = field(default_factory=dict)
    system_processes: dict[int, system.SystemProcess] = field(default_factory=dict)
    set_values: dict[str | None, dict[str, Any]] = field(default_factory=dict)
    syslog: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=20000))
    output_listeners: list[Callable[[int, str], Awaitable[None]]] = field(default_factory=list)
    notification_listeners: list[Callable[[str], Awaitable[None]]] = field(default_factory=list)
    simulated_location: tuple[float, float] | None = None
    _ports: dict[int, tuple[str, bool]] = field(default_factory=dict)
    _next_port: int = 49152
    _next_system_pid: int = 30
    _pair_attempts: int = 0
    _push_drop_left: int | None = None
    _syslog_queues: list[asyncio.Queue[LogRecord]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.media_root = self.root / "media"
        self.media_root.mkdir(parents=True, exist_ok=True)
        for folder in system.MEDIA_FOLDERS:
            (self.media_root / folder).mkdir(exist_ok=True)
        self.crash_root = self.root / "crash"
        self.crash_root.mkdir(exist_ok=True)
        self.icon_layout: list[Any] | None = None
        self._push_drop_left = self.faults.drop_push_after_bytes
        self.system_apps = {app.bundle_id: app for app in system.SYSTEM_APPS}
        for name, path, footprint in system.SYSTEM_DAEMONS:
            self.spawn_system_process(system.SystemProcess(name, path, footprint=footprint))

    @property
    def major_version(self) -> int:
        return int(str(self.values["ProductVersion"]).split(".")[0])

    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(p) for p in str(self.values["ProductVersion"]).split(".") if p.isdigit())

    def lockdown_values(self) -> dict[str, Any]:
        public = self.key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
        return {
            **system.default_values(),
            **self.set_values.get(None, {}),
            **self.values,
            "TimeIntervalSince1970": time.time(),
            "UniqueDeviceID": self.udid,
            "SerialNumber": self.udid[-12:],
            "UniqueChipID": int(self.udid.replace("-", "")[-16:], 16),
            "DevicePublicKey": public,
            "WiFiAddress": "02:00:00:ed:9e:01",
            "ActivationState": "Activated",
        }

    def domain_values(self, domain: str) -> dict[str, Any]:
        """A named lockdown domain ({} when the phone has no such domain)."""
        disk = shutil.disk_usage(self.root)
        base = system.domain_values(self.lockdown_values(), self.battery, (disk.total, disk.free)).get(domain, {})
        return {**base, **self.set_values.get(domain, {})}

    def set_value(self, domain: str | None, key: str, value: Any) -> None:
        self.set_values.setdefault(domain, {})[key] = value

    def remove_value(self, domain: str | None, key: str) -> bool:
        present = key in (self.domain_values(domain) if domain else self.lockdown_values())
        self.set_values.setdefault(domain, {}).pop(key, None)
        return present

    def icon_state(self) -> list[Any]:
        """SpringBoard's layout: the dock, then one page of the other apps (or what a host last set)."""
        if self.icon_layout is not None:
            return self.icon_layout
        apps = [*self.system_apps.values(), *self.apps.values()]
        icons = [{"displayIdentifier": a.bundle_id, "bundleIdentifier": a.bundle_id, "displayName": a.name}
                 for a in apps]
        return [icons[:4], icons[4:]]

    # --- pairing and TLS -------------------------------------------------
    def next_trust_answer(self) -> str:
        self._pair_attempts += 1
        mode = self.faults.trust
        if mode.startswith("pending_then_"):
            return "pending" if self._pair_attempts == 1 else mode.removeprefix("pending_then_")
        return mode

    def tls_context(self, host_id: str | None = None) -> ssl.SSLContext:
        """The device's TLS identity: its own key and the DeviceCertificate a paired host issued."""
        records = [self.host_pairings[host_id]] if host_id else list(self.host_pairings.values())
        key_pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        cert = records[0]["DeviceCertificate"]
        return server_tls_context(bytes(cert), key_pem, [bytes(r["HostCertificate"]) for r in records], self.root)

    # --- services ----------------------------------------------------------
    def open_service_port(self, name: str, use_ssl: bool) -> int | None:
        if name not in SERVICES:
            return None
        port, self._next_port = self._next_port, self._next_port + 1
        self._ports[port] = (name, use_ssl)
        return port

    def accepts(self, port: int) -> bool:
        return port == LOCKDOWN_PORT or port in self._ports

    async def route(self, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve a device port on a usbmux stream that just connected to it."""
        if port == LOCKDOWN_PORT:
            await Lockdownd(self).serve(reader, writer)
            return
        name, use_ssl = self._ports.pop(port)
        if use_ssl:
            await writer.start_tls(self.tls_context())
        await SERVICES[name](self, reader, writer)

    def take_push_drop(self, nbytes: int) -> bool:
        """Count pushed bytes; True once when the drop fault's budget is used up."""
        if self._push_drop_left is None:
            return False
        self._push_drop_left -= nbytes
        if self._push_drop_left <= 0:
            self._push_drop_left = None
            return True
        return False

    # --- apps and processes ----------------------------------------------------
    def install(self, info: dict[str, Any]) -> FakeApp:
        bundle_id = str(info["CFBundleIdentifier"])
        container = self.root / "containers" / bundle_id
        for sub in ("Documents", "Library", "tmp"):
            (container / sub).mkdir(parents=True, exist_ok=True)
        app = FakeApp(
            bundle_id,
            str(info.get("CFBundleShortVersionString", "1.0")),
            container,
            str(info.get("CFBundleName", "EdgeBench")),
            bool(info.get("UIFileSharingEnabled", False)),
        )
        self.apps[bundle_id] = app
        self.log("installd", self.system_pid("installd"), f"installed {bundle_id} {app.version}")
        return app

    def uninstall(self, bundle_id: str) -> None:
        app = self.apps.pop(bundle_id, None)
        if app is not None:
            shutil.rmtree(app.container, ignore_errors=True)

    def is_installed(self, bundle_id: str) -> bool:
        return bundle_id in self.apps or bundle_id in self.system_apps

    async def launch_app(self, bundle_id: str, args: list[str], env: dict[str, Any], kill_existing: bool) -> int:
        if kill_existing and (old := self.running_pid(bundle_id)):
            await self.signal_and_reap(old, signal.SIGKILL)
        if bundle_id in self.system_apps:
            return await self._start_process(self.system_apps[bundle_id].name, IDLE_APP, Path(self.root), env)
        app = self.apps[bundle_id]
        argv = [
            sys.executable,
            str(APP_SCRIPT),
            "--container",
            str(app.container),
            "--pyrunner",
            str(PYRUNNER),
            *(["--hang"] if self.faults.app_hangs else []),
            *args,
        ]
        return await self._start_process(app.name, argv, app.container, env)

    async def _start_process(self, name: str, argv: list[str], cwd: Path, env: dict[str, Any]) -> int:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **{str(k): str(v) for k, v in env.items()}},
        )
        self.processes[proc.pid] = (name, proc)
        asyncio.create_task(self._pump_output(proc, name))
        return proc.pid

    async def _pump_output(self, proc: asyncio.subprocess.Process, name: str) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.log(name, proc.pid, line)
            for listener in list(self.output_listeners):
                await listener(proc.pid, line)
        await proc.wait()
        self.processes.pop(proc.pid, None)
        self.log("SpringBoard", self.system_pid("SpringBoard"),
                 f"process {name}({proc.pid}) exited with status {proc.returncode}")

    def signal(self, pid: int, sig: int) -> None:
        if pid in self.system_processes:
            if sig in (signal.SIGKILL, signal.SIGTERM):
                self._kill_system_process(pid)
            return
        entry = self.processes.get(pid)
        if entry is not None and entry[1].returncode is None:
            with contextlib.suppress(ProcessLookupError):
                entry[1].send_signal(sig)

    async def signal_and_reap(self, pid: int, sig: int, timeout_s: float = 5.0) -> None:
        """Signal an app; for SIGKILL also wait until it is gone, so the host sees a settled table."""
        entry = self.processes.get(pid)
        self.signal(pid, sig)
        if entry is not None and sig == signal.SIGKILL:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(entry[1].wait(), timeout_s)

    def running_pid(self, bundle_id: str) -> int:
        app = self.apps.get(bundle_id) or self.system_apps.get(bundle_id)
        name = app.name if app is not None else None
        return next((pid for pid, (n, p) in self.processes.items() if n == name and p.returncode is None), 0)

    def app_process_names(self) -> dict[int, str]:
        """The apps the fake launched (real host processes), by pid."""
        return {pid: name for pid, (name, proc) in self.processes.items() if proc.returncode is None}

    def process_names(self) -> dict[int, str]:
        """Every process a client can see: the phone's daemons and the launched apps."""
        return {**{pid: p.name for pid, p in self.system_processes.items()}, **self.app_process_names()}

    def process_path(self, pid: int) -> str | None:
        """The executable path of a running process, as the phone names it."""
        if pid in self.system_processes:
            return self.system_processes[pid].path
        name = self.app_process_names().get(pid)
        if name is None:
            return None
        app = next((a for a in [*self.apps.values(), *self.system_apps.values()] if a.name == name), None)
        return f"{app.info()['Path']}/{name}" if app is not None else None

    # --- the phone's own daemons -----------------------------------------------
    def spawn_system_process(self, proc: system.SystemProcess) -> int:
        while self._next_system_pid in self.processes or self._next_system_pid in self.system_processes:
            self._next_system_pid += 1
        pid = 1 if proc.name == "launchd" else self._next_system_pid
        self._next_system_pid += 1
        self.system_processes[pid] = proc
        return pid

    def system_pid(self, name: str) -> int:
        return next((pid for pid, p in self.system_processes.items() if p.name == name), 0)

    def _kill_system_process(self, pid: int) -> None:
        """launchd restarts a killed daemon at once under a new pid (killing launchd is ignored)."""
        if pid == 1:
            return
        old = self.system_processes.pop(pid)
        new_pid = self.spawn_system_process(system.SystemProcess(old.name, old.path, old.is_application,
                                                                 old.bundle_id, footprint=old.footprint))
        self.log("launchd", 1, f"Service {old.name}[{pid}] killed; respawned as [{new_pid}]")

    # --- logs and battery --------------------------------------------------------
    def log(self, process: str, pid: int, message: str, level: str = "Notice") -> None:
        """Log one message; relays see it live, :attr:`syslog` keeps it as syslogd's text line."""
        record = LogRecord(time.time(), process, pid, level, message)
        self.syslog.append(record.line(str(self.values.get("DeviceName", "iPhone"))))
        for queue in self._syslog_queues:
            queue.put_nowait(record)

    async def log_heartbeat(self, interval_s: float = 1.0) -> None:
        """A phone is never silent: the kernel logs a battery reading every ``interval_s``."""
        while True:
            await asyncio.sleep(interval_s)
            battery = self.battery_registry()
            self.log("kernel", 0, f"AppleSmartBattery: Voltage={battery.get('Voltage')} mV "
                                  f"InstantAmperage={battery.get('InstantAmperage')} mA "
                                  f"ExternalConnected={battery.get('ExternalConnected')}")

    def subscribe_syslog(self) -> asyncio.Queue[LogRecord]:
        queue: asyncio.Queue[LogRecord] = asyncio.Queue()
        self._syslog_queues.append(queue)
        return queue

    def unsubscribe_syslog(self, queue: asyncio.Queue[LogRecord]) -> None:
        with contextlib.suppress(ValueError):
            self._syslog_queues.remove(queue)

    def battery_registry(self) -> dict[str, Any]:
        return dict(self.battery)


#: A launched system app: an idle process until it is killed (its CPU and memory are real, and tiny).
IDLE_APP = [sys.executable, "-c", "import time\nwhile True: time.sleep(3600)"]

SERVICES: dict[str, Callable[[DeviceState, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]] = {
    "com.apple.afc": lambda s, r, w: services.AfcService(s).serve(r, w),
    "com.apple.mobile.house_arrest": lambda s, r, w: services.HouseArrestService(s).serve(r, w),
    "com.apple.mobile.installation_proxy": lambda s, r, w: services.InstallationProxyService(s).serve(r, w),
    "com.apple.syslog_relay": lambda s, r, w: services.SyslogRelayService(s).serve(r, w),
    "com.apple.os_trace_relay": lambda s, r, w: services.OsTraceRelayService(s).serve(r, w),
    "com.apple.springboardservices": lambda s, r, w: system_services.SpringBoardServices(s).serve(r, w),
    "com.apple.mobile.mobile_image_mounter": lambda s, r, w: system_services.ImageMounterService(s).serve(r, w),
    "com.apple.crashreportmover": system_services.serve_crash_mover,
    "com.apple.mobile.notification_proxy": lambda s, r, w: system_services.NotificationProxyService(s).serve(r, w),
    "com.apple.mobile.insecure_notification_proxy":
        lambda s, r, w: system_services.NotificationProxyService(s).serve(r, w),
    "com.apple.crashreportcopymobile": system_services.serve_crash_copy,
    "com.apple.mobile.diagnostics_relay": lambda s, r, w: services.DiagnosticsRelayService(s).serve(r, w),
    "com.apple.instruments.remoteserver.DVTSecureSocketProxy": serve_dvt,
    "com.apple.instruments.remoteserver": serve_dvt,
}

#: What the fake's battery reports by default: a phone on USB power, as on a cabled farm.
USB_POWERED_BATTERY: dict[str, Any] = {
    "ExternalConnected": True,
    "IsCharging": True,
    "FullyCharged": False,
    "CurrentCapacity": 80,
    "InstantAmperage": 350,
    "Amperage": 350,
    "Voltage": 4200,
    "Temperature": 3050,
}


class FakeIPhone:
    """A fake iPhone with its own usbmuxd socket; use as a context manager.

    >>> with FakeIPhone() as phone:          # doctest: +SKIP
    ...     os.environ["USBMUXD_SOCKET_ADDRESS"] = phone.usbmux_address
    """

    def __init__(
        self,
        *,
        udid: str = "00008110-000A1B2C3D4E5F60",
        values: dict[str, Any] | None = None,
        faults: FakeFaults | None = None,
        installed: dict[str, str] | None = None,
        sysmon_interval_s: float = 0.5,
        battery: dict[str, Any] | None = None,
        root: Path | None = None,
        usbmux_tcp_port: int | None = None,
        tunnel: bool | None = None,
    ) -> None:
        """``usbmux_tcp_port``: also serve usbmuxd on ``127.0.0.1:PORT`` (0 picks a free port), as a farm
        host exposes its phones' usbmuxd over TCP; :attr:`usbmux_tcp_address` is then ``127.0.0.1:PORT``.

        ``tunnel``: serve RSD and a tunneld on loopback (:attr:`rsd_address`, :attr:`tunneld_address`), as
        ``pymobiledevice3 remote tunneld`` and the tunnel's far end would; default: when ProductVersion is 17+.
        """
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="fake-iphone-")) if root is None else root
        self.state = DeviceState(
            self.root,
            udid,
            {**DEFAULT_VALUES, **(values or {})},
            faults or FakeFaults(),
            sysmon_interval_s,
            dict(battery or USB_POWERED_BATTERY),
        )
        for bundle_id, version in (installed or {}).items():
            self.state.install(
                {"CFBundleIdentifier": bundle_id, "CFBundleShortVersionString": version, "UIFileSharingEnabled": True}
            )
        self.usbmux_address = str(self.root / "usbmuxd.sock")
        self.usbmux_tcp_address: str | None = None
        self._tcp_port = usbmux_tcp_port
        self._tcp_server: asyncio.AbstractServer | None = None
        self.tunnel = self.state.major_version >= 17 if tunnel is None else tunnel
        self.rsd = RsdServer(self.state)
        self.rsd_address: tuple[str, int] | None = None
        self.tunneld: FakeTunneld | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None

    @property
    def udid(self) -> str:
        return self.state.udid

    @property
    def device_id(self) -> str:
        """The harness's name for this phone."""
        return f"ios:{self.udid}"

    @property
    def syslog(self) -> list[str]:
        return list(self.state.syslog)

    def container(self, bundle_id: str = BENCH_BUNDLE_ID) -> Path:
        return self.state.apps[bundle_id].container

    def running_pids(self) -> list[int]:
        """Pids of the apps the fake launched (the phone's own daemons are not host processes)."""
        return list(self._call(lambda: list(self.state.app_process_names())))

    def start(self) -> FakeIPhone:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_unix_server(lambda r, w: Usbmuxd(self.state).serve(r, w), path=self.usbmux_address)
            )
            if self._tcp_port is not None:
                self._tcp_server = self._loop.run_until_complete(
                    asyncio.start_server(lambda r, w: Usbmuxd(self.state).serve(r, w), "127.0.0.1", self._tcp_port)
                )
                port = self._tcp_server.sockets[0].getsockname()[1]
                self.usbmux_tcp_address = f"127.0.0.1:{port}"
            if self.tunnel:
                self.rsd_address = self._loop.run_until_complete(self.rsd.start())
            self._loop.create_task(self.state.log_heartbeat(), name="fake-iphone-heartbeat")
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-iphone", daemon=True)
        self._thread.start()
        ready.wait(10)
        if self.tunnel:
            self.tunneld = FakeTunneld(lambda: {self.udid: self.rsd_address} if self.rsd_address else {}).start()
        return self

    @property
    def tunneld_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the fake tunneld (``HARNESS_TUNNELD``, the CLI's ``--tunnel UDID:PORT``)."""
        return self.tunneld.address if self.tunneld is not None else None

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the fake's loop (the state belongs to that thread)."""

        async def wrap() -> Any:
            return fn()

        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(wrap(), self._loop).result(10)

    def stop(self) -> None:
        """Kill app processes, close every connection, stop the loop and remove the temp root."""
        if self._loop is None:
            return
        if self.tunneld is not None:
            self.tunneld.stop()
            self.tunneld = None
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        self._loop.close()
        self._loop = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    async def _shutdown(self) -> None:
        for _name, proc in list(self.state.processes.values()):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for server in (self._server, self._tcp_server):
            if server is not None:
                server.close()
        self.rsd.close()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> FakeIPhone:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def make_test_ipa(path: Path, bundle_id: str = BENCH_BUNDLE_ID, version: str = "1.0", name: str = "EdgeBench") -> Path:
    """Write an (unsigned) ipa with just an Info.plist: enough for the fake's installation_proxy."""
    info = {
        "CFBundleIdentifier": bundle_id,
        "CFBundleShortVersionString": version,
        "CFBundleVersion": version,
        "CFBundleName": name,
        "CFBundleExecutable": name,
        "UIFileSharingEnabled": True,
    }
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"Payload/{name}.app/Info.plist", plistlib.dumps(info))
        zf.writestr(f"Payload/{name}.app/{name}", b"")
    return path


@contextlib.contextmanager
def fake_iphone_env(phone: FakeIPhone) -> Iterator[FakeIPhone]:
    """Point pymobiledevice3 (and the harness) at ``phone`` through ``USBMUXD_SOCKET_ADDRESS``."""
    old = os.environ.get("USBMUXD_SOCKET_ADDRESS")
    os.environ["USBMUXD_SOCKET_ADDRESS"] = phone.usbmux_address
    try:
        yield phone
    finally:
        if old is None:
            os.environ.pop("USBMUXD_SOCKET_ADDRESS", None)
        else:
            os.environ["USBMUXD_SOCKET_ADDRESS"] = old
