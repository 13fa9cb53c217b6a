"""What the virtual device says about itself: ``getprop`` answers and simulated sensors.

The default ``virtual`` profile describes the host honestly (its ABI); any other
name is looked up among the device profiles (``$HARNESS_PROFILES`` folders, then the bundled
``device_profiles/NAME.toml``; its ``[properties]`` table),
or given as a path to such a file, so the device can pose as a Pixel 7.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path

from harness import profiles, tomlfile
from harness.errors import ProfileError

DEFAULT_PROFILE = "virtual"
_ABIS = {"x86_64": ("x86_64", "x86_64,x86"), "aarch64": ("arm64-v8a", "arm64-v8a,armeabi-v7a,armeabi")}


def _host_abi() -> tuple[str, str]:
    return _ABIS.get(platform.machine(), (platform.machine(), platform.machine()))


def virtual_properties(serial: str) -> dict[str, str]:
    """Properties of the built-in ``virtual`` profile (the host's ABI, Android 14 / SDK 34)."""
    abi, abilist = _host_abi()
    return {
        "ro.product.manufacturer": "edgeharness",
        "ro.product.brand": "edgeharness",
        "ro.product.model": "Virtual Device",
        "ro.product.name": "edgeharness_virtual",
        "ro.product.device": "virtual",
        "ro.product.board": "virtual",
        "ro.board.platform": "virtual",
        "ro.hardware": "virtual",
        "ro.soc.manufacturer": "edgeharness",
        "ro.soc.model": "VirtualSoC",
        "ro.build.version.sdk": "34",
        "ro.build.version.release": "14",
        "ro.build.type": "userdebug",
        "ro.build.fingerprint": "edgeharness/edgeharness_virtual/virtual:14/EH1/1:userdebug/test-keys",
        "ro.product.cpu.abi": abi,
        "ro.product.cpu.abilist": abilist,
        "ro.serialno": serial,
        "ro.secure": "1",
        "ro.debuggable": "1",
        "sys.boot_completed": "1",
        "edgeharness.virtual": "1",
    }


@dataclass(frozen=True)
class Sensors:
    """Simulated battery and thermal readings written under ``/sys/class``."""

    battery_capacity_pct: int = 87
    battery_status: str = "Discharging"
    battery_voltage_uv: int = 3_950_000
    battery_current_ua: int = -420_000
    battery_temp_decic: int = 291
    thermal_zones: tuple[tuple[str, int], ...] = (("cpu-0-0", 41_500), ("battery", 29_100), ("skin", 33_000))
    cpu_max_freq_khz: int = 2_400_000


@dataclass(frozen=True)
class DeviceProfile:
    """Name, ``getprop`` properties and sensors of one virtual device."""

    name: str
    properties: dict[str, str] = field(default_factory=dict)
    sensors: Sensors = Sensors()
    has_python: bool = True
    emulation: str = ""  # "qemu-aarch64": the userland is arm64 code under qemu-user (harness.testing.android.arm64)


def load_profile(name: str = DEFAULT_PROFILE, *, serial: str = "EH-VIRTUAL-0001") -> DeviceProfile:
    """Resolve ``name`` (``virtual``, a profile name in ``device_profiles/`` or a TOML path).

    Profile properties override the virtual defaults, so a partial ``[properties]``
    table still gives a complete device.
    """
    props = virtual_properties(serial)
    if name == DEFAULT_PROFILE:
        return DeviceProfile(name, props)
    path = Path(name)
    if path.suffix != ".toml":  # a name: the user's profile folders ($HARNESS_PROFILES) first, then the bundled
        path = profiles.profile_file(name) or profiles.default_dir() / f"{name}.toml"
    if not path.is_file():
        raise ProfileError(path, f"no device profile named {name!r}", hint="use 'virtual' or a device_profiles/*.toml")
    text = tomlfile.read_text(path, ProfileError, what="profile")
    data = tomlfile.parse(text, path, ProfileError)
    if "platform" in data:  # a full device profile: checked as the harness checks it
        profile = profiles.parse_profile(data, path, text)
        props.update(profile.properties)
        return DeviceProfile(profile.name, props, emulation=profile.emulation)
    src = tomlfile.Source(path, text, ProfileError)
    for key in data:
        if key not in ("name", "properties"):
            raise src.error(f"unknown key {key!r}", key, hint="a virtual-device profile has name and [properties]")
    extra = data.get("properties", {})
    if not isinstance(extra, dict) or not all(isinstance(v, str) for v in extra.values()):
        raise src.error("[properties] must be a table of strings", "properties", hint='"ro.product.model" = "Pixel 7"')
    if not isinstance(data.get("name", ""), str):
        raise src.error("name must be a string", "name")
    props.update(extra)
    return DeviceProfile(str(data.get("name", path.stem)), props)
