"""The fake iPhone at the wire, driven by plain pymobiledevice3 client code (no harness code)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

pytest.importorskip("pymobiledevice3")

from pymobiledevice3 import usbmux  # noqa: E402
from pymobiledevice3.exceptions import AppNotInstalledError, InvalidServiceError, PasswordRequiredError  # noqa: E402
from pymobiledevice3.lockdown import create_using_usbmux  # noqa: E402
from pymobiledevice3.services.afc import AfcService  # noqa: E402
from pymobiledevice3.services.house_arrest import HouseArrestService  # noqa: E402
from pymobiledevice3.services.installation_proxy import InstallationProxyService  # noqa: E402
from pymobiledevice3.services.syslog import SyslogService  # noqa: E402

from harness.testing.ios import BENCH_BUNDLE_ID, FakeFaults  # noqa: E402

pytest_plugins = ["harness.testing.ios.fixtures"]


async def _lockdown(folder: Path):
    return await create_using_usbmux(pair_timeout=0, pairing_records_cache_folder=folder)


def test_usbmuxd_lists_and_pairs_through_tls(fake_iphone, tmp_path):
    async def go():
        devices = await usbmux.list_devices()
        ld = await _lockdown(tmp_path)
        try:
            return devices, ld.paired, await ld.get_value(key="ProductType")
        finally:
            await ld.close()

    devices, paired, product = asyncio.run(go())
    assert [d.serial for d in devices] == [fake_iphone.udid] and devices[0].is_usb
    assert paired and product == "iPhone14,5"
    assert (tmp_path / f"{fake_iphone.udid}.plist").exists()


def test_install_browse_and_container_sandbox(fake_iphone, bench_ipa, tmp_path):
    async def go():
        ld = await _lockdown(tmp_path)
        try:
            async with InstallationProxyService(ld) as ip:
                await ip.install_from_local(bench_ipa)
                apps = await ip.get_apps(bundle_identifiers=[BENCH_BUNDLE_ID])
            with pytest.raises(AppNotInstalledError):
                await HouseArrestService.create(ld, "com.example.absent")
            async with await HouseArrestService.create(ld, BENCH_BUNDLE_ID) as ha:
                await ha.set_file_contents("/Documents/hello.txt", b"hi")
                # as afcd does, ".." stops at the container root: this lands in the container, not above it
                await ha.set_file_contents("/../../../escape.txt", b"x")
                assert not await ha.exists("/../../../media/x")
                listing = await ha.listdir("/Documents")
            async with AfcService(ld) as afc:
                staged = await afc.listdir("/PublicStaging/pymobiledevice3")
            return apps, listing, staged
        finally:
            await ld.close()

    apps, listing, staged = asyncio.run(go())
    assert apps[BENCH_BUNDLE_ID]["CFBundleShortVersionString"] == "1.0"
    assert listing == ["hello.txt"] and staged == []
    assert (fake_iphone.container() / "Documents" / "hello.txt").read_bytes() == b"hi"
    assert (fake_iphone.container() / "escape.txt").read_bytes() == b"x"
    assert sorted(p.name for p in fake_iphone.root.rglob("escape.txt")) == ["escape.txt"]


def test_syslog_relays_device_lines(fake_iphone, bench_ipa, tmp_path):
    async def go():
        ld = await _lockdown(tmp_path)
        try:
            async with SyslogService(ld) as syslog:
                lines = syslog.watch()
                async with InstallationProxyService(ld) as ip:
                    await ip.install_from_local(bench_ipa)
                while "installd" not in (line := await asyncio.wait_for(anext(lines), 10)):
                    pass
                return line
        finally:
            await ld.close()

    line = asyncio.run(go())
    assert re.match(r"\w{3} [ \d]\d \d\d:\d\d:\d\d edgeharness fake iPhone installd\[\d+\] <Notice>: "
                    r"installed com\.edgeharness\.bench 1\.0$", line), line


@pytest.mark.parametrize(("options", "service", "error"), [
    ({"faults": FakeFaults(locked=True)}, "com.apple.afc", PasswordRequiredError),
    ({"values": {"ProductVersion": "17.4"}}, "com.apple.instruments.remoteserver.DVTSecureSocketProxy",
     InvalidServiceError),
])
def test_lockdown_faults_use_the_real_error_words(make_fake_iphone, tmp_path, options, service, error):
    make_fake_iphone(**options)

    async def go():
        ld = await _lockdown(tmp_path)
        try:
            await ld.start_lockdown_service(service)
        finally:
            await ld.close()

    with pytest.raises(error):
        asyncio.run(go())


def test_serve_refuses_a_bad_tcp_port_and_serves_loopback_only(tmp_path):
    import argparse

    from harness.errors import UsageError
    from harness.testing.ios import serve

    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    with pytest.raises(UsageError, match="not a TCP port"):
        serve.build(parser.parse_args(["--usbmux-tcp", "70000", "--root", str(tmp_path / "a")]))
    phone = serve.build(parser.parse_args(["--usbmux-tcp", "0", "--root", str(tmp_path / "b")])).start()
    try:
        host, port = phone.usbmux_tcp_address.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0

        async def go():
            return [d.serial for d in await usbmux.list_devices(usbmux_address=phone.usbmux_tcp_address)]

        assert asyncio.run(go()) == [phone.udid]
    finally:
        phone.stop()


def test_notification_proxy_relays_a_post_to_observers(fake_iphone, tmp_path):
    from pymobiledevice3.services.notification_proxy import NotificationProxyService

    async def go():
        ld = await _lockdown(tmp_path)
        try:
            async with NotificationProxyService(ld, timeout=5) as observer, NotificationProxyService(ld) as poster:
                await observer.notify_register_dispatch("com.edgeharness.ping")
                await asyncio.sleep(0.2)
                await poster.notify_post("com.edgeharness.other")      # not observed: not relayed
                await poster.notify_post("com.edgeharness.ping")
                return await anext(observer.receive_notification())
        finally:
            await ld.close()

    event = asyncio.run(go())
    assert (event.command, event.name) == ("RelayNotification", "com.edgeharness.ping")
