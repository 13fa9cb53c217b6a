"""Telemetry parsers on the real device captures of tests/data/corpus (values read by eye), plus the
layouts the corpus lacks (HAL thermal block, sysfs temps), written from the AOSP/kernel formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.samplers import parsers as p

CORPUS = Path(__file__).parent / "data" / "corpus"


def body(name: str) -> str:
    """The capture without its ``# source`` ... ``# ---`` provenance header."""
    return (CORPUS / name).read_text(encoding="utf-8").split("# ---\n", 1)[1]


def test_dumpsys_battery_samsung_with_vendor_keys():
    b = p.parse_dumpsys_battery(body("android_dumpsys_battery__samsung_unknown__2018__01.txt"))
    assert (b.usb_powered, b.ac_powered, b.status, b.health) == (True, False, "charging", "good")
    assert (b.level, b.scale, b.voltage_mv, b.temperature_dc) == (84, 100, 4063, 326)
    assert b.temperature_c == pytest.approx(32.6)
    assert b.current_now_ma == 321 and b.charge_counter_uah == 0
    assert b.extras["mSavedBatteryAsoc"] == "77" and b.extras["charge counter"] == "0"
    assert b.dock_powered is None


def test_dumpsys_battery_full_and_acc_section():
    b = p.parse_dumpsys_battery(body("android_dumpsys_battery__samsung_unknown__oneui__01.txt"))
    assert (b.status, b.level, b.voltage_mv, b.charge_counter_uah) == ("full", 100, 4312, 2967000)
    acc = p.parse_dumpsys_battery(body("android_acc_info_battery_uevent__oneplus7__lineageos20__01.txt"))
    assert (acc.status, acc.level, acc.voltage_mv, acc.temperature_dc, acc.charge_counter_uah) == (
        "discharging",
        77,
        3985,
        294,
        2849000,
    )


@pytest.mark.parametrize(
    "name,layout,pid,total_pss,total_rss,swap",
    [
        (
            "android_dumpsys_meminfo__unknown_android1x__app_full_with_app_summary__01.txt",
            "android10",
            5369,
            39321,
            124676,
            545,
        ),
        ("android_dumpsys_meminfo__unknown_android8-9__gfx_mtrack__01.txt", "android8", 23104, 174545, None, 303),
        ("android_dumpsys_meminfo__unknown_android6__chrome__01.txt", "android6", 9702, 8828, None, None),
    ],
)
def test_meminfo_layouts(name, layout, pid, total_pss, total_rss, swap):
    m = p.parse_meminfo(body(name))
    assert (m.layout, m.pid, m.total_pss_kb, m.total_rss_kb, m.total_swap_pss_kb) == (
        layout,
        pid,
        total_pss,
        total_rss,
        swap,
    )
    native = m.row("Native Heap")
    assert native is not None and native.values_kb["heap_size"] > 0


def test_meminfo_details():
    m10 = p.parse_meminfo(body("android_dumpsys_meminfo__unknown_android1x__app_full_with_app_summary__01.txt"))
    assert m10.process == "org.ming.mgo"
    assert m10.row("Native Heap").values_kb == {
        "pss_total": 12523,
        "private_dirty": 12464,
        "private_clean": 36,
        "swappss_dirty": 53,
        "rss_total": 13460,
        "heap_size": 22464,
        "heap_alloc": 16561,
        "heap_free": 1277,
    }
    assert m10.row("Dalvik Other").values_kb == {
        "pss_total": 1586,
        "private_dirty": 1536,
        "private_clean": 0,
        "swappss_dirty": 10,
        "rss_total": 1868,
    }
    assert m10.summary_pss_kb["Code"] == 15888 and m10.summary_rss_kb["Code"] == 88088
    assert "Unknown" not in m10.summary_pss_kb and m10.summary_rss_kb["Unknown"] == 4000  # Rss-only row
    m6 = p.parse_meminfo(body("android_dumpsys_meminfo__unknown_android6__chrome__01.txt"))
    assert m6.row("Dalvik Heap").values_kb["swapped_dirty"] == 0 and m6.row("TOTAL").values_kb == {
        "pss_total": 8828,
        "private_dirty": 2700,
    }
    m8 = p.parse_meminfo(body("android_dumpsys_meminfo__unknown_android8-9__gfx_mtrack__01.txt"))
    assert m8.row("EGL mtrack").pss_total_kb == 29388 and m8.summary_pss_kb["Graphics"] == 60288


def test_thermalservice_cached_only_when_no_hal_block():
    t = p.parse_thermalservice(body("android_dumpsys_thermalservice__nvidia_shield_tv_pro_2019__01.txt"))
    assert (t.status, t.hal_ready, t.source) == (0, True, "cached")
    assert [(x.name, x.value_c, x.type) for x in t.temperatures[:2]] == [("GPU", 36.0, "gpu"), ("CPU0", 37.0, "cpu")]


AOSP_THERMAL = """IsStatusOverride: false
ThermalEventListeners:
\tcallbacks: 1
Thermal Status: 1
Cached temperatures:
\tTemperature{mValue=99.0, mType=3, mName=skin, mStatus=0}
HAL Ready: true
HAL connection:
\tThermalHAL 2.0 connected: yes
Current temperatures from HAL:
\tTemperature{mValue=41.5, mType=3, mName=skin, mStatus=1}
\tTemperature{mValue=55.25, mType=0, mName=cpu0, mStatus=0}
\tTemperature{mValue=30.1, mType=2, mName=battery, mStatus=0}
Current cooling devices from HAL:
\tCoolingDevice{mValue=2, mType=2, mName=cpu0}
Temperature static thresholds from HAL:
\tTemperatureThreshold{mType=0, mName=cpu0, mHotThrottlingThresholds=[NaN, 95.0], mColdThrottlingThresholds=[NaN]}
"""


def test_thermalservice_prefers_hal_block():
    t = p.parse_thermalservice(AOSP_THERMAL)
    assert t.source == "hal" and t.status == 1
    assert [(x.name, x.value_c, x.throttling_status) for x in t.temperatures] == [
        ("skin", 41.5, 1),
        ("cpu0", 55.25, 0),
        ("battery", 30.1, 0),
    ]
    assert [(x.name, x.value_c) for x in t.cached] == [("skin", 99.0)]
    assert [(c.name, c.value) for c in t.cooling_devices] == [("cpu0", 2)]


def test_thermal_zone_listings():
    kugo = p.parse_thermal_zones(body("android_thermal_zone_types__sony_xperia_x_compact_kugo__01.txt"))
    assert [(z.index, z.type) for z in kugo[:3]] == [(0, "bms"), (1, "battery"), (2, "pa_therm1")]
    assert kugo[-1].index == 14 and kugo[-1].temp_raw is None  # the cut-off 15th command has no answer
    jetson = p.parse_thermal_zones(body("linux_thermal_zone_types__jetson_nano_2gb__01.txt"))
    assert [z.type for z in jetson] == [
        "AO-therm",
        "CPU-therm",
        "GPU-therm",
        "PLL-therm",
        "PMIC-Die",
        "thermal-fan-est",
    ]
    grep = "/sys/class/thermal/thermal_zone0/type:cpu-0-0\n/sys/class/thermal/thermal_zone0/temp:43800\n"
    grep += "/sys/class/thermal/thermal_zone1/type:tsens_tz_sensor1\n/sys/class/thermal/thermal_zone1/temp:38\n"
    zones = p.parse_thermal_zones(grep)
    assert [(z.type, z.temp_raw, z.temp_c) for z in zones] == [("cpu-0-0", 43800, 43.8), ("tsens_tz_sensor1", 38, 38.0)]


def test_power_supply_uevent_keeps_raw_sign_and_duplicates():
    pixel = p.parse_uevent(body("android_power_supply_battery_uevent__pixel3a__android9__01.txt"))
    assert (pixel.name, pixel.status, pixel.capacity_pct) == ("battery", "Not charging", 44)
    assert (pixel.voltage_now_uv, pixel.current_now_ua, pixel.temp_dc) == (3815175, 976, 313)
    assert (pixel.current_unit, pixel.voltage_unit) == ("uA", "uV")
    op7 = p.parse_uevent(body("android_acc_info_battery_uevent__oneplus7__lineageos20__01.txt"))
    assert op7.capacity_pct == 76 and op7.raw["CHARGE_COUNTER"] == ("2535012", "2812000")
    assert op7.charge_counter_uah == 2535012 and op7.charge_full_design_uah == 3588000
    assert "CURREN" not in op7.raw  # cut-off last line
    prefixed = p.parse_uevent("POWER_SUPPLY_NAME=battery\nPOWER_SUPPLY_CURRENT_NOW=-412000\nPOWER_SUPPLY_ONLINE=1\n")
    assert (prefixed.name, prefixed.current_now_ua, prefixed.online) == ("battery", -412000, True)


def test_power_supply_grep_listing():
    supplies = p.parse_sysfs_listing(body("linux_power_supply_battery_grep__nintendo_switch_l4t__01.txt"))
    b = supplies["battery"]
    assert (b.status, b.capacity_pct, b.current_now_ua, b.current_avg_ua, b.power_now_uw) == (
        "Full",
        100,
        -1248,
        -312,
        -5243,
    )
    assert (b.charge_full_uah, b.charge_full_design_uah, b.cycle_count) == (4428000, 4667000, 114)


def test_sysmontap_process_row():
    """A Sysmontap process dict as pymobiledevice3 hands it over: numbers kept, odd values read as None."""
    row = p.process_sample({"pid": 653, "name": "MobileSafari", "cpuUsage": None, "physFootprint": 32146312,
                            "memResidentSize": "n/a", "threadCount": 8, "__sandbox": True})
    assert (row.pid, row.name, row.cpu_usage_pct, row.phys_footprint_bytes, row.mem_resident_bytes, row.threads) == (
        653, "MobileSafari", None, 32146312, None, 8)
    assert row.raw["__sandbox"] is True
    assert p.process_sample({"cpuUsage": 286.3897552160728}).cpu_usage_pct == pytest.approx(286.3897552160728)
    odd = p.process_sample({"pid": float("nan"), "physFootprint": True})
    assert (odd.pid, odd.phys_footprint_bytes) == (None, None)


def test_ios_battery_registry():
    d = p.smart_battery({"Amperage": -500, "Voltage": 3900, "Temperature": 2950, "IsCharging": False})
    assert (d.amperage_ma, d.voltage_mv, d.temperature_c, d.is_charging, d.power_mw, d.current_ma) == (
        -500, 3900, 29.5, False, -1950.0, -500)
    fresh = p.smart_battery({"Amperage": -500, "InstantAmperage": -640, "AppleRawBatteryVoltage": 4100,
                             "ExternalConnected": True})
    assert (fresh.current_ma, fresh.voltage_mv, fresh.external_connected) == (-640, 4100, True)
    assert p.smart_battery({"Voltage": "x", "Amperage": None}).power_mw is None


def test_ios_device_facts():
    info = p.parse_ideviceinfo(body("ios_ideviceinfo_excerpt__iphone_xr_iphone11,8__ios13.3.1__01.txt"))
    assert (info.product_type, info.product_version, info.get("ProductName")) == ("iPhone11,8", "13.3.1", "iPhone OS")
    lockdown = p.parse_lockdown_json(
        body("ios_pymobiledevice3_lockdown_get_carrierbundleinfo__iphone_esim__windows__01.txt")
    )
    assert lockdown.get("CFBundleIdentifier") == "com.apple.ATT_NR_US" and len(lockdown.values) == 10


@pytest.mark.parametrize(
    "fn",
    [getattr(p, name) for name in p.__all__ if name.startswith("parse_")],
)
@pytest.mark.parametrize(
    "text", ["", "garbage\n\x00\t:[", "{", "<plist><dict><key>Amperage</key><integer>x", "[a]: [b"]
)
def test_telemetry_parsers_never_raise(fn, text):
    fn(text)
