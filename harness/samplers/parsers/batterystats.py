"""``adb shell dumpsys batterystats``: the ``Estimated power use (mAh)`` block (Android 7 plain rows,
Android 8+ smearing suffixes) and the ``Battery History`` events (level, volt, charge)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.samplers.parsers._common import integer, real, text_lines

_NUM = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_CAPACITY = re.compile(
    rf"Capacity:\s*(?P<cap>{_NUM}),\s*Computed drain:\s*(?P<comp>{_NUM}),\s*"
    rf"actual drain:\s*(?P<lo>{_NUM})(?:-(?P<hi>{_NUM}))?"
)
_ROW = re.compile(rf"^(?P<label>[A-Za-z][\w .-]*?):\s+(?P<mah>{_NUM})(?P<rest>.*)$")
_COMPONENTS = re.compile(r"^\s*\(\s*(?P<body>[^)]*)\)")
_SMEAR = re.compile(rf"Including smearing:\s*(?P<total>{_NUM})(?:\s*\(\s*proportional=(?P<prop>{_NUM})\s*\))?")
_HISTORY = re.compile(r"^\s*(?P<t>0|\+[\dhmsd]+)\s+\((?P<cmd>\d+)\)\s+(?P<level>\d{3})\b(?P<rest>.*)$")
_DURATION = re.compile(r"^\+?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")


@dataclass(frozen=True)
class PowerUse:
    """One row of the estimate: a UID (``u0a70``, ``1000``) or a system bucket (Screen, Idle...), in mAh."""

    label: str
    mah: float
    components_mah: tuple[tuple[str, float], ...] = ()
    smearing: str | None = None  # "included" | "excluded" | None (Android 7 prints neither)
    smeared_mah: float | None = None
    proportional_mah: float | None = None

    @property
    def uid(self) -> str | None:
        return self.label.split(" ", 1)[1] if self.label.lower().startswith("uid ") else None


@dataclass(frozen=True)
class EstimatedPower:
    capacity_mah: float | None = None
    computed_drain_mah: float | None = None
    actual_drain_min_mah: float | None = None
    actual_drain_max_mah: float | None = None
    rows: tuple[PowerUse, ...] = ()


@dataclass(frozen=True)
class HistoryPoint:
    """One history event that printed the battery level; fields the event did not print stay None."""

    time_ms: int
    level_pct: int
    status: str | None = None
    health: str | None = None
    plug: str | None = None
    temp_dc: int | None = None
    volt_mv: int | None = None
    charge_mah: int | None = None


def parse_estimated_power(text: str) -> EstimatedPower:
    lines = text_lines(text)
    start = next((i for i, line in enumerate(lines) if "Estimated power use" in line), None)
    if start is None:
        return EstimatedPower()
    cap = comp = lo = hi = None
    rows: list[PowerUse] = []
    for line in lines[start + 1 :]:
        s = line.strip()
        if not s:
            break
        m = _CAPACITY.search(s)
        if m:
            cap, comp, lo = real(m.group("cap")), real(m.group("comp")), real(m.group("lo"))
            hi = real(m.group("hi")) if m.group("hi") else lo
            continue
        m = _ROW.match(s)
        if not m or real(m.group("mah")) is None:
            continue
        rest = m.group("rest")
        comps: list[tuple[str, float]] = []
        c = _COMPONENTS.match(rest)
        if c:
            for key, val in re.findall(rf"(\w+)=({_NUM})", c.group("body")):
                comps.append((key, float(val)))
            rest = rest[c.end() :]
        smear = _SMEAR.search(rest)
        rows.append(
            PowerUse(
                label=m.group("label"),
                mah=float(m.group("mah")),
                components_mah=tuple(comps),
                smearing="included" if smear else ("excluded" if "Excluded from smearing" in rest else None),
                smeared_mah=real(smear.group("total")) if smear else None,
                proportional_mah=real(smear.group("prop")) if smear and smear.group("prop") else None,
            )
        )
    return EstimatedPower(cap, comp, lo, hi, tuple(rows))


def history_time_ms(token: str) -> int | None:
    """``+7m07s371ms`` -> 427371; ``0`` -> 0; anything else None."""
    token = token.strip()
    if token in ("0", "+0"):
        return 0
    m = _DURATION.match(token)
    if not m or not any(m.groups()):
        return None
    d, h, mi, s, ms = (int(g) if g else 0 for g in m.groups())
    return (((d * 24 + h) * 60 + mi) * 60 + s) * 1000 + ms


def parse_battery_history(text: str) -> tuple[HistoryPoint, ...]:
    points: list[HistoryPoint] = []
    for line in text_lines(text):
        m = _HISTORY.match(line)
        if not m:
            continue
        t = history_time_ms(m.group("t"))
        if t is None:
            continue
        fields = dict(re.findall(r"(?:^|\s)(status|health|plug|temp|volt|charge)=(\S+)", m.group("rest")))
        points.append(
            HistoryPoint(
                time_ms=t,
                level_pct=int(m.group("level")),
                status=fields.get("status"),
                health=fields.get("health"),
                plug=fields.get("plug"),
                temp_dc=integer(fields.get("temp")),
                volt_mv=integer(fields.get("volt")),
                charge_mah=integer(fields.get("charge")),
            )
        )
    return tuple(points)
