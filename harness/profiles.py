"""Device profiles (``device_profiles/*.toml``): match rules and capabilities of a device family.

A profile says what a device can run (delegates, NNAPI accelerators), its class/tier, and
(for later sections) where its energy and thermal readings live. ``match`` picks the
highest-priority profile whose every ``[match]`` rule accepts the device's facts
(getprop keys on Android, lockdown keys on iOS); ``generic-<platform>`` is the fallback.
"""

from __future__ import annotations

import fnmatch
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import tomlfile
from harness.errors import ProfileError

PLATFORMS = ("android", "ios", "host")
DEVICE_CLASSES = ("flagship", "midrange", "lowend", "desktop", "virtual")
_REQUIRED = ("name", "platform")
_KNOWN = {
    "name": str, "platform": str, "marketing_name": str, "soc": str, "chip": str, "device_class": str,
    "tags": list, "delegates": list, "nnapi_accelerators": list, "priority": int, "neural_engine_cores": int,
    "match": dict, "properties": dict, "energy": dict, "thermal": dict, "cooldown": dict, "throttle": dict,
    "notes": str, "unavailable": dict,
}


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


def default_dir() -> Path:
    """``$HARNESS_PROFILES``, else the repository's ``device_profiles/`` next to the package."""
    env = os.environ.get("HARNESS_PROFILES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "device_profiles"


def parse_profile(data: dict[str, Any], path: Path) -> Profile:
    for key in _REQUIRED:
        if key not in data:
            raise ProfileError(path, f"missing required key {key!r}", key=key)
    for key, value in data.items():
        if key not in _KNOWN:
            raise ProfileError(path, f"unknown key {key!r}", key=key, hint=f"allowed: {', '.join(sorted(_KNOWN))}")
        if not isinstance(value, _KNOWN[key]) or isinstance(value, bool):
            raise ProfileError(path, f"expected {_KNOWN[key].__name__}, got {value!r}", key=key)
    if data["platform"] not in PLATFORMS:
        raise ProfileError(path, f"unknown platform {data['platform']!r}", key="platform",
                           hint=f"allowed: {', '.join(PLATFORMS)}")
    if data.get("device_class", "") and data["device_class"] not in DEVICE_CLASSES:
        raise ProfileError(path, f"unknown device_class {data['device_class']!r}", key="device_class",
                           hint=f"allowed: {', '.join(DEVICE_CLASSES)}")
    match = {k: tuple(v) if isinstance(v, list) else (str(v),) for k, v in data.get("match", {}).items()}
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
        properties={k: str(v) for k, v in data.get("properties", {}).items()},
        unavailable={k: str(v) for k, v in data.get("unavailable", {}).items()},
        extra=extra,
        path=str(path),
    )


def load_profile(path: Path) -> Profile:
    data = tomlfile.read(path, ProfileError, what="profile")
    profile = parse_profile(data, path)
    if profile.name != path.stem:
        raise ProfileError(path, f"name {profile.name!r} must equal the file stem {path.stem!r}", key="name")
    return profile


@functools.lru_cache(maxsize=8)
def _load_dir(directory: str) -> tuple[Profile, ...]:
    return tuple(load_profile(p) for p in sorted(Path(directory).glob("*.toml")))


def load_profiles(directory: str | Path | None = None) -> list[Profile]:
    """All profiles of ``directory`` (default :func:`default_dir`), validated."""
    return list(_load_dir(str(directory or default_dir())))


def find(name: str, directory: str | Path | None = None) -> Profile | None:
    """The profile called ``name``, or None (a device may name a profile this checkout does not have)."""
    return next((p for p in load_profiles(directory) if p.name == name), None) if name else None


def get(name: str, directory: str | Path | None = None) -> Profile:
    for p in load_profiles(directory):
        if p.name == name:
            return p
    raise ProfileError(Path(directory or default_dir()) / f"{name}.toml", "no such profile")


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
