"""The plan: which case runs on which device, with which runner, or why it is skipped. Pure: no I/O.

Cases x devices are built once (:func:`expand`), by every front (``harness run``, the Python API,
the pytest plugin's collection). What a device can do comes in as data (:class:`DeviceFacts`, read
from an opened device by the orchestrator); :func:`decide` turns one entry into a :class:`Job` (the
runner that will run it) or a :class:`Skip` (the profile lacks the delegate, no runner can run it
there, ...), and :func:`plan` does that for a whole suite.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from harness.devices.base import Capabilities
from harness.devices.discovery import is_endpoint_id
from harness.names import sanitise
from harness.profiles import Profile
from harness.results import DeviceInfo
from harness.runners import benchmark_model, endpoint, ios_app, litert_benchmark, litert_python
from harness.suite import Case


def device_label(device_id: str) -> str:
    """Short, id-safe label for case ids: ``host``, ``adb-127.0.0.1-5555``, ``ios-00008030``."""
    return sanitise(device_id, "device", 40)

@dataclass(frozen=True)
class Entry:
    """One case on one device (by id): what a front offers and what a pytest item stands for."""

    case: Case
    device_id: str

    @property
    def case_id(self) -> str:
        return self.case.case_id(device_label(self.device_id))

@dataclass(frozen=True)
class DeviceFacts:
    """What the plan needs to know of a device, read once from the opened device.

    ``python`` is the device's interpreter (shell devices only; None when it has none).
    """

    info: DeviceInfo
    capabilities: Capabilities
    python: str | None = None
    profile: Profile | None = None

@dataclass(frozen=True)
class Job:
    """An entry that will run, and the runner (name in :mod:`harness.runners.registry`) that runs it."""

    entry: Entry
    runner: str

@dataclass(frozen=True)
class Skip:
    """An entry that will not run, with the reason the result carries."""

    entry: Entry
    reason: str

def expand(cases: Iterable[Case], device_ids: Sequence[str]) -> list[Entry]:
    """Every case on every device, device by device (the order a device runs its cases in): on-device cases on
    devices, network-profile cases on endpoints (told apart by the id's form, before any device is opened)."""
    listed = list(cases)
    return [Entry(case, device_id) for device_id in device_ids for case in listed
            if bool(case.network) == is_endpoint_id(device_id)]

def decide(entry: Entry, facts: DeviceFacts) -> Job | Skip:
    """Job or skip for one entry, from the device's facts (profile first, then the runner)."""
    case = entry.case
    if bool(case.network) != facts.capabilities.endpoint:
        return Skip(entry, f"network profile {case.network!r} applies to endpoint devices only" if case.network
                    else f"{entry.device_id} is an endpoint: its cases run under a network profile")
    if facts.profile is not None and not facts.profile.supports(case.delegate):
        return Skip(entry, facts.profile.lacks_reason(case.delegate))
    runner = _runner(case, facts, entry.device_id)
    return Job(entry, runner) if runner in _RUNNABLE else Skip(entry, runner)

_RUNNABLE = (litert_python.NAME, benchmark_model.NAME, litert_benchmark.NAME, ios_app.NAME, endpoint.NAME)

def _runner(case: Case, facts: DeviceFacts, device_id: str) -> str:
    """The runner's name, or why none can run the case on this device."""
    caps, abi = facts.capabilities, facts.info.abi
    if caps.endpoint:
        return endpoint.NAME
    if caps.app_host:
        return ios_app.NAME
    if not caps.shell:
        return f"{device_id} runs neither shell commands nor the benchmark app"
    runner = case.model.run.runner
    has_python = facts.python is not None
    tool_path = case.model.tool.binary_for(abi)
    if runner == "auto":
        if case.delegate in litert_python.DELEGATES and has_python:
            return litert_python.NAME
        if tool_path:
            return benchmark_model.NAME
        return (f"delegate {case.delegate!r} needs the native benchmark_model tool: set "
                f"[suite.tool] benchmark_model for ABI {abi or '?'}"
                if case.delegate not in litert_python.DELEGATES
                else f"{device_id} has no Python for the litert-python runner and no "
                     f"benchmark_model tool is configured")
    if runner == litert_python.NAME:
        if not has_python:
            return f"{device_id} has no python3 for the litert-python runner"
        if case.delegate not in litert_python.DELEGATES:
            return f"the litert-python runner cannot run delegate {case.delegate!r}"
        return runner
    if runner == litert_benchmark.NAME:
        return runner if has_python else f"{device_id} has no python3 for litert-benchmark"
    return runner if tool_path else f"no benchmark_model binary for ABI {abi or '?'} in [suite.tool]"

def plan(cases: Iterable[Case], devices: Mapping[str, DeviceFacts]) -> list[Job | Skip]:
    """Every case on every device (``devices``: facts by device id), decided."""
    return [decide(e, devices[e.device_id]) for e in expand(cases, list(devices))]
