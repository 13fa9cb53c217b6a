"""Model validation on real zoo models and on real broken files."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ModelError
from harness.models import load_model


def test_real_model_is_described(zoo_models: dict[str, Path]) -> None:
    m = load_model(zoo_models["face_landmark"])
    assert m.size_bytes == m.path.stat().st_size
    assert len(m.sha256) == 64
    assert [t.name for t in m.inputs] == ["input_1"]
    assert m.inputs[0].shape == (1, 192, 192, 3)
    assert m.inputs[0].dtype == "float32"
    assert not m.quantized
    assert m.op_counts["CONV_2D"] > 0 and m.op_total == sum(m.op_counts.values())
    assert len(m.outputs) >= 2


def test_missing_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="file not found") as err:
        load_model(tmp_path / "nope.tflite")
    assert "nope.tflite" in str(err.value)


def test_not_a_tflite_file(tmp_path: Path) -> None:
    bogus = tmp_path / "model.tflite"
    bogus.write_bytes(b"PK\x03\x04 this is a zip, not a flatbuffer")
    with pytest.raises(ModelError, match="not a TFLite flatbuffer"):
        load_model(bogus)


def test_truncated_model(tmp_path: Path, zoo_models: dict[str, Path]) -> None:
    data = zoo_models["face_landmark"].read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelError, match="corrupt|rejected") as err:
        load_model(cut)
    assert "cut.tflite" in str(err.value)


def test_too_short(tmp_path: Path) -> None:
    short = tmp_path / "short.tflite"
    short.write_bytes(b"TFL")
    with pytest.raises(ModelError, match="too short"):
        load_model(short)
