"""Durability: JSONL with fsync per result, SQLite index, never overwrite, a killed run loses nothing."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.errors import StoreError
from harness.results import CaseInfo, DeviceInfo, Latency, Repetition, Result
from harness.store import LocalStore, load_results


def _result(run_id: str, i: int) -> Result:
    return Result(
        run_id=run_id,
        case=CaseInfo(case_id=f"m[host-cpu-t{i}]", model="m", model_sha256="ab" * 32, delegate="cpu",
                      threads=i, runner="litert-python"),
        device=DeviceInfo(id="host", platform="host"),
        status="ok",
        latency=Latency(method="test", repetitions=(Repetition(samples_us=(10.0 + i, 11.0, 12.0)),)),
    )


def test_roundtrip_and_index(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    writer = store.begin_run("r1", "s")
    for i in (1, 2):
        writer.append(_result("r1", i))
    writer.close()
    store.finish_run("r1")
    back = store.load_run("r1")
    assert back == [_result("r1", 1), _result("r1", 2)]
    assert store.resolve_run("latest").run_id == "r1"
    store.set_baseline("main", "r1")
    assert store.load_run("main") == back


def test_never_overwrites_an_earlier_run(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.begin_run("r1", "s").close()
    with pytest.raises(FileExistsError):
        store.begin_run("r1b", "s", results_path=tmp_path / "s-r1.jsonl")


def test_torn_last_line_is_skipped_silently_a_bad_line_inside_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = json.dumps(_result("r", 1).to_dict())
    path = tmp_path / "r.jsonl"
    path.write_text(good + "\n" + good[: len(good) // 2])
    assert len(load_results(path)) == 1
    assert not caplog.records
    path.write_text("{not json}\n" + good + "\n")
    assert len(load_results(path)) == 1
    assert [r.getMessage().split(": skipped")[0] for r in caplog.records] == [f"warning: {path}:1"]


def test_unknown_run_is_a_clear_error(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(StoreError, match="no runs"):
        store.resolve_run("latest")


def test_run_killed_midway_keeps_every_finished_result(tmp_path: Path, small_model: Path) -> None:
    """SIGKILL `harness run` after two cases finished: both are on disk and readable."""
    suite = tmp_path / "long.toml"
    suite.write_text(f"""
[suite]
name = "long"
delegates = ["cpu", "xnnpack"]
threads = [1, 2]
repetitions = 1
measured_runs = 2
warmup_runs = 1
[[models]]
path = "{small_model}"
name = "fast"
[[models]]
path = "{small_model}"
name = "slow"
measured_runs = 100000
""")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(suite), "--out", str(out),
                             "--no-report"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    finished = 0
    while time.monotonic() < deadline:
        files = list(out.glob("long-*.jsonl"))
        if files:
            finished = len([x for x in files[0].read_text().splitlines() if x.strip()])
            if finished >= 4:  # the four "fast" cases are done, a "slow" one is running
                break
        time.sleep(0.1)
    # the benchmark runs in a session of its own (so a timeout can kill its group): SIGKILL of the harness
    # cannot take it along, and it must not keep a core busy under the tests that follow
    import psutil

    leftovers = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for child in leftovers:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    assert finished >= 4
    results = load_results(next(out.glob("long-*.jsonl")))
    assert [r.case.model for r in results] == ["fast"] * 4
    assert all(r.status == "ok" and len(r.latency.samples_us) == 2 for r in results)
    assert len(LocalStore(out).load_run("latest")) == 4
