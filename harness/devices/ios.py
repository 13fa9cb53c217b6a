"""iOS backend: iPhones over usbmuxd, driven with pymobiledevice3 (the optional ``ios`` extra).

Why a benchmark *app*: iOS has no shell and the stock TFLite benchmark app needs a UI tap, so
the harness drives a small app that honours the edgeharness app contract (``docs/ios.md``):
push the model and ``benchmark_params.json`` into its ``Documents/`` with house_arrest,
launch it with DVT process control (``--edgeharness-run RUN_ID``), wait for
``EDGEHARNESS_DONE RUN_ID STATUS`` in syslog (or the result file), pull
``Documents/results/RUN_ID.json``; kill the app on timeout.

pymobiledevice3 is asyncio and pinned ``>=11.45,<12``. Every pymobiledevice3 call lives in
this module and runs on one event loop per device, in its own thread; the methods the
orchestrator calls are synchronous. Pair records live in a folder the harness owns
(``$HARNESS_CACHE/ios-pairing``, files 0600), never in ``~/.pymobiledevice3``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import plistlib
import posixpath
import re
import statistics
import threading
import time
import zipfile
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from harness import profiles
from harness.devices.base import Device, ShellResult, sha256_file
from harness.devices.discovery import register_backend
from harness.errors import AuthError, CommandTimeout, DeviceError, DeviceLost, DeviceNotFound, HarnessError
from harness.results import DeviceInfo

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_BUNDLE_ID = "com.edgeharness.bench"
SENTINEL_RE = re.compile(r"EDGEHARNESS_DONE (\S+) (\S+)")
RUN_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
FACT_KEYS = ("ProductType", "ProductVersion", "BuildVersion", "HardwareModel", "HardwarePlatform",
             "CPUArchitecture", "DeviceName", "DeviceClass")
MAX_LOG_LINES = 5000
RESULT_POLL_S = 2.0
BATTERY_POLL_S = 1.0
SYSMON_READY_S = 5.0  # longest wait for Sysmontap's first rows before launching the app
HINT_TRUST = "unlock the phone and tap Trust on the 'Trust This Computer?' dialog, then run again"
HINT_TUNNEL = ("iOS 17+ reaches DVT only through a tunnel: start `sudo pymobiledevice3 remote tunneld` and pass "
               "tunneld_address, or inject a tunnel_provider; or use a device on iOS < 17 (with its DDI mounted)")
TunnelProvider = Callable[[str], Awaitable[Any]]


def pairing_dir() -> Path:
    """The harness-owned folder of iOS pair records (0700), under ``HARNESS_CACHE`` or ``~/.cache/edgeharness``."""
    base = Path(os.environ.get("HARNESS_CACHE") or Path.home() / ".cache" / "edgeharness")
    folder = base / "ios-pairing"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    return folder


def _lock_down_files(folder: Path) -> None:
    """Pair records hold private keys: owner-only."""
    for path in folder.glob("*.plist"):
        path.chmod(0o600)


@dataclass(frozen=True)
class SysmonSample:
    """One sysmontap row of the app process: CPU in % of one core (may exceed 100), memory in MiB."""

    t_s: float
    pid: int
    cpu_percent: float | None
    footprint_mb: float | None
    resident_mb: float | None
    threads: int | None


@dataclass(frozen=True)
class BatteryReading:
    """One AppleSmartBattery reading: current in mA (negative = discharging), voltage in mV."""

    t_s: float
    current_ma: float | None
    voltage_mv: float | None
    external_connected: bool
    is_charging: bool
    temperature_c: float | None

    @property
    def power_mw(self) -> float | None:
        """Battery output power (mW, positive when discharging), or None when a value is missing."""
        if self.current_ma is None or self.voltage_mv is None:
            return None
        return -self.current_ma * self.voltage_mv / 1000.0


@dataclass(frozen=True)
class AppRunOutcome:
    """What one app launch gave: the app's result JSON, logs, sysmon rows, battery readings.

    ``status`` is the app's own status (``ok``, ``failed``, ``delegate_unavailable``,
    ``model_rejected``) or ``timeout``. ``sample_interval_s`` is the interval sysmontap really
    delivered (devices ignore the requested rate). ``energy_refusal`` says why the battery
    readings cannot stand for the app's energy (e.g. the phone is on USB power).
    """

    run_id: str
    status: str
    reason: str | None
    result: dict[str, Any] | None
    log_lines: tuple[str, ...]
    samples: tuple[SysmonSample, ...]
    sample_interval_s: float | None
    battery: tuple[BatteryReading, ...]
    energy_refusal: str | None
    pid: int | None
    duration_s: float
    app_installed: bool = False
    model_pushed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class _DeviceLoop:
    """One asyncio loop in one thread: every pymobiledevice3 object of a device lives here."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"ios-{name}", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
        self.loop.close()


#: pymobiledevice3 exception names -> (harness error, what happened, hint); first match wins.
ERROR_TABLE: tuple[tuple[tuple[str, ...], type[DeviceError], str, str | None], ...] = (
    (("PairingDialogResponsePendingError",), AuthError, "the phone is waiting for the Trust dialog", HINT_TRUST),
    (("UserDeniedPairingError",), AuthError, "the user tapped Don't Trust",
     "reset trust on the phone (Settings > General > Transfer or Reset iPhone > Reset > Reset Location & Privacy), "
     "reconnect and tap Trust"),
    (("PasswordRequiredError",), DeviceError, "the phone is locked (PasswordProtected)",
     "unlock the phone; farm phones should have no passcode and Auto-Lock off"),
    (("InvalidServiceError",), DeviceError, "the service is not available over lockdown (InvalidService)",
     HINT_TUNNEL),
    (("AppNotInstalledError",), DeviceError, "the benchmark app is not installed",
     "set app = 'path/to/EdgeBench.ipa' in harness.toml or the suite"),
    (("AppInstallError",), DeviceError, "install failed: {exc}",
     "the ipa must be signed for this device (development profile with its UDID) and Developer Mode must be on"),
    (("ConnectionFailedToUsbmuxdError",), DeviceError, "usbmuxd is not reachable",
     "start usbmuxd (Linux: apt install usbmuxd) or set USBMUXD_SOCKET_ADDRESS"),
    (("DeviceNotFoundError", "NoDeviceConnectedError"), DeviceNotFound, "usbmuxd does not list the device",
     "check the cable and that the phone is unlocked; `harness devices` lists phones"),
    (("ConnectionTerminatedError", "MuxException"), DeviceLost, "the connection to the phone dropped ({name})",
     "check the cable; finished results are kept, rerun the remaining cases"),
    (("NotPairedError",), AuthError, "the host is not paired with the phone", HINT_TRUST),
)


def _translate(exc: BaseException, device: str, what: str) -> HarnessError:
    """Map pymobiledevice3's exceptions to the harness's typed errors, with a hint."""
    from pymobiledevice3 import exceptions as px

    if isinstance(exc, HarnessError):
        return exc
    for names, error, message, hint in ERROR_TABLE:
        if isinstance(exc, tuple(getattr(px, n) for n in names)):
            return error(f"{what}: " + message.format(exc=exc, name=type(exc).__name__), device=device, hint=hint)
    if isinstance(exc, (ConnectionError, asyncio.IncompleteReadError)):
        return DeviceLost(f"{what}: the connection to the phone dropped ({type(exc).__name__})", device=device,
                          hint="check the cable; finished results are kept, rerun the remaining cases")
    return DeviceError(f"{what}: {type(exc).__name__}: {exc}", device=device)


async def _list_udids(usbmux_address: str | None) -> list[str]:
    from pymobiledevice3 import usbmux

    return [d.serial for d in await usbmux.list_devices(usbmux_address=usbmux_address)]


def discover_ios_devices(usbmux_address: str | None = None) -> list[str]:
    """``ios:UDID`` of every phone usbmuxd lists (``[]`` when no usbmuxd runs here).

    ``usbmux_address`` is a UNIX socket path or a remote usbmuxd ``host:port`` (a farm host);
    by default pymobiledevice3 honours ``USBMUXD_SOCKET_ADDRESS``.
    """
    from pymobiledevice3.exceptions import ConnectionFailedToUsbmuxdError

    try:
        udids = asyncio.run(_list_udids(usbmux_address))
    except ConnectionFailedToUsbmuxdError:
        log.debug("no usbmuxd at %s: no iOS devices", usbmux_address or "the default address")
        return []
    return [f"ios:{u}" for u in dict.fromkeys(udids)]


def open_ios_device(device_id: str, **options: Any) -> IosDevice:
    """An :class:`IosDevice` for ``ios:UDID``; options as :class:`IosDevice`. Connects (and pairs) lazily."""
    if not device_id.startswith("ios:") or len(device_id) <= 4:
        raise DeviceNotFound(f"not an iOS device id: {device_id!r}", device=device_id, hint="use ios:UDID")
    return IosDevice(device_id, **options)


def read_app_bundle_info(app: Path) -> dict[str, Any]:
    """Info.plist of an ``.ipa`` (``Payload/X.app/Info.plist``) or an ``.app`` directory."""
    try:
        if app.is_dir():
            return plistlib.loads((app / "Info.plist").read_bytes())
        with zipfile.ZipFile(app) as zf:
            name = next(n for n in zf.namelist()
                        if n.startswith("Payload/") and n.endswith(".app/Info.plist") and n.count("/") == 2)
            return plistlib.loads(zf.read(name))
    except (OSError, StopIteration, KeyError, zipfile.BadZipFile, plistlib.InvalidFileException) as exc:
        raise HarnessError(f"app bundle {app}: no readable Info.plist ({exc})",
                           hint="pass a signed .ipa or a .app directory") from exc


def container_path(remote: str) -> str:
    """A device path inside the app container, as AFC wants it (``/Documents/x``); rejects escapes."""
    norm = posixpath.normpath("/" + remote.lstrip("/"))
    if ".." in remote.split("/") or norm == "/":
        raise HarnessError(f"bad container path {remote!r}", hint="use a relative path such as Documents/model.tflite")
    return norm


class IosDevice(Device):
    """An iPhone behind usbmuxd; the harness's boundary to pymobiledevice3.

    ``pair_timeout_s``: how long to wait for the Trust dialog (0 = fail at once with a hint).
    ``tunnel_provider(udid)`` returns an RSD (or any LockdownServiceProvider) for DVT on iOS 17+;
    ``tunneld_address`` asks a running ``tunneld`` instead.
    """

    platform = "ios"

    def __init__(
        self,
        device_id: str,
        *,
        usbmux_address: str | None = None,
        bundle_id: str = DEFAULT_BUNDLE_ID,
        pairing_folder: Path | None = None,
        pair_timeout_s: float = 0,
        tunnel_provider: TunnelProvider | None = None,
        tunneld_address: tuple[str, int] | None = None,
        profile_dir: Path | None = None,
        connect_timeout_s: float = 60.0,
    ) -> None:
        super().__init__(device_id)
        self.udid = device_id.removeprefix("ios:")
        self.usbmux_address = usbmux_address
        self.bundle_id = bundle_id
        self.pairing_folder = pairing_folder or pairing_dir()
        self.pair_timeout_s = pair_timeout_s
        self.tunnel_provider = tunnel_provider
        self.tunneld_address = tunneld_address
        self.profile_dir = profile_dir
        self.connect_timeout_s = connect_timeout_s
        self._loop = _DeviceLoop(self.udid)
        self._lockdown: Any = None
        self._info: DeviceInfo | None = None

    # --- plumbing -------------------------------------------------------------------
    def _run(self, what: str, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """Run ``coro`` on the device loop; pymobiledevice3 errors come back typed."""
        try:
            return self._loop.run(self._typed(what, coro), timeout_s)
        except TimeoutError as exc:
            raise CommandTimeout(f"{what} took longer than {timeout_s} s", timeout_s=timeout_s or 0,
                                 device=self.id, hint="check the phone is unlocked and responsive") from exc

    async def _typed(self, what: str, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return await coro
        except Exception as exc:
            if not isinstance(exc, HarnessError) and _is_connection_loss(exc):
                await self._drop_lockdown()
            raise _translate(exc, self.id, what) from exc

    async def _ld(self) -> Any:
        """The lockdown client, connected and paired once per device."""
        if self._lockdown is None:
            from pymobiledevice3.exceptions import ConnectionFailedToUsbmuxdError
            from pymobiledevice3.lockdown import create_using_usbmux

            kwargs = {"serial": self.udid, "pair_timeout": self.pair_timeout_s, "usbmux_address": self.usbmux_address,
                      "pairing_records_cache_folder": self.pairing_folder, "label": "edgeharness"}
            try:
                self._lockdown = await create_using_usbmux(**kwargs)
            except ConnectionFailedToUsbmuxdError:
                # pymobiledevice3 saves a fresh pair record to the folder, then to the default usbmuxd,
                # which ignores usbmux_address; the record is on disk, so connect again.
                if self.usbmux_address is None or not any(self.pairing_folder.glob("*.plist")):
                    raise
                self._lockdown = await create_using_usbmux(**kwargs)
            finally:
                _lock_down_files(self.pairing_folder)
        return self._lockdown

    async def _drop_lockdown(self) -> None:
        ld, self._lockdown = self._lockdown, None
        if ld is not None:
            try:
                await ld.close()
            except Exception:  # noqa: BLE001 - the link is already gone
                log.debug("[%s] closing a dead lockdown connection failed", self.id)

    def close(self) -> None:
        """Close the lockdown connection and stop the device loop; safe twice."""
        if self._loop.loop.is_closed():
            return
        try:
            self._loop.run(self._drop_lockdown(), 10)
        finally:
            self._loop.close()

    # --- Device contract -------------------------------------------------------------
    def info(self) -> DeviceInfo:
        """Lockdown facts matched to an iPhone profile (marketing name, chip, class)."""
        if self._info is None:
            facts = self.facts()
            profile = profiles.match({k: str(v) for k, v in facts.items()}, "ios", self.profile_dir)
            extra = {k: str(facts[k]) for k in FACT_KEYS if k in facts}
            extra["delegates"] = ",".join(profile.delegates)
            if profile.extra.get("neural_engine_cores") is not None:
                extra["neural_engine_cores"] = str(profile.extra["neural_engine_cores"])
            self._info = DeviceInfo(
                id=self.id, platform="ios",
                model=profile.marketing_name or str(facts.get("ProductType")),
                soc=profile.soc or str(facts.get("HardwarePlatform", "")),
                os=f"iOS {facts.get('ProductVersion', '?')} ({facts.get('BuildVersion', '?')})",
                abi=str(facts.get("CPUArchitecture", "arm64")), profile=profile.name,
                device_class=profile.device_class, extra=extra)
        return self._info

    def facts(self) -> dict[str, Any]:
        """The lockdown GetValue facts profiles match on (ProductType, ProductVersion, ...)."""
        async def get() -> dict[str, Any]:
            values = (await self._ld()).all_values
            return {k: values[k] for k in (*FACT_KEYS, "UniqueDeviceID") if k in values}
        return self._run("read lockdown values", get(), self.connect_timeout_s)

    def delegates(self) -> tuple[str, ...]:
        """Delegates the matched profile says this phone supports."""
        info = self.info()
        return tuple(d for d in info.extra.get("delegates", "").split(",") if d)

    def shell(self, command: str, timeout_s: float = 60.0) -> ShellResult:
        """iOS has no shell: always a DeviceError pointing at the app contract."""
        raise DeviceError("iOS devices have no shell", device=self.id, command=command,
                          hint="the harness benchmarks on iOS through the benchmark app: run_app_benchmark()")

    def workdir(self) -> str:
        return "Documents"

    def push(self, local: Path, remote: str) -> bool:
        """Copy a host file into the app container (``Documents/...``); False when the same sha256 is there."""
        return self._run(f"push {local.name}", self._push(Path(local), container_path(remote)))

    def pull(self, remote: str, local: Path) -> Path:
        """Copy a container file to ``local`` exactly (the device path never picks a host path)."""
        data = self._run(f"pull {remote}", self._read(container_path(remote)))
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.part")
        tmp.write_bytes(data)
        tmp.replace(local)
        return local

    # --- app management ------------------------------------------------------------------
    def install_app(self, app: Path) -> bool:
        """Install the benchmark app (``.ipa`` or ``.app``); False when that version is already installed."""
        info = read_app_bundle_info(Path(app))
        if info.get("CFBundleIdentifier") != self.bundle_id:
            raise HarnessError(f"app {app} is {info.get('CFBundleIdentifier')!r}, expected {self.bundle_id!r}",
                               hint="set bundle_id to the app's CFBundleIdentifier")
        return self._run(f"install {Path(app).name}", self._install(Path(app), info), 600)

    async def _install(self, app: Path, info: dict[str, Any]) -> bool:
        from pymobiledevice3.services.installation_proxy import InstallationProxyService

        version = str(info.get("CFBundleVersion") or info.get("CFBundleShortVersionString") or "")
        async with InstallationProxyService(await self._ld()) as ip:
            installed = (await ip.get_apps(bundle_identifiers=[self.bundle_id])).get(self.bundle_id)
            if installed and version and version in (str(installed.get("CFBundleVersion")),
                                                     str(installed.get("CFBundleShortVersionString"))):
                return False
            await ip.install_from_local(app)
        return True

    async def _house_arrest(self) -> Any:
        from pymobiledevice3.services.house_arrest import HouseArrestService

        return await HouseArrestService.create(await self._ld(), self.bundle_id)

    async def _push(self, local: Path, remote: str) -> bool:
        digest = sha256_file(local)
        sidecar = remote + ".sha256"
        async with await self._house_arrest() as ha:
            if await ha.exists(remote) and await ha.exists(sidecar):
                same_size = (await ha.stat(remote))["st_size"] == local.stat().st_size
                if same_size and (await ha.get_file_contents(sidecar)).decode().strip() == digest:
                    return False
            await ha.makedirs(posixpath.dirname(remote))
            await ha.push(str(local), remote, progress_bar=False)
            await ha.set_file_contents(sidecar, digest.encode())
        return True

    async def _read(self, remote: str) -> bytes:
        async with await self._house_arrest() as ha:
            return await ha.get_file_contents(remote)

    # --- the benchmark run --------------------------------------------------------------
    def run_app_benchmark(
        self, model: Path, params: dict[str, Any], run_id: str, timeout_s: float, app: Path | None = None
    ) -> AppRunOutcome:
        """Run one benchmark through the app contract; a timeout kills the app and returns status ``timeout``.

        ``params`` are TFLite benchmark flags (``num_threads``, ``num_runs``, ``warmup_runs``,
        ``use_gpu``, ``use_xnnpack``, ``use_coreml``...); ``graph`` is set by the harness.
        """
        if not RUN_ID_RE.match(run_id):
            raise HarnessError(f"bad run id {run_id!r}", hint="letters, digits, '.', '_' and '-' only")
        installed = self.install_app(app) if app is not None else False
        outcome = self._run(f"benchmark {Path(model).name}", self._run_app(Path(model), dict(params), run_id,
                                                                          timeout_s), timeout_s + 120)
        return dataclasses.replace(outcome, app_installed=installed)

    async def _run_app(self, model: Path, params: dict[str, Any], run_id: str, timeout_s: float) -> AppRunOutcome:
        started = time.monotonic()
        remote_model = f"/Documents/models/{sha256_file(model)[:16]}-{model.name}"
        pushed = await self._push(model, remote_model)
        params["graph"] = remote_model.removeprefix("/Documents/")
        result_path = f"/Documents/results/{run_id}.json"
        async with await self._house_arrest() as ha:
            await ha.set_file_contents("/Documents/benchmark_params.json", json.dumps(params).encode())
            await ha.makedirs("/Documents/results")
            if await ha.exists(result_path):
                await ha.rm_single(result_path)
        run = _RunWatch(run_id, started)
        tasks = [asyncio.create_task(self._watch_syslog(run)), asyncio.create_task(self._watch_battery(run))]
        pid: int | None = None
        try:
            pid, timed_out = await self._launch_and_wait(run, result_path, timeout_s)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        result = None if timed_out else json.loads(await self._read(result_path))
        status = "timeout" if timed_out else str(result.get("status") or run.status or "failed")
        reason = (f"the app did not finish within {timeout_s} s and was killed" if timed_out
                  else result.get("reason"))
        return AppRunOutcome(
            run_id=run_id, status=status, reason=reason, result=result, log_lines=tuple(run.app_lines(pid)),
            samples=tuple(run.samples), sample_interval_s=run.interval_s(), battery=tuple(run.battery),
            energy_refusal=run.energy_refusal(), pid=pid, duration_s=time.monotonic() - started, model_pushed=pushed)

    async def _dvt_source(self) -> Any:
        """Lockdown on iOS < 17; on 17+ the injected tunnel provider or tunneld, else lockdown (InvalidService)."""
        ld = await self._ld()
        if int(str(ld.product_version).split(".")[0]) < 17:
            return ld
        if self.tunnel_provider is not None:
            return await self.tunnel_provider(self.udid)
        if self.tunneld_address is not None:
            from pymobiledevice3.tunneld.api import get_tunneld_device_by_udid

            rsd = await get_tunneld_device_by_udid(self.udid, self.tunneld_address)
            if rsd is None:
                raise DeviceError(f"tunneld at {self.tunneld_address} has no tunnel to this phone", device=self.id,
                                  hint=HINT_TUNNEL)
            return rsd
        return ld

    async def _launch_and_wait(self, run: _RunWatch, result_path: str, timeout_s: float) -> tuple[int, bool]:
        from pymobiledevice3.services.dvt.instruments.dvt_provider import DvtProvider
        from pymobiledevice3.services.dvt.instruments.process_control import ProcessControl

        async with DvtProvider(await self._dvt_source()) as dvt, ProcessControl(dvt) as pc:
            # Sysmontap first: its first rows come an interval after it starts, and a short app run would
            # otherwise end before any row names it. Bounded: a sampler that never ticks must not stall runs.
            sampling = asyncio.Event()
            sampler = asyncio.create_task(self._sample(dvt, run, sampling))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sampling.wait(), SYSMON_READY_S)
            try:
                pid = await pc.launch(self.bundle_id, arguments=["--edgeharness-run", run.run_id],
                                      environment={"EDGEHARNESS_RUN_ID": run.run_id}, kill_existing=True)
                run.pid = pid
                try:
                    await asyncio.wait_for(self._until_done(run, result_path), timeout_s)
                    return pid, False
                except TimeoutError:
                    log.warning("[%s] run %s: no result after %s s, killing pid %s", self.id, run.run_id,
                                timeout_s, pid)
                    await pc.kill(pid)
                    return pid, True
            finally:
                sampler.cancel()
                await asyncio.gather(sampler, return_exceptions=True)

    async def _until_done(self, run: _RunWatch, result_path: str) -> None:
        """The syslog sentinel, or (when syslog lost it) the result file appearing."""
        while True:
            try:
                await asyncio.wait_for(run.done.wait(), RESULT_POLL_S)
                return
            except TimeoutError:
                async with await self._house_arrest() as ha:
                    if await ha.exists(result_path):
                        return

    async def _watch_syslog(self, run: _RunWatch) -> None:
        from pymobiledevice3.services.syslog import SyslogService

        async with SyslogService(await self._ld()) as syslog:
            async for line in syslog.watch():
                run.add_line(line if isinstance(line, str) else line.decode("utf-8", "replace"))

    async def _watch_battery(self, run: _RunWatch) -> None:
        from pymobiledevice3.services.diagnostics import DiagnosticsService

        async with DiagnosticsService(await self._ld()) as diag:
            while True:
                run.battery.append(_battery_reading(await diag.get_battery() or {}, run.started))
                await asyncio.sleep(BATTERY_POLL_S)

    async def _sample(self, dvt: Any, run: _RunWatch, ticking: asyncio.Event) -> None:
        from pymobiledevice3.services.dvt.instruments.sysmontap import Sysmontap

        async with await Sysmontap.create(dvt, interval=500) as tap:
            async for procs in tap.iter_processes():
                now = time.monotonic() - run.started
                run.ticks.append(now)
                ticking.set()
                for proc in procs:
                    if proc.get("pid") == run.pid:
                        run.samples.append(_sysmon_sample(proc, now))


class _RunWatch:
    """Mutable bookkeeping of one run, filled by the watcher tasks on the device loop."""

    def __init__(self, run_id: str, started: float) -> None:
        self.run_id = run_id
        self.started = started
        self.pid: int | None = None
        self.done = asyncio.Event()
        self.status: str | None = None
        self.lines: list[str] = []
        self.samples: list[SysmonSample] = []
        self.ticks: list[float] = []
        self.battery: list[BatteryReading] = []

    def add_line(self, line: str) -> None:
        if len(self.lines) < MAX_LOG_LINES:
            self.lines.append(line)
        match = SENTINEL_RE.search(line)
        if match and match.group(1) == self.run_id:
            self.status = match.group(2)
            self.done.set()

    def app_lines(self, pid: int | None) -> list[str]:
        marks = [self.run_id] + ([f"({pid})", f"[{pid}]"] if pid else [])
        return [ln for ln in self.lines if any(m in ln for m in marks)]

    def interval_s(self) -> float | None:
        """Median gap between sysmontap deliveries (seconds), as the device really sent them."""
        gaps = [b - a for a, b in zip(self.ticks, self.ticks[1:])]
        return float(statistics.median(gaps)) if gaps else None

    def energy_refusal(self) -> str | None:
        if not self.battery:
            return "no battery readings (diagnostics_relay gave none)"
        if any(r.external_connected or r.is_charging for r in self.battery):
            return ("the phone was on external power (ExternalConnected/charging): battery current is not the "
                    "app's power; measure over Wi-Fi or through a data-only hub")
        if all(r.power_mw is None for r in self.battery):
            return "the battery reports no InstantAmperage/Voltage"
        return None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _battery_reading(reg: dict[str, Any], started: float) -> BatteryReading:
    temp = _num(reg.get("Temperature"))
    return BatteryReading(
        t_s=time.monotonic() - started, current_ma=_num(reg.get("InstantAmperage", reg.get("Amperage"))),
        voltage_mv=_num(reg.get("Voltage", reg.get("AppleRawBatteryVoltage"))),
        external_connected=bool(reg.get("ExternalConnected")), is_charging=bool(reg.get("IsCharging")),
        temperature_c=temp / 100.0 if temp is not None else None)


def _sysmon_sample(proc: dict[str, Any], t_s: float) -> SysmonSample:
    mib = 1024.0 * 1024.0
    foot, res, threads = _num(proc.get("physFootprint")), _num(proc.get("memResidentSize")), proc.get("threadCount")
    return SysmonSample(t_s=t_s, pid=int(proc["pid"]), cpu_percent=_num(proc.get("cpuUsage")),
                        footprint_mb=foot / mib if foot is not None else None,
                        resident_mb=res / mib if res is not None else None,
                        threads=int(threads) if isinstance(threads, int) else None)


def _is_connection_loss(exc: BaseException) -> bool:
    from pymobiledevice3.exceptions import ConnectionTerminatedError, MuxException

    return isinstance(exc, (ConnectionTerminatedError, MuxException, ConnectionError, asyncio.IncompleteReadError))


def _list_for_discovery() -> list[str]:
    """The lister ``harness devices`` calls: no pymobiledevice3 (extra not installed) means no iOS devices."""
    try:
        return discover_ios_devices()
    except ImportError:
        return []


register_backend("ios", open_ios_device, _list_for_discovery)
