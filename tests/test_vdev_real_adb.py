"""Virtual device against the real AOSP adb client (Debian package ``adb``): if they disagree, the device is wrong."""

import hashlib
import os
import time

import pytest

from harness.testing import VirtualDevice
from harness.testing.android.fixtures import adb_client, virtual_device, virtual_device_factory  # noqa: F401

TWENTY_MB = 20 * 1024 * 1024


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def connected(adb_client, virtual_device):  # noqa: F811
    assert adb_client.connect(virtual_device.address) == "device"
    yield virtual_device
    adb_client.run("disconnect", virtual_device.address)


def test_devices_lists_the_banner_identity(adb_client, connected):  # noqa: F811
    out = adb_client.run("devices", "-l").stdout.decode()
    line = next(x for x in out.splitlines() if x.startswith(connected.address))
    assert "device" in line.split() and "model:Virtual_Device" in line and "product:edgeharness_virtual" in line


@pytest.mark.parametrize("code", [0, 1, 3, 42, 255])
def test_shell_returns_the_remote_exit_code_and_separates_stderr(adb_client, connected, code):  # noqa: F811
    done = adb_client.run("shell", f"echo out; echo err >&2; exit {code}", serial=connected.address)
    assert done.returncode == code
    assert done.stdout == b"out\n" and done.stderr == b"err\n"


def test_shell_sees_device_paths_and_getprop(adb_client, connected):  # noqa: F811
    marker = connected.host_path("/data/local/tmp/marker.txt")
    marker.write_text("from the sandbox\n")
    done = adb_client.run(
        "shell", "cat /data/local/tmp/marker.txt; getprop ro.build.version.sdk", serial=connected.address
    )
    assert done.stdout.decode().splitlines() == ["from the sandbox", "34"]
    connected.set_property("ro.product.model", "Pixel 7")
    assert adb_client.run("shell", "getprop ro.product.model", serial=connected.address).stdout == b"Pixel 7\n"
    listing = adb_client.run("shell", "ls /sys/class/power_supply/battery /sys/class/thermal", serial=connected.address)
    assert b"capacity" in listing.stdout and b"thermal_zone0" in listing.stdout


def test_shell_writes_land_in_the_sandbox_not_on_the_host(adb_client, connected):  # noqa: F811
    done = adb_client.run("shell", "echo hi > /data/local/tmp/written && echo ok", serial=connected.address)
    assert done.stdout == b"ok\n"
    assert connected.host_path("/data/local/tmp/written").read_text() == "hi\n"
    assert not os.path.exists("/data/local/tmp/written")


def test_push_and_pull_20mb_byte_identical_then_ls(adb_client, connected, tmp_path):  # noqa: F811
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(TWENTY_MB))
    adb_client.run("shell", "mkdir /data/local/tmp/models", serial=connected.address)
    pushed = adb_client.run("push", str(source), "/data/local/tmp/models/", serial=connected.address)
    assert pushed.returncode == 0, pushed.stderr
    assert _sha256(connected.host_path("/data/local/tmp/models/big.bin")) == _sha256(source)
    back = tmp_path / "back.bin"
    pulled = adb_client.run("pull", "/data/local/tmp/models/big.bin", str(back), serial=connected.address)
    assert pulled.returncode == 0, pulled.stderr
    assert _sha256(back) == _sha256(source)
    listing = adb_client.run("shell", "ls -l /data/local/tmp/models", serial=connected.address).stdout.decode()
    assert "big.bin" in listing and str(TWENTY_MB) in listing
    sums = adb_client.run("shell", "sha256sum /data/local/tmp/models/big.bin", serial=connected.address)
    assert sums.stdout.decode().split()[0] == _sha256(source)


def test_push_keeps_mode_and_creates_parents(adb_client, connected, tmp_path):  # noqa: F811
    tool = tmp_path / "tool.sh"
    tool.write_text("#!/bin/sh\necho tool ran\n")
    tool.chmod(0o755)
    assert adb_client.run("push", str(tool), "/data/local/tmp/a/b/c/tool.sh", serial=connected.address).returncode == 0
    assert adb_client.run("shell", "/data/local/tmp/a/b/c/tool.sh", serial=connected.address).stdout == b"tool ran\n"


@pytest.mark.parametrize("path", ["/etc/passwd", "/data/../etc/passwd", "/data/local/tmp/escape/passwd"])
def test_reads_see_the_shell_view_and_writes_stay_in_the_sandbox(adb_client, connected, tmp_path, path):  # noqa: F811
    """sync reads what ``adb shell cat`` reads; a write outside /data and /sdcard is a read-only file system."""
    os.symlink("/etc", connected.host_path("/data/local/tmp") / "escape")
    target = tmp_path / "pulled"
    pulled = adb_client.run("pull", path, str(target), serial=connected.address)
    assert pulled.returncode == 0, pulled.stderr
    shown = adb_client.run("shell", f"cat {path}", serial=connected.address).stdout
    assert target.read_bytes() == shown == open("/etc/passwd", "rb").read()
    victim = tmp_path / "victim"
    victim.write_text("x")
    for remote in ("/data/local/tmp/escape/edgeharness-victim", "/etc/edgeharness-victim", "/system/victim"):
        pushed = adb_client.run("push", str(victim), remote, serial=connected.address)
        assert pushed.returncode != 0 and b"Read-only file system" in pushed.stdout + pushed.stderr, remote
    assert not os.path.exists("/etc/edgeharness-victim")
    assert not connected.host_path("/system/victim").exists()


def test_exec_out_gives_raw_bytes(adb_client, connected):  # noqa: F811
    done = adb_client.run("exec-out", "printf '\\000\\001\\377'", serial=connected.address)
    assert done.stdout == b"\x00\x01\xff"


def test_reboot_goes_offline_and_comes_back(adb_client, virtual_device_factory):  # noqa: F811
    device = virtual_device_factory(reboot_s=1.0)
    assert adb_client.connect(device.address) == "device"
    adb_client.run("reboot", serial=device.address, timeout_s=20)
    deadline = time.monotonic() + 10
    while device.is_online() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(entry.startswith("offline") for entry in device.fault_log)
    assert adb_client.connect(device.address, timeout_s=20) == "device"
    assert device.is_online()
    assert adb_client.run("shell", "echo back", serial=device.address).stdout == b"back\n"
    adb_client.run("disconnect", device.address)


def test_auth_keys_mode_accepts_the_listed_key_only(adb_client, virtual_device_factory, tmp_path):  # noqa: F811
    accepted = virtual_device_factory(auth="keys", keys=[adb_client.public_key_path])
    assert adb_client.connect(accepted.address) == "device"
    adb_client.run("disconnect", accepted.address)

    from adb_shell.auth.keygen import keygen

    keygen(str(tmp_path / "stranger"))
    refusing = virtual_device_factory(auth="keys", keys=[tmp_path / "stranger.pub"])
    assert adb_client.connect(refusing.address, timeout_s=3) == "unauthorized"
    adb_client.run("disconnect", refusing.address)


def test_auth_any_accepts_an_offered_key_then_signatures(adb_client, virtual_device_factory):  # noqa: F811
    device = virtual_device_factory(auth="any")
    assert adb_client.connect(device.address) == "device"
    assert len(device.policy.accepted) == 1
    adb_client.run("disconnect", device.address)
    assert adb_client.connect(device.address) == "device"  # second time the signature alone is enough
    adb_client.run("disconnect", device.address)


def test_auth_reject_leaves_the_host_unauthorized(adb_client, virtual_device_factory):  # noqa: F811
    device = virtual_device_factory(auth="reject")
    assert adb_client.connect(device.address, timeout_s=3) == "unauthorized"
    assert any(entry.startswith("reject_auth") for entry in device.fault_log)
    adb_client.run("disconnect", device.address)


def test_two_devices_are_independent(adb_client, virtual_device_factory):  # noqa: F811
    first, second = virtual_device_factory(), virtual_device_factory(profile="virtual")
    assert isinstance(first, VirtualDevice) and first.serial != second.serial
    for device in (first, second):
        assert adb_client.connect(device.address) == "device"
    adb_client.run("shell", "touch /data/local/tmp/only-first", serial=first.address)
    assert first.host_path("/data/local/tmp/only-first").exists()
    assert not second.host_path("/data/local/tmp/only-first").exists()
    for device in (first, second):
        adb_client.run("disconnect", device.address)


def test_directory_push_and_pull_round_trip(adb_client, connected, tmp_path):  # noqa: F811
    tree = tmp_path / "tree"
    (tree / "sub dir").mkdir(parents=True)
    files = {"a.txt": b"alpha\n", "sub dir/b 'q' $(x).bin": os.urandom(70_000), "sub dir/é.txt": b"\xc3\xa9\n"}
    for name, data in files.items():
        (tree / name).write_bytes(data)
    pushed = adb_client.run("push", str(tree), "/data/local/tmp/", serial=connected.address)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    back = tmp_path / "back"
    back.mkdir()
    pulled = adb_client.run("pull", "/data/local/tmp/tree", str(back), serial=connected.address)
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    for name, data in files.items():
        assert (back / "tree" / name).read_bytes() == data
