"""Virtual device driven by adb-shell (the library our Android backend uses), with injected faults."""

import os
import time

import pytest
from adb_shell import exceptions as adb_errors
from adb_shell.adb_device import AdbDeviceTcp
from adb_shell.auth.keygen import keygen
from adb_shell.auth.sign_pythonrsa import PythonRSASigner

from harness.testing import Faults
from harness.testing.android.fixtures import virtual_device, virtual_device_factory  # noqa: F401

LINK_ERRORS = (OSError, adb_errors.AdbTimeoutError, adb_errors.TcpTimeoutException, adb_errors.InvalidResponseError,
               adb_errors.AdbConnectionError, adb_errors.InvalidCommandError)  # fmt: skip


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    path = tmp_path_factory.mktemp("key") / "adbkey"
    keygen(str(path))
    return PythonRSASigner.FromRSAKeyPath(str(path))


def _client(device, signer=None, **timeouts):
    client = AdbDeviceTcp("127.0.0.1", device.port, default_transport_timeout_s=timeouts.get("transport_s", 5))
    client.connect(rsa_keys=[signer] if signer else None, auth_timeout_s=timeouts.get("auth_s", 5),
                   read_timeout_s=timeouts.get("read_s", 5))  # fmt: skip
    return client


def test_adb_shell_shell_sync_and_key_auth(virtual_device_factory, signer, tmp_path):  # noqa: F811
    device = virtual_device_factory(auth="keys", keys=[signer.GetPublicKey()])
    client = _client(device, signer)
    assert client.shell("echo $((6*7)); echo err >&2; exit 5") == "42\nerr\n"  # v1: merged, no exit code
    payload = os.urandom(300_000)
    (tmp_path / "model.bin").write_bytes(payload)
    client.push(str(tmp_path / "model.bin"), "/data/local/tmp/model.bin", st_mode=0o100600, mtime=1_600_000_000)
    host_copy = device.host_path("/data/local/tmp/model.bin")
    assert host_copy.read_bytes() == payload
    assert (host_copy.stat().st_mode & 0o777) == 0o600 and int(host_copy.stat().st_mtime) == 1_600_000_000
    mode, size, mtime = client.stat("/data/local/tmp/model.bin")
    assert (size, mtime) == (len(payload), 1_600_000_000)
    names = {entry.filename.decode() for entry in client.list("/data/local/tmp")}
    assert "model.bin" in names
    client.pull("/data/local/tmp/model.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == payload
    assert client.stat("/data/local/tmp/missing") == (0, 0, 0)
    client.close()


def test_sync_refuses_writes_outside_the_sandbox_with_fail(virtual_device, tmp_path):  # noqa: F811
    (tmp_path / "x").write_text("x")
    for remote in ("/etc/edgeharness-planted", "/data/../../etc/edgeharness-planted"):
        client = _client(virtual_device)
        with pytest.raises(adb_errors.PushFailedError, match="Read-only file system"):
            client.push(str(tmp_path / "x"), remote)
        client.close()
    assert not os.path.exists("/etc/edgeharness-planted")


def test_drop_mid_push_leaves_no_partial_file_and_retry_succeeds(virtual_device, tmp_path):  # noqa: F811
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(3_000_000))
    virtual_device.arm(Faults(drop_after_bytes=1_000_000))
    client = _client(virtual_device)
    with pytest.raises(LINK_ERRORS):
        client.push(str(source), "/data/local/tmp/big.bin")
    client.close()
    assert virtual_device.fault_log and virtual_device.fault_log[0].startswith("drop_after_bytes")
    time.sleep(0.2)
    assert not virtual_device.host_path("/data/local/tmp/big.bin").exists()
    retry = _client(virtual_device)  # the fault was one-shot
    retry.push(str(source), "/data/local/tmp/big.bin")
    assert virtual_device.host_path("/data/local/tmp/big.bin").read_bytes() == source.read_bytes()
    retry.close()


def test_drop_at_message(virtual_device):  # noqa: F811
    virtual_device.arm(Faults(drop_at_message=2))  # CNXN is 1, the OPEN for the command is 2
    client = _client(virtual_device)
    with pytest.raises(LINK_ERRORS):
        client.shell("echo never", read_timeout_s=3)
    assert virtual_device.fault_log[0].startswith("drop_at_message")


def test_stall_makes_the_client_time_out_then_device_recovers(virtual_device):  # noqa: F811
    virtual_device.arm(Faults(stall_s=3))
    client = _client(virtual_device, read_s=1, transport_s=1)
    with pytest.raises(LINK_ERRORS):
        client.shell("echo late", read_timeout_s=1, timeout_s=1)
    client.close()
    assert virtual_device.fault_log[0].startswith("stall_s")
    time.sleep(3)
    assert _client(virtual_device).shell("echo fine") == "fine\n"


def test_corrupt_checksum_is_caught_by_the_client(virtual_device):  # noqa: F811
    virtual_device.arm(Faults(corrupt_checksum_at=2))  # 1 is CNXN; the command's output is the first payload after
    client = _client(virtual_device)
    with pytest.raises(adb_errors.InvalidChecksumError):
        client.shell("echo x")
    assert virtual_device.fault_log[0].startswith("corrupt_checksum_at")


def test_reject_auth_fault_refuses_a_key_the_mode_would_accept(virtual_device_factory, signer):  # noqa: F811
    device = virtual_device_factory(auth="any", faults=Faults(reject_auth=True))
    with pytest.raises((adb_errors.DeviceAuthError, *LINK_ERRORS)):
        _client(device, signer, auth_s=1, read_s=1, transport_s=1)
    assert any(entry.startswith("reject_auth") for entry in device.fault_log)
    device.arm(Faults())
    assert _client(device, signer).shell("echo in") == "in\n"


def test_auth_required_without_keys_is_an_auth_error(virtual_device_factory):  # noqa: F811
    device = virtual_device_factory(auth="any")
    with pytest.raises(adb_errors.DeviceAuthError):
        _client(device)


def test_offline_then_back(virtual_device):  # noqa: F811
    client = _client(virtual_device)
    virtual_device.go_offline(1.0)
    assert not virtual_device.is_online()
    with pytest.raises(LINK_ERRORS):
        client.shell("echo gone", read_timeout_s=2)
    with pytest.raises(OSError):
        _client(virtual_device)
    deadline = time.monotonic() + 10
    while not virtual_device.is_online() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _client(virtual_device).shell("echo back") == "back\n"
    assert [e.split(":")[0] for e in virtual_device.fault_log] == ["offline", "online"]


def test_bandwidth_cap_slows_transfers(virtual_device, tmp_path):  # noqa: F811
    source = tmp_path / "one.bin"
    source.write_bytes(os.urandom(500_000))
    virtual_device.arm(Faults(bandwidth_bytes_per_s=1_000_000))
    client = _client(virtual_device)
    started = time.monotonic()
    client.push(str(source), "/data/local/tmp/one.bin")
    elapsed = time.monotonic() - started
    assert elapsed >= 0.4  # a floor set by the cap itself (500 kB at 1 MB/s), not a measured figure
    assert virtual_device.host_path("/data/local/tmp/one.bin").stat().st_size == 500_000


def test_closing_the_link_kills_the_running_command(virtual_device):  # noqa: F811
    client = _client(virtual_device)
    with pytest.raises(LINK_ERRORS):
        client.shell("echo $$ > /data/local/tmp/pid; exec sleep 60", timeout_s=1, read_timeout_s=1)
    pid = int(virtual_device.host_path("/data/local/tmp/pid").read_text())
    client.close()
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}")
