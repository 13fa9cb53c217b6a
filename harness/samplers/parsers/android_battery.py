"""``adb shell dumpsys battery``: the BatteryService state (AOSP keys plus vendor extras kept raw)."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.samplers.parsers._common import boolean, colon_pairs, integer

STATUS = {1: "unknown", 2: "charging", 3: "discharging", 4: "not charging", 5: "full"}
HEALTH = {1: "unknown", 2: "good", 3: "overheat", 4: "dead", 5: "over voltage", 6: "unspecified failure", 7: "cold"}
_KNOWN = {
    "AC powered",
    "USB powered",
    "Wireless powered",
    "Dock powered",
    "Max charging current",
    "Max charging voltage",
    "Charge counter",
    "status",
    "health",
    "present",
    "level",
    "scale",
    "voltage",
    "temperature",
    "technology",
    "current now",
    "Capacity level",
}


@dataclass(frozen=True)
class BatteryService:
    """Units as Android prints them: charge counter uAh, max charging current uA / voltage uV,
    voltage mV, temperature in tenths of a degree C; Samsung's extra ``current now`` is mA."""

    ac_powered: bool | None = None
    usb_powered: bool | None = None
    wireless_powered: bool | None = None
    dock_powered: bool | None = None
    max_charging_current_ua: int | None = None
    max_charging_voltage_uv: int | None = None
    charge_counter_uah: int | None = None
    status_code: int | None = None
    health_code: int | None = None
    present: bool | None = None
    level: int | None = None
    scale: int | None = None
    voltage_mv: int | None = None
    temperature_dc: int | None = None
    technology: str | None = None
    current_now_ma: int | None = None
    capacity_level: int | None = None
    extras: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str | None:
        return STATUS.get(self.status_code) if self.status_code is not None else None

    @property
    def health(self) -> str | None:
        return HEALTH.get(self.health_code) if self.health_code is not None else None

    @property
    def temperature_c(self) -> float | None:
        return None if self.temperature_dc is None else self.temperature_dc / 10.0

    @property
    def level_pct(self) -> float | None:
        if self.level is None or not self.scale:
            return None
        return 100.0 * self.level / self.scale


def parse_dumpsys_battery(text: str) -> BatteryService:
    """Read ``Key: value`` lines; first occurrence of a key wins, unknown keys go to ``extras``."""
    raw: dict[str, str] = {}
    extras: dict[str, str] = {}
    for key, value, _indent in colon_pairs(text):
        if key in _KNOWN:
            raw.setdefault(key, value.strip())
        elif not key.endswith(" state"):  # "Current Battery Service state:" is the title
            extras.setdefault(key, value.strip())
    return BatteryService(
        ac_powered=boolean(raw.get("AC powered")),
        usb_powered=boolean(raw.get("USB powered")),
        wireless_powered=boolean(raw.get("Wireless powered")),
        dock_powered=boolean(raw.get("Dock powered")),
        max_charging_current_ua=integer(raw.get("Max charging current")),
        max_charging_voltage_uv=integer(raw.get("Max charging voltage")),
        charge_counter_uah=integer(raw.get("Charge counter")),
        status_code=integer(raw.get("status")),
        health_code=integer(raw.get("health")),
        present=boolean(raw.get("present")),
        level=integer(raw.get("level")),
        scale=integer(raw.get("scale")),
        voltage_mv=integer(raw.get("voltage")),
        temperature_dc=integer(raw.get("temperature")),
        technology=raw.get("technology") or None,
        current_now_ma=integer(raw.get("current now")),
        capacity_level=integer(raw.get("Capacity level")),
        extras=extras,
    )
