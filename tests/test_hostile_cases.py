"""One bad case stays inside its case: hostile device output, a crashing case, bad numbers in suites and options.

The hostile device is the real host device (same info, same staging, the real orchestrator and
store) whose shell answers the runner's command with a hostile ``EDGEHARNESS_RESULT`` line: the
device-output boundary itself.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from harness import api
from harness.devices import discovery
from harness.devices.base import ShellResult
from harness.devices.host import HostDevice
from harness.errors import DeviceError, SuiteError, UsageError
from harness.orchestrator import CaseRunner, run_suite
from harness.results import CaseInfo, DeviceInfo, Memory, Result
from harness.runners import litert_python, tool_output
from harness.store import LocalStore, load_results
from harness.suite import parse_suite

RUNS = 2
GOOD = {
    "status": "ok", "reason": None, "api": "interpreter", "runtime": "ai-edge-litert", "runtime_version": "2.1.0",
    "python": "3.12.3", "init_us": 5200.0, "first_inference_us": 310.0, "warmup_us": [120.0, 118.0],
    "samples_us": [101.5, 99.0], "rss_before_init_mb": 30.0, "rss_after_init_mb": 41.0, "peak_rss_mb": 52.0,
    "outputs": [{"name": "out", "shape": [1, 2], "dtype": "float32", "mean": 0.5, "abs_max": 1.0, "head": [0.0, 1.0]}],
}


def _line(**changes: object) -> str:
    return litert_python.RESULT_PREFIX + json.dumps({**GOOD, **changes})


def _without(key: str) -> str:
    return litert_python.RESULT_PREFIX + json.dumps({k: v for k, v in GOOD.items() if k != key})


# (what the device prints, what the failed result's reason must say); the first one is well formed.
HOSTILE: list[tuple[str, str | None]] = [
    (_line(), None),
    (_line(samples_us=["a", 2.0]), r"samples_us\[0\]: expected a number, got str 'a'"),
    (_line(samples_us=[float("nan"), 2.0]), r"samples_us\[0\]: not a finite number \(nan\)"),
    (_line(samples_us=[100.0, float("inf")]), r"samples_us\[1\]: not a finite number \(inf\)"),
    (_line(init_us="x"), r"init_us: expected a number, got str 'x'"),
    (_line(samples_us=[-5.0, 100.0]), r"samples_us\[0\]: negative \(-5.0\)"),
    (_line(samples_us={"a": 1}), r"samples_us: expected a list, got dict"),
    (_line(outputs=[[1, 2]]), r"outputs\[0\]: expected a table, got list"),
    (_line(samples_us=[1e308, 1e308]), r"samples_us\[0\]: 1e\+308 is beyond the possible maximum 6e\+07"),
    (_line().replace('"init_us": 5200.0', '"init_us": 1e999'), r"init_us: not a finite number \(inf\)"),
    (_without("samples_us"), r"samples_us: no measured runs"),
    (_line(samples_us=[100.0, 101.0, 99.0]), r"samples_us: 3 values for 2 measured runs"),
    (_line(samples_us=[]), r"samples_us: no measured runs"),
    (_line(peak_rss_mb=-1), r"peak_rss_mb: negative \(-1\)"),
    (_line(rss_after_init_mb=True), r"rss_after_init_mb: expected a number, got bool True"),
    (_line(warmup_us=5), r"warmup_us: expected a list, got int 5"),
    (_line(outputs=[{"shape": [1, -2], "head": [0.0]}]), r"outputs\[0\].shape\[1\]: negative"),
    (_line(outputs=[{"shape": [1], "head": [float("nan")]}]), r"outputs\[0\].head\[0\]: not a finite number"),
    (_line(runtime={"name": "x"}), r"runtime: expected text, got dict"),
    (litert_python.RESULT_PREFIX + '{"status": "ok", "samples_us": [' + "9" * 5000 + "]}",
     r"unreadable result line: ValueError: Exceeds the limit"),
    (litert_python.RESULT_PREFIX + "[" * 100_000 + "]" * 100_000, r"unreadable result line: RecursionError"),
    (litert_python.RESULT_PREFIX + '{"status": "failed", "reason": {"why": [1, 2]}}', r"^\{'why': \[1, 2\]\}$"),
]
# Exceptions a device's shell raises for a case (a backend bug, a broken pipe): the case fails with them.
RAISING = {len(HOSTILE) + 1: OSError(5, "Input/output error"), len(HOSTILE) + 2: KeyError("ro.product.model")}


# The runner the hostile device runs in place of pyrunner.py: it prints the hostile text chosen by --threads.
FAKE_RUNNER = """import pathlib, sys
threads = sys.argv[sys.argv.index("--threads") + 1]
sys.stdout.write("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n")
sys.stdout.write((pathlib.Path(__file__).parent / (threads + ".txt")).read_text())
"""


class HostileDevice(HostDevice):
    """The host, whose runner script is a fake that prints a hostile result line (chosen by the case's
    thread count); for some thread counts the shell itself raises, as a broken backend would."""

    def __init__(self, device_id: str, runner_dir: Path) -> None:
        super().__init__(device_id)
        self.fake = runner_dir / "fake_runner.py"

    def shell(self, command: str, timeout_s: float = 60.0) -> ShellResult:
        runner = re.search(r"pyrunner\.py .*--threads (\d+)", command)
        if runner is not None and int(runner.group(1)) in RAISING:
            raise RAISING[int(runner.group(1))]
        command = command.replace(shlex.quote(str(litert_python.SCRIPT)), shlex.quote(str(self.fake)))
        return super().shell(command, timeout_s)


class UnreachableDevice(HostDevice):
    """A farm device that never answers (its backend raises a DeviceError, as for a phone without usbmuxd)."""

    def info(self) -> DeviceInfo:
        raise DeviceError("read lockdown values: usbmuxd is not reachable", device=self.id)


@pytest.fixture
def runner_dir(tmp_path: Path) -> Path:
    """The fake runner and one output file per hostile case."""
    directory = tmp_path / "device"
    directory.mkdir()
    (directory / "fake_runner.py").write_text(FAKE_RUNNER)
    for threads, (text, _) in enumerate(HOSTILE, start=1):
        (directory / f"{threads}.txt").write_text(text + "\n")
    return directory


def _suite(model: Path, threads: list[int], **extra: object) -> str:
    settings = "".join(f"{k} = {v}\n" for k, v in extra.items())
    return (f'[suite]\nname = "hostile"\nrunner = "litert-python"\ndelegates = ["xnnpack"]\nthreads = {threads}\n'
            f"warmup_runs = 1\nmeasured_runs = {RUNS}\nrepetitions = 1\ntimeout_s = 60\n{settings}"
            f'[[models]]\npath = "{model}"\nname = "blazeface"\n')


def test_every_hostile_result_fails_alone_with_the_field_named(small_model: Path, tmp_path: Path,
                                                              runner_dir: Path) -> None:
    suite = parse_suite(_suite(small_model, list(range(1, len(HOSTILE) + len(RAISING) + 1))), tmp_path / "s.toml")
    store = LocalStore(tmp_path / "out")
    summary = run_suite(suite, [HostileDevice("hostile", runner_dir)], store)
    by_threads = {r.case.threads: r for r in summary.results}
    assert len(by_threads) == len(HOSTILE) + len(RAISING)  # every case ran: none ended the run
    assert by_threads[1].status == "ok" and by_threads[1].latency.samples_us == [101.5, 99.0]
    for threads, (_, expected) in enumerate(HOSTILE[1:], start=2):
        result = by_threads[threads]
        assert result.status == "failed", (threads, result.status, result.reason)
        assert re.search(expected, result.reason), (threads, result.reason)
        assert isinstance(result.reason, str) and "\n" not in result.reason and len(result.reason) < 600
        assert result.latency is None and result.outputs == ()
        assert litert_python.RESULT_PREFIX.strip() in result.raw  # the device's text is kept for the reader
    oserror, keyerror = (by_threads[t] for t in sorted(RAISING))
    assert oserror.status == keyerror.status == "failed"
    assert oserror.reason == "internal error in this case: OSError: [Errno 5] Input/output error"
    assert keyerror.reason == "internal error in this case: KeyError: 'ro.product.model'"
    assert oserror.case.model_sha256 == by_threads[1].case.model_sha256 != ""  # still the case of that model
    # Every result is on disk, one JSONL line each, readable back.
    stored = list(load_results(summary.results_path))
    assert [r.case.threads for r in stored] == [r.case.threads for r in summary.results]


def test_a_farm_with_a_hostile_device_finishes_every_case_and_writes_the_report(
        small_model: Path, tmp_path: Path, runner_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two devices in parallel through ``harness.api.run``: the hostile one fails its cases, the host measures."""
    real_open = discovery.open_device
    fakes = {"hostile": lambda device_id: HostileDevice(device_id, runner_dir), "gone": UnreachableDevice}
    monkeypatch.setattr(api, "open_device", lambda device_id: fakes.get(device_id.split(":")[0], real_open)(device_id))
    picks = [2, 3, len(HOSTILE) + 1]  # text in a sample, NaN, the shell raising OSError
    suite = tmp_path / "farm.toml"
    suite.write_text(_suite(small_model, picks))
    summary = api.run(suite, devices=["hostile:1", "host", "gone:1"], out_dir=tmp_path / "out")
    rows = [json.loads(line) for line in summary.results_path.read_text().splitlines()]
    assert len(rows) == 3 * len(picks)
    gone = [(r["status"], r["reason"]) for r in rows if r["device"]["id"] == "gone:1"]
    assert gone == [("failed", "[gone:1] read lockdown values: usbmuxd is not reachable")] * len(picks)
    status = {(r["device"]["id"], r["case"]["threads"]): (r["status"], r["reason"]) for r in rows}
    for threads in picks:
        assert status[("host", threads)] == ("ok", None)
        hostile, reason = status[("hostile:1", threads)]
        assert hostile == "failed" and reason
    assert "samples_us[0]: expected a number" in status[("hostile:1", 2)][1]
    assert summary.report_path is not None and summary.report_path.exists()
    html = summary.report_path.read_text(encoding="utf-8")
    assert "hostile:1" in html and "samples_us[0]" in html and "Input/output error" in html


def test_ctrl_c_in_a_case_is_not_swallowed(small_model: Path, tmp_path: Path) -> None:
    """A guard on the catch-all above (it passed before it too): Ctrl-C is the user's, not the case's."""
    class Interrupted(HostDevice):
        def shell(self, command: str, timeout_s: float = 60.0) -> ShellResult:
            raise KeyboardInterrupt

    (case,) = parse_suite(_suite(small_model, [1]), tmp_path / "s.toml").cases()
    with pytest.raises(KeyboardInterrupt):
        CaseRunner("r1").run_case(Interrupted("ctrl-c"), case)


def test_a_result_json_cannot_hold_is_stored_failed_and_the_file_goes_on(tmp_path: Path) -> None:
    """Defence behind the checks: a NaN that slips into a result (a sampler, a future runner) must not end
    the run on the JSONL writer; the case is stored ``failed`` with its raw text, the next case after it."""
    store = LocalStore(tmp_path / "out")
    writer = store.begin_run("r1", "s")
    runner = CaseRunner("r1", writer)
    case = CaseInfo(case_id="m[d-cpu-t1]", model="m", model_sha256="ab", delegate="cpu", threads=1, runner="x")
    device = DeviceInfo(id="d", platform="host")
    bad = Result(run_id="r1", case=case, device=device, status="ok", raw="the device's text",
                 memory=Memory(method="sampler", steady_rss_mb=float("nan")))
    stored = runner._finish(bad)
    assert stored.status == "failed" and stored.memory is None
    assert stored.reason == ("the result could not be stored: ValueError: Out of range float values are not JSON "
                             "compliant") or stored.reason.startswith("the result could not be stored: ValueError")
    runner._finish(Result(run_id="r1", case=case, device=device, status="skipped", reason="next case"))
    writer.close()
    assert [(r.status, r.raw) for r in load_results(writer.path)] == [("failed", "the device's text"),
                                                                      ("skipped", "")]


def test_the_ios_app_payload_is_checked_the_same_way() -> None:
    """``from_payload`` reads the iOS app's result file: same keys, same checks, documented aggregates read."""
    bad = litert_python.from_payload({"status": "ok", "samples_us": "fast"}, runs=2)
    assert bad.status == "failed" and "samples_us: expected a list, got str 'fast'" in bad.reason
    assert litert_python.from_payload([1, 2]).status == "failed"  # type: ignore[arg-type]
    aggregates = litert_python.from_payload({"status": "ok", "count": 50, "avg_us": 812.5, "min_us": 790.0,
                                             "max_us": 901.0, "std_us": 12.0}, runs=50, timeout_s=60)
    assert aggregates.status == "ok" and aggregates.repetition.n == 50 and aggregates.repetition.center_us == 812.5
    zero = litert_python.from_payload({"status": "ok", "count": 0, "avg_us": 812.5}, runs=50)
    assert zero.status == "failed" and "count: 0 measured runs" in zero.reason


BENCHMARK_MODEL_TEXT = """INFO: STARTING!
INFO: Num runs: [2]
INFO: Graph: [m.tflite]
INFO: Initialized session in 5.2ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=3 first=100 curr=90 min=85 max=100 avg=92 std=5
INFO: Running benchmark for at least 2 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count={count} first=100 curr=90 min=85 max=100 avg={avg} std=5
INFO: Inference timings in us: Init: 5200, First inference: 100, Warmup (avg): 92, Inference (avg): {avg}
"""


@pytest.mark.parametrize(("count", "avg", "expected"), [
    (2, "-91.5", "avg_us: negative (-91.5)"),
    (0, "91.5", "count: 0 measured runs"),
    (2, "91e9", "is beyond the possible maximum 6e+07"),  # 25 hours per run in a 60 s case
])
def test_native_tool_figures_are_checked(count: int, avg: str, expected: str) -> None:
    outcome = tool_output.outcome(tool_output.BENCHMARK_MODEL, BENCHMARK_MODEL_TEXT.format(count=count, avg=avg), 0,
                                  timeout_s=60)
    assert outcome.status == "failed" and expected in outcome.reason
    good = tool_output.outcome(tool_output.BENCHMARK_MODEL, BENCHMARK_MODEL_TEXT.format(count=2, avg="91.5"), 0,
                               timeout_s=60)
    assert good.status == "ok" and good.repetition.avg_us == 91.5


# -- numbers in suites and options ------------------------------------------------------------
@pytest.mark.parametrize(("setting", "needle"), [
    ("timeout_s = nan", "[suite.timeout_s]: must be a finite number, got nan"),
    ("timeout_s = inf", "[suite.timeout_s]: must be a finite number, got inf"),
    ("timeout_s = 1e300", "[suite.timeout_s]: must be at most 604800"),
    ("measured_runs = 9223372036854775807", "[suite.measured_runs]: must be at most 1e+06"),
    ("threads = [1, true]", "[suite.threads]: threads must be positive integers: expected an integer, got bool True"),
    ("threads = 5000", "[suite.threads]: threads must be positive integers: must be at most 1024, got 5000"),
])
def test_bad_numbers_in_a_suite_are_refused_with_file_line_and_key(setting: str, needle: str) -> None:
    """(0, -1, ``true`` were refused before; NaN, infinities and absurd sizes were not.)"""
    text = f'[suite]\nname = "s"\n{setting}\n[[models]]\nzoo = "face_landmark"\n'
    with pytest.raises(SuiteError) as err:
        parse_suite(text, "bad.toml")
    message = str(err.value)
    assert message.startswith("bad.toml:3 [suite."), message
    assert needle in message, message


@pytest.mark.parametrize(("text", "line", "needle"), [
    ("[[models]]\nzoo = 'face_landmark'\n[models.budget]\np50_ms = nan\n", 4, "budget must be a positive number"),
    ("[[models]]\nzoo = 'face_landmark'\n[models.budget]\ninit_ms = inf\n", 4, "budget must be a positive number"),
    ("[suite.cooldown]\nmode = 'pause'\npause_s = nan\n[[models]]\nzoo = 'face_landmark'\n", 3,
     "[suite.cooldown.pause_s]: must be a number from 0 to 604800, got nan"),
    ("[suite.cooldown]\nmode = 'threshold'\nthreshold_c = true\n[[models]]\nzoo = 'face_landmark'\n", 3,
     "got True"),
    ("[suite.cooldown]\nmode = 'threshold'\ntimeout_s = -5\n[[models]]\nzoo = 'face_landmark'\n", 3, "got -5"),
    ("[gate]\nalpha = nan\n[[models]]\nzoo = 'face_landmark'\n", 2, "[gate.alpha]: must be a finite number"),
    ("[gate]\nalpha = 'x'\n[[models]]\nzoo = 'face_landmark'\n", 2, "[gate.alpha]: 'x' is not a number"),
    ("[gate]\nmin_repetitions = true\n[[models]]\nzoo = 'face_landmark'\n", 2, "expected an integer, got bool True"),
    ("[gate]\nmin_repetitions = 1\n[[models]]\nzoo = 'face_landmark'\n", 2, "must be >= 2"),
    ("[gate]\nmax_regression = '-5%'\n[[models]]\nzoo = 'face_landmark'\n", 2, "finite percentage >= 0"),
])
def test_bad_numbers_in_budgets_cooldown_and_gate_are_refused(text: str, line: int, needle: str) -> None:
    with pytest.raises(SuiteError) as err:
        parse_suite(text, "bad.toml")
    assert str(err.value).startswith(f"bad.toml:{line} ["), str(err.value)
    assert needle in str(err.value), str(err.value)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.parametrize(("option", "value", "needle"), [
    ("--repetitions", "0", "argument --repetitions: must be >= 1, got 0"),
    ("--repetitions", "-3", "argument --repetitions: must be >= 1, got -3"),
    ("--runs", "0", "argument --runs: must be >= 1, got 0"),
    ("--runs", "-1", "argument --runs: must be >= 1, got -1"),
    ("--runs", "many", "argument --runs: expected an integer, got 'many'"),
])
def test_cli_refuses_bad_counts_before_running(option: str, value: str, needle: str, small_model: Path,
                                               tmp_path: Path) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text(_suite(small_model, [1]))
    proc = _cli("run", str(suite), option, value, "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.splitlines()[-1] == f"harness run: error: {needle}"
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


def test_api_refuses_bad_counts(small_model: Path, tmp_path: Path) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text(_suite(small_model, [1]))
    for kwargs in ({"repetitions": 0}, {"measured_runs": -1}, {"repetitions": True}):
        with pytest.raises(UsageError, match="must be >= 1|expected an integer"):
            api.run(suite, out_dir=tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_pytest_options_refuse_bad_counts(pytester: pytest.Pytester, small_model: Path) -> None:
    pytester.mkdir("suites")
    (pytester.path / "suites" / "s.toml").write_text(_suite(small_model, [1]))
    for option, value in (("--harness-repetitions", "0"), ("--harness-runs", "-1")):
        result = pytester.runpytest_subprocess("suites/", option, value, "--harness-out", str(pytester.path / "o"))
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"*argument {option}: must be >= 1, got {value}*"])
        assert not (pytester.path / "o").exists()
