"""``virtual-device serve`` as a user runs it, and profiles that make the device pose as a phone."""

import signal
import subprocess
import sys

import pytest
from adb_shell.adb_device import AdbDeviceTcp

from harness.errors import ProfileError
from harness.testing import VirtualDevice
from harness.testing.android.device_profile import load_profile
from harness.testing.android.fixtures import adb_client  # noqa: F401


def test_serve_prints_its_address_and_stops_on_sigint(tmp_path, adb_client):  # noqa: F811
    root = tmp_path / "device-root"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.testing", "serve", "--port", "0", "--root", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("virtual device listening on 127.0.0.1:"), first + proc.stderr.read()
        address = first.split()[4]
        assert adb_client.connect(address) == "device"
        done = adb_client.run("shell", "getprop ro.product.model; exit 7", serial=address)
        assert (done.returncode, done.stdout) == (7, b"Virtual Device\n")
        adb_client.run("disconnect", address)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    assert (root / "system" / "build.prop").is_file()  # a --root the user chose is kept


def test_serve_reports_bad_profile_in_one_line():
    done = subprocess.run(
        [sys.executable, "-m", "harness.testing", "serve", "--profile", "no-such-phone"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "no device profile named 'no-such-phone'" in done.stderr and "Traceback" not in done.stderr


def test_profile_toml_makes_the_device_pose_as_a_phone(tmp_path):
    toml = tmp_path / "pixel-7.toml"
    toml.write_text(
        'name = "pixel-7"\n[properties]\n"ro.product.model" = "Pixel 7"\n"ro.soc.model" = "Tensor G2"\n'
        '"ro.product.manufacturer" = "Google"\n'
    )
    with VirtualDevice(profile=str(toml), root=tmp_path / "root") as device:
        client = AdbDeviceTcp("127.0.0.1", device.port, default_transport_timeout_s=5)
        client.connect(auth_timeout_s=5, read_timeout_s=5)
        out = client.shell("getprop ro.product.model; getprop ro.soc.model; getprop ro.build.version.sdk; getprop")
        lines = out.splitlines()
        assert lines[:3] == ["Pixel 7", "Tensor G2", "34"]  # unset keys keep the virtual defaults
        assert "[ro.product.manufacturer]: [Google]" in lines
        assert client.shell("getprop no.such.key fallback") == "fallback\n"
        client.close()


def test_bad_profiles_are_profile_errors(tmp_path):
    with pytest.raises(ProfileError, match="no device profile"):
        load_profile("nope")
    broken = tmp_path / "broken.toml"
    broken.write_text("[properties\n")
    with pytest.raises(ProfileError, match="invalid TOML"):
        load_profile(str(broken))


def test_device_tools_answer_from_the_simulated_state(tmp_path):
    with VirtualDevice(root=tmp_path / "root") as device:
        client = AdbDeviceTcp("127.0.0.1", device.port, default_transport_timeout_s=5)
        client.connect(auth_timeout_s=5, read_timeout_s=5)
        battery = client.shell("dumpsys battery")
        assert "  level: 87" in battery and "  temperature: 291" in battery
        (device.host_path("/sys/class/power_supply/battery") / "capacity").write_text("55\n")
        assert "  level: 55" in client.shell("dumpsys battery")
        thermal = client.shell("dumpsys thermalservice")
        assert "mName=cpu-0-0" in thermal and "mValue=41.500" in thermal
        assert client.shell("cat /sys/class/thermal/thermal_zone0/type") == "cpu-0-0\n"
        assert client.shell("python3 -c 'import sys; print(sys.version_info[0])'") == "3\n"
        assert client.shell("echo $TMPDIR; cd /data/local/tmp && pwd") == "/data/local/tmp\n/data/local/tmp\n"
        client.close()


def test_first_import_paths_still_work_for_users_ci(pytester):
    # README's names from before the move: harness.testing's re-exports and the harness.testing.fixtures plugin.
    from harness.testing import AuthMode, Faults
    from harness.testing import VirtualDevice as Reexported
    from harness.testing.android.device import VirtualDevice as Moved

    assert Reexported is Moved and AuthMode("keys").value == "keys" and Faults().reject_auth is False
    pytester.makeconftest('pytest_plugins = ["harness.testing.fixtures"]\n')
    pytester.makepyfile("def test_device(virtual_device):\n"
                        "    assert virtual_device.address.startswith('127.0.0.1:')\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
