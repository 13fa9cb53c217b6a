"""pymobiledevice3 ``developer dvt sysmon process|system`` output: JSON (newer CLI, possibly after log
lines) or the older tab-indented ``key: value`` form with Python ``True/None``. Values are kept
as the device sent them; the CPU load ``-1`` sentinel means "not available" and reads as None."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.samplers.parsers._common import json_after_preamble, number, python_literal, real, text_lines

_HEADER = re.compile(r"^(?P<name>\S.*?)\s+\((?P<pid>\d+)\)\s*$")


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


@dataclass(frozen=True)
class SystemSample:
    """System-wide monitor values; loads in percent (None when the device reports -1)."""

    cpu_total_load_pct: float | None = None
    cpu_user_load_pct: float | None = None
    cpu_system_load_pct: float | None = None
    cpu_nice_load_pct: float | None = None
    phys_mem_size: int | None = None
    vm_free_count: int | None = None
    vm_used_count: int | None = None
    net_bytes_in: int | None = None
    net_bytes_out: int | None = None
    disk_bytes_read: int | None = None
    disk_bytes_written: int | None = None
    raw: dict[str, object] = field(default_factory=dict)


def _int(raw: dict[str, object], *keys: str) -> int | None:
    for key in keys:
        value = number(raw.get(key))
        if isinstance(value, int):
            return value
    return None


def _load(raw: dict[str, object], *keys: str) -> float | None:
    for key in keys:
        value = real(raw.get(key))
        if value is not None:
            return None if value < 0 else value
    return None


def process_sample(raw: dict[str, object]) -> ProcessSample:
    """One process dict as sysmon/DVT reports it (keys like ``cpuUsage``, ``physFootprint``)."""
    cpu = real(raw.get("cpuUsage"))
    return ProcessSample(
        pid=_int(raw, "pid"),
        name=str(raw["name"]) if raw.get("name") is not None else None,
        cpu_usage_pct=cpu,
        phys_footprint_bytes=_int(raw, "physFootprint"),
        mem_resident_bytes=_int(raw, "memResidentSize"),
        mem_anon_bytes=_int(raw, "memAnon"),
        mem_virtual_bytes=_int(raw, "memVirtualSize"),
        threads=_int(raw, "threadCount"),
        disk_read_bytes=_int(raw, "diskBytesRead"),
        disk_written_bytes=_int(raw, "diskBytesWritten"),
        raw=dict(raw),
    )


def system_sample(raw: dict[str, object]) -> SystemSample:
    return SystemSample(
        cpu_total_load_pct=_load(raw, "CPU_TotalLoad", "total_load"),
        cpu_user_load_pct=_load(raw, "CPU_UserLoad", "user_load"),
        cpu_system_load_pct=_load(raw, "CPU_SystemLoad", "system_load"),
        cpu_nice_load_pct=_load(raw, "CPU_NiceLoad", "nice_load"),
        phys_mem_size=_int(raw, "physMemSize"),
        vm_free_count=_int(raw, "vmFreeCount"),
        vm_used_count=_int(raw, "vmUsedCount"),
        net_bytes_in=_int(raw, "netBytesIn"),
        net_bytes_out=_int(raw, "netBytesOut"),
        disk_bytes_read=_int(raw, "diskBytesRead"),
        disk_bytes_written=_int(raw, "diskBytesWritten"),
        raw=dict(raw),
    )


def _value(token: str) -> object:
    token = token.strip()
    if token in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[token]
    n = number(token)
    if n is not None:
        return n
    literal = python_literal(token) if token[:1] in "[{(" else None
    return literal if literal is not None else token


def _key_values(lines: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for line in lines:
        m = re.match(r"^\s*([A-Za-z_][\w]*)\s*:\s?(.*)$", line)
        if m:
            out.setdefault(m.group(1), _value(m.group(2)))
    return out


def parse_sysmon_process(text: str) -> tuple[ProcessSample, ...]:
    doc = json_after_preamble(text)
    if isinstance(doc, dict):
        if all(isinstance(v, dict) for v in doc.values()) and doc:
            return tuple(process_sample(v) for v in doc.values())
        return (process_sample(doc),)
    if isinstance(doc, list):
        return tuple(process_sample(v) for v in doc if isinstance(v, dict))
    samples: list[ProcessSample] = []
    header: tuple[str, int] | None = None
    body: list[str] = []
    for line in text_lines(text) + [""]:
        m = _HEADER.match(line) if line[:1] not in (" ", "\t") else None
        if m or (not line.strip() and header):
            if header:
                raw = _key_values(body)
                raw.setdefault("name", header[0])
                raw.setdefault("pid", header[1])
                samples.append(process_sample(raw))
            header, body = ((m.group("name"), int(m.group("pid"))) if m else None), []
        elif header and line[:1] in (" ", "\t"):
            body.append(line)
    return tuple(samples)


def parse_sysmon_system(text: str) -> SystemSample:
    doc = json_after_preamble(text)
    if isinstance(doc, dict):
        return system_sample(doc)
    return system_sample(_key_values(text_lines(text)))
