"""The npu delegate run for real on this host: LiteRT's NPU path through the Intel OpenVINO vendor plugin."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import zoo
from harness.runners import litert_python

pytest.importorskip("openvino", reason="the npu delegate needs pip install 'edgeharness[npu]'")


def _run(model: Path, *args: str) -> litert_python.RunnerOutcome:
    cmd = [sys.executable, str(litert_python.SCRIPT), "--model", str(model), "--delegate", "npu", "--api", "compiled",
           "--runs", "5", "--warmup", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return litert_python.parse(proc.stdout + proc.stderr, proc.returncode, runs=5)


def test_face_model_runs_whole_on_the_npu_path(zoo_models: dict[str, Path]) -> None:
    outcome = _run(zoo_models["face_landmark"])
    assert outcome.status == "ok", outcome.reason
    acc = outcome.accelerator
    assert acc is not None and acc.verdict == "full"
    assert (acc.ops_accelerated, acc.ops_total, acc.partitions) == (97, 97, 1)
    assert acc.backend == "CPU" and acc.compile == "jit"
    assert any("Partitioned subgraph<0>, selected 97 ops" in line for line in acc.evidence)
    rep = outcome.repetition
    # JIT compile happens inside model creation: measured apart from it, and shorter than it.
    assert rep.compile_us is not None and 0 < rep.compile_us < rep.init_us


def test_int8_streaming_model_falls_back_with_the_runtime_reason() -> None:
    outcome = _run(zoo.fetch("wakeword_alexa"))
    assert outcome.status == "ok", outcome.reason  # NPU + CPU: the model still runs, on CPU
    acc = outcome.accelerator
    assert acc is not None and acc.verdict == "fallback", acc
    assert acc.ops_accelerated == 0 and acc.ops_total == 57
    assert "selected 26 of 57 ops" in acc.reason and "Exception in compilation" in acc.reason


def test_without_cpu_fallback_the_same_model_fails() -> None:
    outcome = _run(zoo.fetch("wakeword_alexa"), "--npu-cpu-fallback", "0")
    assert outcome.status == "failed"
    assert outcome.accelerator is not None and outcome.accelerator.verdict == "failed"
    assert "Exception in compilation" in outcome.accelerator.reason


def test_aot_compiles_before_init_and_runs_whole(zoo_models: dict[str, Path]) -> None:
    outcome = _run(zoo_models["iris_landmark"], "--npu-compile", "aot")
    assert outcome.status == "ok", outcome.reason
    acc = outcome.accelerator
    assert acc is not None and acc.verdict == "full" and acc.compile == "aot"
    assert (acc.ops_accelerated, acc.ops_total) == (169, 169)
    assert outcome.repetition.compile_us > 0


def test_suite_run_gives_verdicts_and_the_gate_fails_the_fallback(tmp_path: Path, zoo_models: dict[str, Path]) -> None:
    from harness.api import gate_run
    from harness.api import run as run_suite
    from harness.store import open_store

    zoo.fetch("wakeword_alexa")
    suite = tmp_path / "npu.toml"
    suite.write_text(
        '[suite]\ndelegates = ["cpu", "npu"]\nrepetitions = 1\nmeasured_runs = 5\nwarmup_runs = 1\n'
        '[gate]\naccelerator = "full"\n'
        '[[models]]\nzoo = "iris_landmark"\n[[models]]\nzoo = "wakeword_alexa"\n', encoding="utf-8")
    summary = run_suite(str(suite), devices=["host"], out_dir=str(tmp_path / "out"))
    verdicts = {r.case.model: r.accelerator.verdict for r in summary.results if r.case.delegate == "npu"}
    assert verdicts == {"iris_landmark": "full", "wakeword_alexa": "fallback"}
    # the suite's API is the Interpreter: npu runs (and says it ran) through CompiledModel, and is compared with cpu
    assert {r.case.api for r in summary.results if r.case.delegate == "npu"} == {"compiled"}
    from harness.numerics import against
    drifts = {res.case.model: d for _, res, d in against(summary.results)}
    assert drifts["iris_landmark"].problem is None and drifts["iris_landmark"].value("cosine") > 0.999
    page = summary.report_path.read_text(encoding="utf-8")  # speedup, verdict and numerics side by side
    speedups = page[page.index('<table id="speedups"'):page.index("</table>", page.index('<table id="speedups"'))]
    assert "full (169/169 ops, 1 partition)" in speedups and "fallback (0/57 ops, 0 partitions)" in speedups
    assert re.search(r'<td class="numerics">0\.99\d+</td>', speedups)  # iris cosine against cpu
    assert "fallback (0/57 ops, 0 partitions)" in page[page.index('<table id="coverage"'):]
    outcome = gate_run(open_store(tmp_path / "out"), None, "latest")
    assert outcome.exit_code == 1
    assert len(outcome.failures) == 1 and "wakeword_alexa[host-npu-t1]" in outcome.failures[0]
    assert "fallback" in outcome.failures[0]
    relaxed = gate_run(open_store(tmp_path / "out"), None, "latest", {"accelerator": "any"})
    assert relaxed.exit_code == 0


def test_aot_failure_says_what_the_compiler_said() -> None:
    outcome = _run(zoo.fetch("wakeword_alexa"), "--npu-compile", "aot")
    assert outcome.status == "failed"
    acc = outcome.accelerator
    assert acc is not None and acc.verdict == "failed" and acc.compile == "aot" and acc.ops_total == 57
    assert "cannot open shared object file" in acc.reason and acc.reason in outcome.reason


def test_without_openvino_the_case_is_skipped_with_the_reason(tmp_path: Path, zoo_models: dict[str, Path]) -> None:
    shadow = tmp_path / "openvino"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('simulated: not installed')\n", encoding="utf-8")
    cmd = [sys.executable, str(litert_python.SCRIPT), "--model", str(zoo_models["iris_landmark"]), "--delegate", "npu",
           "--api", "compiled", "--runs", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(tmp_path)})
    outcome = litert_python.parse(proc.stdout + proc.stderr, proc.returncode)
    assert outcome.status == "skipped" and "edgeharness[npu]" in outcome.reason


def test_litert_benchmark_says_fully_accelerated_but_the_npu_took_nothing(tmp_path: Path,
                                                                         zoo_models: dict[str, Path]) -> None:
    """Google's litert-benchmark --use_npu on this host: the plugin compiles for OpenVINO's NPU device, fails, XNNPACK
    runs the model, and the tool prints 'Fully accelerated: True'. The verdict reads the runtime's lines instead."""
    from harness.api import run as run_suite

    suite = tmp_path / "lb.toml"
    suite.write_text('[suite]\ndelegates = ["npu"]\nrunner = "litert-benchmark"\nrepetitions = 1\nmeasured_runs = 5\n'
                     '[[models]]\nzoo = "iris_landmark"\n', encoding="utf-8")
    (result,) = run_suite(str(suite), devices=["host"], out_dir=str(tmp_path / "out"), report=False).results
    assert result.status == "ok", result.reason
    assert "Fully accelerated: True" in result.raw
    assert result.accelerator is not None and result.accelerator.verdict == "fallback"
    assert "selected 169 of 169 ops" in result.accelerator.reason
