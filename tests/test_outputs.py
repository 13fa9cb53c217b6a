"""Output drift between delegates, from real runs with the same seeded inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.outputs import relative_drift
from harness.runners import litert_python


def _outputs(model: Path, delegate: str, seed: int = 0) -> tuple[dict, ...]:
    cmd = [sys.executable, str(litert_python.SCRIPT), "--model", str(model), "--delegate", delegate,
           "--runs", "1", "--warmup", "1", "--seed", str(seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    outcome = litert_python.parse(proc.stdout, proc.returncode)
    assert outcome.status == "ok", outcome.reason
    return outcome.outputs


def test_xnnpack_keeps_the_outputs_of_the_builtin_kernels(zoo_models: dict[str, Path]) -> None:
    model = zoo_models["face_landmark"]
    cpu, xnn = _outputs(model, "cpu"), _outputs(model, "xnnpack")
    drift = relative_drift(cpu, xnn)
    assert drift is not None and drift < 1e-3  # float rounding, not a different answer
    assert relative_drift(cpu, _outputs(model, "cpu")) == 0.0  # same kernels, same inputs: identical


def test_different_inputs_do_drift(zoo_models: dict[str, Path]) -> None:
    """The measure can fail: other inputs give other outputs, so drift is clearly non-zero."""
    model = zoo_models["face_landmark"]
    assert relative_drift(_outputs(model, "cpu", seed=0), _outputs(model, "cpu", seed=1)) > 1e-3


def test_incomparable_outputs_give_none() -> None:
    a = ({"name": "o", "shape": [1, 2], "abs_max": 1.0, "head": [0.5, 1.0]},)
    b = ({"name": "o", "shape": [1, 3], "abs_max": 1.0, "head": [0.5, 1.0, 2.0]},)
    assert relative_drift(a, b) is None and relative_drift((), ()) is None
