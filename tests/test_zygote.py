"""The host's pyrunner zygote: one forked process per repetition, same results as a fresh process.

Everything runs for real: the zygote imports LiteRT, the host shell runs the client, children are forked.
Timing is in ``benchmarks/overhead.py``; here the structure is checked.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from conftest import write_suite
from harness.devices.host import HostDevice
from harness.errors import CommandTimeout
from harness.runners import litert_python


@pytest.fixture
def host(tmp_path: Path):
    device = HostDevice(cache_dir=tmp_path / "cache", zygote=True)
    yield device
    device.close()


def _command(model: Path, launcher: tuple[str, ...], *, runs: int = 5, delegate: str = "cpu") -> str:
    return litert_python.command(sys.executable, str(litert_python.SCRIPT), str(model), delegate=delegate,
                                 threads=1, warmup_runs=2, measured_runs=runs, seed=7, launcher=launcher)


def _payload(output: str) -> dict:
    line = next(x for x in output.splitlines() if x.startswith(litert_python.RESULT_PREFIX))
    return json.loads(line[len(litert_python.RESULT_PREFIX):])


def test_a_forked_repetition_gives_the_same_result_as_a_fresh_process(host: HostDevice, small_model: Path) -> None:
    launcher = host.pyrunner_launcher()
    assert launcher, host.zygote_off_reason
    fresh = host.shell(_command(small_model, ()), 60)
    forked = host.shell(_command(small_model, launcher), 60)
    assert fresh.exit_code == forked.exit_code == 0, forked.output
    a, b = (litert_python.parse(r.output, r.exit_code, runs=5) for r in (fresh, forked))
    assert a.status == b.status == "ok", b.reason
    assert len(a.repetition.samples_us) == len(b.repetition.samples_us) == 5
    assert a.outputs == b.outputs  # same seed, same kernels: the same fingerprints and values
    assert "clear_refs" in b.memory_method and "clear_refs" not in a.memory_method


def test_each_repetition_is_its_own_child_of_the_zygote(host: HostDevice, small_model: Path) -> None:
    launcher = host.pyrunner_launcher()
    assert host._zygote is not None  # noqa: SLF001
    zygote_pid = host._zygote.proc.pid  # noqa: SLF001
    payloads = [_payload(host.shell(_command(small_model, launcher, runs=1), 60).output) for _ in range(3)]
    pids = {p["pid"] for p in payloads}
    assert len(pids) == 3 and zygote_pid not in pids
    assert {p["ppid"] for p in payloads} == {zygote_pid}
    fresh = _payload(host.shell(_command(small_model, (), runs=1), 60).output)
    assert fresh["ppid"] != zygote_pid


def test_a_failing_model_fails_through_the_zygote_with_its_exit_code(host: HostDevice, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    done = host.shell(_command(bad, host.pyrunner_launcher()), 60)
    assert done.exit_code == 2
    outcome = litert_python.parse(done.output, done.exit_code)
    assert outcome.status == "failed" and "rejected" in outcome.reason


def test_the_timeout_kills_the_forked_child_and_the_zygote_serves_on(host: HostDevice, small_model: Path) -> None:
    launcher = host.pyrunner_launcher()
    zygote = psutil.Process(host._zygote.proc.pid)  # noqa: SLF001
    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.update(c.pid for c in zygote.children())
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with pytest.raises(CommandTimeout):
            host.shell(_command(small_model, launcher, runs=10_000_000), timeout_s=3)
    finally:
        stop.set()
        watcher.join()
    assert seen, "no child was forked"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                                              for p in seen):
        time.sleep(0.05)
    alive = [p for p in seen if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert not alive, f"children still running after the timeout: {alive}"
    again = host.shell(_command(small_model, launcher, runs=1), 60)
    assert again.exit_code == 0 and _payload(again.output)["ppid"] == zygote.pid


def test_the_peak_memory_is_the_childs_own(host: HostDevice, zoo_models: dict[str, Path]) -> None:
    """Each child's peak is its own: a bigger model shows a bigger peak (not one figure shared with the zygote)."""
    launcher = host.pyrunner_launcher()
    big = litert_python.parse(*_shell(host, _command(zoo_models["face_landmark"], launcher, runs=1)))
    small = litert_python.parse(*_shell(host, _command(zoo_models["face_detection_front"], launcher, runs=1)))
    assert big.status == small.status == "ok"
    assert small.peak_rss_mb >= small.rss_after_init_mb
    assert big.peak_rss_mb - small.peak_rss_mb > 1.0, (big.peak_rss_mb, small.peak_rss_mb)


def _shell(host: HostDevice, command: str) -> tuple[str, int | None]:
    done = host.shell(command, 60)
    return done.output, done.exit_code


def test_no_zygote_means_fresh_processes_and_says_why(tmp_path: Path) -> None:
    off = HostDevice(cache_dir=tmp_path / "a", zygote=False)
    assert off.pyrunner_launcher() == () and off.zygote_off_reason == "turned off"
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")  # the zygote's work folder cannot be made under it
    failing = HostDevice(cache_dir=blocked, zygote=True)
    assert failing.pyrunner_launcher() == ()
    assert "Not a directory" in (failing.zygote_off_reason or "")


def test_the_client_runs_a_fresh_process_when_the_zygote_is_gone(host: HostDevice, small_model: Path) -> None:
    launcher = host.pyrunner_launcher()
    host.close()
    done = host.shell(_command(small_model, launcher, runs=2), 60)
    outcome = litert_python.parse(done.output, done.exit_code, runs=2)
    assert outcome.status == "ok" and "clear_refs" not in outcome.memory_method


def test_the_memory_poller_follows_the_client_to_its_forked_child(host: HostDevice, small_model: Path,
                                                                   tmp_path: Path) -> None:
    """The shell's pid file names the client (a few MB of built-ins); the polled RSS must be the benchmark's."""
    from harness.samplers.memory import HostMemoryPoller

    command = _command(small_model, host.pyrunner_launcher(), runs=400)
    client = subprocess.Popen(shlex.split(command), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    pid_file = tmp_path / "pid"
    pid_file.write_text(str(client.pid))
    poller = HostMemoryPoller(pid_file, interval_s=0.01).start()
    out, _ = client.communicate(timeout=120)
    rows = poller.stop()
    payload = _payload(out.decode())
    assert rows, "nothing polled"
    polled_mb = max(kb for _, _, kb in rows) / 1024
    assert polled_mb >= payload["rss_after_init_mb"] * 0.9, (polled_mb, payload["rss_after_init_mb"])


def test_a_harness_run_on_the_host_goes_through_the_zygote(tmp_path: Path, small_model: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The orchestrator (through the samplers' wrapped device) uses the launcher; turned off, it does not."""
    from harness.api import run

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    suite = write_suite(tmp_path, f"""
[suite]
name = "z"
delegates = ["cpu"]
warmup_runs = 1
measured_runs = 3
repetitions = 3

[[models]]
path = "{small_model}"
""")
    methods = {}
    for way in ("1", "0"):
        monkeypatch.setenv("HARNESS_HOST_ZYGOTE", way)
        summary = run(suite, out_dir=tmp_path / f"out{way}", report=False)
        (result,) = summary.results
        assert result.status == "ok", result.reason
        assert len(result.latency.repetitions) == 3
        methods[way] = result.memory.method
    assert "clear_refs" in methods["1"] and "clear_refs" not in methods["0"]
    assert not list((tmp_path / "cache" / "host-work").glob("zygote-*")), "the zygote's folder was left behind"


def test_the_zygote_is_on_unless_the_environment_turns_it_off() -> None:
    from harness.devices.settings import DeviceSettings

    assert DeviceSettings.defaults().host_zygote is True
    assert DeviceSettings.from_env({"HARNESS_HOST_ZYGOTE": "0"}).host_zygote is False
    assert DeviceSettings.from_env({"HARNESS_HOST_ZYGOTE": "off"}).host_zygote is False
    assert DeviceSettings.from_env({"HARNESS_HOST_ZYGOTE": "1"}).host_zygote is True


def test_a_client_killed_mid_run_takes_its_child_with_it_and_leaves_no_files(host: HostDevice,
                                                                            small_model: Path) -> None:
    """The zygote follows each client (pidfd): when the client dies, its child is killed and its FIFOs removed."""
    command = _command(small_model, host.pyrunner_launcher(), runs=10_000_000)
    client = subprocess.Popen(shlex.split(command), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    folder = Path(host._zygote.folder)  # noqa: SLF001
    child_file = folder / f"{client.pid}.child"
    deadline = time.monotonic() + 60
    while not child_file.is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = psutil.Process(int(child_file.read_text()))
    assert child.ppid() == host._zygote.proc.pid  # noqa: SLF001
    client.kill()  # the client only: its child is not in its process group
    client.wait(10)
    child.wait(10)  # raises psutil.TimeoutExpired when the zygote did not kill it
    deadline = time.monotonic() + 10
    while {p.name for p in folder.iterdir()} - {"req", "log"} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {p.name for p in folder.iterdir()} == {"req", "log"}
    client.stdout.close()
