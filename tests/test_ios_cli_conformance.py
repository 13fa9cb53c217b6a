"""The unmodified ``pymobiledevice3`` CLI against the fake iPhone: exit 0 and the output a phone gives.

Each command runs as its own process, exactly as a user types it, with ``USBMUXD_SOCKET_ADDRESS``
pointing at the fake (over its UNIX socket, or over loopback TCP like a farm host's remote usbmuxd)
and ``HOME`` in a temporary folder, so pair records never touch the real home.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

pytest.importorskip("pymobiledevice3")

from harness.testing.ios import BENCH_BUNDLE_ID, FakeIPhone  # noqa: E402

pytestmark = pytest.mark.slow

CLI = shutil.which("pymobiledevice3", path=str(Path(sys.executable).parent)) or shutil.which("pymobiledevice3")
#: syslogd's text line: "Nov 29 15:36:43 DeviceName process[pid] <Level>: message"
SYSLOG_LINE = re.compile(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d .+? \S+\[\d+\] <\w+>: .*$")


@pytest.fixture(scope="module")
def phone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeIPhone]:
    if CLI is None:
        pytest.skip("the pymobiledevice3 command is not installed")
    with FakeIPhone(installed={BENCH_BUNDLE_ID: "1.0"}, usbmux_tcp_port=0,
                    root=tmp_path_factory.mktemp("phone")) as fake:
        yield fake


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


def cli(phone: FakeIPhone, home: Path, *args: str, tcp: bool = False, timeout: float = 90,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``pymobiledevice3 ARGS`` against the fake; fail with its stderr on a non-zero exit."""
    address = phone.usbmux_tcp_address if tcp else phone.usbmux_address
    env = {**os.environ, "USBMUXD_SOCKET_ADDRESS": str(address), "HOME": str(home), "NO_COLOR": "1",
           "COLUMNS": "200"}
    proc = subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=timeout, env=env, input=stdin)
    assert proc.returncode == 0, f"pymobiledevice3 {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


def first_lines(phone: FakeIPhone, home: Path, *args: str, count: int, timeout: float = 60) -> list[str]:
    """The first ``count`` lines a streaming command prints within ``timeout`` (then it is stopped, as with Ctrl-C)."""
    env = {**os.environ, "USBMUXD_SOCKET_ADDRESS": phone.usbmux_address, "HOME": str(home), "NO_COLOR": "1"}
    proc = subprocess.Popen([str(CLI), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while data.count(b"\n") < count and (left := deadline - time.monotonic()) > 0:
            if select.select([proc.stdout], [], [], left)[0]:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                data += chunk
    finally:
        proc.kill()
        stderr = proc.communicate()[1].decode("utf-8", "replace")
    lines = data.decode("utf-8", "replace").splitlines()[:count]
    assert len(lines) == count, f"{args}: got {lines!r} in {timeout} s; stderr: {stderr[-2000:]}"
    return lines


def test_lockdown_values_and_date_look_like_a_phone(phone, home):
    info = json.loads(cli(phone, home, "lockdown", "info").stdout)
    assert info["UniqueDeviceID"] == phone.udid and info["ProductVersion"] == "16.7.2"
    for key in ("TimeIntervalSince1970", "TimeZone", "ProductName", "SerialNumber", "WiFiAddress", "BluetoothAddress"):
        assert key in info, key
    assert abs(info["TimeIntervalSince1970"] - time.time()) < 60
    stamp = datetime.fromisoformat(cli(phone, home, "lockdown", "date").stdout.strip())
    assert abs(stamp.timestamp() - time.time()) < 60
    assert json.loads(cli(phone, home, "lockdown", "get", "com.apple.international", "Language").stdout) == "en"
    disk = json.loads(cli(phone, home, "lockdown", "get", "com.apple.disk_usage").stdout)
    assert 0 < disk["TotalDataAvailable"] <= disk["TotalDataCapacity"]


def test_unpair_forgets_the_host_and_the_next_command_pairs_again(phone, home):
    cli(phone, home, "lockdown", "info")
    assert phone.state.host_pairings
    cli(phone, home, "lockdown", "unpair")
    assert phone.state.host_pairings == {}
    assert json.loads(cli(phone, home, "lockdown", "info").stdout)["UniqueDeviceID"] == phone.udid
    assert len(phone.state.host_pairings) == 1


def test_apps_list_filters_by_type_and_shows_device_paths(phone, home):
    system = json.loads(cli(phone, home, "apps", "list", "--type", "System").stdout)
    assert "com.apple.mobilesafari" in system and {a["ApplicationType"] for a in system.values()} == {"System"}
    user = json.loads(cli(phone, home, "apps", "list", "--type", "User").stdout)
    assert list(user) == [BENCH_BUNDLE_ID]
    container = user[BENCH_BUNDLE_ID]["Container"]
    assert container.startswith("/private/var/mobile/Containers/Data/Application/"), container
    assert str(phone.root) not in json.dumps(user)
    every = json.loads(cli(phone, home, "apps", "list").stdout)
    assert set(every) == set(system) | set(user)


def test_apps_push_pull_with_documents_use_phone_paths(phone, home, tmp_path):
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(3000))
    cli(phone, home, "apps", "push", "--documents", BENCH_BUNDLE_ID, str(src), "/Documents/model.bin")
    assert (phone.container() / "Documents" / "model.bin").read_bytes() == src.read_bytes()
    cli(phone, home, "apps", "pull", "--documents", BENCH_BUNDLE_ID, "/Documents/model.bin", str(tmp_path / "back"))
    assert (tmp_path / "back").read_bytes() == src.read_bytes()
    shell = cli(phone, home, "apps", "afc", "--documents", BENCH_BUNDLE_ID, stdin="ls /\nls /Documents\nexit\n")
    assert "Documents" in shell.stdout and "model.bin" in shell.stdout
    # VendDocuments shows Documents/ only: the rest of the container is not there
    assert "Library" not in shell.stdout


def test_afc_media_partition_has_the_stock_folders(phone, home):
    listing = {name.strip("/") for name in cli(phone, home, "afc", "ls", "/").stdout.split()}
    assert {"DCIM", "Downloads", "Books"} <= listing


def test_syslog_live_old_lines_carry_the_syslogd_prefix(phone, home):
    lines = first_lines(phone, home, "syslog", "live-old", count=2)
    assert all(SYSLOG_LINE.match(line) for line in lines), lines


def test_syslog_live_streams_os_trace_records(phone, home):
    lines = first_lines(phone, home, "syslog", "live", count=2)
    # "2026-11-29 15:36:48.380453 kernel{kernel}[0] <NOTICE>: AppleSmartBattery: ..."
    pattern = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \S+\{\S+\}\[\d+\] <[A-Z_]+>: .+")
    assert all(pattern.match(line) for line in lines), lines


def test_diagnostics_info_and_ioregistry(phone, home):
    info = json.loads(cli(phone, home, "diagnostics", "info").stdout)
    assert {"GasGauge", "WiFi", "NAND", "HDMI"} <= set(info)
    battery = json.loads(cli(phone, home, "diagnostics", "ioregistry", "--ioclass", "IOPMPowerSource").stdout)
    assert battery["ExternalConnected"] is True and battery["Voltage"] == 4200
    root = json.loads(cli(phone, home, "diagnostics", "ioregistry").stdout)
    assert root["IORegistryEntryName"] == "Root"


def test_sysmon_process_single_shows_the_idle_phone_and_a_launched_app(phone, home):
    idle = json.loads(cli(phone, home, "developer", "dvt", "sysmon", "process", "single").stdout)
    names = {p["name"]: p for p in idle}
    assert {"launchd", "lockdownd", "SpringBoard"} <= set(names)
    assert names["lockdownd"]["execName"] == "/usr/libexec/lockdownd"
    launched = cli(phone, home, "developer", "dvt", "launch", "com.apple.mobilesafari").stdout
    pid = int(re.search(r"\d+", launched).group())
    try:
        running = json.loads(cli(phone, home, "developer", "dvt", "sysmon", "process", "single",
                                 "-f", f"pid={pid}").stdout)
        assert [p["name"] for p in running] == ["MobileSafari"]
        assert running[0]["execName"].endswith("/MobileSafari.app/MobileSafari")
        assert running[0]["physFootprint"] > 0       # a real host process, measured
    finally:
        cli(phone, home, "developer", "dvt", "kill", str(pid))
    assert pid not in phone.running_pids()


def test_sysmon_system_returns(phone, home):
    out = cli(phone, home, "developer", "dvt", "sysmon", "system", timeout=60).stdout
    fields = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert int(fields["CPUCount"]) == (os.cpu_count() or 1)
    assert int(fields["physMemSize"]) > 0


def test_remote_usbmuxd_over_loopback_tcp(phone, home):
    assert phone.usbmux_tcp_address and phone.usbmux_tcp_address.startswith("127.0.0.1:")
    devices = json.loads(cli(phone, home, "usbmux", "list", tcp=True).stdout)
    assert [d["UniqueDeviceID"] for d in devices] == [phone.udid]
    assert json.loads(cli(phone, home, "lockdown", "info", tcp=True).stdout)["UniqueDeviceID"] == phone.udid


def test_simulate_location_set_and_clear(phone, home):
    # `set` holds the simulation until SIGINT/SIGTERM, as a user presses Ctrl-C
    env = {**os.environ, "USBMUXD_SOCKET_ADDRESS": phone.usbmux_address, "HOME": str(home)}
    proc = subprocess.Popen([str(CLI), "developer", "dvt", "simulate-location", "set", "--", "40.690008", "-74.045843"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 60
        while phone.state.simulated_location is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert phone.state.simulated_location == pytest.approx((40.690008, -74.045843))
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]
    cli(phone, home, "developer", "dvt", "simulate-location", "clear")
    deadline = time.monotonic() + 5       # stopLocationSimulation expects no reply: give it a moment
    while phone.state.simulated_location is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert phone.state.simulated_location is None
