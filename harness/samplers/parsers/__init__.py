"""Telemetry parsers: device readings as typed, unit-carrying frozen records (None when absent).

One module per source family: Android ``dumpsys`` services, sysfs/procfs listings,
the iOS tools' text (libimobiledevice, pymobiledevice3 lockdown), and the dicts pymobiledevice3 hands
the iOS backend (Sysmontap rows, the battery registry). The sampling itself lives elsewhere; these
only read and never raise on odd input.
"""

from harness.samplers.parsers.android_battery import BatteryService, parse_dumpsys_battery
from harness.samplers.parsers.ios_battery import SmartBattery, smart_battery
from harness.samplers.parsers.ios_info import IosDeviceFacts, parse_ideviceinfo, parse_lockdown_json
from harness.samplers.parsers.ios_sysmon import ProcessSample, process_sample
from harness.samplers.parsers.meminfo import AppMeminfo, parse_meminfo
from harness.samplers.parsers.power_supply import PowerSupply, parse_sysfs_listing, parse_uevent
from harness.samplers.parsers.thermal import ThermalService, ThermalZone, parse_thermal_zones, parse_thermalservice

__all__ = [
    "AppMeminfo",
    "BatteryService",
    "IosDeviceFacts",
    "PowerSupply",
    "ProcessSample",
    "SmartBattery",
    "ThermalService",
    "ThermalZone",
    "parse_dumpsys_battery",
    "parse_ideviceinfo",
    "parse_lockdown_json",
    "parse_meminfo",
    "parse_sysfs_listing",
    "parse_thermal_zones",
    "parse_thermalservice",
    "parse_uevent",
    "process_sample",
    "smart_battery",
]
