"""The adb-server backend through Debian's real ``adb`` server (private ports) holding virtual devices.

A lab host is a second server started with ``adb -L tcp:PORT nodaemon server`` (loopback only) holding its
own virtual devices; one harness run spans devices on both servers and the host.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.devices import discovery
from harness.devices.adb_server import AdbServerDevice, list_server
from harness.devices.adb_servers import (
    ServerAddress,
    local_server,
    parse_device_id,
    parse_devices,
    parse_server_address,
    state_meaning,
)
from harness.errors import CommandTimeout, ConfigError, DeviceError, DeviceLost, RunInterrupted
from harness.results import RAW_TRUNCATION_MARKER
from harness.testing import VirtualDevice
from harness.testing.android.client import AdbClient, _free_port
from tests.loopback import serve_each

pytest_plugins = ["harness.testing.android.fixtures"]

REPO = Path(__file__).resolve().parent.parent
REMOTE = "/data/local/tmp/edgeharness/srv"


# --- pure parts: ids, addresses, states -----------------------------------------------------


def test_ids_name_the_local_or_a_remote_server():
    plain = parse_device_id("adb-server:R58M123")
    assert (plain.server, plain.serial) == (None, "R58M123")
    local = parse_device_id("adb-server:127.0.0.1:5555")  # a network device's serial has a colon
    assert (local.server, local.serial) == (None, "127.0.0.1:5555")
    remote = parse_device_id("adb-server:lab3:5037/emulator-5554")
    assert (remote.server, remote.serial) == (ServerAddress("lab3", 5037), "emulator-5554")
    v6 = parse_device_id("adb-server:[::1]:5038/10.0.0.7:5555")
    assert (v6.server, v6.serial) == (ServerAddress("::1", 5038), "10.0.0.7:5555")
    for bad, why in [("adb-server:", "no device serial"), ("adb-server:lab3:5037/", "no device serial"),
                     ("adb-server:/X", "no server"), ("adb-server:lab3:99999/X", "port '99999'"),
                     ("adb-server:lab 3:5037/X", "white space"), ("adb-server:la$b:5037/X", "not a host")]:
        with pytest.raises(ValueError, match=why):
            parse_device_id(bad)
        assert why in (discovery.id_problem(bad) or "")


def test_the_local_server_is_found_as_adb_finds_it():
    assert local_server({}) == ServerAddress("127.0.0.1", 5037)
    assert local_server({"ANDROID_ADB_SERVER_PORT": "5099"}) == ServerAddress("127.0.0.1", 5099)
    assert local_server({"ADB_SERVER_SOCKET": "tcp:10.1.2.3:5040", "ANDROID_ADB_SERVER_PORT": "1"}) == \
        ServerAddress("10.1.2.3", 5040)
    assert local_server({"ADB_SERVER_SOCKET": "tcp:5041"}) == ServerAddress("127.0.0.1", 5041)
    for env in ({"ANDROID_ADB_SERVER_PORT": "x"}, {"ADB_SERVER_SOCKET": "localabstract:adb"}):
        with pytest.raises(ValueError):
            local_server(env)
    assert parse_server_address("lab3") == ServerAddress("lab3", 5037)


def test_states_with_spaces_are_kept_and_each_has_a_reason_and_fix():
    listing = ("R58M123\tdevice\nEHV1\tunauthorized\n0123\tno permissions (user in plugdev group; are your udev "
               "rules wrong?); see [http://developer.android.com/tools/device.html]\n10.0.0.7:5555\toffline\n")
    rows = dict(parse_devices(listing))
    assert rows["0123"].startswith("no permissions (user in plugdev group")
    assert state_meaning(rows["R58M123"]).usable
    assert "Allow USB debugging" in state_meaning("unauthorized").hint
    nop = state_meaning(rows["0123"])
    assert not nop.usable and not nop.transient and "udev" in nop.hint
    assert state_meaning("offline").transient and "not list" in state_meaning("").reason


def test_declares_what_the_direct_backend_declares():
    from harness.devices.android import AndroidDevice

    through = AdbServerDevice("adb-server:X", server=ServerAddress("127.0.0.1", 1), serial="X")
    assert through.capabilities() == AndroidDevice("adb:127.0.0.1:1").capabilities()
    assert through.capabilities().shell and through.platform == "android"


def test_inventory_servers_take_an_address_and_bad_ones_are_one_line(tmp_path):
    good = tmp_path / "lab.toml"
    good.write_text('[[servers]]\naddress = "lab3:5037"\n[[servers]]\naddress = "lab3:5037"\n'
                    '[[devices]]\nid = "host"\n', encoding="utf-8")
    found = discovery.read_inventory(good)
    assert found.servers == (ServerAddress("lab3", 5037),) and found.ids == ("host",)
    for body, why in [('[[servers]]\naddress = "lab3:70000"\n', "port '70000'"),
                      ('[[servers]]\nhost = "lab3"\n', "unknown key 'host'"),
                      ("[[servers]]\naddress = 5037\n", "needs address"),
                      ('servers = ["lab3"]\n', "[[servers]] tables")]:
        bad = tmp_path / "bad.toml"
        bad.write_text(body, encoding="utf-8")
        with pytest.raises(ConfigError) as caught:
            discovery.read_inventory(bad)
        assert why in str(caught.value) and "bad.toml:" in str(caught.value) and "\n" not in str(caught.value)


def test_a_dead_server_is_an_error_and_no_server_is_started(tmp_path, monkeypatch):
    """adbutils runs `adb start-server` when it cannot connect; the harness must never start a server."""
    marker = tmp_path / "started"
    fake_adb = tmp_path / "adb"
    fake_adb.write_text(f"#!/bin/sh\ntouch {marker}\n", encoding="utf-8")
    fake_adb.chmod(0o755)
    monkeypatch.setenv("ADBUTILS_ADB_PATH", str(fake_adb))
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    dead = ServerAddress("127.0.0.1", _free_port())
    device = AdbServerDevice("adb-server:X", server=dead, serial="X", reconnect_window_s=0.5)
    with pytest.raises(DeviceLost, match=f"adb server {dead} does not answer") as caught:
        device.shell("true")
    assert "nodaemon server" in str(caught.value)
    assert list_server(dead).error is not None
    assert not marker.exists()


# --- real servers -----------------------------------------------------------------------------


class Server:
    """Debian's adb as a server in the foreground (``adb -L tcp:PORT nodaemon server``), with its own HOME and key."""

    def __init__(self, home: Path) -> None:
        self.client = AdbClient(home)  # picks a free port; runs `adb` against it
        self.port = self.client.server_port
        self.address = ServerAddress("127.0.0.1", self.port)
        self.restart()

    def restart(self) -> None:
        """Start the server process (again, on the same port)."""
        self.process = subprocess.Popen([self.client.adb, "-L", f"tcp:{self.port}", "nodaemon", "server"],
                                        env=self.client.env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while list_server(self.address).error is not None:
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"adb server on port {self.port} did not start")
            time.sleep(0.1)

    def attach(self, device: VirtualDevice, want: str = "device") -> str:
        """``adb -P PORT connect`` the virtual device; the state the server reached."""
        return self.client.connect(device.address, want=want, timeout_s=15)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[[], Server]]:
    if not shutil.which("adb"):
        if os.environ.get("CI"):
            pytest.fail("adb is not installed (apt-get install adb)")
        pytest.skip("adb is not installed (apt-get install adb)")
    started: list[Server] = []

    def factory() -> Server:
        server = Server(tmp_path / f"adb-home{len(started)}")
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def server(server_factory: Callable[[], Server]) -> Server:
    return server_factory()


@pytest.fixture
def attached(server: Server, virtual_device: VirtualDevice) -> AdbServerDevice:
    assert server.attach(virtual_device) == "device"
    device = AdbServerDevice(f"adb-server:{virtual_device.address}", server=server.address,
                             serial=virtual_device.address, reconnect_window_s=1.5)
    yield device
    device.close()


@pytest.mark.slow
def test_shell_gives_the_device_exit_code_and_merged_output(attached):
    result = attached.shell("echo hi; echo err >&2; exit 3")
    assert (result.output, result.exit_code) == ("hi\nerr\n", 3)
    assert attached.shell("printf abc").output == "abc"
    assert attached.shell("echo ünïcødé; false").output == "ünïcødé\n"
    assert attached.shell("false").exit_code == 1
    assert attached.shell("cat").output == ""  # stdin is closed: a command reading it ends
    # A program printing a look-alike of the pid line cannot change the exit code (shell v2 carries it).
    assert attached.shell("echo EH0000:P:1; exit 5").exit_code == 5
    attached._v2 = False  # a device without shell v2 (before Android 7): the sentinel carries the code
    result = attached.shell("echo hi; echo err >&2; exit 3")
    assert (result.output, result.exit_code) == ("hi\nerr\n", 3)


@pytest.mark.slow
def test_output_is_bounded_whatever_the_command_prints(attached):
    result = attached.shell("head -c 40000000 /dev/zero | tr '\\0' x; echo; echo LAST", timeout_s=120)
    assert result.exit_code == 0 and result.output.endswith("LAST\n")
    assert RAW_TRUNCATION_MARKER.split("{")[0] in result.output
    assert len(result.output) < 17 * 1024 * 1024 + 64 * 1024 + 200


@pytest.mark.slow
def test_push_is_atomic_cached_by_sha256_and_pull_is_byte_identical(attached, virtual_device, tmp_path):
    payload = os.urandom(3 * 1024 * 1024 + 17)
    local = tmp_path / "model.tflite"
    local.write_bytes(payload)
    remote = f"{REMOTE}/model.tflite"
    assert attached.push(local, remote) is True
    on_device = virtual_device.host_path(remote)
    assert on_device.read_bytes() == payload and oct(on_device.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in on_device.parent.iterdir() if p.name.endswith(".part")] == []  # temp renamed away
    assert attached.push(local, remote) is False  # same sha256 on the device: skipped
    assert attached.push(local, remote, executable=True) is False
    assert oct(on_device.stat().st_mode & 0o777) == "0o755"
    folder = tmp_path / "pulled"
    folder.mkdir()
    back = attached.pull(remote, folder)
    assert back == folder / "model.tflite" and back.read_bytes() == payload
    assert attached.pull(remote, tmp_path / "back.bin").read_bytes() == payload
    with pytest.raises(DeviceError, match="refused"):
        attached.pull(f"{REMOTE}/absent", tmp_path / "absent")
    assert not (tmp_path / "absent").exists()


@pytest.mark.slow
def test_timeout_kills_the_remote_process_tree(attached):
    # The child leaves the shell's process group (setsid), so only the harness's kill reaches it.
    with pytest.raises(CommandTimeout, match="timed out after 1 s; remote process \\d+ killed") as caught:
        attached.shell("echo started; setsid sleep 4711 & sleep 4712", timeout_s=1)
    assert "started" in (caught.value.output or "")
    time.sleep(0.3)
    assert attached.shell("pgrep -f 'sleep 471[12]' || echo none").output == "none\n"


@pytest.mark.slow
def test_a_cancelled_run_stops_a_command_within_a_second(attached):
    attached.cancel = threading.Event()
    threading.Timer(0.5, attached.cancel.set).start()
    start = time.monotonic()
    with pytest.raises(RunInterrupted):
        attached.shell("sleep 4713", timeout_s=60)
    assert time.monotonic() - start < 2.0
    attached.cancel = None
    assert attached.shell("pgrep -f 'sleep 471[3]' || echo none").output == "none\n"


@pytest.mark.slow
def test_offline_device_is_lost_with_the_server_state_and_a_hint(attached, virtual_device):
    assert attached.shell("echo up").output == "up\n"
    virtual_device.go_offline(60)
    start = time.monotonic()
    with pytest.raises(DeviceLost) as caught:
        attached.shell("echo down")
    message = str(caught.value)
    assert f"reports {virtual_device.address} offline" in message and "(hint: " in message
    assert 1.0 < time.monotonic() - start < 10  # waited (wait-for-device), within the window


@pytest.mark.slow
def test_a_device_the_server_forgets_is_lost_as_not_listed(server, attached, virtual_device):
    assert attached.shell("true").exit_code == 0
    server.client.run("disconnect", virtual_device.address)
    with pytest.raises(DeviceLost, match="not listed: the adb server does not list the device"):
        attached.shell("true")


@pytest.mark.slow
def test_a_device_the_server_gets_back_is_waited_for_and_the_command_runs(server, virtual_device):
    """Gone from the server's list, then attached again (as after a replug): the command waits, then runs."""
    assert server.attach(virtual_device) == "device"
    device = AdbServerDevice("adb-server:x", server=server.address, serial=virtual_device.address,
                             reconnect_window_s=20)
    assert device.shell("echo before").output == "before\n"
    server.client.run("disconnect", virtual_device.address)
    threading.Timer(1.5, server.attach, args=(virtual_device,)).start()
    start = time.monotonic()
    assert device.shell("echo back").output == "back\n"
    assert 1.0 < time.monotonic() - start < 20


@pytest.mark.slow
def test_a_server_that_restarts_is_waited_for(server_factory, virtual_device):
    server = server_factory()
    assert server.attach(virtual_device) == "device"
    device = AdbServerDevice("adb-server:x", server=server.address, serial=virtual_device.address,
                             reconnect_window_s=20)
    assert device.shell("true").exit_code == 0
    server.stop()

    def come_back() -> None:
        server.restart()
        server.attach(virtual_device)

    threading.Timer(1.0, come_back).start()
    assert device.shell("echo back").output == "back\n"


@pytest.mark.slow
def test_a_device_that_comes_back_is_waited_for_and_the_command_runs(server, virtual_device):
    assert server.attach(virtual_device) == "device"
    device = AdbServerDevice("adb-server:x", server=server.address, serial=virtual_device.address,
                             reconnect_window_s=20)
    virtual_device.go_offline(1.0)
    time.sleep(0.2)
    assert device.shell("echo back").output == "back\n"


@pytest.mark.slow
def test_unauthorized_is_listed_with_the_fix_and_lost_with_its_state(server, virtual_device_factory, tmp_path):
    good = virtual_device_factory()
    refusing = virtual_device_factory(auth="reject")
    assert server.attach(good) == "device"
    assert server.attach(refusing, want="unauthorized") == "unauthorized"
    env = {**os.environ, "ANDROID_ADB_SERVER_PORT": str(server.port), "HARNESS_ADB_RECONNECT_S": "0.5",
           "HARNESS_CACHE": str(tmp_path / "cache")}
    env.pop("ADB_SERVER_SOCKET", None)
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "devices"], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith(f"adb-server:{refusing.address}"))
    assert "unauthorized" in lines[row].split()
    assert "has not accepted the adb server's key" in lines[row + 1] and "Allow USB debugging" in lines[row + 1]
    ok_row = next(line for line in lines if line.startswith(f"adb-server:{good.address}"))
    assert "device" in ok_row.split() and "profile=virtual-android" in ok_row
    device = AdbServerDevice("adb-server:r", server=server.address, serial=refusing.address, reconnect_window_s=0.5)
    with pytest.raises(DeviceLost, match=f"reports {refusing.address} unauthorized") as caught:
        device.shell("true")
    assert "Allow USB debugging" in str(caught.value)


@pytest.mark.slow
def test_a_bare_serial_goes_through_the_server_that_lists_it(server, virtual_device, monkeypatch):
    monkeypatch.delenv("ADB_SERVER_SOCKET", raising=False)
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(server.port))
    assert type(discovery.open_device(virtual_device.address)).__name__ == "AndroidDevice"  # not listed yet
    assert server.attach(virtual_device) == "device"
    through = discovery.open_device(virtual_device.address)
    assert isinstance(through, AdbServerDevice) and through.server == server.address
    assert through.shell("echo via-server").output == "via-server\n"
    explicit = discovery.open_device(f"adb-server:{virtual_device.address}")
    assert isinstance(explicit, AdbServerDevice) and explicit.serial == virtual_device.address


@pytest.mark.slow
def test_one_run_spans_two_servers_and_the_host(server_factory, virtual_device_factory, zoo_models, tmp_path):
    local, lab = server_factory(), server_factory()
    near, far = virtual_device_factory(), virtual_device_factory()
    assert local.attach(near) == "device" and lab.attach(far) == "device"
    inventory = tmp_path / "lab.toml"
    inventory.write_text(f'[[devices]]\nid = "host"\n[[devices]]\nid = "adb-server:{near.address}"\n'
                         f'[[servers]]\naddress = "127.0.0.1:{lab.port}"\n', encoding="utf-8")
    suite = tmp_path / "lab-suite.toml"
    suite.write_text('[suite]\nname = "lab"\ndelegates = ["cpu"]\nthreads = [1]\nwarmup_runs = 1\n'
                     'measured_runs = 3\nrepetitions = 1\ntimeout_s = 120\n\n'
                     '[[models]]\nzoo = "face_detection_front"\n',
                     encoding="utf-8")
    out = tmp_path / "out"
    env = {**os.environ, "ANDROID_ADB_SERVER_PORT": str(local.port), "PYTHONUNBUFFERED": "1"}
    env.pop("ADB_SERVER_SOCKET", None)
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(suite), "--inventory", str(inventory),
                           "--out", str(out), "--strict"], capture_output=True, text=True, timeout=400, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line) for line in next(out.glob("lab-*.jsonl")).read_text().splitlines()]
    far_id = f"adb-server:127.0.0.1:{lab.port}/{far.address}"
    assert sorted(r["device"]["id"] for r in rows) == sorted(["host", f"adb-server:{near.address}", far_id])
    assert {r["status"] for r in rows} == {"ok"}
    for row in rows:
        samples = row["latency"]["repetitions"][0]["samples_us"]
        # a device whose power sampler needs longer repetitions gets its runs extended (min_duration_s)
        assert len(samples) == (row["case"].get("actual_runs") or 3) and min(samples) > 0
        assert row["memory"]["peak_rss_mb"] > 0  # the samplers read the devices through their servers too
    html = (out / "lab.html").read_text(encoding="utf-8")
    assert far_id in html and f"adb-server:{near.address}" in html
    assert far.host_path("/data/local/tmp/edgeharness").exists()  # staged on the lab host's device


def test_an_inventory_server_that_does_not_answer_is_listed_with_the_fix(monkeypatch):
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(_free_port()))  # no local server either: skipped quietly
    monkeypatch.delenv("ADB_SERVER_SOCKET", raising=False)
    monkeypatch.setenv("USBMUXD_SOCKET_ADDRESS", "/nonexistent/usbmuxd.sock")
    for name in ("HARNESS_ADB_DEVICES", "HARNESS_INVENTORY"):
        monkeypatch.delenv(name, raising=False)
    dead = ServerAddress("127.0.0.1", _free_port())
    entries = discovery.list_devices(servers=[dead])
    assert [e.id for e in entries] == ["host", f"adb-server:{dead}/*"]
    lab = entries[1]
    assert not lab.reachable and lab.state == "no server" and "nodaemon server" in lab.detail
    with pytest.raises(DeviceError, match=f"adb server {dead}: .*does not answer"):
        discovery.server_device_ids([dead])


class _HostileServer:
    """A fake adb server whose one device answers a pull with a sync DATA message announcing 2 GiB."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = ServerAddress("127.0.0.1", self.sock.getsockname()[1])
        serve_each(self.sock, self._one)

    @staticmethod
    def _one(conn) -> None:  # type: ignore[no-untyped-def]
        def block(text: bytes) -> bytes:
            return b"OKAY" + f"{len(text):04x}".encode() + text

        with conn:
            while True:
                size = conn.recv(4)
                if len(size) < 4:
                    return
                command = conn.recv(int(size, 16)).decode()
                if command == "host:version":
                    conn.sendall(block(b"0029"))
                elif command == "host:devices":
                    conn.sendall(block(b"EVIL\tdevice\n"))
                elif command.startswith("host:tport:serial:"):
                    conn.sendall(b"OKAY" + bytes(8))
                    continue
                elif command == "sync:":
                    conn.sendall(b"OKAY")
                    conn.recv(4096)  # RECV + length + path
                    conn.sendall(b"DATA" + (0x7FFFFFFF).to_bytes(4, "little") + b"x" * 1024)
                    time.sleep(1)
                return

    def close(self) -> None:
        self.sock.close()


def test_a_device_announcing_a_huge_sync_message_is_refused_not_allocated(tmp_path):
    hostile = _HostileServer()
    try:
        device = AdbServerDevice("adb-server:EVIL", server=hostile.address, serial="EVIL", reconnect_window_s=0.5)
        with pytest.raises(DeviceError, match="announced a 2147483647-byte message"):
            device.pull("/data/local/tmp/x", tmp_path / "x")
        assert list(tmp_path.iterdir()) == []  # nothing half-written left behind
    finally:
        hostile.close()
