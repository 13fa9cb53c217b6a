"""Accelerator truth: verdicts from LiteRT's own log lines and from the corpus of real tool outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.results import Accelerator, Result
from harness.runners import accelerator
from harness.runners.parsers.parse import parse_text

CORPUS = Path(__file__).parent / "data" / "corpus"

# Lines LiteRT 2.3 printed on this host (face_landmark full; wake-word model partitioned, then its compile failed).
FULL = [
    "INFO: [compiler_plugin.cc:308] Attempting to load plugin at: /x/libLiteRtCompilerPlugin_IntelOpenvino.so",
    "INFO: [compiler_plugin.cc:742] Partitioned subgraph<0>, selected 97 ops, from a total of 97 ops. "
    "resulted in 1 partitions.",
    "INFO: [compiled_model.cc:1397] 1 compiler plugins were applied successfully: IntelOpenVINO compiler plugin",
]
FAILED_COMPILE = [
    "INFO: [compiler_plugin.cc:742] Partitioned subgraph<0>, selected 26 ops, from a total of 45 ops. "
    "resulted in 11 partitions.",
    "INFO: [compiler_plugin.cc:742] Partitioned subgraph<1>, selected 0 ops, from a total of 12 ops. "
    "resulted in 0 partitions.",
    "ERROR: [openvino_compiler_plugin.cc:714] Exception in compilation: "
    "Exception from src/inference/src/cpp/core.cpp:117:",
    "Exception from src/inference/src/dev/plugin.cpp:54:",
    'Cannot load library "/a/b/libopenvino_intel_npu_compiler_loader.so": cannot open shared object file',
    "INFO: [compiled_model.cc:1397] 0 compiler plugins were applied successfully: ",
    "ERROR: [compiled_model.cc:1400] Plugin errs: IntelOpenVINO compiler plugin (ver 0.1.0) ERROR: [x.cc:504]",
]
MISSING_PLUGIN = [
    "WARNING: [compiler_plugin.cc:312] Failed to load plugin at: /x/libLiteRtCompilerPlugin_IntelOpenvino.so with "
    "error: ERROR: [litert/compiler/plugin/compiler_plugin.cc:259]",
    "└ Could not load shared library /x/libLiteRtCompilerPlugin_IntelOpenvino.so: libopenvino.so.2631: cannot open "
    "shared object file: No such file or directory.",
    "WARNING: [compiled_model.cc:1393] Failed to apply compiler plugins: No compiler plugin found",
]


def test_full_partial_fallback_from_log_lines() -> None:
    full, unavailable = accelerator.from_log("npu", FULL, ran=True, fully_accelerated=True)
    assert unavailable is None and full.summary() == "full (97/97 ops, 1 partition)"
    partial, _ = accelerator.from_log("npu", FULL[:1] + [FAILED_COMPILE[0], FULL[2]], ran=True,
                                      fully_accelerated=False)
    assert partial.verdict == "partial" and (partial.ops_accelerated, partial.ops_total, partial.partitions) == (
        26, 45, 11)
    fallback, _ = accelerator.from_log("npu", FAILED_COMPILE, ran=True, fully_accelerated=False)
    assert fallback.verdict == "fallback" and fallback.ops_accelerated == 0 and fallback.ops_total == 57
    assert "selected 26 of 57 ops in 11 partitions" in fallback.reason
    assert "libopenvino_intel_npu_compiler_loader.so" in fallback.reason  # the innermost cause, not the wrapper


def test_a_missing_plugin_is_unavailable_not_a_measurement() -> None:
    verdict, unavailable = accelerator.from_log("npu", MISSING_PLUGIN, ran=True, fully_accelerated=False)
    assert unavailable is not None and "libopenvino.so.2631" in unavailable
    assert verdict.verdict == "fallback"


def test_runner_payload_that_lacks_the_plugin_becomes_skipped() -> None:
    from harness.runners.litert_python import from_payload

    payload = {"status": "ok", "samples_us": [1.0], "init_us": 1.0, "outputs": [],
               "accelerator": {"requested": "npu", "log": [[0.0, t] for t in MISSING_PLUGIN]}}
    outcome = from_payload(payload, runs=1)
    assert outcome.status == "skipped" and "not available" in outcome.reason


def test_compile_time_comes_from_the_stamps() -> None:
    log = [[100.0, FULL[0]], [150.0, FULL[1]], [900.5, FULL[2]]]
    assert accelerator.compile_us(log) == 800.5
    assert accelerator.compile_us([[None, FULL[0]], ["x", FULL[2]]]) is None


@pytest.mark.parametrize("hostile", [None, "text", {"log": "not a list"}, {"log": [[1, 2, 3], 5, None]},
                                     {"log": [[0, "x" * 10**6]] * 3, "requested": ["npu"], "backend": 7}])
def test_hostile_payloads_never_raise(hostile: object) -> None:
    verdict, _ = accelerator.from_payload(hostile, ran=True)
    assert verdict is None or verdict.verdict in ("full", "partial", "fallback", "failed")
    if verdict is not None:
        assert all(len(line) <= accelerator.MAX_LINE for line in verdict.evidence)


def _verdict(name: str, requested: str) -> Accelerator | None:
    text = (CORPUS / name).read_text(encoding="utf-8", errors="replace")
    runs = parse_text(text)
    delegates = [d.__dict__ for r in runs for d in r.delegates]
    return accelerator.from_delegates(requested, delegates, text, ran=all(r.status != "failed" for r in runs),
                                      failure=next((r.error for r in runs if r.error), None))


@pytest.mark.parametrize(("name", "requested", "verdict"), [
    ("benchmark_model__linux_imx8mp_snap__nnapi_vsi-npu__tf2.x_nxp__01.txt", "nnapi", "full"),
    ("benchmark_model_apk_logcat__unknown_ipu_device__gpu_partial__tf2.9__01.txt", "gpu", "partial"),
    ("inference_diff_tool__android_qcom__hexagon_partial__tf2.10__01.txt", "hexagon", "partial"),
    ("benchmark_model_apk_logcat__unknown_ipu_device__nnapi_not_applied__tf2.9__01.txt", "nnapi", "fallback"),
    ("benchmark_model__xiaomi_mi11__nnapi_qti-dsp__FAIL__tf2.4__01.txt", "nnapi", "failed"),
    ("benchmark_model__linux_imx8mp__external_vx_delegate_npu_ssd__tf2.x_nxp__01.txt", "npu", "partial"),
    # LiteRT's benchmark_model on a Lunar Lake NPU: the capture kept only the timings, so no verdict is invented.
    ("benchmark_litert_model__windows_intel_lunarlake__npu_openvino__litert2025__01.txt", "npu", None),
])
def test_verdicts_from_real_tool_outputs(name: str, requested: str, verdict: str | None) -> None:
    got = _verdict(name, requested)
    assert (got.verdict if got else None) == verdict


def test_hexagon_partial_keeps_its_counts() -> None:
    got = _verdict("inference_diff_tool__android_qcom__hexagon_partial__tf2.10__01.txt", "hexagon")
    assert got.summary() == "partial (136/139 ops, 2 partitions)"


def test_records_without_the_key_still_load(tmp_path: Path) -> None:
    """The key is optional: a record written before it existed loads with accelerator None."""
    from harness.results import CaseInfo, DeviceInfo

    res = Result("r", CaseInfo("c", "m", "s", "npu", 1, "x"), DeviceInfo("host", "host"), "ok")
    data = res.to_dict()
    assert Result.from_dict(data).accelerator is None
    data.pop("accelerator")
    assert Result.from_dict(data).accelerator is None
    data["accelerator"] = {"requested": "npu", "verdict": "maybe"}
    with pytest.raises(ValueError):
        Result.from_dict(data)
    data["accelerator"] = {"requested": "npu", "verdict": "full", "ops_total": float("nan")}
    with pytest.raises(ValueError):
        Result.from_dict(data)


@pytest.mark.parametrize(("text", "line", "key"), [
    ('[gate]\naccelerator = "mostly"\n[[models]]\nzoo = "face_landmark"\n', 2, "gate.accelerator"),
    ('[[models]]\nzoo = "face_landmark"\naccelerator = "most"\n', 3, "accelerator"),
    ('[suite]\nnpu = { compile = "later" }\n[[models]]\nzoo = "face_landmark"\n', 2, "suite.npu"),
    ('[gate]\nmax_drift = { cosine = 0.9 }\n[[models]]\nzoo = "face_landmark"\n', 2, "gate.max_drift"),
])
def test_bad_rules_are_one_line_at_load(text: str, line: int, key: str) -> None:
    from harness.errors import SuiteError
    from harness.suite import parse_suite

    with pytest.raises(SuiteError) as err:
        parse_suite(text, "s.toml")
    assert f"s.toml:{line}" in str(err.value) and key in str(err.value)


def test_model_rule_wins_over_the_suite() -> None:
    from harness.suite import parse_suite

    suite = parse_suite('[gate]\naccelerator = "full"\n[[models]]\nzoo = "face_landmark"\naccelerator = "any"\n'
                        '[[models]]\nzoo = "iris_landmark"\n', "s.toml")
    assert [m.accelerator for m in suite.models] == ["any", None]


def test_gate_rule_per_verdict_and_model_override() -> None:
    from harness.gate import GateConfig, accelerator_failures
    from harness.results import CaseInfo, DeviceInfo

    def res(verdict: str | None, delegate: str = "npu", **settings: str) -> Result:
        acc = Accelerator("npu", verdict, 3, 10, 2) if verdict else None
        return Result("r", CaseInfo(f"m[{verdict}]", "m", "s", delegate, 1, "x", settings=settings),
                      DeviceInfo("host", "host"), "ok", accelerator=acc)

    results = [res("full"), res("partial"), res("fallback"), res(None), res(None, "xnnpack"),
               res("fallback", accelerator="any")]
    full = accelerator_failures(results, GateConfig(accelerator="full"))
    assert [f.split(":")[0] for f in full] == ["m[partial]", "m[fallback]", "m[None]"]
    partial = accelerator_failures(results, GateConfig(accelerator="partial"))
    assert [f.split(":")[0] for f in partial] == ["m[fallback]", "m[None]"]
    assert accelerator_failures(results, GateConfig()) == []


def test_runtime_log_is_captured_with_stamps_and_without_a_reader(monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    import os
    import subprocess

    from harness.runners import pyrunner

    with pyrunner.StderrLog() as log:
        os.write(2, b"INFO: [compiler_plugin.cc:742] line one\nline one\n")
    assert [t for _, t in log.lines] == ["INFO: [compiler_plugin.cc:742] line one", "line one"]
    assert all(isinstance(at, float) and at >= 0 for at, _ in log.lines)
    assert "line one" in capfd.readouterr().err  # copied back: the result's raw output keeps it

    def no_interpreter(*args: object, **kwargs: object) -> None:
        raise OSError("no python here")

    monkeypatch.setattr(subprocess, "Popen", no_interpreter)
    with pyrunner.StderrLog() as log:
        os.write(2, b"ERROR: x\nERROR: x\n")
    assert log.lines == [[None, "ERROR: x"]]  # repeats counted, not kept; no stamp without the reader


def test_fully_accelerated_without_the_plugin_is_a_fallback() -> None:
    """The trap: is_fully_accelerated() (and litert-benchmark's 'Fully accelerated: True') also counts XNNPACK."""
    lines = FULL[:2] + ["INFO: [compiled_model.cc:1397] 0 compiler plugins were applied successfully: "]
    verdict, _ = accelerator.from_log("npu", lines, ran=True, fully_accelerated=True)
    assert verdict.verdict == "fallback" and verdict.ops_accelerated == 0


def test_npu_settings_are_typed_at_load_and_reach_the_command() -> None:
    """The suite's npu table (a model's own winning) and the profile's npu_backend end up on the runner's command."""
    import shlex

    from harness.runners.base import NpuSettings, Staged, Task
    from harness.runners.litert_python import LiteRtPythonRunner
    from harness.suite import parse_suite

    suite = parse_suite('[suite]\ndelegates = ["cpu", "npu"]\nnpu = { compile = "aot" }\n'
                        '[[models]]\nzoo = "face_landmark"\n'
                        '[[models]]\nzoo = "iris_landmark"\nnpu = { cpu_fallback = false }\n', "s.toml")
    assert [m.run.npu for m in suite.models] == [NpuSettings("aot", True), NpuSettings("jit", False)]
    run = suite.models[1].run
    staged = Staged("/w/m.tflite", {"script": "/w/pyrunner.py"}, "python3")
    argv = shlex.split(LiteRtPythonRunner().invocation(Task("npu", 1, run, npu_backend="GPU"), staged).command)
    flags = dict(zip(argv[2::2], argv[3::2], strict=False))
    assert (flags["--api"], flags["--npu-backend"], flags["--npu-compile"], flags["--npu-cpu-fallback"]) == (
        "compiled", "GPU", "jit", "0")
    cpu = shlex.split(LiteRtPythonRunner().invocation(Task("cpu", 1, run, npu_backend="GPU"), staged).command)
    assert "--npu-backend" not in cpu and cpu[cpu.index("--api") + 1] == "interpreter"


def test_profile_npu_backend_is_typed_and_checked(tmp_path: Path) -> None:
    from harness.errors import ProfileError
    from harness.profiles import parse_profile

    data = {"name": "box", "platform": "host", "delegates": ["cpu", "npu"]}
    assert parse_profile(data, tmp_path / "box.toml").npu_backend == "CPU"
    assert parse_profile({**data, "npu_backend": "NPU"}, tmp_path / "box.toml").npu_backend == "NPU"
    with pytest.raises(ProfileError, match="npu_backend"):
        parse_profile({**data, "npu_backend": "TPU"}, tmp_path / "box.toml")


def test_litert_benchmark_runs_npu_as_its_npu_accelerator() -> None:
    from harness.runners import litert_benchmark

    argv = litert_benchmark.argv("m.tflite", delegate="npu", threads=1, warmup_runs=1, measured_runs=2, python="py")
    assert argv[:3] == ["py", "-m", litert_benchmark.MODULE] and "--use_npu" in argv
