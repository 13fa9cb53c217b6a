"""Sampler maths and the corpus's real device outputs fed through the samplers (no device needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import profiles
from harness.devices.host import HostDevice
from harness.results import Memory
from harness.samplers import cooldown, energy, memory, probe, thermal, throttle
from harness.samplers.parsers import parse_uevent

CORPUS = Path(__file__).parent / "data" / "corpus"


def corpus(name: str) -> str:
    return (CORPUS / name).read_text(encoding="utf-8", errors="replace")


def test_samsung_dumpsys_battery_on_usb_is_refused_with_the_fix():
    reason = energy.charging_reason("", corpus("android_dumpsys_battery__samsung_unknown__oneui__01.txt"))
    assert reason is not None and "USB powered" in reason and "Wi-Fi ADB" in reason
    assert energy.charging_reason("Discharging", "  AC powered: false\n  USB powered: false\n  status: 3\n") is None
    assert "status=Charging" in energy.charging_reason("Charging", "")


def test_pixel3a_uevent_power_follows_the_profile_sign_convention():
    supply = parse_uevent(corpus("android_power_supply_battery_uevent__pixel3a__android9__01.txt"))
    pixel = energy.EnergyConfig.from_profile(profiles.get("pixel-3a").extra.get("energy"), {"power_supply"})
    assert pixel.discharge_sign == 1  # positive while discharging on the Pixel 3a (the corpus note says so)
    power_mw = energy.discharge_power_mw(supply.current_now_ua, supply.voltage_now_uv, pixel)
    assert power_mw == pytest.approx(supply.current_now_ua / 1000 * supply.voltage_now_uv / 1e6)
    flipped = energy.EnergyConfig(discharge_sign=-1)
    assert energy.discharge_power_mw(supply.current_now_ua, supply.voltage_now_uv, flipped) == -power_mw


def test_thermalservice_and_zone_listings_become_snapshots():
    svc = corpus("android_dumpsys_thermalservice__nvidia_shield_tv_pro_2019__01.txt")
    zones = corpus("android_thermal_zone_types__sony_xperia_x_compact_kugo__01.txt")
    snap = thermal.parse_snapshot(f"{zones}\n{thermal.SPLIT}\ncpu0 1200000 2400000 1200000\n{thermal.SPLIT}\n{svc}",
                                  thermal.ThermalConfig())
    assert snap.status == 0
    assert snap.freq_ratio == pytest.approx(0.5)
    hot = thermal.ThermalSnapshot({"cpu": 50.0}, status=3, freqs_khz={"cpu0": (600, 1000, 600)})
    reasons = throttle.assess(snap, hot, [], throttle.ThrottleLimits(), throttle_status=2)
    assert any("status rose" in r for r in reasons)


def test_meminfo_pss_from_the_corpus():
    polled = memory.pss_from_meminfo(corpus("android_dumpsys_meminfo__unknown_android6__chrome__01.txt"))
    assert polled.method == "dumpsys meminfo TOTAL PSS" and polled.steady_mb and polled.samples == 1
    merged = memory.combine(None, [polled])
    assert merged is not None and "PSS" in merged.method


def test_energy_per_inference_subtracts_idle_and_refuses_thin_windows():
    second = 1_000_000_000
    idle = [(i * second // 10, 100.0 + (i % 2)) for i in range(10)]  # 0.0-0.9 s
    busy = [(second + i * second // 10, 600.0 + (i % 3)) for i in range(11)]  # 1.0-2.0 s
    rep = energy.RepetitionPower(tuple(idle + busy), second, 2 * second, 1.0, 100)
    e = energy.energy_per_inference([rep], method="m", simulated=False)
    assert e.reason is None
    assert e.gross_per_inference_mj == pytest.approx(sum(p for _, p in busy) / len(busy) / 100)
    assert e.per_inference_mj == pytest.approx(e.gross_per_inference_mj - e.idle_power_mw / 100)
    assert 0 < e.uncertainty_mj < e.per_inference_mj and e.samples == 11
    thin = energy.RepetitionPower(tuple(idle + busy[:1]), second, 2 * second, 0.01, 100)
    assert "raise measured_runs" in energy.energy_per_inference([thin], method="m", simulated=False).reason


def test_memory_combine_keeps_the_kernel_peak_and_names_both_methods():
    runner = Memory(method="ru_maxrss", peak_rss_mb=80.0, samples=1)
    rows = [(1, "VmRSS", 40_960), (2, "VmHWM", 61_440), (3, "VmRSS", 51_200)]
    polled = memory.summarize(rows, (2, 3), "proc")
    assert polled.peak_mb == 60.0 and polled.steady_mb == 50.0
    merged = memory.combine(runner, [polled])
    assert merged.peak_rss_mb == 80.0 and "ru_maxrss" in merged.method and "proc" in merged.method


def test_latency_drift_flags_a_slowdown_only():
    flat = [1000.0] * 30
    slow = [1000.0] * 10 + [1200.0] * 10 + [1500.0] * 10
    assert throttle.latency_drift(flat) == 0
    assert throttle.latency_drift(slow) == pytest.approx(0.5)
    snap = thermal.ThermalSnapshot()
    assert throttle.assess(snap, snap, flat, throttle.ThrottleLimits(), 2) == ()
    heat = throttle.ThrottleLimits(latency_drift=0.2, drift_means_heat=True)
    assert "latency drifted" in throttle.assess(snap, snap, slow, heat, 2)[0]


def test_drift_is_throttling_only_with_thermal_evidence():
    """Drift is attributed: heat needs evidence (or the profile's word), contention needs the CPU reading."""
    slow = [1000.0] * 10 + [1200.0] * 10 + [1500.0] * 10
    cool, limits = thermal.ThermalSnapshot({"cpu": 40.0}), throttle.ThrottleLimits(latency_drift=0.2)
    unknown = throttle.judge(cool, cool, slow, limits, 2, other_cpu=0.02)
    assert unknown.reasons == () and unknown.drift_cause == "unknown" and unknown.drift == pytest.approx(0.5)
    assert "no thermal or frequency evidence" in unknown.drift_why
    busy = throttle.judge(cool, cool, slow, limits, 2, other_cpu=0.5)
    assert busy.reasons == () and busy.drift_cause == "contention" and "other work took 50%" in busy.drift_why
    capped = thermal.ThermalSnapshot({"cpu": 40.0}, freqs_khz={"cpu0": (600, 1000, 600)})
    hot = throttle.judge(cool, capped, slow, limits, 2, other_cpu=0.5)  # evidence wins over contention
    assert hot.drift_cause == "thermal" and any("attributed to heat" in r for r in hot.reasons)
    warm = throttle.judge(cool, thermal.ThermalSnapshot({"cpu": 55.0}), slow, limits, 2)
    assert warm.drift_cause == "thermal" and "cpu warmed 15.0 C" in warm.drift_why
    flat = throttle.judge(cool, thermal.ThermalSnapshot({"cpu": 55.0}), [1000.0] * 30, limits, 2)
    assert flat == throttle.Assessment((), 0.0)  # warming without drift is not throttling


def test_cooldown_modes_and_a_temperature_that_stops_falling():
    readings = iter([50.0, 45.0, 39.0])
    out = cooldown.wait(cooldown.CooldownConfig(mode="threshold", threshold_c=40, poll_s=0), lambda: next(readings),
                        sleep=lambda s: None)
    assert out.ended_by == "below threshold" and out.end_c == 39.0
    stuck = cooldown.CooldownConfig(mode="threshold", threshold_c=40, poll_s=0.01, stall_s=0.05, timeout_s=5)
    assert cooldown.wait(stuck, lambda: 50.0).ended_by == "stopped falling"
    assert cooldown.wait(cooldown.CooldownConfig(mode="off"), lambda: 99.0).waited_s == 0
    with pytest.raises(ValueError, match="unknown cooldown mode"):
        cooldown.CooldownConfig.merge({"mode": "sometimes"}, None)


def test_wrapped_benchmark_keeps_output_exit_code_and_writes_pid_and_marks(tmp_path):
    paths = probe.ProbePaths(str(tmp_path))
    host = HostDevice()
    out = host.shell(probe.wrap_benchmark("sh -c 'echo out; exit 7'", paths), timeout_s=30)
    assert out.exit_code == 7 and out.output == "out\n"
    marks = probe.parse_trace("\n".join("K " + line for line in Path(paths.marks).read_text().splitlines()))
    start, end = marks.last_window()
    assert end >= start and Path(paths.pid).read_text().strip().isdigit()
    compound = host.shell(probe.wrap_benchmark("echo a; echo 'b;c'", paths), timeout_s=30)
    assert compound.output == "a\nb;c\n" and compound.exit_code == 0
