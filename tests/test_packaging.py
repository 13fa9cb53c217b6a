"""The package stands alone: device profiles ship inside it, and ``HARNESS_PROFILES`` adds a user's own folders.

The slow test builds a wheel from a copy of the repository, installs it into a fresh venv outside the
repository and runs ``harness devices`` and ``harness run`` there, in a folder of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import harness
from harness import profiles
from harness.errors import ConfigError
from harness.testing.android.device_profile import load_profile as load_virtual_profile

REPO = Path(__file__).resolve().parents[1]
PACKAGE = Path(harness.__file__).resolve().parent


def _profile(folder: Path, name: str, body: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(f'name = "{name}"\nplatform = "android"\n{body}', encoding="utf-8")
    return path


def test_profiles_are_package_data_and_the_repository_folder_is_the_same_files():
    bundled = profiles.default_dir()
    assert bundled.parent == PACKAGE  # harness/device_profiles: what a wheel carries
    names = {p.name for p in profiles.load_profiles()}
    assert {"host", "generic-android", "generic-ios", "pixel-7", "virtual-android"} <= names
    top = REPO / "device_profiles"  # the editable source the repository keeps at the top level
    assert sorted(p.name for p in top.glob("*.toml")) == sorted(p.name for p in bundled.glob("*.toml"))


def test_harness_profiles_adds_folders_and_a_users_profile_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    first, second = tmp_path / "mine", tmp_path / "lab"
    _profile(first, "pixel-7", 'marketing_name = "My Pixel"\n')
    _profile(second, "pixel-7", 'marketing_name = "Lab Pixel"\n')
    _profile(second, "lab-board", '[properties]\n"ro.product.model" = "Lab Board"\n')
    monkeypatch.setenv("HARNESS_PROFILES", os.pathsep.join([str(first), str(second)]))
    names = {p.name for p in profiles.load_profiles()}
    assert {"lab-board", "pixel-7", "host", "generic-ios"} <= names  # added to the bundled ones, not instead
    assert profiles.find("pixel-7").marketing_name == "My Pixel"  # the first folder wins, then the bundled
    assert profiles.find("pixel-8").path.startswith(str(profiles.default_dir()))
    # the virtual device resolves profile names the same way
    assert load_virtual_profile("lab-board").properties["ro.product.model"] == "Lab Board"


def test_harness_profiles_naming_a_missing_folder_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HARNESS_PROFILES", str(tmp_path / "typo"))
    with pytest.raises(ConfigError, match="HARNESS_PROFILES names a folder that does not exist"):
        profiles.load_profiles()


# -- a wheel, installed outside the repository --------------------------------------------------
_NOT_SHIPPED = (".git", ".venv", "build", "dist", "reports", "tests", "benchmarks", "*.egg-info", "__pycache__",
                ".pytest_cache", ".ruff_cache")


def _sh(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_a_wheel_installed_outside_the_repository_runs_with_its_bundled_profiles(tmp_path: Path,
                                                                                   small_model: Path):
    del small_model  # requested so the zoo model is in the cache the installed harness reads
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "HARNESS_PROFILES", "HARNESS_CONFIG", "HARNESS_INVENTORY", "ANDROID_SERIAL")}
    source = tmp_path / "src"  # a clean copy: no stale build/ folder can leak into the wheel
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(*_NOT_SHIPPED))
    wheels = tmp_path / "wheels"
    _sh([sys.executable, "-m", "pip", "wheel", str(source), "-w", str(wheels), "--no-deps", "-q"], tmp_path, env)
    (wheel,) = wheels.glob("edgeharness-*.whl")

    venv = tmp_path / "venv"
    _sh([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    site = Path(_sh([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    tmp_path, env).stdout.strip())
    # The dependencies come from this interpreter's site-packages (a plain path: its .pth files, among them
    # the editable install of the repository, are not run), the harness from the wheel alone.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    _sh([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        tmp_path, env)

    project = tmp_path / "project"  # the user's folder: nowhere near the repository
    project.mkdir()
    where = json.loads(_sh([str(python), "-c", "import json, harness; from harness import profiles; "
                            "print(json.dumps([harness.__file__, profiles.find('host').path]))"], project, env).stdout)
    assert all(Path(p).is_relative_to(site) for p in where), where

    listed = json.loads(_sh([str(venv / "bin" / "harness"), "devices", "--json"], project, env).stdout)
    host = next(e for e in listed if e["id"] == "host")
    assert host["reachable"] and host["profile"] == "host"

    (project / "suite.toml").write_text(
        '[suite]\nname = "wheel"\ndelegates = ["cpu", "nnapi"]\nrepetitions = 1\nmeasured_runs = 2\nwarmup_runs = 1\n'
        '\n[[models]]\nzoo = "face_detection_front"\n', encoding="utf-8")
    _sh([str(venv / "bin" / "harness"), "run", "suite.toml", "--out", "out", "--no-report"], project, env)
    (results,) = (project / "out").glob("wheel-*.jsonl")
    rows = {r["case"]["delegate"]: r for r in map(json.loads, results.read_text().splitlines())}
    assert rows["cpu"]["status"] == "ok" and rows["cpu"]["device"]["profile"] == "host"
    # only the bundled host profile says what the host lacks: without it nnapi would be tried, not skipped
    assert rows["nnapi"]["status"] == "skipped"
    assert "device profile 'host' lacks delegate 'nnapi' (has: cpu, xnnpack, gpu" in rows["nnapi"]["reason"]
