"""Suites end to end on the virtual Android device: the CLI, a device lost mid-suite, hostile model names."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness import api
from harness.results import Result
from harness.testing import VirtualDevice

pytest_plugins = ["harness.testing.android.fixtures"]

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def private_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throwaway adb key (never the developer's ~/.android/adbkey)."""
    key = tmp_path / "keys" / "adbkey"
    monkeypatch.setenv("HARNESS_ADB_KEY", str(key))
    return key


def test_cli_runs_the_smoke_suite_on_the_virtual_device(virtual_device, zoo_models, tmp_path):
    device_id = f"adb:{virtual_device.address}"
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(REPO / "suites" / "smoke.toml"), "--device", device_id,
         "--repetitions", "1", "--runs", "5", "--out", str(out), "--strict"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "12 ok" in proc.stdout
    rows = [json.loads(line) for line in next(out.glob("smoke-*.jsonl")).read_text().splitlines()]
    assert len(rows) == 12 and {r["status"] for r in rows} == {"ok"}
    for row in rows:
        assert row["device"]["id"] == device_id and row["device"]["profile"] == "virtual-android"
        reps = row["latency"]["repetitions"]
        # 5 runs planned; extended to the battery sampler's minimum measured duration when they are shorter
        runs = row["case"]["actual_runs"] or 5
        assert row["case"]["measured_runs"] == 5 and runs >= 5
        assert len(reps) == 1 and len(reps[0]["samples_us"]) == runs and min(reps[0]["samples_us"]) > 0
        assert row["memory"]["peak_rss_mb"] > 0
    # The model and runner were staged once each under the device workdir, cached by sha256.
    staged = sorted(p.name for p in virtual_device.host_path("/data/local/tmp/edgeharness").glob("*/[!.]*"))
    assert staged == sorted(["pyrunner.py", *(f"{m}.tflite" for m in zoo_models)])
    html = (out / "smoke.html").read_text(encoding="utf-8")
    assert device_id in html and "face_landmark" in html and "<svg" in html


def _small_suite(tmp_path: Path, models: list[tuple[str, Path]], delegates: str = '["cpu", "xnnpack"]',
                 threads: str = "[1, 2]") -> Path:
    body = [f'[suite]\nname = "mini"\ndelegates = {delegates}\nthreads = {threads}\n'
            "warmup_runs = 1\nmeasured_runs = 3\nrepetitions = 1\ntimeout_s = 60\n"]
    for name, path in models:
        body.append(f"[[models]]\nname = {json.dumps(name)}\npath = {json.dumps(str(path))}\n")
    suite = tmp_path / "mini.toml"
    suite.write_text("\n".join(body), encoding="utf-8")
    return suite


def _runner_running_on_a_virtual_device(device: VirtualDevice | None = None) -> bool:
    """A pyrunner staged under the device workdir is running (the host device runs it from the repo).

    With ``device``, only a runner in that device's mount namespace counts: on a shared machine another
    run's virtual device may be running one at any time.
    """
    ns_pid = getattr(getattr(device, "isolation", None), "pid", None)
    own_ns = os.readlink(f"/proc/{ns_pid}/ns/mnt") if ns_pid else None
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if own_ns is not None and b"pyrunner.py" in cmdline and os.readlink(proc / "ns" / "mnt") != own_ns:
                continue
        except OSError:
            continue
        if b"/data/local/tmp/edgeharness/" in cmdline and b"pyrunner.py" in cmdline:
            return True
    return False


def test_device_offline_mid_suite(virtual_device: VirtualDevice, small_model, tmp_path, monkeypatch):
    """The device vanishes while its second case runs: that case is device_lost with the reason, the host's
    cases all finish, and the device's later cases succeed once it is back."""
    reconnect_s, offline_s = 3.0, 4.5  # lost after 3 s of retries; back at 4.5 s, inside the next case's window
    monkeypatch.setenv("HARNESS_ADB_RECONNECT_S", str(reconnect_s))
    device_id = f"adb:{virtual_device.address}"
    suite = _small_suite(tmp_path, [("blazeface", small_model)])
    first_done = threading.Event()
    stop = threading.Event()

    def pull_the_plug() -> None:
        first_done.wait()
        while not stop.is_set():
            if _runner_running_on_a_virtual_device(virtual_device):
                virtual_device.go_offline(offline_s)
                return
            time.sleep(0.01)

    def on_result(result: Result) -> None:
        if result.device.id == device_id:
            first_done.set()

    plug = threading.Thread(target=pull_the_plug, daemon=True)
    plug.start()
    try:
        summary = api.run(suite, devices=[device_id, "host"], out_dir=tmp_path / "out", report=False,
                          on_result=on_result)
    finally:
        stop.set()
        first_done.set()
        plug.join()
    by_device: dict[str, list[Result]] = {}
    for result in summary.results:
        by_device.setdefault(result.device.id, []).append(result)
    assert [r.status for r in by_device["host"]] == ["ok"] * 4
    android = by_device[device_id]
    assert [r.status for r in android] == ["ok", "device_lost", "ok", "ok"], [r.reason for r in android]
    assert "link lost" in (android[1].reason or "") and virtual_device.address in (android[1].reason or "")
    assert any(line.startswith("offline") for line in virtual_device.fault_log)


def test_hostile_model_file_names_push_and_run(virtual_device: VirtualDevice, small_model, tmp_path):
    names = ["with space.tflite", "it's \"quoted\".tflite", "semi;colon; cd $TMPDIR && touch canary;.tflite",
             "$(cd $TMPDIR && touch canary).tflite", "`cd $TMPDIR; touch canary`.tflite", "new\nline.tflite",
             "modèle-模型.tflite"]
    folder = tmp_path / "models"
    folder.mkdir()
    models = []
    for i, name in enumerate(names):
        path = folder / name
        shutil.copyfile(small_model, path)
        with path.open("ab") as fh:  # a distinct sha256 each, so every name is staged on its own
            fh.write(b"\0" * (i + 1))
        models.append((f"m{i}", path))
    suite = _small_suite(tmp_path, models, delegates='["cpu"]', threads="[1]")
    summary = api.run(suite, devices=[f"adb:{virtual_device.address}"], out_dir=tmp_path / "out", report=False)
    assert [r.status for r in summary.results] == ["ok"] * len(names), [r.reason for r in summary.results]
    staged = {p.name for p in virtual_device.host_path("/data/local/tmp/edgeharness").glob("*/[!.]*")}
    assert set(names) <= staged
    assert not virtual_device.host_path("/data/local/tmp/canary").exists()


def test_pytest_xdist_runs_devices_in_parallel_into_one_run(virtual_device: VirtualDevice, small_model: Path,
                                                           pytester: pytest.Pytester) -> None:
    """`pytest suites/ -n 2 --dist loadscope` with two devices: one worker per device, one run, one report."""
    pytest.importorskip("xdist")
    device_id = f"adb:{virtual_device.address}"
    pytester.mkdir("suites")
    (pytester.path / "suites" / "two.toml").write_text(
        '[suite]\nname = "two"\ndelegates = ["cpu", "xnnpack"]\nrepetitions = 1\nmeasured_runs = 3\n'
        f'warmup_runs = 1\ntimeout_s = 120\n[[models]]\nname = "blazeface"\npath = {json.dumps(str(small_model))}\n')
    out = pytester.path / "out"
    result = pytester.runpytest_subprocess(
        "suites/", "-n", "2", "--dist", "loadscope", "--harness-device", "host", "--harness-device", device_id,
        "--harness-out", str(out), "-v")
    result.assert_outcomes(passed=4)
    # loadscope kept each device's cases on one worker ("[gw0] [ 25%] PASSED suites/two.toml::host::blazeface[...]")
    workers: dict[str, set[str]] = {}
    for line in result.stdout.lines:
        if " PASSED suites/two.toml::" in line:
            workers.setdefault(line.split("::")[1], set()).add(line.split()[0])
    assert len(workers) == 2 and all(len(w) == 1 for w in workers.values()), result.stdout.lines
    files = sorted(out.glob("*.jsonl"))
    assert [f.name.count(".") for f in files] == [1], files  # one run file; the workers' parts were folded in
    rows = [json.loads(x) for x in files[0].read_text().splitlines()]
    assert len({r["run_id"] for r in rows}) == 1 and len(rows) == 4
    assert {r["device"]["id"] for r in rows} == {"host", device_id} and all(r["status"] == "ok" for r in rows)
    runs = subprocess.run([sys.executable, "-m", "harness.cli", "runs", "--store", str(out)], capture_output=True,
                          text=True, timeout=60)
    assert runs.returncode == 0 and sum(rows[0]["run_id"] in line for line in runs.stdout.splitlines()) == 1
    report = next(out.glob("pytest-*.html")).read_text()
    assert device_id in report and "host" in report
    result.stdout.fnmatch_lines(["edgeharness: report *"])
