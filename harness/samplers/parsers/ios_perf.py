"""Perf streams from the tidevice family: ``tidevice perf`` lines (``cpu {python dict}``) and gidevice's
JSON lines (``{"type": "sys_cpu", ...}``). Timestamps are epoch milliseconds (tidevice) or
seconds (gidevice), kept as printed with the unit in the field name."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from harness.samplers.parsers._common import integer, python_literal, real, text_lines
from harness.samplers.parsers.ios_sysmon import ProcessSample, SystemSample, process_sample, system_sample

_LINE = re.compile(r"^(?P<kind>[a-z_]+)\s+(?P<body>\{.*\})\s*$")


@dataclass(frozen=True)
class CpuSample:
    timestamp_ms: int | None
    pid: int | None
    process_pct: float | None
    system_pct: float | None
    cores: int | None


@dataclass(frozen=True)
class MemorySample:
    timestamp_ms: int | None
    pid: int | None
    mb: float | None


@dataclass(frozen=True)
class FpsSample:
    timestamp_ms: int | None
    fps: float | None


@dataclass(frozen=True)
class GpuSample:
    timestamp_ms: int | None
    device_pct: float | None
    renderer_pct: float | None
    tiler_pct: float | None


@dataclass(frozen=True)
class NetworkSample:
    timestamp_ms: int | None
    down_kb: float | None
    up_kb: float | None


@dataclass(frozen=True)
class TidevicePerf:
    """Samples by kind; ``cpu``/``memory`` empty means the device never reported them."""

    cpu: tuple[CpuSample, ...] = ()
    memory: tuple[MemorySample, ...] = ()
    fps: tuple[FpsSample, ...] = ()
    gpu: tuple[GpuSample, ...] = ()
    network: tuple[NetworkSample, ...] = ()
    other_kinds: tuple[str, ...] = ()


def parse_tidevice_perf(text: str) -> TidevicePerf:
    out: dict[str, list[object]] = {"cpu": [], "memory": [], "fps": [], "gpu": [], "network": []}
    other: list[str] = []
    for line in text_lines(text):
        m = _LINE.match(line.strip())
        if not m:
            continue
        d = python_literal(m.group("body"))
        if not isinstance(d, dict):
            continue
        kind, ts = m.group("kind"), integer(d.get("timestamp"))
        if kind == "cpu":
            pid, cores = integer(d.get("pid")), integer(d.get("count"))
            out["cpu"].append(CpuSample(ts, pid, real(d.get("value")), real(d.get("sys_value")), cores))
        elif kind == "memory":
            out["memory"].append(MemorySample(ts, integer(d.get("pid")), real(d.get("value"))))
        elif kind == "fps":
            out["fps"].append(FpsSample(ts, real(d.get("fps", d.get("value")))))
        elif kind == "gpu":
            out["gpu"].append(GpuSample(ts, real(d.get("device")), real(d.get("renderer")), real(d.get("tiler"))))
        elif kind == "network":
            out["network"].append(NetworkSample(ts, real(d.get("downFlow")), real(d.get("upFlow"))))
        elif kind not in other:
            other.append(kind)
    return TidevicePerf(
        cpu=tuple(out["cpu"]),  # type: ignore[arg-type]
        memory=tuple(out["memory"]),  # type: ignore[arg-type]
        fps=tuple(out["fps"]),  # type: ignore[arg-type]
        gpu=tuple(out["gpu"]),  # type: ignore[arg-type]
        network=tuple(out["network"]),  # type: ignore[arg-type]
        other_kinds=tuple(other),
    )


@dataclass(frozen=True)
class GidevicePerf:
    """gidevice JSON lines: ``sys_cpu`` as system samples, ``process`` records as process samples
    (with their ``sys_perf`` as a system sample), anything else kept as raw dicts by type."""

    system: tuple[tuple[int | None, SystemSample], ...] = ()
    processes: tuple[tuple[int | None, ProcessSample], ...] = ()
    other: tuple[dict[str, object], ...] = ()


def parse_gidevice_perf(text: str) -> GidevicePerf:
    system: list[tuple[int | None, SystemSample]] = []
    processes: list[tuple[int | None, ProcessSample]] = []
    other: list[dict[str, object]] = []
    for line in text_lines(text):
        s = line.strip()
        if not s.startswith("{"):
            continue
        try:
            d = json.loads(s)
        except ValueError:
            continue
        if not isinstance(d, dict):
            continue
        ts = integer(d.get("timestamp"))
        if d.get("type") == "sys_cpu":
            system.append((ts, system_sample(d)))
        elif d.get("type") == "process" and isinstance(d.get("proc_perf"), dict):
            processes.append((ts, process_sample(d["proc_perf"])))
            if isinstance(d.get("sys_perf"), dict):
                system.append((ts, system_sample(d["sys_perf"])))
        else:
            other.append(d)
    return GidevicePerf(tuple(system), tuple(processes), tuple(other))
