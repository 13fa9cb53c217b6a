"""Native tools as runners: Google's litert-benchmark measured through the harness end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness.errors import DelegateUnavailable
from harness.runners import litert_benchmark, tool_output


def test_litert_benchmark_runner_end_to_end(tmp_path: Path, small_model: Path) -> None:
    suite = tmp_path / "tool.toml"
    suite.write_text(f"""
[suite]
name = "tool"
runner = "litert-benchmark"
delegates = ["xnnpack", "cpu"]
repetitions = 2
measured_runs = 10
warmup_runs = 2
[[models]]
path = "{small_model}"
name = "blazeface"
""")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(suite), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    rows = {json.loads(x)["case"]["delegate"]: json.loads(x)
            for x in next(out.glob("tool-*.jsonl")).read_text().splitlines()}
    ok = rows["xnnpack"]
    assert ok["status"] == "ok", ok["reason"]
    assert ok["case"]["runner"] == "litert-benchmark"
    reps = ok["latency"]["repetitions"]
    assert len(reps) == 2
    for rep in reps:  # aggregates only: the tool gives no per-iteration samples, and none are invented
        assert rep["samples_us"] == [] and rep["count"] == 10
        assert rep["min_us"] <= rep["median_us"] <= rep["max_us"] and rep["init_us"] > 0
    assert "BENCHMARK RESULTS" in ok["raw"]
    assert "aggregates" in ok["latency"]["method"]
    assert rows["cpu"]["status"] == "skipped" and "cannot run delegate 'cpu'" in rows["cpu"]["reason"]


def test_litert_delegate_mapping() -> None:
    argv = litert_benchmark.argv("m.tflite", delegate="gpu", threads=2, warmup_runs=1,
                                 measured_runs=3, python="python3")
    assert argv[:3] == ["python3", "-m", litert_benchmark.MODULE] and "--use_gpu" in argv
    try:
        litert_benchmark.argv("m.tflite", delegate="nnapi", threads=1, warmup_runs=1,
                              measured_runs=1, python="python3")
    except DelegateUnavailable as exc:
        assert "nnapi" in str(exc)
    else:
        raise AssertionError("nnapi on litert-benchmark must be unavailable")


def test_failed_tool_output_keeps_its_error_line() -> None:
    text = ("INFO: STARTING!\nINFO: Graph: [m.tflite]\nERROR: Failed to allocate tensors!\n"
            "ERROR: Benchmarking failed.\n")
    outcome = tool_output.outcome(tool_output.BENCHMARK_MODEL, text, 1)
    assert outcome.status == "failed" and "Failed to allocate tensors" in outcome.reason


def test_failed_run_keeps_its_delegate_coverage() -> None:
    """The Termux capture: XNNPACK took 2136 of 2168 nodes, then tensor allocation failed."""
    from pathlib import Path

    corpus = Path(__file__).parent / "data" / "corpus"
    sample = corpus / "benchmark_model__android_termux__xnnpack_partial__FAIL_allocate_tensors__litert_era__01.txt"
    outcome = tool_output.outcome(tool_output.BENCHMARK_MODEL, sample.read_text(), 1)
    assert outcome.status == "failed"
    xnn = [d for d in outcome.delegates if d["name"] == "xnnpack"]
    assert xnn and xnn[0]["nodes_delegated"] == 2136 and xnn[0]["nodes_total"] == 2168
