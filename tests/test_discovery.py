"""Discovery opens backends from an explicit table, importing each on first use; a missing extra is a hint."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = r"""
import json, sys
if sys.argv[1] == "no-ios":
    sys.modules["pymobiledevice3"] = None  # the optional extra is not installed
from harness.devices import discovery
from harness.errors import DeviceNotFound
out = {"after_import": sorted(m for m in ("harness.devices.android", "harness.devices.ios") if m in sys.modules)}
try:
    discovery.open_device("ios:00008110-000A1B2C3D4E5F60").close()
    out["ios"] = "opened"
except DeviceNotFound as exc:
    out["ios"] = str(exc)
dev = discovery.open_device("adb:127.0.0.1:9")
out["adb"] = type(dev).__name__
out["listed"] = [e.id for e in discovery.list_devices()]
print(json.dumps(out))
"""


def _run(mode: str, cache) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_ADB_DEVICES", "HARNESS_INVENTORY",
                                                            "USBMUXD_SOCKET_ADDRESS")}
    env["USBMUXD_SOCKET_ADDRESS"] = "/nonexistent/usbmuxd.sock"
    env["HARNESS_CACHE"] = str(cache)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_backends_are_imported_on_first_use_not_on_import(tmp_path):
    out = _run("with-ios", tmp_path)
    assert out["after_import"] == []  # importing discovery registers and imports nothing
    assert out["ios"] == "opened" and out["adb"] == "AndroidDevice"
    assert out["listed"] == ["host"]  # no usbmuxd here, no adb devices configured


def test_missing_ios_extra_says_how_to_install_it(tmp_path):
    out = _run("no-ios", tmp_path)
    assert "cannot open ios:00008110-000A1B2C3D4E5F60: the ios backend is not installed" in out["ios"]
    assert "pip install 'edgeharness[ios]'" in out["ios"]
    assert out["adb"] == "AndroidDevice" and out["listed"] == ["host"]  # the other backends are unaffected


def test_each_backend_declares_what_it_can_do():
    import pytest

    from harness.devices.android import AndroidDevice
    from harness.devices.base import AppHost, Capabilities, ShellDevice
    from harness.devices.host import HostDevice

    host = HostDevice().capabilities()
    assert host.shell and host.shares_host_fs and not host.app_host and "rapl" in host.probes
    android = AndroidDevice("adb:127.0.0.1:9").capabilities()
    assert android.shell and not android.shares_host_fs and "power_supply" in android.probes
    assert issubclass(HostDevice, ShellDevice) and issubclass(AndroidDevice, ShellDevice)
    assert not hasattr(AppHost, "shell")
    with pytest.raises(ValueError, match="unknown probe"):
        Capabilities(probes=frozenset({"sysmon"}))


def test_backends_read_no_environment_the_front_passes_it(tmp_path, monkeypatch):
    """Constructors take explicit settings; only the discovery front reads the environment (DeviceSettings)."""
    import pytest

    from harness.devices import discovery
    from harness.devices.android import AndroidDevice
    from harness.devices.host import HostDevice
    from harness.devices.ios import IosDevice
    from harness.devices.settings import DeviceSettings
    from harness.errors import UsageError

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "env-cache"))
    monkeypatch.setenv("HARNESS_ADB_KEY", str(tmp_path / "env-key"))
    monkeypatch.setenv("HARNESS_ADB_RECONNECT_S", "3")
    assert not HostDevice().workdir().startswith(str(tmp_path))  # the constructor ignores the environment
    assert HostDevice(cache_dir=tmp_path / "given").workdir() == str(tmp_path / "given" / "host-work")
    assert AndroidDevice("adb:127.0.0.1:9").reconnect_window_s == 10.0

    # the front reads it once and hands it down
    assert discovery.open_device("host").workdir() == str(tmp_path / "env-cache" / "host-work")
    android = discovery.open_device("adb:127.0.0.1:9")
    assert isinstance(android, AndroidDevice)
    assert (android.key, android.cache_dir, android.reconnect_window_s) == (
        tmp_path / "env-key", tmp_path / "env-cache", 3.0)
    phone = discovery.open_device("ios:00008110-000A1B2C3D4E5F60",
                                  DeviceSettings.from_env({"HARNESS_CACHE": str(tmp_path / "c"),
                                                           "USBMUXD_SOCKET_ADDRESS": "10.0.0.9:27015"}))
    assert isinstance(phone, IosDevice)
    assert (phone._lockdown.usbmux_address, phone._lockdown.pairing_folder) == (
        "10.0.0.9:27015", tmp_path / "c" / "ios-pairing")
    phone.close()

    explicit = DeviceSettings.from_env({"ANDROID_USER_HOME": str(tmp_path / "sdk")})
    assert explicit.adb_key == tmp_path / "sdk" / "adbkey" and explicit.android_serial is None
    assert discovery.selected_ids([], settings=DeviceSettings.from_env({"ANDROID_SERIAL": "R58M"})) == ["R58M"]
    with pytest.raises(UsageError, match="HARNESS_ADB_RECONNECT_S='soon' is not a number of seconds"):
        DeviceSettings.from_env({"HARNESS_ADB_RECONNECT_S": "soon"})
