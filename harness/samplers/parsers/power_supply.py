"""``/sys/class/power_supply/<name>/uevent`` (``POWER_SUPPLY_X=value``, prefix optional) and
``grep . /sys/class/power_supply/<name>/*`` listings (``path:value``).

Values are kept as printed: current in uA and voltage in uV per the sysfs ABI (some vendors
print mA/mV), and the **raw sign of current**, which differs by vendor (Pixel 3a: positive
while discharging).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.samplers.parsers._common import boolean, integer, text_lines

_UEVENT = re.compile(r"^(?:POWER_SUPPLY_)?(?P<key>[A-Z][A-Z0-9_]*)=(?P<val>.*)$")
_LISTING = re.compile(r"^/sys/class/power_supply/(?P<supply>[^/:\s]+)/(?P<attr>[\w.]+):(?P<val>.*)$")


@dataclass(frozen=True)
class PowerSupply:
    name: str | None = None
    status: str | None = None
    health: str | None = None
    present: bool | None = None
    online: bool | None = None
    capacity_pct: int | None = None
    voltage_now_uv: int | None = None
    current_now_ua: int | None = None
    current_avg_ua: int | None = None
    power_now_uw: int | None = None
    charge_counter_uah: int | None = None
    charge_now_uah: int | None = None
    charge_full_uah: int | None = None
    charge_full_design_uah: int | None = None
    cycle_count: int | None = None
    temp_dc: int | None = None
    technology: str | None = None
    current_unit: str = "uA"
    voltage_unit: str = "uV"
    #: every key as printed (upper-case), all values in order: drivers sometimes print a key twice
    raw: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def temp_c(self) -> float | None:
        return None if self.temp_dc is None else self.temp_dc / 10.0


def _build(raw: dict[str, list[str]], name: str | None = None) -> PowerSupply:
    def first(key: str) -> str | None:
        values = raw.get(key)
        return values[0].strip() if values else None

    return PowerSupply(
        name=name or first("NAME"),
        status=first("STATUS"),
        health=first("HEALTH"),
        present=boolean(first("PRESENT")),
        online=boolean(first("ONLINE")),
        capacity_pct=integer(first("CAPACITY")),
        voltage_now_uv=integer(first("VOLTAGE_NOW")),
        current_now_ua=integer(first("CURRENT_NOW")),
        current_avg_ua=integer(first("CURRENT_AVG")),
        power_now_uw=integer(first("POWER_NOW")),
        charge_counter_uah=integer(first("CHARGE_COUNTER")),
        charge_now_uah=integer(first("CHARGE_NOW")),
        charge_full_uah=integer(first("CHARGE_FULL")),
        charge_full_design_uah=integer(first("CHARGE_FULL_DESIGN")),
        cycle_count=integer(first("CYCLE_COUNT")),
        temp_dc=integer(first("TEMP")),
        technology=first("TECHNOLOGY"),
        raw={k: tuple(v) for k, v in raw.items()},
    )


def parse_uevent(text: str) -> PowerSupply:
    """One supply's uevent (also the ``acc --info`` Uevent section, indented, prefix stripped)."""
    raw: dict[str, list[str]] = {}
    for line in text_lines(text):
        m = _UEVENT.match(line.strip())
        if m:
            raw.setdefault(m.group("key"), []).append(m.group("val"))
    return _build(raw)


def parse_sysfs_listing(text: str) -> dict[str, PowerSupply]:
    """``grep . /sys/class/power_supply/*/*`` output, grouped by supply (grep's own errors skipped)."""
    by_supply: dict[str, dict[str, list[str]]] = {}
    for line in text_lines(text):
        m = _LISTING.match(line.strip())
        if m:
            attrs = by_supply.setdefault(m.group("supply"), {})
            attrs.setdefault(m.group("attr").upper(), []).append(m.group("val"))
    return {name: _build(attrs, name) for name, attrs in by_supply.items()}
