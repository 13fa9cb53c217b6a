"""Samplers end to end: the real orchestrator, real LiteRT, the virtual device over real ADB sockets,
its physics model driven by the CPU time the benchmark actually uses."""

from __future__ import annotations

import contextlib
import os
import threading
import time

import psutil

from harness.devices.host import HostDevice
from harness.orchestrator import CaseRunner
from harness.report.html import render_report
from tests.helpers import one_case

pytest_plugins = ["harness.testing.android.fixtures", "tests.vdev"]


def test_heavier_model_costs_more_energy_per_inference(phone, tmp_path):
    vd, device = phone
    runner = CaseRunner("energy")
    light = runner.run_case(device, one_case("face_detection_front", runs=200))
    heavy = runner.run_case(device, one_case("face_detection_full_range", runs=120))
    for r in (light, heavy):
        assert r.status == "ok", r.reason
        e = r.energy
        assert e is not None and e.reason is None, e
        assert e.simulated and not e.estimated
        assert e.samples >= 2 and e.uncertainty_mj is not None and e.idle_power_mw > 0
        assert e.gross_per_inference_mj > e.per_inference_mj > 0
        assert "current_now x voltage_now" in e.method and "idle power" in e.method
        assert r.memory.peak_rss_mb > 0 and "/proc/<pid>/status" in r.memory.method
        assert set(r.thermal.before_c) == {"cpu-0-0", "skin", "battery"}
    assert heavy.latency.samples_us and light.latency.samples_us
    assert heavy.energy.per_inference_mj > light.energy.per_inference_mj
    page = render_report([light, heavy], tmp_path / "r.html").read_text()
    assert "Memory, energy and thermal" in page and "energy per inference (mJ" in page
    assert page.count("(simulated)") >= 2 and "lower is better" in page
    assert '<th class="num">gross</th>' in page and '<th class="num">idle power</th>' in page


def test_cooldown_waits_for_a_hot_device_then_returns(phone):
    vd, device = phone
    vd.physics.set_temperature(55.0)
    cooldown = 'cooldown = { mode = "threshold", threshold_c = 40.0, timeout_s = 60 }'
    result = CaseRunner("cool").run_case(device, one_case("face_detection_front", runs=20, extra=cooldown))
    assert result.status == "ok", result.reason
    thermal = result.thermal
    assert thermal.cooldown_s is not None and thermal.cooldown_s > 0.5
    assert thermal.before_c["cpu-0-0"] <= 40.5
    assert "below threshold" in thermal.method


def test_forced_frequency_cap_flags_the_run_throttled(phone):
    vd, device = phone
    vd.physics.force_freq_cap(0.5)
    result = CaseRunner("cap").run_case(device, one_case("face_detection_front", runs=20))
    assert result.status == "ok"
    assert result.thermal.throttled
    assert any("frequency" in why for why in result.thermal.throttle_reasons)
    vd.physics.force_freq_cap(None)
    calm = CaseRunner("calm").run_case(device, one_case("face_detection_front", runs=20))
    assert not any("frequency" in why for why in calm.thermal.throttle_reasons)


def test_charging_device_gets_no_energy_but_keeps_latency(phone):
    vd, device = phone
    vd.physics.set_charging(True)
    result = CaseRunner("charging").run_case(device, one_case("face_detection_front", runs=20))
    assert result.status == "ok" and result.latency.n_iterations == 20
    assert result.energy.per_inference_mj is None
    assert "charging" in result.energy.reason and "Wi-Fi ADB" in result.energy.reason
    assert "USB powered" in result.energy.reason


def _device_processes(vd) -> list[psutil.Process]:
    """The processes of THIS virtual device: its mount namespace, else (proot) this test's descendants.

    Not every process on the machine: on a shared machine another run's probe loop or benchmark would
    otherwise be taken for ours (killing theirs and missing ours, the old flake).
    """
    ns_pid = getattr(vd.isolation, "pid", None)
    if not ns_pid:
        return psutil.Process().children(recursive=True)
    mnt = os.readlink(f"/proc/{ns_pid}/ns/mnt")
    own = []
    for proc in psutil.process_iter():
        with contextlib.suppress(OSError):
            if proc.pid != ns_pid and os.readlink(f"/proc/{proc.pid}/ns/mnt") == mnt:
                own.append(proc)
    return own


def test_power_sampler_dying_mid_run_keeps_latency_and_says_why(phone):
    vd, device = phone
    killed: list[int] = []

    def kill_probe_loop() -> None:
        """Once the benchmark runs, kill the device-side power sampler loop."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not killed:
            procs = []
            for proc in _device_processes(vd):
                with contextlib.suppress(psutil.Error):
                    procs.append((proc, " ".join(proc.cmdline())))
            if any("pyrunner" in cmd for _, cmd in procs):
                for proc, cmd in procs:
                    if "trace.txt" in cmd and "current_now" in cmd and "setsid" not in cmd:
                        proc.kill()
                        killed.append(proc.pid)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_probe_loop)
    killer.start()
    result = CaseRunner("dies").run_case(device, one_case("face_detection_full_range", runs=400))
    killer.join()
    assert killed, "the probe loop was never seen"
    assert result.status == "ok" and result.latency.n_iterations == 400
    assert result.energy.per_inference_mj is None
    assert "stopped mid-run" in result.energy.reason or "power sample" in result.energy.reason


def test_host_run_shows_memory_thermal_and_why_energy_is_absent():
    result = CaseRunner("host").run_case(HostDevice(), one_case("face_detection_front", runs=30))
    assert result.status == "ok", result.reason
    assert result.memory.peak_rss_mb > 0 and "psutil" in result.memory.method and result.memory.samples > 1
    assert result.thermal is not None and "thermal_zone" in result.thermal.method
    energy = result.energy
    assert energy is not None and energy.method.startswith("RAPL")
    assert (energy.per_inference_mj is None) == (energy.reason is not None)


def test_host_run_says_how_much_cpu_other_work_took(tmp_path):
    """Burners on every core beside the benchmark show up as other work; the report flags the case as busy."""
    import subprocess
    import sys

    case = one_case("face_detection_front", runs=400)
    quiet = CaseRunner("quiet").run_case(HostDevice(), case)
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(psutil.cpu_count() or 1)]
    try:
        time.sleep(0.3)
        busy = CaseRunner("busy").run_case(HostDevice(), case)
    finally:
        for b in burners:
            b.kill()
            b.wait()
    assert quiet.status == busy.status == "ok"
    q, b = quiet.thermal.other_cpu_fraction, busy.thermal.other_cpu_fraction
    assert q is not None and b is not None and 0.0 <= q < b <= 1.0
    assert b >= 0.4, (q, b)  # every core had a burner: most of the machine went to other work
    assert "other work on the host CPUs" in busy.thermal.method
    page = render_report([quiet, busy], tmp_path / "r.html").read_text()
    assert page.count('<strong class="flag">busy</strong>') >= 1 and "Other CPU work" in page
