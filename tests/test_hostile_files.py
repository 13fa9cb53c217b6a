"""Hostile and broken files, through the CLI as a user meets them: one line ``error: FILE:LINE ...``, exit != 0.

Every row writes one bad file (suite, harness.toml, device profile, inventory, model path, virtual-device
profile), runs the command that reads it, and expects a single stderr line naming the file and the line,
no traceback, before anything runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import harness

NOT_UTF8 = b"\xff\xfe[suite]\n"
PROFILE_HEAD = 'name = "p"\nplatform = "android"\n'
# A suite whose only model is absent: on a build that accepts the bad file, its cases fail fast and it exits 0.
_USER_SETTINGS = ("HARNESS_CONFIG", "HARNESS_PROFILES", "HARNESS_INVENTORY", "PYTHONPATH")
_SOURCE = str(Path(harness.__file__).resolve().parents[1])  # the subprocess runs in tmp_path: no relative paths
_PYTHONPATH = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
CHEAP_SUITE = '[suite]\nrepetitions = 1\nmeasured_runs = 2\n\n[[models]]\npath = "absent.tflite"\n'


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None, module: str = "harness.cli",
         timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m module args`` in ``cwd``, importing the harness under test, with none of the user's settings."""
    full_env = {k: v for k, v in os.environ.items() if k not in _USER_SETTINGS}
    full_env.update({"PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join([_SOURCE, *_PYTHONPATH]), **(env or {})})
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=cwd,
                          env=full_env, timeout=timeout)


def _write(path: Path, content: bytes | str) -> Path:
    """``content`` into ``path``; the markers DIR and FIFO make a directory or a named pipe there instead."""
    if content == "DIR":
        path.mkdir()
    elif content == "FIFO":
        os.mkfifo(path)
    elif content == "LOOP":
        path.symlink_to(path.name)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# Each front: (make the bad file and run the command that reads it) -> (the bad file, the process).
Front = Callable[[Path, "bytes | str"], "tuple[Path, subprocess.CompletedProcess]"]


def inventory(tmp: Path, content: bytes | str) -> tuple[Path, subprocess.CompletedProcess]:
    bad = _write(tmp / "devices.toml", content)
    return bad, _run(["devices", "--inventory", str(bad)], tmp)


def suite(tmp: Path, content: bytes | str) -> tuple[Path, subprocess.CompletedProcess]:
    bad = _write(tmp / "bad-suite.toml", content)
    return bad, _run(["run", str(bad), "--out", str(tmp / "out"), "--no-report"], tmp)


def config(tmp: Path, content: bytes | str) -> tuple[Path, subprocess.CompletedProcess]:
    bad = _write(tmp / "harness.toml", content)
    good = _write(tmp / "s.toml", CHEAP_SUITE)
    return bad, _run(["run", str(good), "--out", str(tmp / "out"), "--no-report"], tmp, {"HARNESS_CONFIG": str(bad)})


def profile(tmp: Path, content: bytes | str) -> tuple[Path, subprocess.CompletedProcess]:
    (tmp / "profiles").mkdir()
    bad = _write(tmp / "profiles" / "p.toml", content)
    return bad, _run(["devices"], tmp, {"HARNESS_PROFILES": str(tmp / "profiles")})


def profile_on_run(tmp: Path, content: bytes | str) -> tuple[Path, subprocess.CompletedProcess]:
    (tmp / "profiles").mkdir()
    bad = _write(tmp / "profiles" / "p.toml", content)
    good = _write(tmp / "s.toml", CHEAP_SUITE)
    return bad, _run(["run", str(good), "--out", str(tmp / "out"), "--no-report"], tmp,
                     {"HARNESS_PROFILES": str(tmp / "profiles")})


def model_path(tmp: Path, content: bytes | str) -> tuple[Path, subprocess.CompletedProcess]:
    _write(tmp / "m.tflite", content)
    bad = _write(tmp / "s.toml", '[suite]\nrepetitions = 1\nmeasured_runs = 2\n\n[[models]]\npath = "m.tflite"\n')
    return bad, _run(["run", str(bad), "--out", str(tmp / "out"), "--no-report"], tmp)


def vdev_profile(tmp: Path, content: bytes | str) -> tuple[Path, subprocess.CompletedProcess]:
    bad = _write(tmp / "phone.toml", content)
    return bad, _run(["serve", "--profile", str(bad)], tmp, module="harness.testing", timeout=30)


ROWS: list[tuple[str, Front, bytes | str, str]] = [
    # inventories
    ("inventory-not-utf8", inventory, b'\xff\xfe[[devices]]\nid = "host"\n', "not UTF-8"),
    ("inventory-empty", inventory, "", "empty"),
    ("inventory-directory", inventory, "DIR", "directory"),
    ("inventory-ipv6-port-not-number", inventory, '[[devices]]\nid = "adb:[::1]:abc"\n', "port 'abc'"),
    ("inventory-port-out-of-range", inventory, '[[devices]]\nid = "host"\n[[devices]]\nid = "adb:h:99999"\n',
     "1..65535"),
    ("inventory-adb-without-address", inventory, '[[devices]]\nid = "adb:"\n', "names no device"),
    ("inventory-ios-without-udid", inventory, '[[devices]]\nid = "ios:"\n', "no UDID"),
    ("inventory-id-with-space", inventory, '[[devices]]\nid = "adb:10.0.0.1 5555"\n', "white space"),
    ("inventory-id-with-nul", inventory, '[[devices]]\nid = "adb:a\\u0000b"\n', "control characters"),
    ("inventory-unknown-entry-key", inventory, '[[devices]]\nid = "host"\nlabel = "bench"\n', "unknown key 'label'"),
    ("inventory-unknown-top-key", inventory, 'farm = "lab"\n[[devices]]\nid = "host"\n', "unknown key 'farm'"),
    ("inventory-no-devices", inventory, "devices = []\n", "no devices"),
    ("inventory-entries-not-tables", inventory, 'devices = ["host", 1]\n', "[[devices]] tables"),
    # suites
    ("suite-not-utf8", suite, NOT_UTF8, "not UTF-8"),
    ("suite-empty", suite, "", "empty"),
    ("suite-directory", suite, "DIR", "directory"),
    ("suite-fifo", suite, "FIFO", "not a regular file"),  # reading it would block for ever
    ("suite-symlink-loop", suite, "LOOP", "symbolic links"),
    ("suite-without-models", suite, '[suite]\nname = "x"\n', "at least one [[models]]"),
    # harness.toml
    ("config-not-utf8", config, b"\xff\xfe[tool]\n", "not UTF-8"),
    ("config-empty", config, "", "empty"),
    ("config-directory", config, "DIR", "directory"),
    ("config-unknown-section", config, '[tool]\n\n[tools]\nios_app = "x.ipa"\n', "section 'tools'"),
    # device profiles in the user's profile folder ($HARNESS_PROFILES)
    ("profile-not-utf8", profile, b"\xff\xfename = 'p'\n", "not UTF-8"),
    ("profile-empty", profile, "", "empty"),
    ("profile-directory", profile, "DIR", "directory"),
    ("profile-match-not-strings", profile, PROFILE_HEAD + '[match]\n"ro.product.model" = [1]\n', "list of strings"),
    ("profile-delegates-not-strings", profile, PROFILE_HEAD + "delegates = [1]\n", "list of strings"),
    ("profile-delegates-a-string", profile, PROFILE_HEAD + 'delegates = "cpu"\n', "list of strings"),
    ("profile-priority-a-string", profile, PROFILE_HEAD + 'priority = "x"\n', "expected integer"),
    ("profile-energy-interval-a-string", profile, PROFILE_HEAD + '[energy]\ninterval_s = "fast"\n', "number"),
    ("profile-energy-negative-interval", profile, PROFILE_HEAD + "[energy]\nidle_s = 1.0\ninterval_s = -0.05\n",
     "positive"),
    ("profile-energy-unknown-key", profile, PROFILE_HEAD + '[energy]\ncurrent_units = "uA"\n', "current_units"),
    ("profile-thermal-zones-a-string", profile, PROFILE_HEAD + '[thermal]\nzones = "cpu"\n', "list of strings"),
    ("profile-thermal-status-a-string", profile, PROFILE_HEAD + '[thermal]\nthrottle_status = "2"\n', "integer"),
    ("profile-throttle-ratio-a-string", profile, PROFILE_HEAD + '[throttle]\nmin_freq_ratio = "high"\n', "number"),
    ("profile-throttle-unknown-key", profile, PROFILE_HEAD + "[throttle]\nmax_drift = 0.2\n", "max_drift"),
    ("profile-cooldown-negative-poll", profile, PROFILE_HEAD + "[cooldown]\nthreshold_c = 38.0\npoll_s = -5.0\n",
     "positive"),
    ("profile-cooldown-threshold-a-string", profile, PROFILE_HEAD + '[cooldown]\nthreshold_c = "hot"\n', "number"),
    ("profile-cooldown-unknown-key", profile, PROFILE_HEAD + "[cooldown]\nthresold_c = 38.0\n", "thresold_c"),
    ("profile-bad-on-run", profile_on_run, PROFILE_HEAD + '[energy]\ninterval_s = "fast"\n', "number"),
    # model paths named by a suite
    ("model-symlink-loop", model_path, "LOOP", "symlink loop"),
    ("model-directory", model_path, "DIR", "directory"),
    ("model-fifo", model_path, "FIFO", "not a regular file"),
    # the virtual device's own profile reader
    ("vdev-profile-not-utf8", vdev_profile, b"\xff\xfe[properties]\n", "not UTF-8"),
    ("vdev-profile-property-not-string", vdev_profile, '[properties]\n"ro.product.model" = 7\n', "strings"),
]


@pytest.mark.parametrize(("front", "content", "needle"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_file_is_one_line_with_file_and_line(tmp_path: Path, front: Front, content: bytes | str,
                                                 needle: str) -> None:
    bad, proc = front(tmp_path, content)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert re.search(re.escape(str(bad)) + r":\d+", lines[0]), lines[0]
    assert needle in lines[0], lines[0]
    assert not (tmp_path / "out").exists()  # refused at load: nothing ran, nothing was written


def test_error_lines_point_at_the_offending_line(tmp_path: Path) -> None:
    """The line is the bad key's, not the file's first: profiles and inventories map keys to lines as suites do."""
    bad, proc = profile(tmp_path, PROFILE_HEAD + "\n[energy]\nsource = 'power_supply'\ninterval_s = -1\n")
    assert f"{bad}:6 [energy.interval_s]" in proc.stderr
    bad, proc = inventory(tmp_path, '[[devices]]\nid = "host"\n\n[[devices]]\n# bench 2\nid = "adb:h:0"\n')
    assert f"{bad}:6 [devices[1].id]" in proc.stderr
    bad, proc = suite(tmp_path, b'[suite]\nname = "x"\n# caf\xe9\n')
    assert f"{bad}:3:" in proc.stderr  # the line holding the bad byte


def test_debug_keeps_the_traceback(tmp_path: Path) -> None:
    bad = _write(tmp_path / "devices.toml", b"\xff\xfe")
    proc = _run(["devices", "--inventory", str(bad), "--debug"], tmp_path)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "ConfigError" in proc.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode-000 file")
def test_unreadable_model_path(tmp_path: Path) -> None:
    _write(tmp_path / "m.tflite", b"x" * 16).chmod(0)
    bad = _write(tmp_path / "s.toml", '[[models]]\npath = "m.tflite"\n')
    proc = _run(["run", str(bad), "--out", str(tmp_path / "out"), "--no-report"], tmp_path)
    assert proc.returncode != 0 and f"{bad}:2" in proc.stderr and "cannot read" in proc.stderr


def test_duplicate_inventory_ids_are_merged(tmp_path: Path) -> None:
    """The same device twice in an inventory runs its cases once (no error, no second device)."""
    inv = _write(tmp_path / "devices.toml", '[[devices]]\nid = "host"\n[[devices]]\nid = "host"\n')
    good = _write(tmp_path / "s.toml", CHEAP_SUITE)
    proc = _run(["run", str(good), "--inventory", str(inv), "--out", str(tmp_path / "out"), "--no-report"], tmp_path)
    # The suite's model is absent on purpose (cheap): every case fails alone, and a run where no case produced a
    # result exits 1 with one line.
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    rows = [json.loads(line) for line in next((tmp_path / "out").glob("*.jsonl")).read_text().splitlines()]
    cases = [r["case"]["case_id"] for r in rows]
    assert len(cases) == 2 and len(set(cases)) == 2, cases  # cpu and xnnpack, once each


def test_bad_device_ids_on_the_command_line(tmp_path: Path) -> None:
    """``--device`` ids are read like inventory ids: a run refuses them (usage error), a listing says why."""
    good = _write(tmp_path / "s.toml", CHEAP_SUITE)
    proc = _run(["run", str(good), "--device", "adb:[::1]:abc", "--out", str(tmp_path / "out")], tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --device 'adb:[::1]:abc'"), proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and not (tmp_path / "out").exists()
    proc = _run(["devices", "--device", "adb:[::1]:abc"], tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "port 'abc' is not a number" in proc.stdout
