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
import time
from typing import TYPE_CHECKING, Any

import psutil
from pymobiledevice3.dtx import DTXConnection, DTXService, NSError, dtx_on_invoke

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
        if bundle_id not in state.apps:
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
        _state(self).signal(int(pid), 9)

    @dtx_on_invoke("processIdentifierForBundleIdentifier:")
    async def pid_for_bundle(self, bundle_id: str) -> int:
        return _state(self).running_pid(bundle_id)


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
        return [{"pid": pid, "name": name} for pid, name in _state(self).process_names().items()]


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
        while True:
            await asyncio.sleep(state.sysmon_interval_s)
            rows = {pid: self._row(pid, name) for pid, name in state.process_names().items()}
            rows = {pid: row for pid, row in rows.items() if row is not None}
            system = [psutil.virtual_memory().total, psutil.virtual_memory().available // 16384]
            await self.send_notification([{"Processes": rows, "System": system, "Type": 7}])

    def _row(self, pid: int, name: str) -> list[Any] | None:
        try:
            proc = self._procs.setdefault(pid, psutil.Process(pid))
            with proc.oneshot():
                mem = proc.memory_info()
                return [pid, name, proc.cpu_percent(None), mem.rss, mem.rss, proc.num_threads()]
        except psutil.Error:
            return None


async def serve_dvt(state: DeviceState, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Run the device end of one DVT connection until the host goes away."""
    conn = DTXConnection(reader, writer)
    conn.ctx["fake_state"] = state
    conn.register_services(FakeProcessControl, FakeDeviceInfo, FakeSysmontap)
    try:
        await conn.connect()
        await conn.wait_disconnected()
    finally:
        await conn.aclose()
