"""Numerics beside speed: drift metrics per output tensor, on real host runs and on known values."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

from harness import numerics, zoo
from harness.gate import GateConfig, GateConfigError
from harness.runners import litert_python


def _fp(values: list[float | None], name: str = "out", shape: list[int] | None = None, **extra: object) -> dict:
    return {"name": name, "shape": shape or [len(values)], "values": values, "stride": 1, **extra}


def test_metrics_on_known_values() -> None:
    ref = _fp([1.0, 2.0, 3.0, 4.0])
    same = numerics.tensor_drift(ref, _fp([1.0, 2.0, 3.0, 4.0]))
    assert same.max_abs == 0 and same.rel_l2 == 0 and same.cosine == 1.0 and math.isinf(same.psnr_db)
    off = numerics.tensor_drift(ref, _fp([1.0, 2.0, 3.0, 4.5]))
    assert off.max_abs == 0.5
    assert math.isclose(off.rel_l2, 0.5 / math.sqrt(30))
    assert math.isclose(off.psnr_db, 20 * math.log10(4.0 / math.sqrt(0.25 / 4)))
    flipped = numerics.tensor_drift(ref, _fp([-1.0, -2.0, -3.0, -4.0]))
    assert math.isclose(flipped.cosine, -1.0)


def test_top1_only_for_class_scores() -> None:
    probs = _fp([0.1, 0.7, 0.2], shape=[1, 3], argmax=1)
    assert numerics.tensor_drift(probs, {**probs, "argmax": 1}).top1 is True
    assert numerics.tensor_drift(probs, {**probs, "values": [0.5, 0.3, 0.2], "argmax": 0}).top1 is False
    landmarks = _fp([10.0, 200.0, 31.0], shape=[1, 3], argmax=1)
    assert numerics.tensor_drift(landmarks, landmarks).top1 is None


def test_nonfinite_and_mismatches() -> None:
    got = numerics.tensor_drift(_fp([1.0, 2.0]), _fp([1.0, None]))
    assert got.nonfinite and math.isinf(got.max_abs) and got.cosine is None
    assert "shapes differ" in numerics.tensor_drift(_fp([1.0]), _fp([1.0, 2.0]))
    assert numerics.drift([_fp([1.0])], []).problem == "no outputs recorded"
    old = [{"shape": [1], "head": [1.0]}]  # a record from before values were kept
    assert "no stored values" in numerics.drift(old, old).problem


def _outputs(model: Path, delegate: str) -> list[dict]:
    cmd = [sys.executable, str(litert_python.SCRIPT), "--model", str(model), "--delegate", delegate, "--runs", "2",
           "--warmup", "1", "--api", "compiled"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    outcome = litert_python.parse(proc.stdout + proc.stderr, proc.returncode)
    assert outcome.status == "ok", outcome.reason
    return list(outcome.outputs)


def test_real_drift_of_xnnpack_from_cpu_is_float_rounding(zoo_models: dict[str, Path]) -> None:
    cpu = _outputs(zoo_models["face_landmark"], "cpu")
    xnn = _outputs(zoo_models["face_landmark"], "xnnpack")
    assert [o["stride"] for o in cpu] == [1, 1] and len(cpu[0]["values"]) == 1404  # every value kept
    d = numerics.drift(cpu, xnn)
    assert d.problem is None
    assert d.value("cosine") > 0.99999 and d.value("rel_l2") < 1e-5 and d.value("psnr_db") > 100
    assert 0 < d.value("max_abs") < 1e-2  # not bit-identical: another kernel order


def test_large_tensor_is_sampled_at_the_same_positions(zoo_models: dict[str, Path]) -> None:
    out = _outputs(zoo.fetch("face_detection_back"), "cpu")
    big = max(out, key=lambda o: math.prod(o["shape"]))
    assert math.prod(big["shape"]) > 4096 and big["stride"] > 1
    assert len(big["values"]) <= 4096 and big["values"][0] == big["head"][0]


def test_gate_drift_rules_parse_and_refuse() -> None:
    cfg = GateConfig.from_mapping({"max_drift": {"cosine_min": 0.999, "npu": {"max_abs": 1e-3}}, "accelerator": "full"})
    assert cfg.max_drift == {"cosine_min": 0.999, "npu": {"max_abs": 1e-3}} and cfg.accelerator == "full"
    for bad in ({"max_drift": {"cosine": 1}}, {"max_drift": {"cosine_min": 2}}, {"max_drift": 3},
                {"accelerator": "mostly"}):
        try:
            GateConfig.from_mapping(bad)
        except GateConfigError:
            continue
        raise AssertionError(f"{bad} accepted")
