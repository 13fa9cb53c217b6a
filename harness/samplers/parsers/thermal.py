"""Thermal readings: ``dumpsys thermalservice`` (the HAL block preferred over the cached one) and
``/sys/class/thermal/thermal_zone*/{type,temp}`` listings in their usual shapes."""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.samplers.parsers._common import boolean, integer, real, text_lines

_TEMP = re.compile(r"Temperature\{(?P<body>[^}]*)\}")
_COOLING = re.compile(r"CoolingDevice\{(?P<body>[^}]*)\}")
_FIELD = re.compile(r"(\w+)=([^,}]*)")
TEMPERATURE_TYPES = {
    -1: "unknown",
    0: "cpu",
    1: "gpu",
    2: "battery",
    3: "skin",
    4: "usb_port",
    5: "power_amplifier",
    6: "bcl_voltage",
    7: "bcl_current",
    8: "bcl_percentage",
    9: "npu",
}


@dataclass(frozen=True)
class Temperature:
    name: str | None
    value_c: float | None
    type_code: int | None = None
    throttling_status: int | None = None

    @property
    def type(self) -> str | None:
        return TEMPERATURE_TYPES.get(self.type_code) if self.type_code is not None else None


@dataclass(frozen=True)
class CoolingDevice:
    name: str | None
    value: int | None
    type_code: int | None = None


@dataclass(frozen=True)
class ThermalService:
    """``temperatures`` come from ``Current temperatures from HAL`` when present (``source="hal"``),
    else from the possibly stale ``Cached temperatures`` (``source="cached"``)."""

    status: int | None = None
    hal_ready: bool | None = None
    source: str | None = None
    temperatures: tuple[Temperature, ...] = ()
    cached: tuple[Temperature, ...] = ()
    cooling_devices: tuple[CoolingDevice, ...] = ()


def _fields(body: str) -> dict[str, str]:
    return {k: v.strip() for k, v in _FIELD.findall(body)}


def parse_thermalservice(text: str) -> ThermalService:
    section = None
    status = hal_ready = None
    blocks: dict[str, list[Temperature]] = {"hal": [], "cached": []}
    cooling: list[CoolingDevice] = []
    for line in text_lines(text):
        s = line.strip()
        low = s.lower()
        if low.startswith("cached temperatures"):
            section = "cached"
        elif low.startswith("current temperatures from hal"):
            section = "hal"
        elif low.startswith("current cooling devices"):
            section = "cooling"
        elif s.endswith(":") and not line[:1].isspace():
            section = None
        if s.startswith("Thermal Status:"):
            status = integer(s.split(":", 1)[1])
        elif s.startswith("HAL Ready:"):
            hal_ready = boolean(s.split(":", 1)[1])
        m = _TEMP.search(s)
        if m and section in ("hal", "cached"):
            f = _fields(m.group("body"))
            blocks[section].append(
                Temperature(
                    name=f.get("mName"),
                    value_c=real(f.get("mValue")),
                    type_code=integer(f.get("mType")),
                    throttling_status=integer(f.get("mStatus")),
                )
            )
        m = _COOLING.search(s)
        if m and section == "cooling":
            f = _fields(m.group("body"))
            cooling.append(CoolingDevice(f.get("mName"), integer(f.get("mValue")), integer(f.get("mType"))))
    source = "hal" if blocks["hal"] else ("cached" if blocks["cached"] else None)
    return ThermalService(
        status=status,
        hal_ready=hal_ready,
        source=source,
        temperatures=tuple(blocks["hal"] or blocks["cached"]),
        cached=tuple(blocks["cached"]),
        cooling_devices=tuple(cooling),
    )


@dataclass(frozen=True)
class ThermalZone:
    """One ``thermal_zoneN``: its type and raw ``temp`` (sysfs ABI: millidegrees C; some old
    Qualcomm kernels print whole degrees, hence ``temp_c`` treats |raw| < 200 as degrees)."""

    index: int
    type: str | None = None
    temp_raw: int | None = None

    @property
    def temp_c(self) -> float | None:
        if self.temp_raw is None:
            return None
        return self.temp_raw / 1000.0 if abs(self.temp_raw) >= 200 else float(self.temp_raw)


_ZONE_PATH = re.compile(r"thermal_zone(?P<n>\d+)(?:/(?P<attr>type|temp))?")


def parse_thermal_zones(text: str) -> tuple[ThermalZone, ...]:
    """Reads ``path:value`` (``grep .``), ``path: value`` (echo loops) and ``cat .../type`` + output lines."""
    zones: dict[int, dict[str, str]] = {}
    pending: tuple[int, str] | None = None
    for line in text_lines(text):
        s = line.strip()
        if not s:
            continue
        m = _ZONE_PATH.search(s)
        if m:
            n, attr = int(m.group("n")), m.group("attr") or "type"
            tail = s[m.end() :]
            if re.match(r"^\s*:", tail) and tail.split(":", 1)[1].strip():
                zones.setdefault(n, {})[attr] = tail.split(":", 1)[1].strip()
                pending = None
            elif re.search(r"\b(?:cat|head|tail)\b", s[: m.start()]):
                pending = (n, attr)  # the value is on the next line
            continue
        if pending is not None:
            zones.setdefault(pending[0], {})[pending[1]] = s
            pending = None
    return tuple(
        ThermalZone(index=n, type=attrs.get("type"), temp_raw=integer(attrs.get("temp")))
        for n, attrs in sorted(zones.items())
    )
