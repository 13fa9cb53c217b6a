"""The sampler seam: samplers chosen from a device's declared probes (never its platform string), the
sampled device is a real ShellDevice, and each sampler's config follows the probes."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.devices.base import APP_MONITOR_INTERVAL_S, AppHost, Capabilities, ShellDevice
from harness.devices.host import HostDevice
from harness.orchestrator import CaseRunner
from harness.samplers import energy, probe, thermal
from harness.samplers.case import CaseSampling, SampledDevice, select
from harness.suite import parse_suite


class BoardDevice(HostDevice):
    """A new device kind (a Linux board reached through this machine's shell): its own platform name,
    and fewer probes than the host (no RAPL, no CPU contention meter, no cpufreq)."""

    platform = "linux-board"

    def capabilities(self) -> Capabilities:
        return Capabilities(shell=True, shares_host_fs=True, probes=frozenset({"host_process", "thermal_zones"}))


def _case(runs: int = 20):
    suite = parse_suite(f'[suite]\ndelegates=["xnnpack"]\nmeasured_runs={runs}\nrepetitions=2\nwarmup_runs=2\n'
                        '[[models]]\nzoo="face_detection_front"\n')
    return suite.cases()[0]


def test_a_new_device_kind_gets_the_samplers_its_probes_declare():
    device = BoardDevice()
    assert [s.name for s in select(device, None)] == ["thermal", "host_process"]
    result = CaseRunner("board").run_case(device, _case())
    assert result.status == "ok", result.reason
    assert result.memory.peak_rss_mb > 0 and "psutil" in result.memory.method and result.memory.samples > 1
    assert result.thermal is not None and "no cpufreq" in result.thermal.method
    assert result.thermal.other_cpu_fraction is None  # no host_cpu probe declared
    assert result.energy is None or not result.energy.method.startswith("RAPL")


def test_energy_source_defaults_follow_the_probes():
    assert energy.EnergyConfig.from_profile(None, {"rapl", "host_process"}).source == "rapl"
    assert energy.EnergyConfig.from_profile(None, {"power_supply", "proc_status"}).source == "power_supply"
    assert energy.EnergyConfig.from_profile(None, {"app_battery"}).source == "none"
    assert energy.EnergyConfig.from_profile({"source": "none"}, {"rapl"}).source == "none"


def test_thermal_snapshot_reads_only_what_the_probes_declare():
    zones_only = thermal.snapshot_command({"thermal_zones"})
    assert "thermal_zone" in zones_only and "dumpsys" not in zones_only and "cpufreq" not in zones_only
    android = thermal.snapshot_command({"thermal_zones", "cpufreq", "thermalservice"})
    assert "dumpsys thermalservice" in android and "cpufreq" in android
    snap = thermal.read_snapshot(BoardDevice(), thermal.ThermalConfig())
    assert snap.freqs_khz == {} and snap.status is None


def test_the_sampled_device_is_a_shell_device_that_declares_its_contract(tmp_path):
    host = HostDevice()
    paths = probe.ProbePaths(str(tmp_path))
    sampled = SampledDevice(host, paths)
    assert isinstance(sampled, ShellDevice)
    assert sampled.capabilities() == host.capabilities() and sampled.workdir() == host.workdir()
    with pytest.raises(AttributeError):
        sampled.set_deadline  # noqa: B018 - nothing is forwarded behind the contract's back
    out = sampled.shell("sh -c 'echo hi; exit 3'", timeout_s=30)
    assert (out.command, out.output, out.exit_code) == ("sh -c 'echo hi; exit 3'", "hi\n", 3)
    assert Path(paths.pid).read_text().strip().isdigit()


def test_no_shell_no_samplers():
    """A device that declares no shell (an app host) gets no shell samplers and no cooldown."""

    class NoShell(BoardDevice):
        def capabilities(self) -> Capabilities:
            return Capabilities(app_host=True, probes=frozenset({"app_memory"}))

    sampling = CaseSampling(NoShell(), None, {"mode": "pause", "pause_s": 30})
    sampling.before_case()
    assert sampling.samplers == [] and sampling.cooldown is None
    assert sampling.finish(None, None) == (None, None, None)


def test_an_app_hosts_memory_monitor_sizes_the_measured_window():
    """An app host's memory rows name the app only while it runs: two monitor ticks of measured time, at the
    interval asked until the device has measured the pace its monitor really keeps (an iPhone: often seconds)."""

    class App(BoardDevice, AppHost):
        pace: float | None = None

        def __init__(self, probes: frozenset[str]) -> None:
            super().__init__("app:1")
            self.probes = probes

        def capabilities(self) -> Capabilities:
            return Capabilities(app_host=True, probes=self.probes)

        def install_app(self, app):
            return False

        def run_app(self, model, params, run_tag, timeout_s, app=None, observers=()):
            raise NotImplementedError

        def monitor_interval_s(self) -> float | None:
            return self.pace

    device = App(frozenset({"app_memory", "app_log"}))
    sampling = CaseSampling(device, None)
    sampling.before_case()
    need, why = sampling.min_duration_s()
    assert need == 2 * APP_MONITOR_INTERVAL_S and "500 ms asked" in why
    device.pace = 4.0  # the phone's first run measured its Sysmontap pace
    need, why = sampling.min_duration_s()
    assert need == 8.0 and "4000 ms observed" in why
    assert CaseSampling(App(frozenset({"app_log"})), None).min_duration_s() is None  # no monitor, no need


def test_charging_is_judged_from_sysfs_supplies_where_dumpsys_battery_gives_nothing():
    listing = "/sys/class/power_supply/usb/online:1\n/sys/class/power_supply/battery/online:0\n"
    reason = energy.charging_reason("", "", listing)
    assert reason is not None and "power_supply/usb online" in reason and "Wi-Fi ADB" in reason
    off = listing.replace("usb/online:1", "usb/online:0")
    assert energy.charging_reason("Discharging", "", off) is None
    # dumpsys battery answers: it is the authority ('dumpsys battery unplug' on a test device is honoured)
    unplugged = "  AC powered: false\n  USB powered: false\n  status: 3\n"
    assert energy.charging_reason("Discharging", unplugged, listing) is None

