"""``[suite] require`` on devices without a shell: the fake iPhone (its battery domain and Sysmontap system CPU,
read over pymobiledevice3's real client code) and an endpoint (conditions not applicable, said, never dropped)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.devices.base import Capabilities
from harness.samplers import fitness
from harness.suite import parse_suite

HOG = "while True: pass"


def _case(model: Path, require: str, delegate: str = "cpu"):
    suite = parse_suite(f'[suite]\ndelegates=["{delegate}"]\nmeasured_runs=4\nrepetitions=1\nwarmup_runs=1\n'
                        f'timeout_s=60\nrequire = {require}\n[[models]]\npath="{model}"\nname="blazeface"\n')
    return suite.cases()[0]


def test_sysmontap_system_rows_become_the_busy_share_and_bad_rows_are_absent():
    row = {"SystemCPUUsage": {"CPU_TotalLoad": 202.08, "CPU_UserLoad": -1.0}, "CPUCount": 6, "EnabledCPUs": 6}
    first = {"SystemCPUUsage": {"CPU_TotalLoad": 100.0}, "CPUCount": 6}  # always 0 or 100 on a phone: dropped
    assert fitness.system_cpu_share([first, row]) == pytest.approx(0.3368)
    assert fitness.system_cpu_share([first, row, {**row, "SystemCPUUsage": {"CPU_TotalLoad": 0.0}}]) == \
        pytest.approx(0.3368 / 2)
    assert fitness.system_cpu_share([row]) is None  # one row is only the meaningless first one
    for junk in (None, "rows", [row, {"SystemCPUUsage": "x"}], [row, {**row, "CPUCount": 0}],
                 [row, {**row, "SystemCPUUsage": {"CPU_TotalLoad": 900.0}}], [row, {**row, "CPUCount": True}]):
        assert fitness.system_cpu_share(junk) is None, junk
    assert fitness.battery_level({"BatteryCurrentCapacity": 42, "BatteryIsCharging": True}) == 42.0
    for junk in (None, [], {}, {"BatteryCurrentCapacity": "full"}, {"BatteryCurrentCapacity": 140},
                 {"BatteryCurrentCapacity": True}):
        assert fitness.battery_level(junk) is None, junk


def test_an_endpoint_states_every_condition_not_applicable():
    req = fitness.Requirements(battery_min=30, thermal_status_max=0, other_cpu_max=0.25)
    said = fitness.not_applicable(Capabilities(app_host=True, endpoint=True), req)
    assert [s.split(" ")[0] for s in said] == ["battery_min", "thermal_status_max", "other_cpu_max"]
    assert all("endpoint" in s for s in said)
    assert fitness.not_applicable(Capabilities(app_host=True, endpoint=True), fitness.Requirements(battery_min=5)) \
        == (said[0],)
    assert fitness.not_applicable(Capabilities(app_host=True), req) == ()  # an iPhone: checked, or "not checked"


pymobiledevice3 = pytest.importorskip("pymobiledevice3")
pytest_plugins = ["harness.testing.ios.fixtures", "tests.model_server"]


@pytest.fixture
def iphone(make_fake_iphone):
    from harness.devices.discovery import open_device
    from harness.testing.ios.device import BENCH_BUNDLE_ID, USB_POWERED_BATTERY

    phone = make_fake_iphone(installed={BENCH_BUNDLE_ID: "1.0"}, sysmon_interval_s=0.1,
                             battery={**USB_POWERED_BATTERY, "CurrentCapacity": 12})
    device = open_device(phone.device_id)
    yield phone, device
    device.close()


@pytest.mark.slow
def test_a_low_iphone_battery_is_waited_for_then_skipped_and_a_charged_one_runs(iphone, small_model, caplog):
    from harness.orchestrator import CaseRunner

    phone, device = iphone
    caplog.set_level(logging.INFO, logger="harness")
    runner = CaseRunner("fit-ios")
    require = "{ battery_min = 30, thermal_status_max = 0, wait_s = 2, poll_s = 0.5 }"
    started = time.monotonic()
    low = runner.run_case(device, _case(small_model, require))
    assert low.status == "skipped" and "battery 12% < battery_min 30%" in low.reason and "require" in low.reason
    assert time.monotonic() - started >= 2.0  # it waited, polling the phone, before giving up
    # no iPhone service reports the thermal state: said once, not guessed
    assert [r.message for r in caplog.records].count(
        f"[{device.id}] require: not checked: thermal_status_max (the device reports no thermal status)") == 1

    runner = CaseRunner("fit-ios-2")
    charge = threading.Timer(1.5, lambda: phone.state.battery.update(CurrentCapacity=80))
    charge.start()  # the phone charges while the harness waits for it
    try:
        started = time.monotonic()
        fit = runner.run_case(device, _case(small_model, "{ battery_min = 30, wait_s = 60, poll_s = 0.5 }"))
    finally:
        charge.cancel()
    assert fit.status == "ok", fit.reason
    assert time.monotonic() - started < 60  # it ran once the level was reached, not after the whole wait
    assert any("require: battery 12% < battery_min 30%; waited" in r.message for r in caplog.records)


@pytest.mark.slow
def test_iphone_cpu_kept_busy_by_other_work_is_skipped_with_the_reading(iphone, small_model):
    from harness.orchestrator import CaseRunner

    _phone, device = iphone
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.5)
        busy = CaseRunner("busy-ios").run_case(device, _case(small_model, '{ other_cpu_max = "50%", wait_s = 0 }'))
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert busy.status == "skipped", busy.reason
    assert "other work kept" in busy.reason and "> other_cpu_max 50%" in busy.reason
    share = int(busy.reason.split("other work kept ")[1].split("%")[0])
    assert 50 < share <= 100  # the hogs fill every core: the phone's Sysmontap says so (sum over cores / count)


@pytest.fixture(scope="module")
def server(kserve_server):
    return kserve_server


@pytest.mark.slow
def test_an_endpoint_runs_and_says_each_condition_is_not_applicable(server, tmp_path, caplog):
    from harness import api

    suite = tmp_path / "ep.toml"
    suite.write_text('[suite]\nname = "ep"\ndelegates = ["cpu"]\nwarmup_runs = 1\nmeasured_runs = 3\n'
                     'repetitions = 1\ntimeout_s = 120\n'
                     'require = { battery_min = 30, thermal_status_max = 0, other_cpu_max = "25%", wait_s = 5 }\n'
                     '[[models]]\nzoo = "face_landmark"\n')
    caplog.set_level(logging.WARNING, logger="harness")
    started = time.monotonic()
    summary = api.run(suite, devices=[server.device_id], out_dir=tmp_path / "out", report=False)
    assert [r.status for r in summary.results] == ["ok"], [r.reason for r in summary.results]
    lines = [r.message for r in caplog.records if "require:" in r.message]
    assert len(lines) == 3 and all("not applicable" in x and "endpoint" in x for x in lines)
    assert {x.split("not applicable: ")[1].split(" ")[0] for x in lines} == \
        {"battery_min", "thermal_status_max", "other_cpu_max"}
    assert time.monotonic() - started < 120  # nothing was waited for


@pytest.mark.slow
def test_an_ios18_phone_reached_only_through_tunneld_gives_the_same_readings(make_fake_iphone, monkeypatch):
    """The RSD route (iOS 17+): the battery domain from lockdown.remote.trusted, Sysmontap over dtservicehub."""
    from harness.devices.ios.device import open_ios_device
    from harness.devices.settings import DeviceSettings

    phone = make_fake_iphone(values={"ProductVersion": "18.1", "BuildVersion": "22B83"}, sysmon_interval_s=0.1)
    os.unlink(phone.usbmux_address)
    host, port = phone.tunneld_address
    monkeypatch.setenv("HARNESS_TUNNELD", f"{host}:{port}")
    device = open_ios_device(phone.device_id, DeviceSettings.from_env())
    try:
        assert device.facts()["link"] == "rsd"
        req = fitness.Requirements(battery_min=30, other_cpu_max=1.0, window_s=0.5)
        read = fitness.reader(device, req)
        assert read is not None
        fit = read()
        state = device.read_state({"app_battery", "app_system_cpu"}, 0.5)
    finally:
        device.close()
    assert fit.battery_pct == 80.0 and fit.thermal_status is None  # the fake's USB-powered default level
    assert fit.other_cpu is not None and 0.0 <= fit.other_cpu <= 1.0
    rows = state["app_system_cpu"]
    assert len(rows) >= 2 and all(r["CPUCount"] == os.cpu_count() for r in rows)
    assert state["app_battery"]["BatteryCurrentCapacity"] == 80
