"""Device profiles (``device_profiles/*.toml``): match rules and capabilities of a device family.

The profiles ship inside the package (``harness/device_profiles``; the repository's top-level
``device_profiles/`` is the same folder). ``$HARNESS_PROFILES`` adds a user's own folders
(``os.pathsep``-separated): a user's profile wins over a bundled one of the same name.

A profile says what a device can run (delegates, NNAPI accelerators), its class/tier, and
(for later sections) where its energy and thermal readings live. ``match`` picks the
highest-priority profile whose every ``[match]`` rule accepts the device's facts
(getprop keys on Android, lockdown keys on iOS); ``generic-<platform>`` is the fallback.
"""

from __future__ import annotations

import fnmatch
import functools
import math
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import tomlfile
from harness.errors import ConfigError, ProfileError

PLATFORMS = ("android", "ios", "host", "endpoint")
DEVICE_CLASSES = ("flagship", "midrange", "lowend", "desktop", "virtual", "server")
_REQUIRED = ("name", "platform")
# Top-level keys and their types; the four sampler tables are checked against the samplers' dataclasses.
_KNOWN: dict[str, Any] = {
    "name": str, "platform": str, "marketing_name": str, "soc": str, "chip": str, "device_class": str,
    "tags": tuple[str, ...], "delegates": tuple[str, ...], "nnapi_accelerators": tuple[str, ...], "priority": int,
    "neural_engine_cores": int, "match": dict[str, tuple[str, ...] | str], "properties": dict[str, str],
    "energy": dict, "thermal": dict, "cooldown": dict, "throttle": dict, "notes": str,
    "unavailable": dict[str, str], "npu_backend": str, "emulation": str,
}
# Values a sampler setting may take beyond its type: (test, what the test asks for).
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "source": (lambda v: v in ("power_supply", "rapl", "none"), "one of power_supply, rapl, none"),
    "current_unit": (lambda v: v.lower() in ("ua", "ma"), "uA or mA"),
    "voltage_unit": (lambda v: v.lower() in ("uv", "mv"), "uV or mV"),
    "discharge_sign": (lambda v: v in (-1, 1), "-1 or 1"),
    "interval_s": (lambda v: v > 0, "a positive number of seconds"),
    "poll_s": (lambda v: v > 0, "a positive number of seconds"),
    "idle_s": (lambda v: v >= 0, "seconds >= 0"),
    "pause_s": (lambda v: v >= 0, "seconds >= 0"),
    "timeout_s": (lambda v: v > 0, "a positive number of seconds"),
    "stall_s": (lambda v: v > 0, "a positive number of seconds"),
    "min_drop_c": (lambda v: v >= 0, "degrees >= 0"),
    "throttle_status": (lambda v: 0 <= v <= 6, "a thermal status 0..6"),
    "min_freq_ratio": (lambda v: 0 <= v <= 1, "a ratio 0..1"),
    "freq_drop": (lambda v: 0 <= v <= 1, "a ratio 0..1"),
    "latency_drift": (lambda v: v >= 0, "a fraction >= 0"),
    "min_iterations": (lambda v: v >= 1, "an integer >= 1"),
    "mode": (lambda v: v in ("off", "threshold", "pause"), "one of off, threshold, pause"),
}
#: `emulation`: the device's code runs translated on another CPU (its latencies are labelled emulated, never gated
#: against another device); qemu-aarch64 = arm64 code under qemu-user (the arm64 virtual device).
EMULATIONS = ("qemu-aarch64",)
NPU_BACKENDS = ("CPU", "GPU", "NPU")  # `npu_backend`: the OpenVINO device the host's npu delegate compiles to


@dataclass(frozen=True)
class Profile:
    name: str
    platform: str
    marketing_name: str = ""
    soc: str = ""
    device_class: str = ""
    tags: tuple[str, ...] = ()
    delegates: tuple[str, ...] = ("cpu", "xnnpack")
    nnapi_accelerators: tuple[str, ...] = ()
    priority: int = 0
    match: dict[str, tuple[str, ...]] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    npu_backend: str = "CPU"  # the OpenVINO device the host's npu delegate compiles to (one of NPU_BACKENDS)
    emulation: str = ""  # one of EMULATIONS: the device's code is translated (latencies labelled emulated)
    extra: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    def matches(self, facts: dict[str, str]) -> bool:
        if not self.match:
            return False
        return all(
            any(fnmatch.fnmatchcase(str(facts.get(key, "")), pat) for pat in patterns)
            for key, patterns in self.match.items()
        )

    def supports(self, delegate: str) -> bool:
        return delegate in self.delegates

    def lacks_reason(self, delegate: str) -> str:
        """Why this device cannot run ``delegate`` (the profile's own words when it gives them)."""
        why = self.unavailable.get(delegate)
        base = f"device profile {self.name!r} lacks delegate {delegate!r} (has: {', '.join(self.delegates)})"
        return f"{base}: {why}" if why else base


PROFILES_ENV = "HARNESS_PROFILES"
BUNDLED_DIR = Path(__file__).resolve().parent / "device_profiles"


def default_dir() -> Path:
    """The profiles shipped with the package (in a wheel too)."""
    return BUNDLED_DIR


def user_dirs(value: str | None = None) -> tuple[Path, ...]:
    """The user's profile folders: ``value`` (default ``$HARNESS_PROFILES``, read now), ``os.pathsep``-separated.

    A named folder that is not there is a :class:`ConfigError` (a typo would silently fall back to generic).
    """
    if value is None:
        value = os.environ.get(PROFILES_ENV, "")
    dirs = tuple(Path(p).expanduser() for p in value.split(os.pathsep) if p)
    for folder in dirs:
        if not folder.is_dir():
            raise ConfigError(folder, f"{PROFILES_ENV} names a folder that does not exist",
                              hint=f"{PROFILES_ENV} is a list of folders of *.toml profiles separated by "
                                   f"{os.pathsep!r}")
    return dirs


def search_path() -> tuple[Path, ...]:
    """Where profiles come from, strongest first: the user's folders in order, then the bundled ones."""
    return (*user_dirs(), BUNDLED_DIR)


def _type_ok(value: Any, expected: Any) -> bool:
    """``value`` (as TOML gives it) fits the annotation ``expected`` (a tuple is a TOML array)."""
    args = typing.get_args(expected)
    origin = typing.get_origin(expected)
    if origin in (types.UnionType, typing.Union):
        return any(_type_ok(value, a) for a in args if a is not type(None))
    if origin is tuple:
        return isinstance(value, list) and all(_type_ok(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(_type_ok(v, args[1]) for v in value.values())
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _type_name(expected: Any) -> str:
    args = typing.get_args(expected)
    origin = typing.get_origin(expected)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in args if a is not type(None))
    if origin is tuple:
        return f"a list of {_type_name(args[0])}s"
    if origin is dict:
        return f"a table of {_type_name(args[1])}s"
    names = {float: "number", int: "integer", str: "string", bool: "true/false", dict: "table"}
    return names.get(expected, str(expected))


def _table_schemas() -> dict[str, dict[str, Any]]:
    """Key -> type of ``[energy]``, ``[thermal]``, ``[cooldown]``, ``[throttle]``: the fields the samplers read."""
    from harness.samplers import cooldown, energy, thermal, throttle  # local: samplers import device code

    schemas = {table: typing.get_type_hints(cls) for table, cls in (
        ("energy", energy.EnergyConfig), ("thermal", thermal.ThermalConfig),
        ("cooldown", cooldown.CooldownConfig), ("throttle", throttle.ThrottleLimits))}
    schemas["cooldown"]["watch"] = str  # the zone cooldown watches (read by the thermal sampler)
    return schemas


def _check(src: tomlfile.Source, key: str, value: Any, expected: Any, table: str | None = None) -> None:
    """``value`` fits ``expected``; a table's wrong entry is named by its own key and line."""
    if typing.get_origin(expected) is dict and isinstance(value, dict):
        for sub, subvalue in value.items():
            _check(src, sub, subvalue, typing.get_args(expected)[1], key)
    elif not _type_ok(value, expected):
        raise src.error(f"expected {_type_name(expected)}, got {type(value).__name__} {value!r}", key, table,
                        hint="quote text, write numbers bare, lists as [\"a\", \"b\"]")


def _validate(data: dict[str, Any], src: tomlfile.Source) -> None:
    """Every key and value of a profile, the sampler tables included, so a bad one fails at load with its line."""
    for key in _REQUIRED:
        if key not in data:
            raise src.error(f"missing required key {key!r}", key)
    schemas = _table_schemas()
    for key, value in data.items():
        if key not in _KNOWN:
            raise src.error(f"unknown key {key!r}", key, hint=f"allowed: {', '.join(sorted(_KNOWN))}")
        _check(src, key, value, _KNOWN[key])
        if key in schemas:
            for sub, subvalue in value.items():
                if sub not in schemas[key]:
                    raise src.error(f"unknown key {sub!r} in [{key}]", sub, key,
                                    hint=f"allowed: {', '.join(sorted(schemas[key]))}")
                _check(src, sub, subvalue, schemas[key][sub], key)
                rule = _RULES.get(sub)
                if rule and not rule[0](subvalue):
                    raise src.error(f"must be {rule[1]}, got {subvalue!r}", sub, key)
    if data["platform"] not in PLATFORMS:
        raise src.error(f"unknown platform {data['platform']!r}", "platform", hint=f"allowed: {', '.join(PLATFORMS)}")
    if data.get("npu_backend", "CPU") not in NPU_BACKENDS:
        raise src.error(f"unknown npu_backend {data['npu_backend']!r}", "npu_backend",
                        hint=f"allowed: {', '.join(NPU_BACKENDS)}")
    if data.get("emulation", "") and data["emulation"] not in EMULATIONS:
        raise src.error(f"unknown emulation {data['emulation']!r}", "emulation",
                        hint=f"allowed: {', '.join(EMULATIONS)}")
    if data.get("device_class", "") and data["device_class"] not in DEVICE_CLASSES:
        raise src.error(f"unknown device_class {data['device_class']!r}", "device_class",
                        hint=f"allowed: {', '.join(DEVICE_CLASSES)}")


def parse_profile(data: dict[str, Any], path: Path, text: str = "") -> Profile:
    """A validated :class:`Profile` from parsed TOML; ``text`` (the file) puts the line into errors."""
    _validate(data, tomlfile.Source(path, text, ProfileError))
    match = {k: tuple(v) if isinstance(v, list) else (v,) for k, v in data.get("match", {}).items()}
    extra = {k: data[k] for k in ("chip", "neural_engine_cores", "energy", "thermal", "cooldown", "throttle", "notes")
             if k in data}
    return Profile(
        name=data["name"],
        platform=data["platform"],
        marketing_name=data.get("marketing_name", ""),
        soc=data.get("soc", data.get("chip", "")),
        device_class=data.get("device_class", ""),
        tags=tuple(data.get("tags", ())),
        delegates=tuple(data.get("delegates", ("cpu", "xnnpack"))),
        nnapi_accelerators=tuple(data.get("nnapi_accelerators", ())),
        priority=data.get("priority", 0),
        match=match,
        properties=dict(data.get("properties", {})),
        unavailable=dict(data.get("unavailable", {})),
        npu_backend=data.get("npu_backend", "CPU"),
        emulation=data.get("emulation", ""),
        extra=extra,
        path=str(path),
    )


def load_profile(path: Path) -> Profile:
    text = tomlfile.read_text(path, ProfileError, what="profile")
    profile = parse_profile(tomlfile.parse(text, path, ProfileError), path, text)
    if profile.name != path.stem:
        raise tomlfile.Source(path, text, ProfileError).error(
            f"name {profile.name!r} must equal the file stem {path.stem!r}", "name")
    return profile


@functools.lru_cache(maxsize=8)
def _load_dirs(directories: tuple[str, ...]) -> tuple[Profile, ...]:
    """Every profile of ``directories`` (strongest first); a name found twice keeps the first one."""
    found: dict[str, Profile] = {}
    for directory in directories:
        for path in sorted(Path(directory).glob("*.toml")):
            profile = load_profile(path)
            found.setdefault(profile.name, profile)
    return tuple(sorted(found.values(), key=lambda p: p.name))


def load_profiles(directory: str | Path | None = None) -> list[Profile]:
    """All profiles, validated: of ``directory`` alone when given, else of :func:`search_path`."""
    dirs = (Path(directory),) if directory else search_path()
    return list(_load_dirs(tuple(str(d) for d in dirs)))


def profile_file(name: str) -> Path | None:
    """The file of the profile called ``name`` on :func:`search_path` (a user's folder first), or None."""
    for folder in search_path():
        path = folder / f"{name}.toml"
        if path.is_file():
            return path
    return None


def find(name: str, directory: str | Path | None = None) -> Profile | None:
    """The profile called ``name``, or None (a device may name a profile this checkout does not have)."""
    return next((p for p in load_profiles(directory) if p.name == name), None) if name else None


def get(name: str, directory: str | Path | None = None) -> Profile:
    for p in load_profiles(directory):
        if p.name == name:
            return p
    dirs = (Path(directory),) if directory else search_path()
    raise ProfileError(dirs[-1] / f"{name}.toml", "no such profile", hint=f"looked in {', '.join(map(str, dirs))}")


def match(facts: dict[str, str], platform: str, directory: str | Path | None = None) -> Profile:
    """The best profile for a device's facts, or the ``generic-<platform>`` fallback."""
    profiles = [p for p in load_profiles(directory) if p.platform == platform]
    hits = sorted((p for p in profiles if p.matches(facts)), key=lambda p: -p.priority)
    if hits:
        return hits[0]
    for p in profiles:
        if p.name == f"generic-{platform}":
            return p
    return Profile(name=f"generic-{platform}", platform=platform)
