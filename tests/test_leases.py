"""Device leases: one run at a time on a device, whoever holds it is named, a dead holder frees it at once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from harness.leases import FileLeases, Holder, LeaseKeeper

pytest_plugins = ["harness.testing.android.fixtures"]
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

REPO = Path(__file__).resolve().parent.parent

_HOLD = """
import sys, time
from harness.leases import FileLeases, Holder
from harness.store import open_store
kind, where, device = sys.argv[1:4]
leases = FileLeases(where) if kind == "file" else open_store(where).leases()
assert leases.try_acquire(device, Holder.me("holder-run")) is None
print("held", flush=True)
time.sleep(600)
"""


def hold_in_another_process(kind: str, where: str, device: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, kind, where, device], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def _leases(kind: str, tmp_path: Path, request: pytest.FixtureRequest):
    if kind == "file":
        return str(tmp_path / "locks"), FileLeases(tmp_path / "locks")
    from harness.store import open_store

    dsn = request.getfixturevalue("pg_dsn")
    return dsn, open_store(dsn).leases()


@pytest.mark.parametrize("kind", ["file", "postgresql"])
def test_a_leased_device_names_its_holder_and_a_killed_holder_frees_it_at_once(kind, tmp_path, request):
    where, leases = _leases(kind, tmp_path, request)
    holder = hold_in_another_process(kind, where, "adb:127.0.0.1:5555")
    try:
        busy = leases.try_acquire("adb:127.0.0.1:5555", Holder.me("my-run"))
        assert busy is not None and busy.run_id == "holder-run" and busy.pid == holder.pid
        assert busy.host == socket.gethostname()
        assert "held by run holder-run on host" in busy.describe() and f"(pid {holder.pid})" in busy.describe()
        assert leases.try_acquire("adb:other", Holder.me("my-run")) is None  # one lease per device id
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    killed = time.monotonic()
    while leases.try_acquire("adb:127.0.0.1:5555", Holder.me("my-run")) is not None:  # the server may take a moment
        assert time.monotonic() - killed < 2.0, "a dead holder's lease was not freed"
        time.sleep(0.01)
    leases.close()


def test_the_keeper_waits_then_gives_the_reason_to_skip(tmp_path):
    holder = hold_in_another_process("file", str(tmp_path / "locks"), "host")
    try:
        keeper = LeaseKeeper(FileLeases(tmp_path / "locks"), "my-run", timeout_s=0.6, poll_s=0.05)
        start = time.monotonic()
        reason = keeper.acquire("host")
        waited = time.monotonic() - start
        assert reason is not None and reason.startswith("device busy (held by run holder-run on host")
        assert f"(pid {holder.pid})" in reason and "waited 0.6 s" in reason
        assert 0.6 <= waited < 3
        start = time.monotonic()
        assert keeper.acquire("host") == reason and time.monotonic() - start < 0.1  # not waited for twice
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_file_planted_as_a_symlink_is_not_followed(tmp_path):
    leases = FileLeases(tmp_path / "locks")
    (tmp_path / "locks").mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    leases.path("host").symlink_to(victim)
    keeper = LeaseKeeper(leases, "my-run", timeout_s=0)
    assert keeper.acquire("host").startswith("device lease not taken: refusing to write")
    assert victim.read_text() == "keep me"


def _suite(tmp_path: Path, model: Path, name: str) -> Path:
    suite = tmp_path / f"{name}.toml"
    suite.write_text(f'[suite]\nname = "{name}"\ndelegates = ["cpu"]\nthreads = [1, 2]\nwarmup_runs = 1\n'
                     f"measured_runs = 20\nrepetitions = 2\ntimeout_s = 60\n"
                     f'[[models]]\nname = "fd"\npath = {json.dumps(str(model))}\n', encoding="utf-8")
    return suite


def _run(suite: Path, device: str, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(suite), "--device", device, "--out", str(out),
         "--no-report", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "HARNESS_ADB_KEY": str(out.parent / "adbkey")})


def _windows(out: Path) -> dict[str, list[tuple[datetime, datetime, str]]]:
    runs: dict[str, list] = {}
    for path in out.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            runs.setdefault(r["run_id"], []).append(
                (datetime.fromisoformat(r["started_at"]), datetime.fromisoformat(r["finished_at"]), r["status"]))
    return runs


def test_two_concurrent_runs_on_one_virtual_device_never_measure_at_the_same_time(virtual_device, small_model,
                                                                                  tmp_path):
    device = f"adb:{virtual_device.address}"
    out = tmp_path / "out"  # two CI jobs on one host, one store: the lease directory is out/leases
    first = _run(_suite(tmp_path, small_model, "first"), device, out)
    time.sleep(0.5)
    second = _run(_suite(tmp_path, small_model, "second"), device, out)
    out1, err1 = first.communicate(timeout=300)
    out2, err2 = second.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 0, err1 + err2
    runs = _windows(out)
    assert len(runs) == 2 and all(len(w) == 2 and {s for *_, s in w} == {"ok"} for w in runs.values())
    a, b = sorted(runs.values(), key=min)
    a_span, b_span = (min(s for s, *_ in a), max(f for _, f, _ in a)), (min(s for s, *_ in b), max(f for _, f, _ in b))
    # one run's measured windows all lie outside the other's: the second waited for the first's lease
    assert a_span[1] <= b_span[0] or b_span[1] <= a_span[0], (a_span, b_span)
    waiter = err1 + err2
    assert "device busy: held by run" in waiter and "lease taken after waiting" in waiter


def test_a_device_busy_beyond_the_timeout_has_its_cases_skipped_with_the_holder(virtual_device, small_model,
                                                                                 tmp_path):
    device = f"adb:{virtual_device.address}"
    locks = tmp_path / "shared-locks"  # a lock directory shared by several stores on this host
    holder = hold_in_another_process("file", str(locks), device)
    try:
        proc = _run(_suite(tmp_path, small_model, "late"), device, tmp_path / "out", "--lease-dir", str(locks),
                    "--lease-timeout", "1")
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 0, stderr
    assert "2 skipped" in stdout
    rows = [json.loads(x) for x in next((tmp_path / "out").glob("late-*.jsonl")).read_text().splitlines()]
    assert {r["status"] for r in rows} == {"skipped"}
    assert all(r["reason"].startswith("device busy (held by run holder-run on host ") for r in rows)
    assert all(f"(pid {holder.pid})" in r["reason"] and "waited 1 s" in r["reason"] for r in rows)


def test_the_pytest_plugin_skips_a_case_whose_device_another_run_holds(pytester, small_model, tmp_path):
    locks = tmp_path / "locks"
    holder = hold_in_another_process("file", str(locks), "host")
    pytester.mkdir("suites")
    (pytester.path / "suites" / "tiny.toml").write_text(
        f'[suite]\nname = "tiny"\ndelegates = ["cpu"]\nthreads = [1]\nrepetitions = 1\nmeasured_runs = 3\n'
        f'warmup_runs = 1\n[[models]]\npath = "{small_model}"\nname = "blazeface"\n')
    try:
        result = pytester.runpytest_subprocess("suites/", "--harness-out", str(pytester.path / "out"),
                                               "--harness-lease-dir", str(locks), "--harness-lease-timeout", "0.5")
    finally:
        holder.kill()
        holder.wait()
    result.assert_outcomes(skipped=1)
    rows = [json.loads(x) for x in next((pytester.path / "out").glob("pytest-*.jsonl")).read_text().splitlines()]
    assert [r["status"] for r in rows] == ["skipped"]
    assert rows[0]["reason"].startswith("device busy (held by run holder-run on host ")
    # the lease is free again: the same suite now measures
    again = pytester.runpytest_subprocess("suites/", "--harness-out", str(pytester.path / "out2"),
                                          "--harness-lease-dir", str(locks), "--harness-lease-timeout", "0.5")
    again.assert_outcomes(passed=1)


def test_two_hosts_sharing_a_team_store_take_turns_on_a_device(virtual_device, small_model, tmp_path, pg_dsn):
    """Two runs with their own result folders (two CI hosts) and one PostgreSQL store: the server's lease."""
    from harness.store import open_store

    device = f"adb:{virtual_device.address}"
    first = _run(_suite(tmp_path, small_model, "first"), device, tmp_path / "host1", "--store", pg_dsn)
    time.sleep(0.5)
    second = _run(_suite(tmp_path, small_model, "second"), device, tmp_path / "host2", "--store", pg_dsn)
    _, err1 = first.communicate(timeout=300)
    _, err2 = second.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 0, err1 + err2
    assert not (tmp_path / "host1" / "leases").exists() and not (tmp_path / "host2" / "leases").exists()
    spans = []
    for out in (tmp_path / "host1", tmp_path / "host2"):
        (windows,) = _windows(out).values()
        assert {s for *_, s in windows} == {"ok"}
        spans.append((min(s for s, *_ in windows), max(f for _, f, _ in windows)))
    a, b = sorted(spans)
    assert a[1] <= b[0], spans
    assert "device busy: held by run" in err1 + err2
    assert len(open_store(pg_dsn).runs()) == 2
