"""Sysmontap process rows (DVT ``sysmontap``, as pymobiledevice3 hands them over: one dict per process).

Values are kept as the device sent them; anything that is not a finite number reads as None.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from harness.samplers.parsers._common import number, real


@dataclass(frozen=True)
class ProcessSample:
    pid: int | None = None
    name: str | None = None
    cpu_usage_pct: float | None = None
    phys_footprint_bytes: int | None = None
    mem_resident_bytes: int | None = None
    mem_anon_bytes: int | None = None
    mem_virtual_bytes: int | None = None
    threads: int | None = None
    disk_read_bytes: int | None = None
    disk_written_bytes: int | None = None
    raw: dict[str, object] = field(default_factory=dict)


def _int(raw: Mapping[str, object], *keys: str) -> int | None:
    for key in keys:
        value = number(raw.get(key))
        if isinstance(value, int):
            return value
    return None


def process_sample(raw: Mapping[str, object]) -> ProcessSample:
    """One process dict as sysmontap reports it (keys like ``cpuUsage``, ``physFootprint``)."""
    return ProcessSample(
        pid=_int(raw, "pid"),
        name=str(raw["name"]) if raw.get("name") is not None else None,
        cpu_usage_pct=real(raw.get("cpuUsage")),
        phys_footprint_bytes=_int(raw, "physFootprint"),
        mem_resident_bytes=_int(raw, "memResidentSize"),
        mem_anon_bytes=_int(raw, "memAnon"),
        mem_virtual_bytes=_int(raw, "memVirtualSize"),
        threads=_int(raw, "threadCount"),
        disk_read_bytes=_int(raw, "diskBytesRead"),
        disk_written_bytes=_int(raw, "diskBytesWritten"),
        raw=dict(raw),
    )
