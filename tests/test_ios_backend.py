"""The iOS backend against the wire-level fake iPhone, through unmodified pymobiledevice3."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

pytest.importorskip("pymobiledevice3")

from harness.devices.base import ShellDevice  # noqa: E402
from harness.devices.ios import IosDevice, discover_ios_devices, open_ios_device  # noqa: E402
from harness.devices.settings import DeviceSettings  # noqa: E402
from harness.errors import AuthError, DeviceError, DeviceLost, HarnessError  # noqa: E402
from harness.samplers.app import run_app_benchmark  # noqa: E402
from harness.testing.ios import FakeFaults  # noqa: E402

pytest_plugins = ["harness.testing.ios.fixtures"]

SMALL_MODEL = BIG_MODEL = Path()  # set from the pinned zoo (real BlazeFace and face_landmark) before each test
needs_models = pytest.mark.usefixtures("zoo_paths")


@pytest.fixture
def zoo_paths(zoo_models: dict[str, Path]) -> None:
    global SMALL_MODEL, BIG_MODEL
    SMALL_MODEL, BIG_MODEL = zoo_models["face_detection_front"], zoo_models["face_landmark"]
PARAMS = {"num_threads": 1, "warmup_runs": 1, "num_runs": 5}


@pytest.fixture
def open_device():
    opened: list[IosDevice] = []

    def open_(phone, **options) -> IosDevice:
        dev = open_ios_device(phone.device_id, DeviceSettings.from_env(), **options)
        opened.append(dev)
        return dev

    yield open_
    for dev in opened:
        dev.close()


def test_discovery_lists_the_fake_with_its_profile(fake_iphone, open_device, tmp_path):
    assert discover_ios_devices() == [fake_iphone.device_id]
    info = open_device(fake_iphone).info()
    assert (info.id, info.platform, info.profile, info.device_class) == (
        fake_iphone.device_id, "ios", "fake-iphone", "virtual")
    assert info.os.startswith("iOS 16.7.2") and info.abi == "arm64e"
    assert info.extra["ProductType"] == "iPhone14,5"
    assert info.extra["delegates"] == "cpu,xnnpack"
    folder = tmp_path / "harness-cache" / "ios-pairing"
    records = list(folder.glob("*.plist"))
    assert records and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in records)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_discovery_without_usbmuxd_finds_nothing(tmp_path):
    assert discover_ios_devices(str(tmp_path / "no-usbmuxd.sock")) == []


@needs_models
def test_real_model_runs_through_the_app_contract(fake_iphone, open_device, bench_ipa):
    dev = open_device(fake_iphone)
    assert dev.monitor_interval_s() is None  # the phone's Sysmontap pace is not known before a run
    out = run_app_benchmark(dev, SMALL_MODEL, PARAMS, "run-1", timeout_s=120, app=bench_ipa)
    assert out.status == "ok", out.reason
    # the first run waited for two ticks before the launch: the pace is measured (the fake ticks every 0.5 s)
    assert out.sample_interval_s is not None and 0.3 <= dev.monitor_interval_s() <= 2.0
    assert out.app_installed and out.model_pushed
    assert len(out.result["samples_us"]) == 5 and all(s > 0 for s in out.result["samples_us"])
    assert out.result["runtime"] and out.result["delegate"] == "cpu"
    assert any("EDGEHARNESS_DONE run-1 ok" in line for line in out.log_lines)
    assert "external power" in out.energy_refusal
    assert out.battery and out.battery[0].voltage_mv is not None
    docs = fake_iphone.container() / "Documents"
    assert json.loads((docs / "results" / "run-1.json").read_text())["run_id"] == "run-1"
    assert json.loads((docs / "benchmark_params.json").read_text())["graph"].startswith("models/")

    again = run_app_benchmark(dev, SMALL_MODEL, PARAMS, "run-2", timeout_s=120, app=bench_ipa)
    assert again.status == "ok" and not again.app_installed and not again.model_pushed


@needs_models
def test_core_ml_on_the_fake_is_a_delegate_refusal(fake_iphone, open_device, bench_ipa):
    out = run_app_benchmark(open_device(fake_iphone), SMALL_MODEL, {**PARAMS, "use_coreml": 1}, "cml", 60, bench_ipa)
    assert out.status == "delegate_unavailable" and "Core ML" in out.reason


@needs_models
def test_app_that_never_finishes_is_killed_with_sysmon_samples(make_fake_iphone, open_device, bench_ipa):
    phone = make_fake_iphone(faults=FakeFaults(app_hangs=True), sysmon_interval_s=0.3)
    out = run_app_benchmark(open_device(phone), SMALL_MODEL, PARAMS, "hang", timeout_s=3, app=bench_ipa)
    assert out.status == "timeout" and out.result is None and "killed" in out.reason
    assert out.pid not in phone.running_pids()
    assert out.samples and {s.pid for s in out.samples} == {out.pid}
    assert out.samples[0].resident_mb > 0 and out.sample_interval_s > 0


def test_trust_pending_asks_to_tap_trust(make_fake_iphone, open_device):
    phone = make_fake_iphone(faults=FakeFaults(trust="pending"))
    with pytest.raises(AuthError, match="Trust dialog") as err:
        open_device(phone).info()
    assert "tap Trust" in err.value.hint and phone.udid in str(err.value)


def test_trust_pending_then_denied(make_fake_iphone, open_device):
    phone = make_fake_iphone(faults=FakeFaults(trust="pending_then_deny"))
    with pytest.raises(AuthError, match="Don't Trust"):
        open_device(phone, pair_timeout_s=10).info()


def test_trust_accepted_after_prompt(make_fake_iphone, open_device):
    phone = make_fake_iphone(faults=FakeFaults(trust="pending_then_accept"))
    assert open_device(phone, pair_timeout_s=10).info().profile == "fake-iphone"


@needs_models
def test_locked_phone_says_unlock(make_fake_iphone, open_device):
    phone = make_fake_iphone(faults=FakeFaults(locked=True), installed={"com.edgeharness.bench": "1.0"})
    dev = open_device(phone)
    assert dev.info().profile == "fake-iphone"
    with pytest.raises(DeviceError, match="PasswordProtected") as err:
        dev.push(SMALL_MODEL, "Documents/m.tflite")
    assert "unlock" in err.value.hint


def test_install_error_is_typed(make_fake_iphone, open_device, bench_ipa):
    phone = make_fake_iphone(faults=FakeFaults(install_error="ApplicationVerificationFailed"))
    with pytest.raises(DeviceError, match="ApplicationVerificationFailed") as err:
        open_device(phone).install_app(bench_ipa)
    assert "signed" in err.value.hint


@needs_models
def test_socket_dropped_mid_push_is_device_lost_then_recovers(make_fake_iphone, open_device):
    size = BIG_MODEL.stat().st_size
    phone = make_fake_iphone(faults=FakeFaults(drop_push_after_bytes=size // 2),
                             installed={"com.edgeharness.bench": "1.0"})
    dev = open_device(phone)
    with pytest.raises(DeviceLost, match="dropped"):
        dev.push(BIG_MODEL, "Documents/models/landmark.tflite")
    assert dev.push(BIG_MODEL, "Documents/models/landmark.tflite") is True
    assert dev.push(BIG_MODEL, "Documents/models/landmark.tflite") is False
    pulled = dev.pull("Documents/models/landmark.tflite", Path(phone.root.parent) / f"{phone.udid}-pulled.tflite")
    try:
        assert pulled.read_bytes() == BIG_MODEL.read_bytes()
    finally:
        pulled.unlink()


@needs_models
@pytest.mark.timeout(120)  # the user-facing bound: one lockdown connection (60 s), not an install and a push
def test_ios17_without_tunnel_names_the_fix(make_fake_iphone, open_device, bench_ipa):
    """An iOS 17+ phone whose tunnel the harness is not told about (the fake serves RSD and a tunneld, as the far
    end of a tunnel would, but HARNESS_TUNNELD is unset): the phone's own InvalidService to DVT over lockdown
    stops the run with the tunneld hint before anything is installed or pushed."""
    phone = make_fake_iphone(values={"ProductVersion": "17.5", "BuildVersion": "21F79"})
    assert phone.rsd_address is not None and phone.tunneld_address is not None  # the RSD side is on
    with pytest.raises(DeviceError, match="InvalidService") as err:
        run_app_benchmark(open_device(phone), SMALL_MODEL, PARAMS, "r17", 30, bench_ipa)
    assert "tunneld" in err.value.hint
    assert not any("installd[" in line for line in phone.syslog)  # nothing installed ...
    assert not list(phone.root.glob("containers/*/Documents/models/*"))  # ... nor pushed


@needs_models
def test_missing_app_says_how_to_install(fake_iphone, open_device):
    with pytest.raises(DeviceError, match="not installed") as err:
        run_app_benchmark(open_device(fake_iphone), SMALL_MODEL, PARAMS, "r", 30)
    assert "harness.toml" in err.value.hint


def test_device_paths_never_escape(fake_iphone, open_device, tmp_path):
    dev = open_device(fake_iphone)
    with pytest.raises(HarnessError, match="bad container path"):
        dev.pull("../../etc/passwd", tmp_path / "x")
    with pytest.raises(HarnessError, match="bad run id"):
        run_app_benchmark(dev, SMALL_MODEL, PARAMS, "../x", 5)
    assert not dev.capabilities().shell and not isinstance(dev, ShellDevice)  # iOS has no shell to stand on
    assert not (tmp_path / "x").exists()
