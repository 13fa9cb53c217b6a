"""The single-file runner on real LiteRT: per-iteration samples, delegates, outputs, failures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.runners import litert_python


def _run(model: Path, *args: str) -> tuple[litert_python.RunnerOutcome, subprocess.CompletedProcess]:
    cmd = [sys.executable, str(litert_python.SCRIPT), "--model", str(model), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return litert_python.parse(proc.stdout + proc.stderr, proc.returncode), proc


def test_every_iteration_is_recorded(small_model: Path) -> None:
    outcome, proc = _run(small_model, "--delegate", "xnnpack", "--runs", "17", "--warmup", "3")
    assert proc.returncode == 0, proc.stderr
    rep = outcome.repetition
    assert outcome.status == "ok" and rep is not None
    assert len(rep.samples_us) == 17
    assert all(s > 0 for s in rep.samples_us)
    assert rep.init_us > 0 and rep.first_inference_us > 0 and rep.warmup_avg_us > 0
    assert outcome.peak_rss_mb >= outcome.rss_after_init_mb >= outcome.rss_before_init_mb > 0
    assert outcome.environment["runtime"] in ("ai-edge-litert", "tflite-runtime")


def test_cpu_and_xnnpack_agree_on_outputs(zoo_models: dict[str, Path]) -> None:
    """Same seeded input, two kernels: outputs must match closely (a delegate must not change results)."""
    model = zoo_models["iris_landmark"]
    cpu, _ = _run(model, "--delegate", "cpu", "--runs", "2")
    xnn, _ = _run(model, "--delegate", "xnnpack", "--runs", "2")
    assert cpu.status == xnn.status == "ok"
    for a, b in zip(cpu.outputs, xnn.outputs, strict=True):
        assert a["shape"] == b["shape"]
        scale = max(1.0, abs(a["abs_max"]))
        assert max(abs(x - y) for x, y in zip(a["head"], b["head"])) <= 1e-3 * scale


def test_compiled_api_runs(small_model: Path) -> None:
    outcome, proc = _run(small_model, "--api", "compiled", "--runs", "5")
    assert outcome.status == "ok", outcome.reason
    assert len(outcome.repetition.samples_us) == 5


def test_gpu_without_accelerator_is_skipped_not_run_on_cpu(small_model: Path) -> None:
    outcome, proc = _run(small_model, "--delegate", "gpu", "--api", "compiled", "--runs", "3")
    if outcome.status == "ok":  # a machine with a working GPU accelerator
        return
    assert outcome.status == "skipped"
    assert proc.returncode == 3
    assert "GPU" in outcome.reason
    assert outcome.repetition is None


def test_rejected_model_fails_with_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    outcome, proc = _run(bad, "--runs", "1")
    assert proc.returncode == 2
    assert outcome.status == "failed" and "rejected" in outcome.reason


def test_garbage_output_is_a_failure_that_keeps_text() -> None:
    outcome = litert_python.parse("Segmentation fault (core dumped)\n", 139)
    assert outcome.status == "failed"
    assert "Segmentation fault" in outcome.reason and "139" in outcome.reason


def test_peak_memory_is_the_runners_own_even_when_its_parent_was_bigger(small_model: Path) -> None:
    """``exec``'d from a vfork()ed shell, ``ru_maxrss`` carries the parent's peak (a 13 MB child of a 400 MB
    parent read 395 MB here); the runner reports VmHWM, its own address space's high-water mark."""
    parent = (
        "import subprocess, sys\n"
        "ballast = bytearray(600 * 2**20)\n"
        "for i in range(0, len(ballast), 4096): ballast[i] = 1\n"  # make it resident: 600 MB of parent peak
        "subprocess.run(['sh', '-c', 'exec ' + sys.argv[1]])\n"
    )
    runner = f"{sys.executable} {litert_python.SCRIPT} --model {small_model} --delegate cpu --runs 2 --warmup 1"
    proc = subprocess.run([sys.executable, "-c", parent, runner], capture_output=True, text=True, timeout=120)
    outcome = litert_python.parse(proc.stdout + proc.stderr, 0)
    assert outcome.status == "ok", outcome.reason
    assert 0 < outcome.peak_rss_mb < 400, outcome.peak_rss_mb  # the runner itself needs well under 200 MB
