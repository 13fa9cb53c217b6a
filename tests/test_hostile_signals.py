"""Resources and signals: huge outputs stay bounded, timeouts hold against daemons, a stopped run stops.

Everything runs for real: shells on this host, the virtual Android device over real sockets, and
`harness run` as a user starts it, stopped with SIGTERM / SIGINT.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from conftest import write_suite
from harness.devices.host import ZYGOTE_CLIENT, HostDevice, benchmark_pid
from harness.devices.output import BoundedOutput
from harness.errors import CommandTimeout, RunInterrupted
from harness.results import RAW_TRUNCATION_MARKER
from harness.store import LocalStore
from tests.helpers import STOPPED_SUITE  # a quick case, then one that runs until stopped

pytest_plugins = ["harness.testing.fixtures"]

MB = 1 << 20
MARKER = re.compile(re.escape(RAW_TRUNCATION_MARKER).replace(r"\{n\}", r"(\d+)"))
RESULT_SAMPLES = 100_000


@pytest.fixture(autouse=True)
def private_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_ADB_KEY", str(tmp_path / "keys" / "adbkey"))  # never the developer's key


@pytest.fixture
def mark():
    """A unique environment marker for the processes a test starts; any left alive are killed afterwards."""
    value = uuid.uuid4().hex
    yield value
    for proc in _marked(value):
        proc.kill()


def _marked(value: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("EH_TEST_MARK") == value and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _result_line_file(directory: Path) -> Path:
    """A runner result line with 100 000 samples, as pyrunner prints it for ``measured_runs = 100000``."""
    samples = [round(1000 + (i * 7919 % 50_000) / 1000, 3) for i in range(RESULT_SAMPLES)]
    payload = {"status": "ok", "samples_us": samples, "init_us": 1.5, "first_inference_us": 2.5, "warmup_us": []}
    path = directory / "result.txt"
    path.write_text("EDGEHARNESS_RESULT " + json.dumps(payload) + "\n")
    return path


# A child process runs the shell, so its peak RSS is the harness side's alone.
CHILD = r"""
import json, sys
from harness.runners import litert_python
kind, command, address = sys.argv[1], sys.argv[2], sys.argv[3]
if kind == "host":
    from harness.devices.host import ZYGOTE_CLIENT, HostDevice, benchmark_pid
    device = HostDevice()
else:
    from harness.devices.discovery import open_device
    device = open_device("adb:" + address)
    device.shell("true")
def hwm_kb():  # this process's own high-water mark: ru_maxrss would include the parent's when it was vfork()ed
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
before = hwm_kb()
result = device.shell(command, timeout_s=240)
peak = hwm_kb()
outcome = litert_python.parse(result.output, result.exit_code)
samples = outcome.repetition.samples_us if outcome.repetition else ()
data = result.output.encode()
print(json.dumps({"before_mb": before / 1024, "peak_mb": peak / 1024, "status": outcome.status,
                  "reason": outcome.reason, "n": len(samples), "first": samples[:1], "last": samples[-1:],
                  "exit_code": result.exit_code, "head": data[:100].decode(), "size": len(data),
                  "text": result.output[:70_000] + result.output[-70_000:]}))
"""


def _run_child(kind: str, command: str, address: str = "") -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, kind, command, address], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _check_bounded(report: dict, printed_bytes: int, result_file: Path) -> None:
    assert report["status"] == "ok", report["reason"]  # the result line came through whole
    expected = json.loads(result_file.read_text().split(" ", 1)[1])["samples_us"]
    assert report["n"] == RESULT_SAMPLES and report["first"] == expected[:1] and report["last"] == expected[-1:]
    assert report["exit_code"] == 0
    assert report["head"] == "a" * 100
    found = MARKER.findall(report["text"])
    assert len(found) == 1
    # head + what was left out + tail is exactly what the command printed
    marker_len = len(RAW_TRUNCATION_MARKER.format(n=found[0]))
    assert report["size"] - marker_len + int(found[0]) == printed_bytes
    assert report["size"] < 20 * MB


def test_300_mb_from_a_host_command_keeps_head_marker_tail_and_the_result_line(tmp_path: Path) -> None:
    result_file = _result_line_file(tmp_path)
    size = 300_000_000
    command = f"head -c {size} /dev/zero | tr '\\0' 'a'; echo; cat {shlex.quote(str(result_file))}"
    report = _run_child("host", command)
    assert report["peak_mb"] < 300, report["peak_mb"]  # the whole output alone is 300 MB
    _check_bounded(report, size + 1 + result_file.stat().st_size, result_file)


def test_100_mb_from_an_android_command_keeps_memory_bounded(tmp_path: Path, virtual_device) -> None:
    result_file = virtual_device.host_path("/data/local/tmp/result.txt")
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.write_bytes(_result_line_file(tmp_path).read_bytes())
    size = 100_000_000
    command = f"head -c {size} /dev/zero | tr '\\0' 'a'; echo; cat /data/local/tmp/result.txt"
    report = _run_child("android", command, virtual_device.address)
    # the exit-code sentinel was found at the tail (exit_code 0, not None)
    assert report["peak_mb"] - report["before_mb"] < 120, report  # holding it all takes 300 MB and more
    _check_bounded(report, size + 1 + result_file.stat().st_size, result_file)


@pytest.mark.parametrize("daemon", ["setsid sh -c 'sleep 45' &", "setsid sleep infinity &"])
def test_a_daemon_holding_the_output_open_cannot_stretch_the_timeout(daemon: str, mark: str) -> None:
    outcome: list[object] = []

    def call() -> None:
        start = time.monotonic()
        try:
            HostDevice().shell(f"echo started; EH_TEST_MARK={mark} {daemon}", timeout_s=3)
            outcome.append("returned")
        except CommandTimeout as exc:
            outcome.append(exc)
        outcome.append(time.monotonic() - start)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(15)
    assert outcome, "the 3 s timeout did not return within 15 s"
    error, elapsed = outcome
    assert isinstance(error, CommandTimeout) and error.output == "started\n"
    assert elapsed < 3 + 3
    time.sleep(0.2)
    assert _marked(mark) == []  # the daemon is gone too


def test_cancelling_stops_a_host_command_at_once_and_kills_it(mark: str) -> None:
    device = HostDevice()
    device.cancel = threading.Event()
    threading.Timer(0.5, device.cancel.set).start()
    start = time.monotonic()
    with pytest.raises(RunInterrupted):
        device.shell(f"EH_TEST_MARK={mark} sleep 30", timeout_s=20)
    assert time.monotonic() - start < 2.5
    time.sleep(0.2)
    assert _marked(mark) == []


def test_cancelling_stops_an_android_command_and_kills_the_remote_process(virtual_device) -> None:
    from harness.devices.discovery import open_device

    device = open_device(f"adb:{virtual_device.address}")
    device.shell("true").check()
    device.cancel = threading.Event()
    threading.Timer(0.5, device.cancel.set).start()
    pid_file = "/data/local/tmp/sleeper.pid"
    start = time.monotonic()
    try:
        with pytest.raises(RunInterrupted):
            device.shell(f"echo $$ > {pid_file}; exec sleep 30", timeout_s=20)
        assert time.monotonic() - start < 3
        pid = int(virtual_device.host_path(pid_file).read_text())
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie":
            time.sleep(0.05)
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    finally:
        device.close()


@pytest.mark.parametrize("backend", ["host", "android"])
def test_after_the_stop_a_cleanup_command_runs_and_a_long_one_is_cut(backend: str, virtual_device, mark: str) -> None:
    """Stopping a sampler or removing a file still works after the stop; a new benchmark cannot start."""
    from harness.devices.base import AFTER_STOP_S
    from harness.devices.discovery import open_device

    device = HostDevice() if backend == "host" else open_device(f"adb:{virtual_device.address}")
    try:
        device.shell("true").check()
        device.cancel = threading.Event()
        device.cancel.set()
        assert device.shell("echo cleaned").output == "cleaned\n"
        start = time.monotonic()
        with pytest.raises(RunInterrupted):
            device.shell(f"EH_TEST_MARK={mark} sleep 30", timeout_s=10)
        assert time.monotonic() - start < AFTER_STOP_S + 1.5
    finally:
        device.close()


@pytest.mark.parametrize("how", ["token", "ctrl-c"])
def test_a_stopped_api_run_keeps_its_results_and_is_marked(tmp_path: Path, zoo_models, how: str) -> None:
    """``api.run`` stopped by its cancellation token, or by Ctrl-C (SIGINT, Python's default handler)."""
    from harness.api import run

    suite = write_suite(tmp_path, STOPPED_SUITE)
    cancel = threading.Event()
    stopped_at: list[float] = []

    def stop() -> None:
        stopped_at.append(time.monotonic())
        cancel.set() if how == "token" else os.kill(os.getpid(), signal.SIGINT)

    def on_result(result: object) -> None:  # the quick case is stored: stop the long one mid-way
        threading.Timer(1.5, stop).start()

    with pytest.raises(RunInterrupted) as err:
        run(suite, out_dir=tmp_path / "out", on_result=on_result, cancel=cancel)
    assert time.monotonic() - stopped_at[0] < 5
    summary = err.value.summary
    assert summary.interrupted and [r.case.model for r in summary.results] == ["quick"]
    assert summary.results[0].status == "ok"
    store = LocalStore(tmp_path / "out")
    assert [r.state for r in store.runs()] == ["interrupted"]
    assert [r.case.model for r in store.load_run("latest")] == ["quick"]
    assert summary.report_path.exists() and "interrupted" in summary.report_path.read_text()
    assert not (tmp_path / "out" / "stopped.html").exists()  # the latest page is only for complete runs


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_harness_run_stops_on_a_signal_within_5_s(tmp_path: Path, isolated_cache: Path, sig: int, code: int) -> None:
    suite = write_suite(tmp_path, STOPPED_SUITE)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(suite), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    started: list[psutil.Process] = []
    try:
        runner = _wait_for_long_case(proc, out, psutil.Process(proc.pid))
        started = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        assert runner in started
        forked = _forked_child(runner)  # through the host's zygote: the benchmark is the client's forked child
        if forked is not None:
            started.append(forked)
        sent = time.monotonic()
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=5)
        assert time.monotonic() - sent < 5
    finally:
        proc.kill()
        left = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        for p in left:
            p.kill()
    assert proc.returncode == code, stderr
    assert left == []  # the runner child and its shell are gone
    assert _orphaned_runners(isolated_cache) == []
    results = next(out.glob("stopped-*.jsonl"))
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(r["case"]["model"], r["status"]) for r in rows] == [("quick", "ok")]
    report = next(out.glob("stopped-*.html"))
    assert f"results: {results}" in stdout and f"report:  {report}" in stdout
    assert f"interrupted by {signal.Signals(sig).name}" in stdout + stderr
    runs = subprocess.run([sys.executable, "-m", "harness.cli", "runs", "--store", str(out)], capture_output=True,
                          text=True, timeout=60)
    assert re.search(r"\binterrupted\b", runs.stdout), runs.stdout


def _wait_for_long_case(proc: subprocess.Popen, out: Path, parent: psutil.Process) -> psutil.Process:
    """Wait until the quick case is on disk and the long case's runner (a descendant of ``parent``) runs."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        files = list(out.glob("stopped-*.jsonl"))
        if files and files[0].read_text().strip():
            for child in parent.children(recursive=True):
                try:
                    cmd = child.cmdline()
                except psutil.Error:
                    continue
                runs_it = len(cmd) > 1 and (cmd[1].endswith("pyrunner.py") or str(ZYGOTE_CLIENT) in cmd[:3])
                if runs_it and "face_landmark" in " ".join(cmd) and _forked_child(child, wait=True) is not False:
                    return child
        time.sleep(0.1)
    raise AssertionError("the long case never started")


@pytest.mark.slow
def test_harness_run_on_android_stops_on_sigterm_and_kills_the_device_side_runner(tmp_path: Path,
                                                                                  virtual_device) -> None:
    suite = write_suite(tmp_path, STOPPED_SUITE)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(suite), "--out", str(out), "--device",
                             f"adb:{virtual_device.address}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        runner = _wait_for_long_case(proc, out, psutil.Process())  # the virtual device runs in this process
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=5)
        assert time.monotonic() - sent < 5
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr
    with contextlib.suppress(psutil.TimeoutExpired):
        runner.wait(3)
    assert not runner.is_running() or runner.status() == psutil.STATUS_ZOMBIE  # killed on the device
    rows = [json.loads(line) for line in next(out.glob("stopped-*.jsonl")).read_text().splitlines()]
    assert [(r["case"]["model"], r["status"]) for r in rows] == [("quick", "ok")]
    assert [r.state for r in LocalStore(out).runs()] == ["interrupted"]
    assert "report:" in stdout


def _forked_child(runner: psutil.Process, wait: bool = False) -> psutil.Process | None | bool:
    """The zygote's child a client runner waits for (None for a plain pyrunner; False: not named yet)."""
    pid = benchmark_pid(runner.pid)
    if pid == runner.pid:
        return None
    if pid is None:
        return False if wait else None
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return False if wait else None


def _orphaned_runners(cache: Path) -> list[psutil.Process]:
    """Runner processes of this test (their command line names its cache) that outlived the harness."""
    found = []
    for p in psutil.process_iter():
        try:
            if str(cache) in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            continue
    return found


def test_bounded_output_counts_what_it_drops_and_cuts_on_character_boundaries() -> None:
    out = BoundedOutput(head_bytes=10, tail_bytes=10)
    for chunk in (b"012345678", "é9".encode(), b"x" * 1000, "ü".encode() + b"abcdef", b"END"):
        out.feed(chunk)
    text = out.text()
    head, dropped, tail = re.match(r"(.*)" + MARKER.pattern + r"(.*)", text, re.DOTALL).groups()
    assert (head, tail) == ("012345678", "abcdefEND")  # 'é' and 'ü' cut by the bounds are left out whole
    assert "\ufffd" not in text
    assert len(head.encode()) + int(dropped) + len(tail.encode()) == out.total == 9 + 3 + 1000 + 8 + 3
    small = BoundedOutput(head_bytes=4, tail_bytes=4)
    small.feed(b"abcdefgh")
    assert small.text() == "abcdefgh"  # what fits is kept as printed


def test_runs_list_reads_an_index_made_before_runs_had_a_status(tmp_path: Path) -> None:
    db = tmp_path / "harness.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, suite TEXT, started_at TEXT, finished_at TEXT,"
                     " results_path TEXT NOT NULL, report_path TEXT, host TEXT, harness_version TEXT)")
        conn.execute("INSERT INTO runs VALUES ('r1', 's', 't', 'f', 'p', NULL, 'h', 'v')")
        conn.execute("INSERT INTO runs VALUES ('r2', 's', 't', NULL, 'p', NULL, 'h', 'v')")
    store = LocalStore(tmp_path)
    assert [r.state for r in store.runs()] == ["finished", "unfinished"]
    store.finish_run("r2", interrupted=True)
    assert [r.state for r in store.runs()] == ["finished", "interrupted"]


def test_pytest_stopped_by_ctrl_c_marks_its_run_interrupted(pytester: pytest.Pytester, small_model: Path) -> None:
    pytester.makepyfile(test_stop=f"""
        def test_one(bench):
            assert bench({str(small_model)!r}, delegate="xnnpack", measured_runs=2, warmup_runs=1,
                         repetitions=1).status == "ok"

        def test_two():
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of the session
    """)
    out = pytester.path / "out"
    result = pytester.runpytest_subprocess("test_stop.py", "--harness-out", str(out), "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    store = LocalStore(out)
    assert [r.state for r in store.runs()] == ["interrupted"]
    assert [r.status for r in store.load_run("latest")] == ["ok"]
