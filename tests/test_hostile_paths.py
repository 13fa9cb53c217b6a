"""Hostile names and stored strings: nothing is written outside --out, nothing raw reaches the terminal.

A suite's name, a run id, a baseline's name and a device id end up in file names or on the
screen. Each attack here is run as a user would (the CLI in a subprocess, a real model on the
host) where that matters, and checks the directories around --out stayed untouched.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

from harness.errors import PathEscapeError, StoreError, SuiteError, UnsafeNameError
from harness.names import check_name, inside, problem, sanitise
from harness.plan import device_label
from harness.store import LocalStore
from harness.suite import parse_suite
from harness.textsafe import escape, escape_lines

RAW_CONTROL = [chr(c) for c in (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0))]
HOSTILE_NAMES = {
    "dotdot": "../../../escaped",
    "absolute": "{tmp}/escaped",  # an absolute path to a folder beside --out
    "long": "x" * 300,
    "nul": "a\\u0000b",  # TOML escapes: the loaded name holds the character itself
    "osc": "ok\\u001b]0;pwned\\u0007",
}


def harness(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def suite_text(name: str) -> str:
    return (f'[suite]\nname = "{name}"\ndelegates = ["cpu"]\nrepetitions = 1\nmeasured_runs = 2\nwarmup_runs = 1\n'
            '[[models]]\nzoo = "face_detection_front"\n')


def tree(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real run on the host (its store directory), shared by the tests that need stored results."""
    base = tmp_path_factory.mktemp("real")
    (base / "tiny.toml").write_text(suite_text("tiny"))
    proc = harness("run", str(base / "tiny.toml"), "--out", str(base / "out"), "--no-report")
    assert proc.returncode == 0, proc.stderr
    return base / "out"


# -- 1. names that become file names ------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(HOSTILE_NAMES))
def test_hostile_suite_name_is_one_error_line_and_writes_nothing(tmp_path: Path, kind: str) -> None:
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "s.toml").write_text(suite_text(HOSTILE_NAMES[kind].replace("{tmp}", str(tmp_path))))
    before = tree(tmp_path)
    proc = harness("run", "s.toml", "--out", "out", cwd=deep)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: s.toml:2 [suite.name]: suite name "), proc.stderr
    assert "(hint: " in lines[0] and "Traceback" not in proc.stderr
    assert not any(c in proc.stderr for c in RAW_CONTROL)
    assert tree(tmp_path) == before  # no out/, nothing in a/ or a/b/ or beside the suite


def test_suite_name_from_a_file_stem_is_made_fit_not_refused() -> None:
    assert parse_suite(suite_text("x").replace('name = "x"\n', ""), "my smoke (v2).toml").name == "my-smoke--v2-"
    assert parse_suite(suite_text("x").replace('name = "x"\n', ""), ".hidden.toml").name == "hidden"


@pytest.mark.parametrize("name", ["..", "x" * 65, "-rf", ".profile"])
def test_model_names_follow_the_same_rule(name: str) -> None:
    text = suite_text("s").replace('zoo = "face_detection_front"', f'zoo = "face_detection_front"\nname = "{name}"')
    with pytest.raises(SuiteError) as info:
        parse_suite(text, "m.toml")
    assert "[models[0].name]: model name" in str(info.value)


def test_a_suite_object_built_in_python_is_refused_before_any_device_work(tmp_path: Path) -> None:
    from harness.api import run

    suite = replace(parse_suite(suite_text("fine"), "s.toml"), name="../../escaped")
    out = tmp_path / "deep" / "out"
    with pytest.raises(UnsafeNameError, match=r"suite name '\.\./\.\./escaped' starts with '\.'"):
        run(suite, out_dir=out)
    assert not (tmp_path / "deep").exists() and not (tmp_path / "escaped.html").exists()


@pytest.mark.parametrize(("run_id", "suite", "part"), [("../r", "s", None), ("r", "s/../..", None),
                                                       ("r", "s", "../gw0"), ("r\0x", "s", None)])
def test_store_refuses_names_that_leave_its_folder(tmp_path: Path, run_id: str, suite: str, part: str | None) -> None:
    store = LocalStore(tmp_path / "out")
    with pytest.raises(UnsafeNameError):
        if part:
            store.begin_part(run_id, suite, part)
        else:
            store.begin_run(run_id, suite)
    if part is None:
        with pytest.raises(UnsafeNameError):
            store.merge_parts(run_id, suite)
    assert tree(tmp_path) <= {tmp_path / "out"}


def test_an_explicit_results_path_outside_the_store_is_refused(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "out")
    with pytest.raises(PathEscapeError, match="outside"):
        store.begin_run("r1", "s", results_path=tmp_path / "out" / ".." / "escaped.jsonl")
    assert not (tmp_path / "escaped.jsonl").exists()


def test_an_imported_run_id_cannot_name_a_file_outside_the_store(tmp_path: Path, finished_run: Path) -> None:
    """The run id inside an exported baseline is file content: ``../../../pwn`` must not become a path."""
    assert harness("baseline", "set", "b", "--store", str(finished_run)).returncode == 0
    data = json.loads(harness("baseline", "export", "b", "--store", str(finished_run)).stdout)
    data["run_id"] = "../../../pwn"
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    (deep / "evil.json").write_text(json.dumps(data))
    before = tree(tmp_path)
    proc = harness("baseline", "import", "x", "evil.json", "--store", "store", cwd=deep)
    # The file's run id is kept as provenance only: the import gets a fresh local id and stays in the store.
    assert proc.returncode == 0, proc.stderr
    assert {p for p in tree(tmp_path) - before if p.parent != deep / "store"} == {deep / "store"}
    assert not any("pwn" in p.name for p in tree(tmp_path))


def test_baseline_names_follow_the_rule(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(StoreError, match="bad baseline name"):
        store.set_baseline("../x", "r1")


def test_symlinked_latest_report_pointing_outside_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.html"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "smoke.html").symlink_to(victim)
    (tmp_path / "smoke.toml").write_text(suite_text("smoke"))
    proc = harness("run", str(tmp_path / "smoke.toml"), "--out", str(out))
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "smoke.html" in errors[0] and "outside" in errors[0], proc.stderr
    assert victim.read_text() == "precious"
    assert len(list(out.glob("smoke-*.jsonl"))) == 1  # the results are on disk all the same
    runs = harness("runs", "--store", str(out))
    assert runs.returncode == 0 and "smoke" in runs.stdout
    assert LocalStore(out).runs()[0].finished_at is not None


def test_symlinked_index_pointing_outside_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "harness.sqlite").symlink_to(tmp_path / "elsewhere.sqlite")
    with pytest.raises(PathEscapeError):
        LocalStore(tmp_path / "out")
    assert not (tmp_path / "elsewhere.sqlite").exists()


def test_inside_keeps_every_target_in_its_root(tmp_path: Path) -> None:
    assert inside(tmp_path, "a.html") == tmp_path / "a.html"
    for bad in ("..", "a/b", "", "x" * 256, "a\0b"):
        with pytest.raises(UnsafeNameError):
            inside(tmp_path, bad)
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(PathEscapeError):
        inside(tmp_path, "link")


def test_device_labels_are_fit_names() -> None:
    assert device_label("adb:127.0.0.1:5555") == "adb-127.0.0.1-5555"
    assert device_label("host") == "host" and device_label("emulator-5554") == "emulator-5554"
    for hostile in ("adb:../../\x1b[2J", "../../etc/passwd", "\x9b\x00", "ios:" + "9" * 300, "."):
        label = device_label(hostile)
        assert problem(label) is None, (hostile, label)
        assert len(label) <= 40


def test_names_rule() -> None:
    assert check_name("smoke-v1.2_x+y", "suite name") == "smoke-v1.2_x+y"
    assert sanitise("\x1b]0;x\x07", "fallback") == "0-x-"
    assert sanitise("...", "fallback") == "fallback"


# -- 2. terminal output -------------------------------------------------------------------
def test_escape_keeps_text_and_shows_controls() -> None:
    shown = "ok \\x1b]0;pwned\\x07 \\x1b[2J\\x0d\\x9b\\u202e\\x00"
    assert escape("ok \x1b]0;pwned\x07 \x1b[2J\r\x9b\u202e\x00") == shown
    assert escape("Pixel 7 — ünïcode 模型 🙂") == "Pixel 7 — ünïcode 模型 🙂"
    assert escape_lines("a\x1b\nb\tc") == "a\\x1b\nb\\x09c"


def test_runs_and_baselines_print_stored_strings_escaped(tmp_path: Path, finished_run: Path) -> None:
    """Stored strings with terminal escapes (a tampered index, an imported file) are shown, never run."""
    exported = harness("baseline", "set", "base", "--store", str(finished_run))
    assert exported.returncode == 0, exported.stderr
    proc = harness("baseline", "export", "base", "--store", str(finished_run))
    data = json.loads(proc.stdout)
    hostile = "evil\x1b]0;pwned\x07\x1b[2J\r\x9b"
    data["suite"] = hostile
    (tmp_path / "evil.json").write_text(json.dumps(data))
    other = tmp_path / "other"
    refused = harness("baseline", "import", "evil", str(tmp_path / "evil.json"), "--store", str(other))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert not any(c in refused.stderr[:-1] for c in RAW_CONTROL), refused.stderr
    # The index is a file on disk others can edit: put the hostile name there directly.
    with closing(sqlite3.connect(finished_run / "harness.sqlite")) as conn, conn:
        conn.execute("UPDATE runs SET suite=?", (hostile,))
    for args in (("runs",), ("compare", "base", "latest"), ("gate", "--baseline", "base", "--run", "latest")):
        proc = harness(*args, "--store", str(finished_run))
        assert proc.returncode in (0, 1), proc.stderr
        assert not any(c in proc.stdout + proc.stderr for c in RAW_CONTROL if c != "\n"), (args, proc.stdout)
    runs = harness("runs", "--store", str(finished_run)).stdout
    assert "evil\\x1b]0;pwned\\x07\\x1b[2J\\x0d\\x9b" in runs


def test_error_lines_quoting_file_names_are_escaped(tmp_path: Path) -> None:
    proc = harness("run", "s\x1b]0;pwned\x07\x1b[2J.toml", "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert proc.returncode != 0 and "suite file not found" in proc.stderr
    assert proc.stderr.startswith("error: s\\x1b]0;pwned\\x07\\x1b[2J.toml") and "\x1b" not in proc.stderr


def test_plugin_prints_device_reasons_escaped(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """A failing case's reason quotes what the model loader (or a device) said: the terminal gets escapes."""
    bad = tmp_path / "bad\x1b[2J\x1b]0;pwned\x07.tflite"
    bad.write_text("not a model")
    pytester.mkdir("suites")
    (pytester.path / "suites" / "t.toml").write_text(
        f'[suite]\nname = "t"\ndelegates = ["cpu"]\nrepetitions = 1\nmeasured_runs = 2\nwarmup_runs = 1\n'
        f'[[models]]\npath = {json.dumps(str(bad))}\nname = "bad"\n')
    result = pytester.runpytest_subprocess("suites/", "--harness-out", str(pytester.path / "o"), "-rA")
    result.assert_outcomes(failed=1)
    text = "\n".join(result.outlines + result.errlines)
    assert "not a TFLite flatbuffer" in text and "bad\\x1b[2J\\x1b]0;pwned\\x07.tflite" in text
    assert "\x1b]0;pwned" not in text and "\x1b[2J" not in text
