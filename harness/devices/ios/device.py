"""The iPhone as an :class:`~harness.devices.base.AppHost`: the benchmark-app contract over pymobiledevice3.

Why a benchmark *app*: iOS has no shell and the stock TFLite benchmark app needs a UI tap, so
the harness drives a small app that honours the edgeharness app contract (``docs/ios.md``):
push the model and ``benchmark_params.json`` into its ``Documents/`` with house_arrest,
launch it with DVT process control (``--edgeharness-run RUN_ID``), wait for
``EDGEHARNESS_DONE RUN_ID STATUS`` in syslog (or the result file), pull
``Documents/results/RUN_ID.json``; kill the app on timeout.

Every pymobiledevice3 object of a phone lives on the phone's :class:`LoopOwner`; the methods the
orchestrator calls are synchronous. During a run the backend hands the raw streams (syslog
lines, battery registry dicts, Sysmontap process rows) to the caller's observers as plain data;
turning them into readings is the samplers' job (``harness/samplers/app.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pymobiledevice3.remote.remote_service_discovery import RemoteServiceDiscoveryService
from pymobiledevice3.services.diagnostics import DiagnosticsService
from pymobiledevice3.services.dvt.instruments.dvt_provider import DvtProvider
from pymobiledevice3.services.dvt.instruments.process_control import ProcessControl
from pymobiledevice3.services.dvt.instruments.sysmontap import Sysmontap
from pymobiledevice3.services.syslog import SyslogService

from harness import profiles
from harness.devices.base import (
    APP_MONITOR_INTERVAL_S,
    AppHost,
    AppObserver,
    AppRunOutcome,
    Capabilities,
    sha256_file,
)
from harness.devices.ios import apps
from harness.devices.ios.lockdown import HINT_TUNNEL, Lockdown, pairing_dir
from harness.devices.ios.loop import LoopClosed, LoopOwner
from harness.devices.settings import DeviceSettings
from harness.errors import CommandTimeout, DeviceError, DeviceLost, DeviceNotFound
from harness.results import DeviceInfo

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_BUNDLE_ID = "com.edgeharness.bench"
SENTINEL_RE = re.compile(r"EDGEHARNESS_DONE (\S+) (\S+)")
RUN_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
FACT_KEYS = ("ProductType", "ProductVersion", "BuildVersion", "HardwareModel", "HardwarePlatform",
             "CPUArchitecture", "DeviceName", "DeviceClass")
RESULT_POLL_S = 2.0
BATTERY_POLL_S = 1.0
SYSMON_READY_S = 5.0  # longest wait for one Sysmontap tick before launching the app
SYSMON_INTERVAL_MS = round(APP_MONITOR_INTERVAL_S * 1000)
PROBES = frozenset({"app_memory", "app_battery", "app_log", "app_system_cpu"})
BATTERY_DOMAIN = "com.apple.mobile.battery"  # lockdown values: BatteryCurrentCapacity (%), BatteryIsCharging...
SYSMON_GAPS_KEPT = 20  # the pace is the median gap of the last ticks seen
STATE_SLACK_S = 15.0  # beyond the window: a phone's Sysmontap ticks every 3-5 s whatever rate is asked
TunnelProvider = Callable[[str], Awaitable[Any]]


def open_ios_device(device_id: str, settings: DeviceSettings | None = None, **options: Any) -> IosDevice:
    """An :class:`IosDevice` for ``ios:UDID``; options as :class:`IosDevice` (they win over ``settings``:
    usbmuxd address, pair-record folder, tunneld address). Connects (and pairs) lazily."""
    if not device_id.startswith("ios:") or len(device_id) <= 4:
        raise DeviceNotFound(f"not an iOS device id: {device_id!r}", device=device_id, hint="use ios:UDID")
    if settings is not None:
        options = {"usbmux_address": settings.usbmux_address, "pairing_folder": pairing_dir(settings.cache_dir),
                   "tunneld_address": settings.tunneld_address, **options}
    return IosDevice(device_id, **options)


class IosDevice(AppHost):
    """An iPhone behind usbmuxd; the harness's boundary to pymobiledevice3.

    ``pair_timeout_s``: how long to wait for the Trust dialog (0 = fail at once with a hint).
    ``tunneld_address``: a running ``tunneld`` (``HARNESS_TUNNELD``); when it has a tunnel to this
    phone, every service goes over the phone's RSD (the iOS 17+ route, see :mod:`.tunnel`), else
    over lockdown. ``tunnel_provider(udid)`` returns an RSD (or any LockdownServiceProvider) for DVT
    only, on iOS 17+. ``transfer_timeout_s`` bounds one push or pull.
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
        transfer_timeout_s: float = 600.0,
    ) -> None:
        super().__init__(device_id)
        self.udid = device_id.removeprefix("ios:")
        self.bundle_id = bundle_id
        self.tunnel_provider = tunnel_provider
        self.tunneld_address = tunneld_address
        self.profile_dir = profile_dir
        self.connect_timeout_s = connect_timeout_s
        self.transfer_timeout_s = transfer_timeout_s
        self._lockdown = Lockdown(self.udid, device_id, usbmux_address=usbmux_address,
                                  pairing_folder=pairing_folder or pairing_dir(), pair_timeout_s=pair_timeout_s,
                                  tunneld_address=tunneld_address)
        self._loop = LoopOwner(f"ios-{self.udid}")
        self._info: DeviceInfo | None = None
        self._sysmon_gaps: list[float] = []  # seconds between Sysmontap ticks in recent runs (the phone's pace)

    # --- plumbing -------------------------------------------------------------------
    def _run(self, what: str, coro: Coroutine[Any, Any, T], timeout_s: float | None) -> T:
        """Run ``coro`` on the device loop; errors come back typed, a timeout cancels it there."""
        if self._loop.closed:
            coro.close()
            raise DeviceError(f"{what}: the device was closed", device=self.id, hint="open the device again")
        try:
            return self._loop.run(self._lockdown.typed(what, coro), timeout_s)
        except TimeoutError as exc:
            raise CommandTimeout(f"{what} took longer than {timeout_s} s (cancelled)", timeout_s=timeout_s or 0,
                                 device=self.id, hint="check the phone is unlocked and responsive") from exc
        except LoopClosed as exc:
            raise DeviceError(f"{what}: the device was closed while it ran", device=self.id) from exc

    async def _container(self) -> apps.Container:
        return apps.Container(await self._lockdown.provider(), self.bundle_id)

    def close(self) -> None:
        """Close the lockdown connection and the device loop (no task left, thread joined); safe twice."""
        if self._loop.closed:
            return
        try:
            self._loop.run(self._lockdown.drop(), 10)
        except (TimeoutError, LoopClosed):
            log.debug("[%s] closing the lockdown connection timed out", self.id)
        finally:
            self._loop.close()

    # --- Device contract -------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        return Capabilities(app_host=True, probes=PROBES)

    def info(self) -> DeviceInfo:
        """Lockdown facts matched to an iPhone profile (marketing name, chip, class)."""
        if self._info is None:
            facts = self.facts()
            profile = profiles.match({k: str(v) for k, v in facts.items()}, "ios", self.profile_dir)
            extra = {k: str(facts[k]) for k in (*FACT_KEYS, "link") if k in facts}
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
            provider = await self._lockdown.provider()
            values = provider.all_values
            facts = {k: values[k] for k in (*FACT_KEYS, "UniqueDeviceID") if k in values}
            facts["link"] = "rsd" if isinstance(provider, RemoteServiceDiscoveryService) else "lockdown"
            return facts
        return self._run("read lockdown values", get(), self.connect_timeout_s)

    def delegates(self) -> tuple[str, ...]:
        """Delegates the matched profile says this phone supports."""
        info = self.info()
        return tuple(d for d in info.extra.get("delegates", "").split(",") if d)

    def workdir(self) -> str:
        return "Documents"

    def push(self, local: Path, remote: str) -> bool:
        """Copy a host file into the app container (``Documents/...``); False when the same sha256 is there."""
        target = apps.container_path(remote, self.id)

        async def push() -> bool:
            return await (await self._container()).push(Path(local), target)
        return self._run(f"push {Path(local).name}", push(), self.transfer_timeout_s)

    def pull(self, remote: str, local: Path) -> Path:
        """Copy a container file to ``local`` exactly (the device path never picks a host path)."""
        source = apps.container_path(remote, self.id)

        async def read() -> bytes:
            return await (await self._container()).read(source)
        data = self._run(f"pull {remote}", read(), self.transfer_timeout_s)
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.part")
        tmp.write_bytes(data)
        tmp.replace(local)
        return local

    # --- AppHost contract ------------------------------------------------------------------
    def monitor_interval_s(self) -> float | None:
        """The median gap (s) between the Sysmontap ticks of the last runs: the phone's own pace (it ignores the
        asked 500 ms; often 3-5 s). The first run on a phone waits for two ticks before it launches, to measure it."""
        gaps = sorted(self._sysmon_gaps)
        return gaps[len(gaps) // 2] if gaps else None

    def install_app(self, app: Path) -> bool:
        """Install the benchmark app (``.ipa`` or ``.app``); False when that version is already installed."""
        info = apps.read_app_bundle_info(Path(app), self.id)
        if info.get("CFBundleIdentifier") != self.bundle_id:
            raise DeviceError(f"app {app} is {info.get('CFBundleIdentifier')!r}, expected {self.bundle_id!r}",
                              device=self.id, hint="set bundle_id to the app's CFBundleIdentifier")

        async def install() -> bool:
            return await apps.install(await self._lockdown.provider(), self.bundle_id, Path(app),
                                      apps.bundle_version(info))
        return self._run(f"install {Path(app).name}", install(), 600)

    def run_app(self, model: Path, params: Mapping[str, Any], run_tag: str, timeout_s: float,
                app: Path | None = None, observers: Sequence[AppObserver] = ()) -> AppRunOutcome:
        """Run one benchmark through the app contract; a timeout kills the app and returns status ``timeout``.

        ``params`` are TFLite benchmark flags (``num_threads``, ``num_runs``, ``warmup_runs``,
        ``use_gpu``, ``use_xnnpack``, ``use_coreml``...); ``graph`` is set by the harness.
        ``observers`` get the run's raw streams (see :class:`~harness.devices.base.AppObserver`).
        """
        if not RUN_ID_RE.match(run_tag):
            raise DeviceError(f"bad run id {run_tag!r}", device=self.id, hint="letters, digits, '.', '_' and '-' only")
        # an iOS 17+ phone without a tunnel cannot launch the app: say so before a long install or push
        self._run("reach DVT to launch the app", self._check_dvt_route(), self.connect_timeout_s)
        installed = self.install_app(app) if app is not None else False
        outcome = self._run(f"benchmark {Path(model).name}",
                            self._run_app(Path(model), dict(params), run_tag, timeout_s, tuple(observers)),
                            timeout_s + 120)
        return dataclasses.replace(outcome, app_installed=installed)

    async def _run_app(self, model: Path, params: dict[str, Any], run_id: str, timeout_s: float,
                       observers: Sequence[AppObserver]) -> AppRunOutcome:
        run = _Run(run_id, observers)
        box = await self._container()
        remote_model = f"/Documents/models/{sha256_file(model)[:16]}-{model.name}"
        pushed = await box.push(model, remote_model)
        params["graph"] = remote_model.removeprefix("/Documents/")
        result_path = f"/Documents/results/{run_id}.json"
        await box.prepare_run(json.dumps(params).encode(), result_path)
        streams = [self._stream_syslog(run)] + ([self._stream_battery(run)] if run.wants("app_battery") else [])
        tasks = [asyncio.create_task(s) for s in streams]
        pid: int | None = None
        try:
            pid, timed_out = await self._launch_and_wait(run, box, result_path, timeout_s)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        duration = time.monotonic() - run.started
        if timed_out:
            return AppRunOutcome(run_id=run_id, status="timeout", result=None, pid=pid, duration_s=duration,
                                 reason=f"the app did not finish within {timeout_s} s and was killed",
                                 model_pushed=pushed)
        result = _result_object(await box.read(result_path))
        if result is None:
            return AppRunOutcome(run_id=run_id, status="failed", result=None, pid=pid, duration_s=duration,
                                 reason=f"the app's result file {result_path} is not a JSON object",
                                 model_pushed=pushed)
        reason = result.get("reason")
        return AppRunOutcome(run_id=run_id, status=str(result.get("status") or run.status or "failed"),
                             reason=str(reason) if reason is not None else None, result=result, pid=pid,
                             duration_s=duration, model_pushed=pushed)

    def read_state(self, probes: Collection[str], window_s: float) -> dict[str, Any]:
        """The phone's battery values (lockdown domain ``com.apple.mobile.battery``) and its system CPU
        rows (Sysmontap ``SystemCPUUsage``, ``CPUCount``, ``EnabledCPUs``; at least two rows, over about
        ``window_s``); a reading the phone does not give now is left out (and logged), a lost phone raises."""
        out: dict[str, Any] = {}
        reads = {"app_battery": (self._battery_values, self.connect_timeout_s),
                 "app_system_cpu": (lambda: self._system_cpu_rows(window_s), window_s + STATE_SLACK_S)}
        for probe, (read, timeout_s) in reads.items():
            if probe not in probes:
                continue
            try:
                out[probe] = self._run(f"read {probe}", read(), timeout_s)
            except DeviceLost:
                raise
            except DeviceError as exc:
                log.info("[%s] %s not read: %s", self.id, probe, exc)
        return out

    async def _battery_values(self) -> dict[str, Any]:
        values = await (await self._lockdown.provider()).get_value(domain=BATTERY_DOMAIN)
        return dict(values) if isinstance(values, dict) else {}

    async def _system_cpu_rows(self, window_s: float) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        started = time.monotonic()
        async with DvtProvider(await self._dvt_source()) as dvt, \
                await Sysmontap.create(dvt, interval=SYSMON_INTERVAL_MS) as tap:
            async for row in tap:
                if isinstance(row, dict) and "SystemCPUUsage" in row:
                    rows.append({k: v for k, v in row.items() if k != "Processes"})
                if len(rows) >= 2 and time.monotonic() - started >= window_s:
                    return rows
        return rows

    async def _dvt_source(self) -> Any:
        """The RSD when tunneld has one; lockdown on iOS < 17; on 17+ the injected tunnel provider."""
        provider = await self._lockdown.provider()
        return await self.tunnel_provider(self.udid) if await self._dvt_needs_tunnel(provider) else provider

    async def _dvt_needs_tunnel(self, provider: Any) -> bool:
        """True when DVT must come from the injected tunnel provider (an iOS 17+ phone over lockdown).

        An iOS 17+ phone with no route to DVT fails here, before anything is installed or pushed: with tunneld set
        but no tunnel to it, and otherwise with the phone's own answer to DVT over lockdown (InvalidService,
        turned into the tunnel hint).
        """
        if isinstance(provider, RemoteServiceDiscoveryService) or int(str(provider.product_version).split(".")[0]) < 17:
            return False
        if self.tunnel_provider is not None:
            return True
        if self.tunneld_address is not None:
            host, port = self.tunneld_address
            raise DeviceError(f"tunneld at {host}:{port} has no tunnel to this iOS 17+ phone", device=self.id,
                              hint=HINT_TUNNEL)
        await provider.get_service_connection_attributes(DvtProvider.SERVICE_NAME)
        return False

    async def _check_dvt_route(self) -> None:
        await self._dvt_needs_tunnel(await self._lockdown.provider())

    async def _launch_and_wait(self, run: _Run, box: apps.Container, result_path: str,
                               timeout_s: float) -> tuple[int, bool]:
        async with DvtProvider(await self._dvt_source()) as dvt, ProcessControl(dvt) as pc:
            # Sysmontap first: its first rows come an interval after it starts, and a short app run would
            # otherwise end before any row names it. Until a run on this phone has seen two ticks, wait for the
            # second, so the run's observer measures the phone's pace (the orchestrator sizes the measured window
            # by it: rows name the app only while it runs). Bounded: a sampler that never ticks must not stall runs.
            sampler = None
            if run.wants("app_memory"):
                ticking, needed = asyncio.Event(), 1 if self._sysmon_gaps else 2
                sampler = asyncio.create_task(self._stream_sysmon(dvt, run, ticking, needed))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ticking.wait(), SYSMON_READY_S * needed)
            try:
                pid = await pc.launch(self.bundle_id, arguments=["--edgeharness-run", run.run_id],
                                      environment={"EDGEHARNESS_RUN_ID": run.run_id}, kill_existing=True)
                run.launched(pid)
                try:
                    await asyncio.wait_for(self._until_done(run, box, result_path), timeout_s)
                    return pid, False
                except TimeoutError:
                    log.warning("[%s] run %s: no result after %s s, killing pid %s", self.id, run.run_id,
                                timeout_s, pid)
                    await pc.kill(pid)
                    return pid, True
            finally:
                if sampler is not None:
                    sampler.cancel()
                    await asyncio.gather(sampler, return_exceptions=True)

    async def _until_done(self, run: _Run, box: apps.Container, result_path: str) -> None:
        """The syslog sentinel, or (when syslog lost it) the result file appearing."""
        while True:
            try:
                await asyncio.wait_for(run.done.wait(), RESULT_POLL_S)
                return
            except TimeoutError:
                if await box.exists(result_path):
                    return

    async def _stream_syslog(self, run: _Run) -> None:
        async with SyslogService(await self._lockdown.provider()) as syslog:
            async for line in syslog.watch():
                run.log_line(line if isinstance(line, str) else line.decode("utf-8", "replace"))

    async def _stream_battery(self, run: _Run) -> None:
        async with DiagnosticsService(await self._lockdown.provider()) as diag:
            while True:
                registry = await diag.get_battery()
                run.emit("app_battery", dict(registry) if isinstance(registry, dict) else {})
                await asyncio.sleep(BATTERY_POLL_S)

    async def _stream_sysmon(self, dvt: Any, run: _Run, ticking: asyncio.Event, needed: int) -> None:
        """Feed Sysmontap's process rows to the run; ``ticking`` is set once ``needed`` ticks came."""
        ticks, last = 0, 0.0
        async with await Sysmontap.create(dvt, interval=SYSMON_INTERVAL_MS) as tap:
            async for procs in tap.iter_processes():
                now, ticks = time.monotonic(), ticks + 1
                if ticks >= 2:
                    self._sysmon_gaps = [*self._sysmon_gaps[-(SYSMON_GAPS_KEPT - 1):], now - last]
                last = now
                if ticks >= needed:
                    ticking.set()
                run.emit("app_memory", [dict(p) for p in procs if isinstance(p, dict)])


class _Run:
    """One app run on the device loop: the sentinel the backend waits for, and the observers it feeds."""

    def __init__(self, run_id: str, observers: Sequence[AppObserver]) -> None:
        self.run_id = run_id
        self.started = time.monotonic()
        self.status: str | None = None
        self.done = asyncio.Event()
        self._observers = list(observers)

    def wants(self, probe: str) -> bool:
        return any(o.probe == probe for o in self._observers)

    def launched(self, pid: int) -> None:
        for observer in list(self._observers):
            self._call(observer, observer.launched, pid)

    def log_line(self, line: str) -> None:
        match = SENTINEL_RE.search(line)
        if match and match.group(1) == self.run_id:
            self.status = match.group(2)
            self.done.set()
        self.emit("app_log", line)

    def emit(self, probe: str, item: Any) -> None:
        t_s = time.monotonic() - self.started
        for observer in list(self._observers):
            if observer.probe == probe:
                self._call(observer, observer.feed, t_s, item)

    def _call(self, observer: AppObserver, method: Callable[..., None], *args: Any) -> None:
        """An observer that fails is dropped (logged): a sampler's bug must not stop the run."""
        try:
            method(*args)
        except Exception:
            log.exception("run %s: observer %r failed; it gets no more data", self.run_id, observer)
            self._observers.remove(observer)


def _result_object(data: bytes) -> dict[str, Any] | None:
    """The app's result file as a JSON object, or None when it is not one (device output is untrusted)."""
    try:
        result = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return result if isinstance(result, dict) else None
