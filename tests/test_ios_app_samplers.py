"""The iOS app samplers: the backend hands plain data over, the samplers make readings of it.

Device output is untrusted: odd rows and registry values become "absent", never an exception, and an
observer that fails is dropped without stopping the run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from harness.samplers.app import AppBattery, AppLog, AppMemory, app_memory

HAS_IOS = importlib.util.find_spec("pymobiledevice3") is not None
pytest_plugins = ["harness.testing.ios.fixtures"] if HAS_IOS else []  # the samplers themselves need no extra


def test_sysmontap_rows_of_the_app_only_with_the_interval_really_used():
    mem = AppMemory()
    mem.feed(0.0, [{"pid": 7, "physFootprint": 1 << 20}])  # before launch: a tick, no row
    mem.launched(42)
    mem.feed(0.6, [{"pid": 42, "physFootprint": 50 << 20, "memResidentSize": 60 << 20, "cpuUsage": 99.5},
                   {"pid": 7, "physFootprint": 1 << 20}, "junk", None])
    mem.feed(1.2, [{"pid": "42", "physFootprint": float("nan"), "memResidentSize": 70 << 20}])
    mem.feed(1.8, {"not": "a list"})
    assert [s.t_s for s in mem.samples] == [0.6, 1.2] and {s.pid for s in mem.samples} == {42}
    assert mem.samples[0].footprint_mb == 50.0 and mem.samples[0].cpu_percent == 99.5
    assert mem.samples[1].footprint_mb is None and mem.samples[1].resident_mb == 70.0
    assert mem.interval_s() == pytest.approx(0.6)
    assert app_memory(mem.samples) == (70.0, 60.0, 2)


def test_battery_readings_and_why_they_cannot_be_the_apps_energy():
    unplugged = AppBattery()
    for t in (0.0, 1.0):
        unplugged.feed(t, {"InstantAmperage": -500, "Amperage": -300, "Voltage": 4000, "Temperature": 3050,
                           "ExternalConnected": False, "IsCharging": False})
    assert unplugged.refusal() is None
    assert unplugged.readings[0].power_mw == 2000.0 and unplugged.readings[0].temperature_c == 30.5
    on_usb = AppBattery()
    on_usb.feed(0.0, {"InstantAmperage": 350, "Voltage": 4200, "ExternalConnected": True})
    assert "external power" in on_usb.refusal()
    garbage = AppBattery()
    garbage.feed(0.0, ["not", "a", "dict"])
    garbage.feed(1.0, {"InstantAmperage": "lots", "Voltage": None})
    assert "no InstantAmperage/Voltage" in garbage.refusal()
    assert "no battery readings" in AppBattery().refusal()


def test_app_log_keeps_the_apps_lines():
    log = AppLog("run-1")
    log.feed(0.0, "kernel: unrelated")
    log.feed(0.1, "EdgeBench[42] <Notice>: loading model")
    log.feed(0.2, b"bytes are not lines")
    log.launched(42)
    log.feed(0.3, "EdgeBench(Foundation)[42] EDGEHARNESS_DONE run-1 ok")
    assert log.lines() == ("EdgeBench[42] <Notice>: loading model",
                           "EdgeBench(Foundation)[42] EDGEHARNESS_DONE run-1 ok")


class _Broken:
    probe = "app_memory"

    def launched(self, pid: int) -> None:
        pass

    def feed(self, t_s: float, item: object) -> None:
        raise ValueError("a sampler bug")


@pytest.mark.skipif(not HAS_IOS, reason="needs the ios extra (pymobiledevice3)")
def test_a_failing_observer_does_not_stop_the_run(make_fake_iphone, small_model: Path):
    from harness.devices.ios import open_ios_device
    from harness.devices.settings import DeviceSettings
    from harness.testing.ios.device import BENCH_BUNDLE_ID

    phone = make_fake_iphone(installed={BENCH_BUNDLE_ID: "1.0"}, sysmon_interval_s=0.1)
    mem, battery, log = AppMemory(), AppBattery(), AppLog("obs-1")
    with open_ios_device(phone.device_id, DeviceSettings.from_env()) as dev:
        out = dev.run_app(small_model, {"num_threads": 1, "warmup_runs": 1, "num_runs": 200}, "obs-1", 60,
                          observers=[_Broken(), mem, battery, log])
    assert out.status == "ok", out.reason
    assert mem.samples and {s.pid for s in mem.samples} == {out.pid} and mem.interval_s() > 0
    assert battery.readings and "external power" in battery.refusal()
    assert any("EDGEHARNESS_DONE obs-1 ok" in line for line in log.lines())


def test_the_cases_memory_method_is_that_of_a_repetition_that_gave_the_figure():
    """One repetition without Sysmontap rows must not label the case's Sysmontap figure as the app's own reading."""
    from harness.assemble import memory_over
    from harness.runners.outcome import RunnerOutcome

    own = RunnerOutcome("ok", None, peak_rss_mb=40.0, memory_method="app's own reading")
    rows = RunnerOutcome("ok", None, peak_rss_mb=41.0, steady_rss_mb=38.0,
                         memory_method="app's own reading; steady: iOS Sysmontap (3 rows, every 0.50 s)")
    memory = memory_over([own, rows, own])
    assert memory.steady_rss_mb == 38.0 and "Sysmontap" in memory.method and memory.peak_rss_mb == 41.0
    assert memory_over([own, own]).method == "app's own reading"
