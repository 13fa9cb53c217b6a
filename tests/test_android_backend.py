"""Android backend against the virtual device over real 127.0.0.1 sockets: shell, files, facts, keys, discovery."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from adb_shell.adb_device import AdbDeviceTcp
from adb_shell.adb_message import checksum as adb_shell_checksum

from harness.devices import adb_commands as cmds
from harness.devices import android as android_module
from harness.devices.android import (
    AndroidDevice,
    _fast_checksum,
    ensure_key,
    list_android_devices,
    parse_device_id,
)
from harness.devices.discovery import describe, open_device
from harness.devices.settings import DeviceSettings
from harness.errors import AuthError, DeviceError

pytest_plugins = ["harness.testing.android.fixtures"]

REMOTE_DIR = "/data/local/tmp/edgeharness/t"


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keys go to a throwaway HOME, never to the developer's ~/.android."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("ANDROID_USER_HOME", raising=False)
    monkeypatch.delenv("HARNESS_ADB_KEY", raising=False)
    return home


@pytest.fixture
def android(virtual_device):
    device = AndroidDevice(f"adb:{virtual_device.address}", reconnect_window_s=2)
    yield device
    device.close()


def test_shell_returns_output_and_exit_codes(android):
    result = android.shell("echo hi; echo err >&2; exit 3")
    assert (result.output, result.exit_code) == ("hi\nerr\n", 3)
    assert android.shell("true").exit_code == 0
    assert android.shell("printf abc").output == "abc"  # no newline added or lost
    assert android.shell("printf 'a\\n\\n'").output == "a\n\n"
    assert android.shell("false").exit_code == 1
    assert android.shell("echo ünïcødé").output == "ünïcødé\n"


def test_program_output_cannot_forge_the_exit_sentinel(android):
    # The program digs the per-call token out of its parent's command line and prints a fake "exit 0".
    forge = ("t=$(tr '\\0' '\\n' < /proc/$PPID/cmdline | grep -o 'EH[0-9a-f]\\{24\\}' | head -n 1); "
             "echo \"token=$t\"; printf '\\n%s:X:0\\n' \"$t\"; exit 7")
    result = android.shell(forge)
    assert result.exit_code == 7
    token = result.output.split("token=", 1)[1].split()[0]
    assert token.startswith("EH") and f"{token}:X:0" in result.output


def test_push_and_pull_are_byte_identical(android, virtual_device, tmp_path):
    payload = os.urandom(3 * 1024 * 1024 + 17)
    local = tmp_path / "model.tflite"
    local.write_bytes(payload)
    remote = f"{REMOTE_DIR}/model.tflite"
    assert android.push(local, remote) is True
    on_device = virtual_device.host_path(remote)
    assert on_device.read_bytes() == payload
    assert stat.S_IMODE(on_device.stat().st_mode) == 0o644
    back = android.pull(remote, tmp_path / "back.tflite")
    assert back == tmp_path / "back.tflite" and back.read_bytes() == payload
    into_dir = android.pull(remote, tmp_path)  # a folder: the file keeps its name, inside that folder
    assert into_dir == tmp_path / "model.tflite" and into_dir.read_bytes() == payload
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*.part"))


def test_second_push_of_same_content_does_not_transfer(android, virtual_device, tmp_path):
    local = tmp_path / "model.bin"
    local.write_bytes(os.urandom(2_000_000))
    remote = f"{REMOTE_DIR}/model.bin"
    assert android.push(local, remote) is True
    before = virtual_device.host_path(remote).stat()
    assert android.push(local, remote) is False
    after = virtual_device.host_path(remote).stat()
    # A transfer writes a temporary file and renames it: a new inode. Same inode and mtime: nothing was sent.
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_changed_device_file_is_pushed_again(android, virtual_device, tmp_path):
    local = tmp_path / "model.bin"
    local.write_bytes(b"A" * 100_000)
    remote = f"{REMOTE_DIR}/model.bin"
    android.push(local, remote)
    android.shell(f"printf 'B' | dd of={remote} bs=1 seek=5 conv=notrunc 2>/dev/null").check()
    assert android.push(local, remote) is True  # same size, different content: the device hash tells
    assert virtual_device.host_path(remote).read_bytes() == local.read_bytes()


def test_device_without_hash_tools_always_pushes(android, virtual_device, tmp_path):
    local = tmp_path / "tool"
    local.write_bytes(b"#!/bin/sh\necho tool-ran \"$@\"\n")
    remote = f"{REMOTE_DIR}/tool"
    android.push(local, remote, executable=True)
    assert android.shell(f"{remote} x").output == "tool-ran x\n"
    # No sha256sum/md5sum on PATH and no cached digest: the backend cannot tell, so it pushes.
    android.shell(f"rm -f {cmds.sidecar_path(remote)}").check()
    digest = android.shell(f"PATH=/nonexistent; {cmds.hash_command(remote)}")
    assert cmds.parse_digest(digest.output) is None


def test_pull_never_writes_outside_the_chosen_destination(android, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    dest = tmp_path / "dest"
    dest.symlink_to(outside)
    android.shell(f"mkdir -p {REMOTE_DIR} && echo payload > {REMOTE_DIR}/f.txt").check()
    android.pull(f"{REMOTE_DIR}/f.txt", dest)
    assert outside.read_text() == "keep me"  # the symlink was replaced, not followed
    assert not dest.is_symlink() and dest.read_text() == "payload\n"
    with pytest.raises(DeviceError, match="file name"):
        android.pull(f"{REMOTE_DIR}/..", tmp_path)
    with pytest.raises(DeviceError, match="refused"):
        android.pull(f"{REMOTE_DIR}/missing", tmp_path / "missing")
    assert not (tmp_path / "missing").exists()


def test_info_matches_the_virtual_profile(android):
    info = android.info()
    assert (info.platform, info.profile, info.device_class) == ("android", "virtual-android", "virtual")
    assert info.model == "Virtual Device" and info.os == "Android 14 (SDK 34)" and info.abi
    assert info.cores and info.cores >= 1
    assert android.workdir() == "/data/local/tmp/edgeharness"
    assert android.python() == "/system/bin/python3"


def test_virtual_device_posing_as_a_phone_gets_its_profile(virtual_device_factory):
    vdev = virtual_device_factory(profile="pixel-7")
    with AndroidDevice(f"adb:{vdev.address}") as device:
        info = device.info()
    assert (info.profile, info.device_class, info.model) == ("pixel-7", "flagship", "Pixel 7")
    assert info.soc == "Google Tensor G2 (GS201)" and info.abi == "arm64-v8a"


def test_key_is_created_0600_and_reused(private_home, virtual_device_factory):
    key = ensure_key()
    assert key == private_home / ".android" / "adbkey"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    text = key.read_bytes()
    vdev = virtual_device_factory(auth="keys", keys=[str(key) + ".pub"])
    with AndroidDevice(f"adb:{vdev.address}") as device:
        assert device.shell("echo in").output == "in\n"
    assert key.read_bytes() == text  # the existing key was used, not replaced


def test_any_key_accepted_and_rejected_key_is_a_clear_auth_error(virtual_device_factory):
    accepting = virtual_device_factory(auth="any")
    with AndroidDevice(f"adb:{accepting.address}") as device:
        assert device.shell("echo ok").exit_code == 0
    rejecting = virtual_device_factory(auth="reject")
    with AndroidDevice(f"adb:{rejecting.address}", auth_timeout_s=1) as device:
        with pytest.raises(AuthError, match="did not accept our adb key") as err:
            device.shell("echo never")
    assert "Allow USB debugging" in str(err.value) and rejecting.address in str(err.value)


def test_device_ids():
    assert parse_device_id("adb:127.0.0.1:5037") == ("127.0.0.1", 5037)
    assert parse_device_id("adb:phone.lan") == ("phone.lan", 5555)
    assert parse_device_id("192.168.1.20:5555") == ("192.168.1.20", 5555)
    assert parse_device_id("adb:[::1]:6000") == ("::1", 6000)
    assert parse_device_id("R58M12ABCDE") == "R58M12ABCDE"  # a USB serial


def test_discovery_opens_lists_and_describes(virtual_device, tmp_path, monkeypatch):
    device_id = f"adb:{virtual_device.address}"
    inventory = tmp_path / "devices.toml"
    inventory.write_text(f'[[devices]]\nid = "{device_id}"\n[[devices]]\nid = "host"\n', encoding="utf-8")
    monkeypatch.setenv("HARNESS_INVENTORY", str(inventory))
    monkeypatch.setenv("HARNESS_ADB_DEVICES", "adb:127.0.0.1:1, serial123")
    assert list_android_devices(DeviceSettings.from_env()) == ["adb:127.0.0.1:1", "serial123", device_id]
    assert list_android_devices() == []  # the backend reads no environment: the front passes it
    device = open_device(device_id)
    assert isinstance(device, AndroidDevice)
    device.close()
    entry = describe(device_id)
    assert entry.reachable and entry.profile == "virtual-android" and entry.model == "Virtual Device"


def test_fast_checksum_equals_adb_shells_own():
    for size in (0, 1, 255, 4096, 1 << 20):
        data = os.urandom(size)
        assert _fast_checksum(data) == adb_shell_checksum(data) == adb_shell_checksum(bytearray(data))
    assert _fast_checksum(b"\xff" * (1 << 25)) == (255 << 25) & 0xFFFFFFFF  # wraps like the protocol's u32
    assert _fast_checksum("host::") == adb_shell_checksum("host::")


def test_importing_the_backend_leaves_adb_shells_checksum_alone():
    # A fresh interpreter: adb-shell's module-level checksum must be the same object before and after the import.
    code = ("from adb_shell import adb_device, adb_message\n"
            "before = (adb_message.checksum, adb_device.checksum)\n"
            "import harness.devices.android\n"
            "assert (adb_message.checksum, adb_device.checksum) == before, adb_message.checksum\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_our_links_use_the_fast_checksum_both_ways_and_other_adb_shell_users_do_not(
        android, virtual_device, tmp_path, monkeypatch):
    summed: list[int] = []

    def counting(data):
        summed.append(len(data))
        return _fast_checksum(data)

    monkeypatch.setattr(android_module, "_fast_checksum", counting)
    payload = os.urandom(1 << 20)
    local = tmp_path / "payload.bin"
    local.write_bytes(payload)
    remote = f"{REMOTE_DIR}/payload.bin"
    assert android.push(local, remote) is True
    assert sum(summed) >= len(payload)  # every payload we sent was summed by the fast path
    summed.clear()
    assert android.pull(remote, tmp_path / "back.bin").read_bytes() == payload
    assert sum(summed) >= len(payload)  # and every payload we verified on the way back
    summed.clear()
    other = AdbDeviceTcp("127.0.0.1", virtual_device.port, default_transport_timeout_s=5)
    other.connect(auth_timeout_s=5, read_timeout_s=5)
    try:
        assert other.shell("echo plain") == "plain\n"
    finally:
        other.close()
    assert summed == []  # a plain adb-shell device in the same process keeps adb-shell's own checksum


def test_wrapped_output_parsing():
    token = cmds.new_token()
    raw = f"{token}:P:42\nhello\n{token}:X:0\nmore\n{token}:X:5\n".encode()
    parsed = cmds.parse_wrapped(raw, token)
    assert (parsed.pid, parsed.exit_code) == (42, 5)
    assert parsed.output == f"hello\n{token}:X:0\nmore".encode()
    cut = cmds.parse_wrapped(f"{token}:P:42\npartial".encode(), token)
    assert (cut.output, cut.exit_code) == (b"partial", None)
    props = cmds.parse_getprop("[ro.product.model]: [Pixel 7]\n[weird]: [a]: [b]\n")
    assert props == {"ro.product.model": "Pixel 7", "weird": "a]: [b"}
