"""The plan (``harness.plan``): cases x devices built once, each entry a job with its runner or a skip with why.

Pure: the device facts are plain data here, no device is opened.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import profiles
from harness.api import budgets, gate_config
from harness.devices.base import Capabilities
from harness.plan import DeviceFacts, Job, Skip, decide, expand, plan
from harness.results import CaseInfo, DeviceInfo, Result
from harness.suite import parse_suite

SHELL = Capabilities(shell=True)
APP = Capabilities(app_host=True)


def _suite(extra: str = "", model: str = "") -> list:
    return parse_suite(f'[suite]\ndelegates = ["cpu", "nnapi"]\n{extra}\n[[models]]\nzoo = "face_landmark"\n{model}',
                       "s.toml").cases()


def _facts(caps: Capabilities = SHELL, python: str | None = "/usr/bin/python3", abi: str = "arm64-v8a",
           profile: str | None = None) -> DeviceFacts:
    return DeviceFacts(DeviceInfo(id="d", platform="x", abi=abi), caps, python,
                       profiles.get(profile) if profile else None)


def test_cases_times_devices_are_built_device_by_device() -> None:
    entries = expand(_suite(), ["host", "adb:1.2.3.4:5555"])
    assert [(e.device_id, e.case.delegate) for e in entries] == [
        ("host", "cpu"), ("host", "nnapi"), ("adb:1.2.3.4:5555", "cpu"), ("adb:1.2.3.4:5555", "nnapi")]
    assert entries[2].case_id == "face_landmark[adb-1.2.3.4-5555-cpu-t1]"


def test_auto_picks_python_runner_and_native_tool_by_delegate() -> None:
    cpu, nnapi = expand(_suite('tool = { benchmark_model = { "arm64-v8a" = "/bin/bm" } }'), ["d"])
    assert decide(cpu, _facts()) == Job(cpu, "litert-python")
    assert decide(nnapi, _facts()) == Job(nnapi, "benchmark_model")
    assert decide(nnapi, _facts(abi="x86_64")) == Skip(nnapi, "delegate 'nnapi' needs the native benchmark_model "
                                                              "tool: set [suite.tool] benchmark_model for ABI x86_64")


def test_the_profile_decides_before_the_runner() -> None:
    cpu, nnapi = expand(_suite(), ["d"])
    decided = decide(nnapi, _facts(profile="host"))
    assert isinstance(decided, Skip) and "profile 'host' lacks delegate 'nnapi'" in decided.reason
    assert decide(cpu, _facts(profile="host")) == Job(cpu, "litert-python")


@pytest.mark.parametrize(("runner", "python", "reason"), [
    ("litert-python", None, "d has no python3 for the litert-python runner"),
    ("litert-benchmark", None, "d has no python3 for litert-benchmark"),
    ("benchmark_model", "/usr/bin/python3", "no benchmark_model binary for ABI arm64-v8a in [suite.tool]"),
])
def test_a_runner_the_device_cannot_run_is_a_skip_with_why(runner: str, python: str | None, reason: str) -> None:
    cpu, _ = expand(_suite(f'runner = "{runner}"'), ["d"])
    assert decide(cpu, _facts(python=python)) == Skip(cpu, reason)


def test_an_app_host_runs_the_app_contract_and_a_device_with_neither_is_skipped() -> None:
    cpu, _ = expand(_suite(), ["d"])
    assert decide(cpu, _facts(APP, python=None)) == Job(cpu, "ios-app")
    decided = decide(cpu, _facts(Capabilities(), python=None))
    assert isinstance(decided, Skip) and "neither shell commands nor the benchmark app" in decided.reason


def test_plan_decides_every_entry_from_each_devices_facts() -> None:
    decided = plan(_suite(), {"phone": _facts(), "iphone": _facts(APP, python=None)})
    assert [(d.entry.device_id, type(d).__name__) for d in decided] == [
        ("phone", "Job"), ("phone", "Skip"), ("iphone", "Job"), ("iphone", "Job")]


def _result(settings: dict) -> Result:
    case = CaseInfo(case_id="m[d-cpu-t1]", model="m", model_sha256="", delegate="cpu", threads=1, runner="x",
                    settings=settings)
    return Result(run_id="r", case=case, device=DeviceInfo(id="d", platform="x"), status="ok")


def test_settings_are_typed_at_load_and_read_back_from_a_result_alone(tmp_path: Path) -> None:
    """What a result keeps of the suite's budget and [gate] gives the same gate without the suite file."""
    suite = parse_suite('[gate]\nmax_regression = "3%"\nnoisy = "warn"\n[[models]]\nzoo = "face_landmark"\n'
                        '[models.budget]\np50_ms = 12\n[models.budget.flagship]\np50_ms = 4\n', "s.toml")
    (model,) = suite.models
    assert model.gate.max_regression == pytest.approx(0.03) and model.budget.p50_ms == 12.0
    stored = _result(model.settings_record())
    assert gate_config([stored]) == model.gate
    assert budgets([stored]) == {"m": model.budget}
    # a run stored before the typed settings (the raw [gate] table) reads the same
    assert gate_config([_result({"gate": {"max_regression": "3%", "noisy": "warn"}})]) == model.gate
