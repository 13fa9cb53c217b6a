"""The fake iPhone's DVT (instruments) server, built on pymobiledevice3's own DTX classes.

``pymobiledevice3.dtx.DTXConnection`` is symmetric, so the device side is one
``DTXConnection`` with three registered services: process control (launch, signal,
stdout forwarding), device info (sysmon attribute lists) and sysmontap (rows built from
the launched app process's real CPU and memory, read with psutil). Like a real phone,
sysmontap pushes at the fake's own rate, whatever interval the host asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from typing import TYPE_CHECKING, Any

import psutil
from pymobiledevice3.dtx import DTXConnection, DTXService, NSError, dtx_on_invoke

from harness.testing.ios import system

if TYPE_CHECKING:
    from harness.testing.ios.device import DeviceState

PROCESS_ATTRIBUTES = ("pid", "name", "cpuUsage", "physFootprint", "memResidentSize", "threadCount")
SYSTEM_ATTRIBUTES = ("physMemSize", "vmFreeCount")


def _state(service: DTXService) -> DeviceState:
    return service._ctx["fake_state"]


class FakeProcessControl(DTXService):
    """``processcontrol``: launch the benchmark app, signal it, forward its output."""

    IDENTIFIER = "com.apple.instruments.server.services.processcontrol"

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        _state(self).output_listeners.append(self._forward_output)

    def on_closed(self, reason: str = "") -> None:
        with contextlib.suppress(ValueError):
            _state(self).output_listeners.remove(self._forward_output)

    async def _forward_output(self, pid: int, line: str) -> None:
        with contextlib.suppress(Exception):
            await self._channel.invoke(
                "outputReceived:fromProcess:atTime:", line + "\n", pid, time.time(), expects_reply=False
            )

    @dtx_on_invoke("launchSuspendedProcessWithDevicePath:bundleIdentifier:environment:arguments:options:")
    async def launch(self, path: str, bundle_id: str, env: dict[str, Any], args: list[str], opts: dict) -> Any:
        state = _state(self)
        if not state.is_installed(bundle_id):
            return NSError(
                1,
                "FBSOpenApplicationErrorDomain",
                {"NSLocalizedDescription": f"The request to open {bundle_id!r} failed: not installed"},
            )
        return await state.launch_app(bundle_id, list(args), dict(env or {}), bool((opts or {}).get("KillExisting")))

    @dtx_on_invoke("sendSignal:toPid:")
    async def send_signal(self, sig: int, pid: int) -> Any:
        await _state(self).signal_and_reap(int(pid), int(sig))

    @dtx_on_invoke("killPid:")
    async def kill_pid(self, pid: int) -> None:
        await _state(self).signal_and_reap(int(pid), signal.SIGKILL)

    @dtx_on_invoke("processIdentifierForBundleIdentifier:")
    async def pid_for_bundle(self, bundle_id: str) -> int:
        return _state(self).running_pid(bundle_id)

    @dtx_on_invoke("disableMemoryLimitsForPid:")
    async def disable_memory_limits(self, pid: int) -> bool:
        return int(pid) in _state(self).process_names()

    @dtx_on_invoke("requestDisableMemoryLimitsForPid:")
    async def request_disable_memory_limits(self, pid: int) -> bool:
        return int(pid) in _state(self).process_names()

    @dtx_on_invoke("startObservingPid:")
    async def start_observing(self, pid: int) -> None:
        return None


class FakeDeviceInfo(DTXService):
    """``deviceinfo``: the attribute names sysmontap rows are laid out by."""

    IDENTIFIER = "com.apple.instruments.server.services.deviceinfo"

    @dtx_on_invoke("sysmonProcessAttributes")
    async def process_attributes(self) -> list[str]:
        return list(PROCESS_ATTRIBUTES)

    @dtx_on_invoke("sysmonSystemAttributes")
    async def system_attributes(self) -> list[str]:
        return list(SYSTEM_ATTRIBUTES)

    @dtx_on_invoke("runningProcesses")
    async def running_processes(self) -> list[dict[str, Any]]:
        state = _state(self)
        rows = []
        for pid, name in state.process_names().items():
            daemon = state.system_processes.get(pid)
            rows.append({
                "pid": pid,
                "name": name,
                "realAppName": state.process_path(pid) or name,
                "isApplication": daemon is None or daemon.name == "SpringBoard",
                "startDate": daemon.start if daemon is not None else _host_start(pid),
            })
        return rows

    @dtx_on_invoke("execnameForPid:")
    async def execname_for_pid(self, pid: int) -> str | None:
        return _state(self).process_path(int(pid))

    @dtx_on_invoke("isRunningPid:")
    async def is_running_pid(self, pid: int) -> bool:
        return int(pid) in _state(self).process_names()

    @dtx_on_invoke("directoryListingForPath:")
    async def directory_listing(self, path: str) -> Any:
        if str(path).rstrip("/") == "":
            return list(system.ROOT_LISTING)
        return NSError(4, "NSCocoaErrorDomain", {"NSLocalizedDescription": f"The folder {path!r} doesn't exist."})

    @dtx_on_invoke("nameForUID:")
    async def name_for_uid(self, uid: int) -> str:
        return "root" if int(uid) == 0 else "mobile"

    @dtx_on_invoke("nameForGID:")
    async def name_for_gid(self, gid: int) -> str:
        return "wheel" if int(gid) == 0 else "mobile"

    @dtx_on_invoke("machKernelName")
    async def mach_kernel_name(self) -> str:
        return "/mach.release"

    @dtx_on_invoke("machTimeInfo")
    async def mach_time_info(self) -> list[int]:
        return [time.monotonic_ns(), 125, 3, 0]

    @dtx_on_invoke("systemInformation")
    async def system_information(self) -> dict[str, Any]:
        values = _state(self).values
        return {
            "_deviceDescription": f"Build Version {values['BuildVersion']}, iOS {values['ProductVersion']}",
            "_deviceDisplayName": values["DeviceName"],
            "_deviceVersion": values["ProductVersion"],
        }

    @dtx_on_invoke("hardwareInformation")
    async def hardware_information(self) -> dict[str, Any]:
        cpus = os.cpu_count() or 1
        return {
            "numberOfCpus": cpus,
            "numberOfPhysicalCpus": cpus,
            "hwCPUtype": 16777228,
            "hwCPUsubtype": 2,
            "hwCPU64BitCapable": 1,
            "speedOfCpus": 0,
            "physMemSize": psutil.virtual_memory().total,
        }

    @dtx_on_invoke("networkInformation")
    async def network_information(self) -> dict[str, str]:
        return {"lo0": "Loopback", "en0": "Wi-Fi", "en2": "Ethernet Adaptor (en2)", "pdp_ip0": "Cellular (pdp_ip0)"}


class FakeLocationSimulation(DTXService):
    """``LocationSimulation``: the simulated GPS fix (the fake only records it in ``simulated_location``)."""

    IDENTIFIER = "com.apple.instruments.server.services.LocationSimulation"

    @dtx_on_invoke("simulateLocationWithLatitude:longitude:")
    async def simulate(self, latitude: float, longitude: float) -> None:
        _state(self).simulated_location = (float(latitude), float(longitude))

    @dtx_on_invoke("stopLocationSimulation")
    async def stop(self) -> None:
        _state(self).simulated_location = None


class FakeApplicationListing(DTXService):
    """``device.applictionListing``: installed apps and app extensions, as Instruments lists them."""

    IDENTIFIER = "com.apple.instruments.server.services.device.applictionListing"

    @dtx_on_invoke("installedApplicationsMatching:registerUpdateToken:")
    async def installed_applications(self, match: dict[str, Any], token: str) -> list[dict[str, Any]]:
        state = _state(self)
        apps = [
            {
                "CFBundleIdentifier": info["CFBundleIdentifier"],
                "DisplayName": info["CFBundleName"],
                "ExecutableName": info["CFBundleExecutable"],
                "BundlePath": info["Path"],
                "Restricted": 1 if info["ApplicationType"] == "System" else 0,
                "Type": "Application",
                "Version": info["CFBundleShortVersionString"],
            }
            for info in [*(a.info() for a in state.system_apps.values()), *(a.info() for a in state.apps.values())]
        ]
        return [*apps, *(dict(p) for p in system.PLUGINS)]


class FakeSysmontap(DTXService):
    """``sysmontap``: after ``start``, one ack then a row of every app process per tick."""

    IDENTIFIER = "com.apple.instruments.server.services.sysmontap"

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self._task: asyncio.Task[None] | None = None
        self._procs: dict[int, psutil.Process] = {}

    def on_closed(self, reason: str = "") -> None:
        if self._task is not None:
            self._task.cancel()

    @dtx_on_invoke("setConfig:")
    async def set_config(self, config: dict[str, Any]) -> None:
        self.config = config

    @dtx_on_invoke("start")
    async def start(self) -> None:
        await self.send_notification({"Status": "Started"})
        self._task = asyncio.create_task(self._sample_forever(), name="fake-sysmontap")

    @dtx_on_invoke("stop")
    async def stop(self) -> None:
        self.on_closed()

    async def _sample_forever(self) -> None:
        state = _state(self)
        cpus = os.cpu_count() or 1
        while True:
            await asyncio.sleep(state.sysmon_interval_s)
            rows = {pid: self._row(pid, name) for pid, name in state.process_names().items()}
            rows = {pid: row for pid, row in rows.items() if row is not None}
            memory = [psutil.virtual_memory().total, psutil.virtual_memory().available // 16384]
            # as sysmond: CPU_TotalLoad is the SUM of the per-core loads (0 .. 100 x CPUCount); the user,
            # system and nice shares are -1 (not measured); the first row after start is meaningless
            usage = {"CPU_TotalLoad": sum(psutil.cpu_percent(None, percpu=True)), "CPU_UserLoad": -1.0,
                     "CPU_SystemLoad": -1.0, "CPU_NiceLoad": -1.0}
            await self.send_notification([{
                "Processes": rows, "System": memory, "SystemCPUUsage": usage, "CPUCount": cpus,
                "EnabledCPUs": cpus, "Type": 7,
            }])

    def _row(self, pid: int, name: str) -> list[Any] | None:
        daemon = _state(self).system_processes.get(pid)
        if daemon is not None:
            # the phone's daemons are bookkeeping, not host processes: idle, with their nominal footprint
            return [pid, name, 0.0, daemon.footprint, daemon.footprint, 4]
        try:
            proc = self._procs.setdefault(pid, psutil.Process(pid))
            with proc.oneshot():
                mem = proc.memory_info()
                return [pid, name, proc.cpu_percent(None), mem.rss, mem.rss, proc.num_threads()]
        except psutil.Error:
            return None


def _host_start(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return time.time()


async def serve_dvt(state: DeviceState, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Run the device end of one DVT connection until the host goes away."""
    conn = DTXConnection(reader, writer)
    conn.ctx["fake_state"] = state
    served = (FakeProcessControl, FakeDeviceInfo, FakeSysmontap, FakeApplicationListing, FakeLocationSimulation)
    conn.register_services(*served)
    # like DTServiceHub, publish the service identifiers (with a version) in the capability handshake
    conn.sent_capabilities = {**DTXConnection.DEFAULT_CAPABILITIES, **{svc.IDENTIFIER: 1 for svc in served}}
    try:
        await conn.connect()
        await conn.wait_disconnected()
    finally:
        await conn.aclose()
