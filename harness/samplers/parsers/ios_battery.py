"""iPhone battery readings: the IORegistry ``AppleSmartBattery`` dict diagnostics_relay returns
(pymobiledevice3 ``DiagnosticsService.get_battery``). Missing or non-numeric values read as None."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from harness.samplers.parsers._common import boolean, integer


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
    def current_ma(self) -> int | None:
        """The instantaneous current when the battery gives it, else the averaged ``Amperage``."""
        return self.instant_amperage_ma if self.instant_amperage_ma is not None else self.amperage_ma

    @property
    def power_mw(self) -> float | None:
        """Voltage x amperage, with the amperage's sign (negative while discharging)."""
        if self.voltage_mv is None or self.amperage_ma is None:
            return None
        return self.voltage_mv * self.amperage_ma / 1000.0


def smart_battery(raw: Mapping[str, object]) -> SmartBattery:
    """One AppleSmartBattery registry dict as a record."""

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
