"""iPhone battery readings: IORegistry ``AppleSmartBattery`` (libimobiledevice XML plist after its
status line, pymobiledevice3 JSON, or a Python dict repr), the diagnostics ``GasGauge`` dict,
and py-ios-device's ``[Battery] time=..., current=...`` lines.

The XML reader tolerates a capture cut mid-document: whatever was complete is kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.samplers.parsers._common import boolean, integer, json_after_preamble, python_literal, real, text_lines

_TAG = re.compile(r"<(?P<close>/?)(?P<tag>[A-Za-z]+)\s*(?P<empty>/?)>|(?P<text>[^<]+)")
_BATTERY_KEYS = ("Amperage", "Voltage", "CycleCount", "DesignCapacity", "AppleRawCurrentCapacity", "Temperature")


def plist_xml(text: str) -> object | None:
    """A plist's root object from XML text, tolerant of truncation (open containers are closed)."""
    stack: list[list[object] | dict[str, object]] = []
    root: object | None = None
    pending_key: list[str | None] = []
    scalar: tuple[str, str] | None = None

    def put(value: object) -> None:
        nonlocal root
        if not stack:
            root = value if root is None else root
            return
        top = stack[-1]
        if isinstance(top, dict):
            key = pending_key[-1]
            if key is not None:
                top[key] = value
                pending_key[-1] = None
        else:
            top.append(value)

    for m in _TAG.finditer(text):
        tag, close, empty, txt = m.group("tag"), m.group("close"), m.group("empty"), m.group("text")
        if txt is not None:
            if scalar is not None:
                scalar = (scalar[0], scalar[1] + txt)
            continue
        if tag in ("dict", "array") and not close and not empty:
            container: list[object] | dict[str, object] = {} if tag == "dict" else []
            put(container)
            stack.append(container)
            pending_key.append(None)
        elif tag in ("dict", "array") and close and stack:
            stack.pop()
            pending_key.pop()
        elif tag in ("dict", "array") and empty:
            put({} if tag == "dict" else [])
        elif tag in ("true", "false") and empty:
            put(tag == "true")
        elif not close and not empty and tag in ("key", "string", "integer", "real", "date", "data"):
            scalar = (tag, "")
        elif close and scalar is not None and tag == scalar[0]:
            kind, value = scalar
            scalar = None
            if kind == "key":
                if stack and isinstance(stack[-1], dict):
                    pending_key[-1] = value
            elif kind == "integer":
                put(integer(value))
            elif kind == "real":
                put(real(value))
            else:
                put(value)
    return root


def _document(text: str) -> object | None:
    if "<plist" in text or "<dict>" in text:
        return plist_xml(text)
    doc = json_after_preamble(text)
    if doc is not None:
        return doc
    start = text.find("{")
    return python_literal(text[start:]) if start >= 0 else None


def _find_battery(obj: object) -> dict[str, object] | None:
    if isinstance(obj, dict):
        if any(k in obj for k in _BATTERY_KEYS):
            return obj
        for value in obj.values():
            found = _find_battery(value)
            if found is not None:
                return found
    elif isinstance(obj, list):
        for value in obj:
            found = _find_battery(value)
            if found is not None:
                return found
    return None


@dataclass(frozen=True)
class SmartBattery:
    """AppleSmartBattery: mA (negative while discharging), mV, mAh; ``Temperature`` is centi-degrees C.
    ``current_capacity``/``max_capacity`` are % on recent iOS (mAh on older); raw_* are mAh."""

    amperage_ma: int | None = None
    instant_amperage_ma: int | None = None
    voltage_mv: int | None = None
    current_capacity: int | None = None
    max_capacity: int | None = None
    raw_current_capacity_mah: int | None = None
    raw_max_capacity_mah: int | None = None
    design_capacity_mah: int | None = None
    nominal_charge_capacity_mah: int | None = None
    cycle_count: int | None = None
    temperature_cc: int | None = None
    is_charging: bool | None = None
    external_connected: bool | None = None
    fully_charged: bool | None = None
    raw: dict[str, object] = field(default_factory=dict)

    @property
    def temperature_c(self) -> float | None:
        return None if self.temperature_cc is None else self.temperature_cc / 100.0

    @property
    def power_mw(self) -> float | None:
        """Voltage x amperage, with the amperage's sign (negative while discharging)."""
        if self.voltage_mv is None or self.amperage_ma is None:
            return None
        return self.voltage_mv * self.amperage_ma / 1000.0


def parse_smart_battery(text: str) -> SmartBattery:
    raw = _find_battery(_document(text)) or {}

    def i(key: str) -> int | None:
        return integer(raw.get(key))

    return SmartBattery(
        amperage_ma=i("Amperage"),
        instant_amperage_ma=i("InstantAmperage"),
        voltage_mv=i("Voltage") if i("Voltage") is not None else i("AppleRawBatteryVoltage"),
        current_capacity=i("CurrentCapacity"),
        max_capacity=i("MaxCapacity"),
        raw_current_capacity_mah=i("AppleRawCurrentCapacity"),
        raw_max_capacity_mah=i("AppleRawMaxCapacity"),
        design_capacity_mah=i("DesignCapacity"),
        nominal_charge_capacity_mah=i("NominalChargeCapacity"),
        cycle_count=i("CycleCount"),
        temperature_cc=i("Temperature"),
        is_charging=boolean(raw.get("IsCharging")),
        external_connected=boolean(raw.get("ExternalConnected")),
        fully_charged=boolean(raw.get("FullyCharged")),
        raw=dict(raw),
    )


@dataclass(frozen=True)
class GasGauge:
    """Diagnostics GasGauge; some devices report ``FullChargeCapacity`` as 100 (a percentage), kept as sent."""

    cycle_count: int | None = None
    design_capacity_mah: int | None = None
    full_charge_capacity: int | None = None
    status: str | None = None


def parse_gasgauge(text: str) -> GasGauge:
    doc = _document(text)
    gauge = doc.get("GasGauge", doc) if isinstance(doc, dict) else {}
    if isinstance(gauge, dict) and "GasGauge" not in gauge and isinstance(doc, dict):
        for value in doc.values():
            if isinstance(value, dict) and "GasGauge" in value:
                gauge = value["GasGauge"]
    gauge = gauge if isinstance(gauge, dict) else {}
    return GasGauge(
        cycle_count=integer(gauge.get("CycleCount")),
        design_capacity_mah=integer(gauge.get("DesignCapacity")),
        full_charge_capacity=integer(gauge.get("FullChargeCapacity")),
        status=str(gauge["Status"]) if gauge.get("Status") is not None else None,
    )


@dataclass(frozen=True)
class BatterySample:
    """py-ios-device ``[Battery]``: current mA and power mW (negative while charging), voltage mV,
    temperature in hundredths of a degree C."""

    time_s: int | None
    current_ma: float | None
    voltage_mv: float | None
    power_mw: float | None
    temperature_cc: int | None

    @property
    def temperature_c(self) -> float | None:
        return None if self.temperature_cc is None else self.temperature_cc / 100.0


def parse_pyidevice_battery(text: str) -> tuple[BatterySample, ...]:
    out = []
    for line in text_lines(text):
        if "[Battery]" not in line:
            continue
        f = dict(re.findall(r"(\w+)=([-+]?[\d.]+)", line))
        out.append(
            BatterySample(
                time_s=integer(f.get("time")),
                current_ma=real(f.get("current")),
                voltage_mv=real(f.get("voltage")),
                power_mw=real(f.get("power")),
                temperature_cc=integer(f.get("temperature")),
            )
        )
    return tuple(out)
