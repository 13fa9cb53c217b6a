"""Android backend under injected faults (virtual device, real sockets) and hostile file names."""

from __future__ import annotations

import os
import shlex
import threading
import time
from pathlib import Path

import pytest

from harness.devices.android import AndroidDevice
from harness.errors import CommandTimeout, DeviceLost
from harness.testing import Faults

pytest_plugins = ["harness.testing.android.fixtures"]

REMOTE_DIR = "/data/local/tmp/edgeharness/r"
WINDOW_S = 1.5
HOSTILE_NAMES = [
    "with space.tflite",
    "quote'single.tflite",
    'double"quote.tflite',
    "semi;colon; cd $TMPDIR && touch canary;.tflite",
    "$(cd $TMPDIR && touch canary).tflite",
    "`cd $TMPDIR; touch canary`.tflite",
    "new\nline.tflite",
    "ünïcødé-模型.tflite",
    "-leading-dash.tflite",
    "glob*?[x].tflite",
    "back\\slash | cd $TMPDIR && touch canary.tflite",
]


@pytest.fixture(autouse=True)
def private_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    key = tmp_path / "keys" / "adbkey"  # never the developer's key
    monkeypatch.setenv("HARNESS_ADB_KEY", str(key))  # for the commands the tests run
    return key


@pytest.fixture
def android(virtual_device, private_key: Path):
    device = AndroidDevice(f"adb:{virtual_device.address}", key=private_key, reconnect_window_s=WINDOW_S,
                           backoff_s=0.1)
    device.shell("true").check()  # link up before faults are armed
    yield device
    device.close()


def _fired(vdev, name: str) -> bool:
    return any(line.startswith(name) for line in vdev.fault_log)


def test_connection_dropped_mid_push_is_retried_and_the_file_is_whole(android, virtual_device, tmp_path):
    local = tmp_path / "model.bin"
    local.write_bytes(os.urandom(4_000_000))
    remote = f"{REMOTE_DIR}/model.bin"
    virtual_device.arm(Faults(drop_after_bytes=1_500_000))
    assert android.push(local, remote) is True
    assert _fired(virtual_device, "drop_after_bytes")
    assert virtual_device.host_path(remote).read_bytes() == local.read_bytes()
    leftovers = [p.name for p in virtual_device.host_path(REMOTE_DIR).iterdir() if p.name.endswith(".part")]
    assert leftovers == []


def test_push_that_cannot_finish_leaves_the_old_file_whole(android, virtual_device, tmp_path):
    remote = f"{REMOTE_DIR}/model.bin"
    old = tmp_path / "old.bin"
    old.write_bytes(b"old version " * 1000)
    android.push(old, remote)
    new = tmp_path / "new.bin"
    new.write_bytes(os.urandom(4_000_000))
    virtual_device.arm(Faults(bandwidth_bytes_per_s=2_000_000))  # about 2 s for the transfer
    timer = threading.Timer(0.6, virtual_device.go_offline, args=(WINDOW_S * 2 + 1,))
    timer.start()
    try:
        with pytest.raises(DeviceLost, match="link lost"):
            android.push(new, remote)
    finally:
        timer.join()
    virtual_device.arm(Faults())
    assert virtual_device.host_path(remote).read_bytes() == old.read_bytes()  # old and whole, never partial
    _wait_online(android)
    assert android.push(new, remote) is True
    assert virtual_device.host_path(remote).read_bytes() == new.read_bytes()
    assert not [p for p in virtual_device.host_path(REMOTE_DIR).iterdir() if p.name.endswith(".part")]


def test_stall_longer_than_the_timeout_raises_in_time(android, virtual_device):
    virtual_device.arm(Faults(stall_s=4.0))
    start = time.monotonic()
    with pytest.raises(CommandTimeout) as err:
        android.shell("echo never", timeout_s=1.0)
    assert time.monotonic() - start < 2.0  # the bound: timeout + 1 s
    assert err.value.timeout_s == 1.0 and err.value.command == "echo never"
    assert _fired(virtual_device, "stall")
    assert android.shell("echo again").output == "again\n"  # a fresh link works


def test_timeout_kills_the_remote_process(android, virtual_device):
    pid_file = "/data/local/tmp/sleeper.pid"
    with pytest.raises(CommandTimeout, match="killed"):
        android.shell(f"echo $$ > {pid_file}; exec sleep 30", timeout_s=1.0)
    pid = int(virtual_device.host_path(pid_file).read_text())
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    assert not _alive(pid)



def test_timeout_kills_a_child_that_left_the_process_tree(android):
    """Android's toybox ``setsid`` forks: the child is reparented out of the command's tree and group. The
    call's token in its environment still finds it (this failed before: ``sleep 4711`` lived on)."""
    with pytest.raises(CommandTimeout, match="killed"):
        android.shell("echo started; setsid sleep 4711 & sleep 4712", timeout_s=1.0)
    time.sleep(0.3)
    assert android.shell("pgrep -f 'sleep 471[12]' || echo none").output == "none\n"

def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_corrupt_checksum_and_dropped_message_are_retried(android, virtual_device):
    virtual_device.arm(Faults(corrupt_checksum_at=1))
    assert android.shell("echo one; exit 4").exit_code == 4
    assert _fired(virtual_device, "corrupt_checksum")
    android.close()  # message counts are per connection: the next link's 2nd message is the shell's OPEN
    virtual_device.arm(Faults(drop_at_message=2))
    assert android.shell("echo two").output == "two\n"
    assert _fired(virtual_device, "drop_at_message")


def test_short_offline_reconnects_long_offline_is_device_lost(android, virtual_device):
    virtual_device.go_offline(0.5)
    assert android.shell("echo back").output == "back\n"
    virtual_device.go_offline(WINDOW_S + 1.5)
    start = time.monotonic()
    with pytest.raises(DeviceLost, match="not back after") as err:
        android.shell("echo lost")
    assert time.monotonic() - start < WINDOW_S + 1.0
    assert virtual_device.address in str(err.value)
    _wait_online(android)
    assert android.shell("echo again").exit_code == 0


def _wait_online(device: AndroidDevice, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            device.shell("true")
            return
        except DeviceLost:
            if time.monotonic() > deadline:
                raise


def test_hostile_file_names_push_pull_and_run_without_injection(android, virtual_device, tmp_path):
    canary = virtual_device.host_path("/data/local/tmp/canary")  # $TMPDIR/canary: what every injection would touch
    for i, name in enumerate(HOSTILE_NAMES):
        local = tmp_path / f"local{i}"
        local.write_bytes(f"payload {i} ".encode() * 100)
        remote = f"{REMOTE_DIR}/{name}"
        assert android.push(local, remote) is True, name
        assert virtual_device.host_path(remote).read_bytes() == local.read_bytes(), name
        assert android.push(local, remote) is False, name  # the digest cache works with this name too
        size = android.shell(f"wc -c < {shlex.quote(remote)}").output.strip()
        assert int(size) == local.stat().st_size, name
        back = android.pull(remote, tmp_path / f"back{i}")
        assert back.read_bytes() == local.read_bytes(), name
    assert not canary.exists()
    android.shell("cd $TMPDIR && touch canary").check()  # the canary is where an injected command would put it
    assert canary.exists()


def test_two_clients_pushing_the_same_file_at_once_both_succeed(android, virtual_device, tmp_path, caplog, private_key):
    """Two harness processes on one phone (two CI jobs, xdist workers) must not delete each other's temporaries.

    Each transfer must succeed at the first attempt: a deleted temporary used to surface as a broken
    link and a retry (on the virtual device) or as an incomplete copy (on a real adbd).
    """
    caplog.set_level("WARNING", logger="harness")
    local = tmp_path / "model.bin"
    local.write_bytes(os.urandom(8_000_000))
    remote = f"{REMOTE_DIR}/shared.bin"
    other = AndroidDevice(f"adb:{virtual_device.address}", key=private_key, reconnect_window_s=WINDOW_S,
                          backoff_s=0.1)
    virtual_device.arm(Faults(bandwidth_bytes_per_s=4_000_000))  # about 2 s each: the transfers overlap
    errors: list[BaseException] = []

    def push(device: AndroidDevice) -> None:
        try:
            device.push(local, remote)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=push, args=(d,)) for d in (android, other)]
        for t in threads:
            t.start()
            time.sleep(0.5)  # the second starts while the first is mid-transfer
        for t in threads:
            t.join(60)
    finally:
        virtual_device.arm(Faults())
        other.close()
    assert errors == []
    assert not [r.getMessage() for r in caplog.records if "link broken" in r.getMessage()]
    assert virtual_device.host_path(remote).read_bytes() == local.read_bytes()
    assert not [p for p in virtual_device.host_path(REMOTE_DIR).iterdir() if p.name.endswith(".part")]


def test_stale_temporaries_of_a_dead_pusher_are_removed(android, virtual_device, tmp_path):
    local = tmp_path / "m.bin"
    local.write_bytes(b"model" * 1000)
    remote = f"{REMOTE_DIR}/m.bin"
    android.push(local, remote)
    folder = virtual_device.host_path(REMOTE_DIR)
    stale, fresh = folder / ".m.bin.EHdead.part", folder / ".m.bin.EHlive.part"
    for path in (stale, fresh):
        path.write_bytes(b"partial")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    local.write_bytes(b"model v2" * 1000)
    android.push(local, remote)
    assert not stale.exists() and fresh.exists()  # a fresh one may be another client's, mid-transfer
