"""Baselines and the gate from the command line, on real host runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def harness(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=600, env=env or dict(os.environ))


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory, zoo_models: dict[str, Path]) -> tuple[Path, Path]:
    """The same suite run twice on the same code: baseline, then candidate."""
    root = tmp_path_factory.mktemp("gate")
    suite = root / "g.toml"
    suite.write_text(f"""
[suite]
name = "g"
delegates = ["xnnpack"]
repetitions = 6
measured_runs = 15
warmup_runs = 3
[gate]
max_regression = "5%"
[[models]]
path = "{zoo_models['face_detection_front']}"
name = "blazeface"
[models.budget]
p50_ms = 10000
""")
    out = root / "out"
    for _ in range(2):
        proc = harness("run", str(suite), "--out", str(out), "--no-report")
        assert proc.returncode == 0, proc.stderr
    return suite, out


def test_same_code_passes_the_gate(two_runs: tuple[Path, Path]) -> None:
    suite, out = two_runs
    runs = harness("runs", "--store", str(out)).stdout.split()
    first = [w for w in runs if w.endswith(tuple("0123456789abcdef")) and "T" in w][0]
    assert harness("baseline", "set", "main", "--run", first, "--store", str(out)).returncode == 0
    assert "main" in harness("baseline", "list", "--store", str(out)).stdout
    proc = harness("gate", "--baseline", "main", "--store", str(out), "--noisy", "warn")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "gate PASSED" in proc.stdout
    cmp = harness("compare", "main", "latest", "--store", str(out))
    assert cmp.returncode == 0 and "blazeface" in cmp.stdout and "95% CI" in cmp.stdout


def test_budget_breach_fails_with_numbers(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    suite, out = two_runs
    text = suite.read_text().replace("p50_ms = 10000", "p50_ms = 0.001")
    tight = tmp_path / "tight.toml"
    tight.write_text(text)
    assert harness("run", str(tight), "--out", str(out), "--no-report", "--repetitions", "2").returncode == 0
    proc = harness("gate", "--store", str(out))
    assert proc.returncode == 1
    assert "FAIL blazeface [host xnnpack x1]: p50_ms" in proc.stdout and "> budget 0.001" in proc.stdout


def test_export_import_and_bad_baselines(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    _, out = two_runs
    assert harness("baseline", "set", "exp", "--run", "latest", "--store", str(out)).returncode == 0
    exported = tmp_path / "baseline.json"
    assert harness("baseline", "export", "exp", "-o", str(exported), "--store", str(out)).returncode == 0
    fresh = tmp_path / "fresh"
    proc = harness("baseline", "import", "ci", str(exported), "--store", str(fresh))
    assert proc.returncode == 0, proc.stderr
    assert "ci" in harness("baseline", "list", "--store", str(fresh)).stdout

    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text(exported.read_text()[:200])
    proc = harness("baseline", "import", "bad", str(corrupt), "--store", str(fresh))
    assert proc.returncode == 2 and "not valid JSON" in proc.stderr

    missing = harness("gate", "--baseline", "nosuch", "--store", str(out))
    assert missing.returncode == 2 and "no baseline named 'nosuch'" in missing.stderr

    other = json.loads(exported.read_text())
    other["run_id"] = "other-device-run"
    for r in other["results"]:
        r["run_id"] = "other-device-run"
        r["device"]["id"] = "adb:10.0.0.7:5555"
        r["device"]["model"] = "Pixel 7"
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps(other))
    assert harness("baseline", "import", "pixel", str(elsewhere), "--store", str(out)).returncode == 0
    proc = harness("gate", "--baseline", "pixel", "--store", str(out), "--run", "exp")
    assert proc.returncode == 2
    assert "Pixel 7" in proc.stderr and "never compared" in proc.stderr
