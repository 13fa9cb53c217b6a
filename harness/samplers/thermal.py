"""Thermal state of a device in one shell command: zone temperatures, thermal status, CPU frequency caps.

- temperatures (deg C): ``/sys/class/thermal/thermal_zone*/{type,temp}``, the zones the profile's
  ``[thermal] zones`` names (by type), else all readable zones;
- thermal status (Android): ``dumpsys thermalservice`` ``Thermal Status`` (0 none .. 6 shutdown);
- frequency cap per CPU: ``scaling_max_freq`` (else ``scaling_cur_freq``) against ``cpuinfo_max_freq``.
Works over any device shell (Android, Linux boards, the host); which parts are read follows the device's
probes (``thermal_zones``, ``cpufreq``, ``thermalservice``); what a device lacks stays empty.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.devices.base import ShellDevice
from harness.samplers.base import SamplerBase, Slot
from harness.samplers.parsers import parse_thermal_zones, parse_thermalservice

if TYPE_CHECKING:
    from harness.samplers.run import RepetitionRun

SPLIT = "EH-SPLIT"
_ZONES = ('for z in /sys/class/thermal/thermal_zone*; do [ -r "$z/temp" ] || continue; '
          'echo "$z/type:$(cat "$z/type" 2>/dev/null)"; echo "$z/temp:$(cat "$z/temp" 2>/dev/null)"; done')
_FREQ = ('for c in /sys/devices/system/cpu/cpu[0-9]*; do f="$c/cpufreq"; [ -r "$f/cpuinfo_max_freq" ] || continue; '
         'echo "${c##*/} $(cat "$f/scaling_cur_freq" 2>/dev/null) $(cat "$f/cpuinfo_max_freq") '
         '$(cat "$f/scaling_max_freq" 2>/dev/null)"; done')
_FREQ_LINE = re.compile(r"^(cpu\d+)\s+(\d+)?\s*(\d+)\s*(\d+)?\s*$")


@dataclass(frozen=True)
class ThermalConfig:
    """The profile's ``[thermal]`` table."""

    zones: tuple[str, ...] = ()  # zone types to watch; empty: all readable zones
    throttle_status: int = 2  # thermalservice status at/above which a run counts as throttled (2 = moderate)
    watch: str | None = None  # the zone cooldown watches (default: the hottest watched zone)

    @classmethod
    def from_profile(cls, thermal: dict | None, cooldown: dict | None) -> ThermalConfig:
        thermal, cooldown = dict(thermal or {}), dict(cooldown or {})
        return cls(zones=tuple(thermal.get("zones", ())), throttle_status=int(thermal.get("throttle_status", 2)),
                   watch=cooldown.get("watch") or thermal.get("watch"))


@dataclass(frozen=True)
class ThermalSnapshot:
    """One reading: zone temperatures (deg C), thermal status, CPU frequencies ``cpu -> (cur, max, cap)`` kHz."""

    zones_c: dict[str, float] = field(default_factory=dict)
    status: int | None = None
    freqs_khz: dict[str, tuple[int | None, int, int | None]] = field(default_factory=dict)

    @property
    def freq_ratio(self) -> float | None:
        """Lowest (cap or current) / max frequency over CPUs: 1.0 = uncapped."""
        ratios = [(cap if cap is not None else cur) / mx for cur, mx, cap in self.freqs_khz.values()
                  if mx and (cap if cap is not None else cur) is not None]
        return min(ratios) if ratios else None

    def watched_c(self, zone: str | None) -> float | None:
        """The cooldown temperature: the named zone, else the hottest zone read."""
        if zone:
            return self.zones_c.get(zone)
        return max(self.zones_c.values()) if self.zones_c else None


#: The probes a thermal snapshot reads (any one of them selects :class:`ThermalSampler`).
PROBES = ("thermal_zones", "cpufreq", "thermalservice")


def snapshot_command(probes: Collection[str]) -> str:
    """One command printing the three parts the device's ``probes`` allow (``:`` for a part it lacks)."""
    zones = _ZONES if "thermal_zones" in probes else ":"
    freq = _FREQ if "cpufreq" in probes else ":"
    service = "dumpsys thermalservice 2>/dev/null" if "thermalservice" in probes else ":"
    return f"{zones}; echo {SPLIT}; {freq}; echo {SPLIT}; {service}"


def parse_snapshot(text: str, cfg: ThermalConfig) -> ThermalSnapshot:
    """The three parts of :func:`snapshot_command`'s output; zones filtered by the profile's names."""
    parts = (text.split(SPLIT) + ["", "", ""])[:3]
    zones: dict[str, float] = {}
    for zone in parse_thermal_zones(parts[0]):
        name = zone.type or f"thermal_zone{zone.index}"
        if zone.temp_c is None or (cfg.zones and name not in cfg.zones):
            continue
        zones[name if name not in zones else f"{name}#{zone.index}"] = zone.temp_c
    freqs: dict[str, tuple[int | None, int, int | None]] = {}
    for line in parts[1].splitlines():
        m = _FREQ_LINE.match(line.strip())
        if m and int(m.group(3)) > 0:
            freqs[m.group(1)] = (_int(m.group(2)), int(m.group(3)), _int(m.group(4)))
    status = parse_thermalservice(parts[2]).status if parts[2].strip() else None
    return ThermalSnapshot(zones, status, freqs)


def read_snapshot(device: ShellDevice, cfg: ThermalConfig) -> ThermalSnapshot:
    """Read the device's thermal state now (one shell round trip, the parts its probes declare)."""
    out = device.shell(snapshot_command(device.capabilities().probes), timeout_s=30).output
    return parse_snapshot(out, cfg)


class ThermalSampler(SamplerBase):
    """``thermal_zones``/``cpufreq``/``thermalservice``: a snapshot before the case and one after it.

    Nothing per repetition; the cooldown before a case polls :meth:`watched_c`.
    """

    name = "thermal"
    label = "thermal"
    per_repetition = False

    def __init__(self, device: ShellDevice, cfg: ThermalConfig) -> None:
        self.device = device
        self.cfg = cfg
        self.before: ThermalSnapshot | None = None

    def snapshot(self) -> ThermalSnapshot:
        return read_snapshot(self.device, self.cfg)

    def watched_c(self) -> float | None:
        """The temperature cooldown watches, read now."""
        return self.snapshot().watched_c(self.cfg.watch)

    def before_case(self) -> None:
        self.before = self.snapshot()

    @contextlib.contextmanager
    def repetition(self, run: RepetitionRun) -> Iterator[Slot]:
        yield Slot()


def describe(before: ThermalSnapshot, after: ThermalSnapshot) -> str:
    """The ``Thermal.method`` text: which sources answered, with status and caps before -> after."""
    parts = [f"sysfs thermal_zone ({len(after.zones_c) or 'no'} zone(s) readable)"]
    if before.status is not None or after.status is not None:
        parts.append(f"dumpsys thermalservice status {before.status}->{after.status}")
    if before.freq_ratio is not None or after.freq_ratio is not None:
        parts.append(f"cpufreq cap {_pct(before.freq_ratio)}->{_pct(after.freq_ratio)} of max")
    else:
        parts.append("no cpufreq")
    return "; ".join(parts)


def _pct(ratio: float | None) -> str:
    return "?" if ratio is None else f"{ratio * 100:.0f}%"


def _int(text: str | None) -> int | None:
    return int(text) if text else None
