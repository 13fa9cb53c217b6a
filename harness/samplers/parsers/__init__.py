"""Telemetry parsers: device readings as typed, unit-carrying frozen records (None when absent).

One module per source family: Android ``dumpsys`` services, sysfs/procfs listings, ``getprop``,
and the iOS tools (pymobiledevice3, tidevice/gidevice, libimobiledevice, py-ios-device).
The sampling itself lives elsewhere; these only read text and never raise on odd input.
"""

from harness.samplers.parsers.android_battery import BatteryService, parse_dumpsys_battery
from harness.samplers.parsers.batterystats import (
    EstimatedPower,
    HistoryPoint,
    parse_battery_history,
    parse_estimated_power,
)
from harness.samplers.parsers.cpuinfo import CpuInfo, parse_cpuinfo
from harness.samplers.parsers.getprop import Props, parse_getprop
from harness.samplers.parsers.ios_battery import (
    GasGauge,
    SmartBattery,
    parse_gasgauge,
    parse_pyidevice_battery,
    parse_smart_battery,
)
from harness.samplers.parsers.ios_info import IosDeviceFacts, parse_ideviceinfo, parse_lockdown_json
from harness.samplers.parsers.ios_perf import GidevicePerf, TidevicePerf, parse_gidevice_perf, parse_tidevice_perf
from harness.samplers.parsers.ios_sysmon import ProcessSample, SystemSample, parse_sysmon_process, parse_sysmon_system
from harness.samplers.parsers.meminfo import AppMeminfo, parse_meminfo
from harness.samplers.parsers.power_supply import PowerSupply, parse_sysfs_listing, parse_uevent
from harness.samplers.parsers.thermal import ThermalService, ThermalZone, parse_thermal_zones, parse_thermalservice

__all__ = [
    "AppMeminfo",
    "BatteryService",
    "CpuInfo",
    "EstimatedPower",
    "GasGauge",
    "GidevicePerf",
    "HistoryPoint",
    "IosDeviceFacts",
    "PowerSupply",
    "ProcessSample",
    "Props",
    "SmartBattery",
    "SystemSample",
    "ThermalService",
    "ThermalZone",
    "TidevicePerf",
    "parse_battery_history",
    "parse_cpuinfo",
    "parse_dumpsys_battery",
    "parse_estimated_power",
    "parse_gasgauge",
    "parse_getprop",
    "parse_gidevice_perf",
    "parse_ideviceinfo",
    "parse_lockdown_json",
    "parse_meminfo",
    "parse_pyidevice_battery",
    "parse_smart_battery",
    "parse_sysfs_listing",
    "parse_sysmon_process",
    "parse_sysmon_system",
    "parse_thermal_zones",
    "parse_thermalservice",
    "parse_tidevice_perf",
    "parse_uevent",
]
