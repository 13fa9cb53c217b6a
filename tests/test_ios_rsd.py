"""The iOS 17+ route at the wire: the fake's RSD and tunneld against unmodified pymobiledevice3, then the harness.

The fake serves what a tunnel's far end serves (RemoteXPC over HTTP/2 on the RSD port, DVT and the
``*.shim.remote`` services on their own ports) and a tunneld listing it, all on loopback. The tunnel
itself (TUN, CDTunnel, QUIC, RemotePairing) is out of reach here. Where a test proves that the RSD route
alone carried the traffic, the fake's usbmuxd socket is removed first.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("pymobiledevice3")

from pymobiledevice3.exceptions import InvalidServiceError, StartServiceError  # noqa: E402
from pymobiledevice3.lockdown import create_using_usbmux  # noqa: E402
from pymobiledevice3.remote.remote_service_discovery import RemoteServiceDiscoveryService  # noqa: E402
from pymobiledevice3.services.diagnostics import DiagnosticsService  # noqa: E402
from pymobiledevice3.services.dvt.instruments.dvt_provider import DvtProvider  # noqa: E402
from pymobiledevice3.services.dvt.instruments.process_control import ProcessControl  # noqa: E402
from pymobiledevice3.services.dvt.instruments.sysmontap import Sysmontap  # noqa: E402
from pymobiledevice3.services.house_arrest import HouseArrestService  # noqa: E402
from pymobiledevice3.services.installation_proxy import InstallationProxyService  # noqa: E402
from pymobiledevice3.services.springboard import SpringBoardServicesService  # noqa: E402
from pymobiledevice3.services.syslog import SyslogService  # noqa: E402
from pymobiledevice3.tunneld.api import get_tunneld_devices  # noqa: E402

from harness.devices.ios import IosDevice, discover_ios_devices, open_ios_device  # noqa: E402
from harness.devices.ios.discovery import list_ios_devices  # noqa: E402
from harness.devices.settings import DeviceSettings, parse_tunneld_address  # noqa: E402
from harness.errors import DeviceError, UsageError  # noqa: E402
from harness.samplers.app import run_app_benchmark  # noqa: E402
from harness.testing.ios import BENCH_BUNDLE_ID, FakeFaults, FakeIPhone  # noqa: E402
from harness.testing.ios.tunneld import FakeTunneld  # noqa: E402

pytest_plugins = ["harness.testing.ios.fixtures"]

IOS18 = {"ProductVersion": "18.1", "BuildVersion": "22B83"}
PARAMS = {"num_threads": 1, "warmup_runs": 1, "num_runs": 5}
CLI = shutil.which("pymobiledevice3", path=str(Path(sys.executable).parent)) or shutil.which("pymobiledevice3")


def _rsd(phone: FakeIPhone) -> RemoteServiceDiscoveryService:
    assert phone.rsd_address is not None
    return RemoteServiceDiscoveryService(phone.rsd_address)


@pytest.fixture
def phone18(make_fake_iphone) -> FakeIPhone:
    return make_fake_iphone(values=IOS18, installed={BENCH_BUNDLE_ID: "1.0"}, sysmon_interval_s=0.1)


# --- the address a user gives --------------------------------------------------------------
@pytest.mark.parametrize(("text", "address"), [
    ("127.0.0.1:49151", ("127.0.0.1", 49151)),
    ("10.0.0.5", ("10.0.0.5", 49151)),
    ("farmhost:5000", ("farmhost", 5000)),
    ("[::1]:5000", ("::1", 5000)),
])
def test_tunneld_address_parses(text, address):
    assert parse_tunneld_address(text) == address


@pytest.mark.parametrize("text", ["host:http", "host:70000", ":5000", "[::zz]:5000"])
def test_bad_tunneld_address_is_one_clear_error(text):
    with pytest.raises(UsageError, match="HARNESS_TUNNELD") as err:
        parse_tunneld_address(text)
    assert "HOST:PORT" in err.value.hint


def test_settings_read_harness_tunneld():
    assert DeviceSettings.from_env({"HARNESS_TUNNELD": "127.0.0.1:1234"}).tunneld_address == ("127.0.0.1", 1234)
    assert DeviceSettings.from_env({}).tunneld_address is None
    with pytest.raises(UsageError, match="HARNESS_TUNNELD='h:0'"):
        DeviceSettings.from_env({"HARNESS_TUNNELD": "h:0"})


# --- the fake's far end, against pymobiledevice3's own client --------------------------------
def test_ios16_fake_has_no_tunnel(fake_iphone):
    assert fake_iphone.rsd_address is None and fake_iphone.tunneld_address is None


def test_rsd_handshake_gives_peer_info_and_remote_lockdown(phone18):
    async def go():
        async with _rsd(phone18) as rsd:
            services = rsd.peer_info["Services"]
            ports = {name: rsd.get_service_port(name) for name in services}
            for port in set(ports.values()):  # every advertised port answers on loopback
                with socket.create_connection(("127.0.0.1", port), timeout=5):
                    pass
            return rsd.peer_info, rsd.udid, rsd.product_version, rsd.all_values, ports

    peer_info, udid, version, values, ports = asyncio.run(go())
    assert peer_info["MessageType"] == "Handshake"
    assert (udid, version) == (phone18.udid, "18.1") and peer_info["Properties"]["BuildVersion"] == "22B83"
    assert values["UniqueDeviceID"] == phone18.udid and values["ProductVersion"] == "18.1"  # lockdown.remote.trusted
    expected = {"com.apple.instruments.dtservicehub", "com.apple.mobile.lockdown.remote.trusted",
                "com.apple.mobile.house_arrest.shim.remote", "com.apple.mobile.installation_proxy.shim.remote",
                "com.apple.mobile.diagnostics_relay.shim.remote", "com.apple.syslog_relay.shim.remote",
                "com.apple.os_trace_relay.shim.remote", "com.apple.afc.shim.remote"}
    assert expected <= set(ports)
    assert len(set(ports.values())) == len(ports)  # one port per service, as remoted listens
    assert not any(name.startswith("com.apple.instruments.remoteserver") for name in ports)  # lockdown-only names


def test_shim_services_after_rsd_checkin(phone18):
    async def go():
        async with _rsd(phone18) as rsd:
            async with InstallationProxyService(rsd) as ip:
                apps = await ip.get_apps(application_type="User")
            async with await HouseArrestService.create(rsd, BENCH_BUNDLE_ID) as ha:
                await ha.set_file_contents("/Documents/over-rsd.txt", b"pushed through the shim")
                back = await ha.get_file_contents("/Documents/over-rsd.txt")
            async with DiagnosticsService(rsd) as diag:
                battery = await diag.get_battery()
            async with SpringBoardServicesService(rsd) as springboard:
                assert BENCH_BUNDLE_ID in str(await springboard.get_icon_state())
            async with SyslogService(rsd) as syslog:
                async for line in syslog.watch():
                    first = line
                    break
            return apps, back, battery, first

    apps, back, battery, first_line = asyncio.run(go())
    assert BENCH_BUNDLE_ID in apps and "com.apple.mobilesafari" not in apps
    assert back == b"pushed through the shim"
    assert (phone18.container() / "Documents" / "over-rsd.txt").read_bytes() == back
    assert battery["Voltage"] == 4200 and battery["ExternalConnected"] is True
    assert "edgeharness fake iPhone" in first_line and "<Notice>:" in first_line


def test_dvt_over_dtservicehub_launches_samples_and_kills(phone18):
    async def go():
        async with _rsd(phone18) as rsd, DvtProvider(rsd) as dvt, ProcessControl(dvt) as pc:
            pid = await pc.launch("com.apple.mobilesafari")
            seen = set()
            async with await Sysmontap.create(dvt, interval=100) as tap:
                async for procs in tap.iter_processes():
                    seen = {p["pid"] for p in procs}
                    if pid in seen:
                        break
            await pc.kill(pid)
            return pid, seen

    pid, seen = asyncio.run(go())
    assert pid in seen and 1 in seen  # the launched app and launchd, in one sysmontap row set
    deadline = time.monotonic() + 10
    while pid in phone18.running_pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pid not in phone18.running_pids()


def test_native_remote_xpc_services_timed_and_notification_proxy(phone18):
    from pymobiledevice3.services.notification_proxy import RemoteNotificationProxyService
    from pymobiledevice3.services.timesync import TimeSyncService

    async def go():
        async with _rsd(phone18) as rsd:
            flags = {n: rsd.peer_info["Services"][n]["Properties"].get("UsesRemoteXPC", False)
                     for n in ("com.apple.timed.remote", "com.apple.afc.shim.remote")}
            async with TimeSyncService(rsd) as timed:
                sample = await timed.measure(samples=4)
            async with RemoteNotificationProxyService(rsd) as observer:
                await observer.notify_register_dispatch("com.edgeharness.rsd-ping")
                async with RemoteNotificationProxyService(rsd) as poster:
                    await poster.notify_post("com.edgeharness.other")  # not observed: never relayed
                    await poster.notify_post("com.edgeharness.rsd-ping")
                    events = observer.receive_notification()
                    event = await asyncio.wait_for(events.__anext__(), 10)
                    await events.aclose()
            return flags, sample, event

    flags, sample, event = asyncio.run(go())
    assert flags == {"com.apple.timed.remote": True, "com.apple.afc.shim.remote": False}
    # the fake's clock is the host's: the offset is bounded by the exchange's own round trip
    assert sample.delay >= 0 and abs(sample.offset) <= sample.delay + 0.01 and sample.stratum == 1
    assert (event.command, event.name) == ("RelayNotification", "com.edgeharness.rsd-ping")


def test_native_remote_xpc_mounter_bridge_install_records_and_cryptexd(phone18):
    from pymobiledevice3.exceptions import InstallCoordinationError
    from pymobiledevice3.services.cryptexd import CryptexdService
    from pymobiledevice3.services.install_coordination_proxy import InstallCoordinationProxyService
    from pymobiledevice3.services.mobile_image_mounter import MobileImageMounterService
    from pymobiledevice3.services.storage_mounter_bridge import StorageMounterBridgeService

    async def go():
        async with _rsd(phone18) as rsd:
            async with StorageMounterBridgeService(rsd) as bridge:
                bridged = (await bridge.copy_devices(), await bridge.query_personalization_identifiers(),
                           await bridge.query_nonce())
            async with MobileImageMounterService(rsd) as mounter:  # the lockdown-style shim
                direct = (await mounter.copy_devices(), await mounter.query_personalization_identifiers(),
                          await mounter.query_nonce())
            async with InstallCoordinationProxyService(rsd) as ic:
                record = await ic.query(BENCH_BUNDLE_ID)
            async with InstallCoordinationProxyService(rsd) as ic:
                with pytest.raises(InstallCoordinationError, match="no application 'com.example.none'"):
                    await ic.query("com.example.none")
            cryptexd = CryptexdService(rsd)
            return bridged, direct, record, await cryptexd.read_personalization_identifiers(), \
                await cryptexd.copy_installed(), rsd.all_values

    bridged, direct, record, ids, cryptexes, values = asyncio.run(go())
    assert bridged == direct
    devices, identifiers, nonce = bridged
    assert devices[0]["DiskImageType"] == "Personalized" and devices[0]["MountPath"] == "/System/Developer"
    assert identifiers["UniqueChipID"] == values["UniqueChipID"] and len(nonce) == 48
    assert record.install_path.startswith("file:///private/var/containers/Bundle/Application/")
    assert record.install_path.endswith("EdgeBench.app/") and record.db_sequence > 0
    assert ids["img4_chip_ecid"] == values["UniqueChipID"] and ids["img4_chip_chip"] == values["ChipID"]
    assert cryptexes == []  # the DDI is an image mount on the fake, not a cryptex


def test_ios17_lockdown_refuses_dvt_but_serves_lockdown_services(phone18, tmp_path):
    async def go():
        ld = await create_using_usbmux(serial=phone18.udid, usbmux_address=phone18.usbmux_address,
                                       pairing_records_cache_folder=tmp_path)
        try:
            async with InstallationProxyService(ld) as ip:
                apps = await ip.get_apps(bundle_identifiers=[BENCH_BUNDLE_ID])
            with pytest.raises(InvalidServiceError):
                async with DvtProvider(ld):
                    pass
            return apps
        finally:
            await ld.close()

    assert BENCH_BUNDLE_ID in asyncio.run(go())


def test_locked_phone_refuses_shims_at_checkin(make_fake_iphone):
    phone = make_fake_iphone(values=IOS18, installed={BENCH_BUNDLE_ID: "1.0"}, faults=FakeFaults(locked=True))

    async def go():
        async with _rsd(phone) as rsd:  # the handshake and lockdown values still work
            with pytest.raises(StartServiceError, match="PasswordProtected"):
                await HouseArrestService.create(rsd, BENCH_BUNDLE_ID)
            return rsd.all_values["ProductVersion"]

    assert asyncio.run(go()) == "18.1"


def test_rsd_port_drops_a_client_that_is_not_http2_and_stays_up(phone18):
    with socket.create_connection(phone18.rsd_address, timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\0" * 64)
        assert sock.recv(100) == b""  # closed without an answer
    from hyperframe.frame import DataFrame

    with socket.create_connection(phone18.rsd_address, timeout=5) as sock:  # HTTP/2, then XPC with a bad magic
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + DataFrame(stream_id=1, data=b"\xff" * 40).serialize())
        while sock.recv(4096):  # our settings, then the end of the connection
            pass

    async def go():
        async with _rsd(phone18) as rsd:
            return rsd.udid

    assert asyncio.run(go()) == phone18.udid


def test_tunneld_lists_the_rsd_as_pymobiledevice3s_tunneld_does(phone18):
    host, port = phone18.tunneld_address
    with urllib.request.urlopen(f"http://{host}:{port}/", timeout=5) as resp:
        listing = json.loads(resp.read())
    assert listing == {phone18.udid: [{"tunnel-address": "127.0.0.1", "tunnel-port": phone18.rsd_address[1],
                                       "interface": "fake-utun0", "auxiliary-metadata": {}, "origin": None}]}
    with urllib.request.urlopen(f"http://{host}:{port}/hello", timeout=5) as resp:
        assert json.loads(resp.read()) == {"message": "Hello, I'm alive"}
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(f"http://{host}:{port}/nothing", timeout=5)

    async def go():
        rsds = await get_tunneld_devices(phone18.tunneld_address)
        try:
            return [(r.udid, r.name, r.product_version) for r in rsds]
        finally:
            for r in rsds:
                await r.close()

    assert asyncio.run(go()) == [(phone18.udid, "fake-utun0", "18.1")]


# --- the harness's tunneld route -------------------------------------------------------------
@pytest.fixture
def tunneld_only(make_fake_iphone, monkeypatch):
    """An iOS 18 phone reachable only through tunneld: its usbmuxd socket is gone."""
    def make(**options) -> FakeIPhone:
        phone = make_fake_iphone(values=IOS18, sysmon_interval_s=0.1, **options)
        os.unlink(phone.usbmux_address)
        host, port = phone.tunneld_address
        monkeypatch.setenv("HARNESS_TUNNELD", f"{host}:{port}")
        return phone
    return make


@pytest.fixture
def opened():
    devices: list[IosDevice] = []

    def open_(phone: FakeIPhone) -> IosDevice:
        dev = open_ios_device(phone.device_id, DeviceSettings.from_env())
        devices.append(dev)
        return dev

    yield open_
    for dev in devices:
        dev.close()


def test_harness_runs_the_app_contract_through_tunneld_alone(tunneld_only, opened, bench_ipa, small_model,
                                                              tmp_path):
    """Discovery via tunneld -> RSD -> install, push, launch, sysmon, pull: no usbmuxd at all."""
    phone = tunneld_only()
    assert list_ios_devices(DeviceSettings.from_env()) == [phone.device_id]
    dev = opened(phone)
    info = dev.info()
    assert info.os == "iOS 18.1 (22B83)" and info.extra["link"] == "rsd" and info.profile == "fake-iphone"
    run = run_app_benchmark(dev, small_model, PARAMS, "rsd1", 60, bench_ipa)
    assert run.status == "ok", run.reason
    assert run.app_installed and run.model_pushed
    assert len(run.result["samples_us"]) == PARAMS["num_runs"]
    assert run.samples and all((s.footprint_mb or 0) > 0 for s in run.samples)  # sysmontap over dtservicehub
    assert any("EDGEHARNESS_DONE rsd1 ok" in line for line in run.log_lines)  # syslog_relay.shim.remote
    assert run.battery  # diagnostics_relay.shim.remote
    pulled = dev.pull("Documents/results/rsd1.json", tmp_path / "rsd1.json")
    assert json.loads(pulled.read_text())["run_id"] == "rsd1"
    assert any("installed com.edgeharness.bench" in line for line in phone.syslog)


def test_harness_kills_a_hung_app_over_rsd(tunneld_only, opened, small_model):
    phone = tunneld_only(installed={BENCH_BUNDLE_ID: "1.0"}, faults=FakeFaults(app_hangs=True))
    run = run_app_benchmark(opened(phone), small_model, PARAMS, "hung", 3)
    assert run.status == "timeout" and "killed" in run.reason
    assert run.pid not in phone.running_pids()


def test_tunneld_without_this_phone_names_the_fix_then_uses_the_tunnel_it_brings_up(
        make_fake_iphone, monkeypatch, opened, small_model):
    from harness.devices.ios import lockdown

    phone = make_fake_iphone(values=IOS18, installed={BENCH_BUNDLE_ID: "1.0"}, sysmon_interval_s=0.1)
    tunnels: dict[str, tuple[str, int]] = {}
    tunneld = FakeTunneld(lambda: dict(tunnels)).start()
    try:
        monkeypatch.setenv("HARNESS_TUNNELD", "{}:{}".format(*tunneld.address))
        monkeypatch.setattr(lockdown, "TUNNEL_RECHECK_S", 0.0)  # a real one waits 10 s before asking again
        dev = opened(phone)
        assert dev.info().extra["link"] == "lockdown"  # usbmuxd still reaches it, as a cabled phone
        with pytest.raises(DeviceError, match="has no tunnel to this iOS 17\\+ phone") as err:
            run_app_benchmark(dev, small_model, PARAMS, "none", 30)
        assert "tunneld" in err.value.hint
        tunnels[phone.udid] = phone.rsd_address  # tunneld brings the tunnel up; "no tunnel" is not believed forever
        assert run_app_benchmark(dev, small_model, PARAMS, "later", 30).status == "ok"
    finally:
        tunneld.stop()


def test_unreachable_tunneld_is_one_clear_error(fake_iphone, monkeypatch, caplog):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(DeviceError, match="not reachable") as err:
        discover_ios_devices(tunneld_address=("127.0.0.1", port))
    assert "pymobiledevice3 remote tunneld" in err.value.hint
    monkeypatch.setenv("HARNESS_TUNNELD", f"127.0.0.1:{port}")
    # `harness devices`: one warning, and usbmuxd's phones are still listed
    assert list_ios_devices(DeviceSettings.from_env()) == [fake_iphone.device_id]
    assert any(f"tunneld at 127.0.0.1:{port} is not reachable" in r.getMessage() for r in caplog.records)


def test_bad_harness_tunneld_stops_harness_devices_with_one_line(tmp_path):
    env = {**os.environ, "HARNESS_TUNNELD": "127.0.0.1:http", "HARNESS_CACHE": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "devices"], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "HARNESS_TUNNELD='127.0.0.1:http' is not a tunneld address" in proc.stderr


# --- the unmodified pymobiledevice3 CLI over --rsd / --tunnel ----------------------------------
@pytest.fixture(scope="module")
def cli_phone(tmp_path_factory):
    if CLI is None:
        pytest.skip("the pymobiledevice3 command is not installed")
    with FakeIPhone(values=IOS18, installed={BENCH_BUNDLE_ID: "1.0"},
                    root=tmp_path_factory.mktemp("phone")) as phone:
        os.unlink(phone.usbmux_address)  # only the RSD route answers
        yield phone


def _cli(phone: FakeIPhone, home: Path, *args: str, timeout: float = 60) -> str:
    env = {**os.environ, "USBMUXD_SOCKET_ADDRESS": phone.usbmux_address, "HOME": str(home), "NO_COLOR": "1",
           "COLUMNS": "200"}
    proc = subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"pymobiledevice3 {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.slow
def test_cli_over_rsd_and_tunnel(cli_phone, tmp_path):
    rsd = ["--rsd", *map(str, cli_phone.rsd_address)]
    tunnel = ["--tunnel", f"{cli_phone.udid}:{cli_phone.tunneld_address[1]}"]
    info = json.loads(_cli(cli_phone, tmp_path, "remote", "rsd-info", *rsd))
    assert info["Properties"]["OSVersion"] == "18.1" and "com.apple.instruments.dtservicehub" in info["Services"]
    values = json.loads(_cli(cli_phone, tmp_path, "lockdown", "info", *tunnel))
    assert values["UniqueDeviceID"] == cli_phone.udid and values["ProductVersion"] == "18.1"
    assert BENCH_BUNDLE_ID in json.loads(_cli(cli_phone, tmp_path, "apps", "list", "--type", "User", *rsd))
    local = tmp_path / "hello.txt"
    local.write_text("hello over RSD")
    _cli(cli_phone, tmp_path, "apps", "push", "--documents", BENCH_BUNDLE_ID, str(local), "/Documents/hello.txt",
         *tunnel)
    _cli(cli_phone, tmp_path, "apps", "pull", "--documents", BENCH_BUNDLE_ID, "/Documents/hello.txt",
         str(tmp_path / "back.txt"), *rsd)
    assert (tmp_path / "back.txt").read_text() == "hello over RSD"
    launched = _cli(cli_phone, tmp_path, "developer", "dvt", "launch", "com.apple.mobilesafari", *tunnel)
    pid = int(launched.split()[-1])
    rows = json.loads(_cli(cli_phone, tmp_path, "developer", "dvt", "sysmon", "process", "single", *rsd))
    assert {1, pid} <= {row["pid"] for row in rows}
    _cli(cli_phone, tmp_path, "developer", "dvt", "kill", str(pid), *rsd)
    battery = json.loads(_cli(cli_phone, tmp_path, "diagnostics", "battery", "single", *tunnel))
    assert battery["Voltage"] == 4200


def test_serve_ios18_selects_the_tunnel_and_refuses_a_bad_version(tmp_path):
    import argparse

    from harness.testing.ios import serve

    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    with pytest.raises(UsageError, match="not an iOS version"):
        serve.build(parser.parse_args(["--ios", "eighteen", "--root", str(tmp_path / "a")]))
    phone = serve.build(parser.parse_args(["--ios", "18.1", "--build", "22B83", "--root", str(tmp_path / "b")]))
    assert phone.tunnel and phone.state.values["BuildVersion"] == "22B83"
    assert not serve.build(parser.parse_args(["--root", str(tmp_path / "c")])).tunnel  # 16.7.2: lockdown only
