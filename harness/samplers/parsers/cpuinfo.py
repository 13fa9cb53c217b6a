"""``/proc/cpuinfo``: per-CPU blocks (modern kernels, x86) or old arm64's one shared block with a bare
``processor : N`` list. The shared block is kept as ``shared``, not copied onto every core,
because on big.LITTLE it only describes the boot CPU."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.samplers.parsers._common import integer, real, text_lines

ARM_PARTS = {
    "0xd03": "Cortex-A53",
    "0xd04": "Cortex-A35",
    "0xd05": "Cortex-A55",
    "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73",
    "0xd0a": "Cortex-A75",
    "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1",
    "0xd0d": "Cortex-A77",
    "0xd41": "Cortex-A78",
    "0xd44": "Cortex-X1",
    "0xd46": "Cortex-A510",
    "0xd47": "Cortex-A710",
    "0xd48": "Cortex-X2",
    "0xd4d": "Cortex-A715",
    "0xd4e": "Cortex-X3",
    "0xd80": "Cortex-A520",
    "0xd81": "Cortex-A720",
    "0xd82": "Cortex-X4",
}


@dataclass(frozen=True)
class CpuCore:
    index: int | None
    implementer: str | None = None
    architecture: str | None = None
    variant: str | None = None
    part: str | None = None
    revision: str | None = None
    bogomips: float | None = None
    features: tuple[str, ...] = ()
    model_name: str | None = None
    mhz: float | None = None
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def core_name(self) -> str | None:
        """ARM core name from implementer 0x41 + part (e.g. 0xd05 -> Cortex-A55), else None."""
        if self.implementer == "0x41" and self.part:
            return ARM_PARTS.get(self.part.lower())
        return None


@dataclass(frozen=True)
class CpuInfo:
    layout: str  # "per_cpu" | "shared"
    cores: tuple[CpuCore, ...] = ()
    shared: CpuCore | None = None
    hardware: str | None = None
    processor: str | None = None  # the old "Processor : AArch64 Processor rev 4" line
    serial: str | None = None

    @property
    def count(self) -> int:
        return len(self.cores)


def _core(index: int | None, f: dict[str, str]) -> CpuCore:
    return CpuCore(
        index=index,
        implementer=f.get("CPU implementer"),
        architecture=f.get("CPU architecture"),
        variant=f.get("CPU variant"),
        part=f.get("CPU part"),
        revision=f.get("CPU revision"),
        bogomips=real(f.get("BogoMIPS") or f.get("bogomips")),
        features=tuple((f.get("Features") or f.get("flags") or "").split()),
        model_name=f.get("model name"),
        mhz=real(f.get("cpu MHz")),
        fields=dict(f),
    )


def parse_cpuinfo(text: str) -> CpuInfo:
    blocks: list[tuple[int | None, dict[str, str]]] = []
    top: dict[str, str] = {}
    current: dict[str, str] | None = None
    for line in text_lines(text):
        m = re.match(r"^\s*([A-Za-z][\w ]*?)\s*:\s?(.*)$", line)
        if not m:
            continue
        key, value = m.group(1).strip(), m.group(2).strip()
        if key == "processor" and integer(value) is not None:
            current = {}
            blocks.append((integer(value), current))
        elif key in ("Hardware", "Serial", "Revision", "Processor"):
            top.setdefault(key, value)
        elif current is not None:
            current.setdefault(key, value)
        else:
            top.setdefault(key, value)
    shared_layout = len(blocks) > 1 and not any(f for _, f in blocks[:-1])
    if blocks and not shared_layout and any(f for _, f in blocks):
        cores = tuple(_core(i, f) for i, f in blocks)
        return CpuInfo("per_cpu", cores, None, top.get("Hardware"), top.get("Processor"), top.get("Serial"))
    shared_fields = {k: v for k, v in top.items() if k not in ("Hardware", "Serial", "Revision", "Processor")}
    # old kernels: bare "processor : N" lines, then one block for all (it follows the last N)
    for _, f in blocks:
        shared_fields.update({k: v for k, v in f.items() if k not in shared_fields})
    cores = tuple(CpuCore(index=i) for i, _ in blocks)
    shared = _core(None, shared_fields) if shared_fields else None
    return CpuInfo("shared", cores, shared, top.get("Hardware"), top.get("Processor"), top.get("Serial"))
