"""Run context, fit devices, device contention and minimum durations on the virtual Android device:
the real orchestrator, real LiteRT, the device over real ADB sockets, its physics model and /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from harness.orchestrator import CaseRunner
from tests.helpers import one_case

pytest_plugins = ["harness.testing.android.fixtures", "tests.vdev"]  # phone: the fast-physics device fixture


def _case(zoo: str, *, runs: int = 30, reps: int = 2, extra: str = ""):
    return one_case(zoo, runs=runs, reps=reps, extra=extra)


@pytest.mark.slow
def test_short_repetitions_are_extended_until_energy_can_be_measured(phone):
    """face_landmark x 10 runs lasts ~20 ms: at most one power sample. The default minimum duration (what the
    battery sampler needs) extends the runs, so the record has an energy figure and both counts."""
    vd, device = phone
    runner = CaseRunner("mindur")
    short = runner.run_case(device, _case("face_landmark", runs=10, extra="min_duration_s = 0"))
    assert short.status == "ok", short.reason
    assert short.case.actual_runs is None and short.case.min_duration_s is None
    if max(sum(r.samples_us) for r in short.latency.repetitions) < 40_000:  # shorter than one sampling interval
        assert short.energy.per_inference_mj is None and "need 2" in short.energy.reason  # the failure, without
    long = runner.run_case(device, _case("face_landmark", runs=10))
    assert long.status == "ok", long.reason
    e = long.energy
    assert e.reason is None and e.per_inference_mj is not None and e.per_inference_mj > 0, e
    assert e.samples >= 2 * 2 and e.uncertainty_mj is not None
    assert long.case.measured_runs == 10 and long.case.actual_runs is not None and long.case.actual_runs > 10
    assert long.case.min_duration_s >= 0.25  # 5 x 50 ms, more when the loaded device sampled slower
    assert [r.n for r in long.latency.repetitions] == [long.case.actual_runs] * 2
    measured = [sum(r.samples_us) / 1e6 for r in long.latency.repetitions]
    assert min(measured) > 0.15  # reached (most of) the minimum: its runs were scaled from a measured calibration


@pytest.mark.slow
def test_device_contention_reading_sees_a_hog_on_the_device(phone):
    """/proc/stat on the device: a CPU hog started in the device's shell is other work, the benchmark is not."""
    vd, device = phone
    runner = CaseRunner("hog")
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    try:
        time.sleep(0.5)
        busy = runner.run_case(device, _case("face_detection_front", runs=100, reps=2))
    finally:
        os.killpg(hog.pid, signal.SIGKILL)  # only the process this test started
        hog.wait()
    assert busy.status == "ok", busy.reason
    thermal = busy.thermal
    assert thermal.other_cpu_fraction is not None
    # the hog keeps one of this machine's CPUs busy (the device's /proc is the host's): a large share is other work
    assert thermal.other_cpu_fraction > 0.2, thermal
    assert "other work on the device CPUs: /proc/stat on the device" in thermal.method


@pytest.mark.slow
def test_unfit_device_is_waited_for_then_skipped_with_the_reading(phone):
    vd, device = phone
    vd.host_path("/sys/class/power_supply/battery/capacity").write_text("12\n")
    require = 'require = { battery_min = 30, thermal_status_max = 0, wait_s = 2, poll_s = 0.5 }'
    runner = CaseRunner("fit")
    started = time.monotonic()
    result = runner.run_case(device, _case("face_detection_front", runs=10, extra=require))
    assert result.status == "skipped"
    assert "battery 12% < battery_min 30%" in result.reason and "require" in result.reason
    assert time.monotonic() - started >= 2.0  # it waited before giving up
    vd.host_path("/sys/class/power_supply/battery/capacity").write_text("80\n")
    fit = runner.run_case(device, _case("face_detection_front", runs=10, extra=require))
    assert fit.status == "ok", fit.reason


@pytest.mark.slow
def test_hot_device_is_skipped_on_thermal_status(phone):
    vd, device = phone
    vd.physics.set_temperature(60.0)  # status 3, cools with tau 2 s towards ambient: wait too short here
    require = 'require = { thermal_status_max = 0, wait_s = 0.5, poll_s = 0.2 }'
    result = CaseRunner("hot").run_case(device, _case("face_detection_front", runs=10, extra=require))
    assert result.status == "skipped"
    assert "thermal status" in result.reason and "> thermal_status_max 0" in result.reason


@pytest.mark.slow
def test_result_records_the_device_run_context(phone):
    vd, device = phone
    result = CaseRunner("ctx").run_case(device, _case("face_detection_front", runs=10, reps=1))
    assert result.status == "ok", result.reason
    ctx = result.context
    assert ctx["runner_kind"] == "shell" and ctx["governor"] == "schedutil"
    assert ctx["charging"] == "on battery" and ctx["thermal_status"] in {"0", "1", "2", "3"}
    assert ctx["freq_caps"].endswith("%") and ctx["rooted"] in {"yes", "no"}
    assert ctx["device_kernel"] == os.uname().release  # the device shares the host's kernel
    assert ctx["runtime"].startswith(("ai-edge-litert", "tflite-runtime")) and ctx["harness_version"]
    vd.physics.set_charging(True)
    charging = CaseRunner("ctx2").run_case(device, _case("face_detection_front", runs=10, reps=1))
    assert charging.context["charging"] == "charging or powered"
