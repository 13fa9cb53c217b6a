"""``adb shell dumpsys meminfo <pkg|pid>``: the per-category table (kB) and the App Summary.

Columns are named from the two header rows zipped word by word, so every layout reads the
same way: Android 6 (``Swapped Dirty``), 8-9 (``SwapPss Dirty``), 10+ (extra ``Rss Total``),
and older ones with ``Shared`` columns. Rows print only their leading columns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.samplers.parsers._common import integer, text_lines

_PID = re.compile(r"\*\* MEMINFO in pid (?P<pid>\d+) \[(?P<name>[^\]]*)\] \*\*")
_ROW = re.compile(r"^(?P<name>\S.*?)\s+(?P<nums>-?\d+(?:\s+-?\d+)*)\s*$")
_TOTALS = {
    "TOTAL PSS": "total_pss_kb",
    "TOTAL": "total_pss_kb",
    "TOTAL RSS": "total_rss_kb",
    "TOTAL SWAP PSS": "total_swap_pss_kb",
    "TOTAL SWAP (KB)": "total_swap_kb",
}


@dataclass(frozen=True)
class MeminfoRow:
    """One category (``Native Heap``, ``.so mmap``, ``TOTAL``...): column name -> kB."""

    name: str
    values_kb: dict[str, int] = field(default_factory=dict)

    @property
    def pss_total_kb(self) -> int | None:
        return self.values_kb.get("pss_total")

    @property
    def rss_total_kb(self) -> int | None:
        return self.values_kb.get("rss_total")


@dataclass(frozen=True)
class AppMeminfo:
    pid: int | None = None
    process: str | None = None
    layout: str | None = None  # "android6" | "android8" | "android10" | "legacy"
    columns: tuple[str, ...] = ()
    rows: tuple[MeminfoRow, ...] = ()
    summary_pss_kb: dict[str, int] = field(default_factory=dict)
    summary_rss_kb: dict[str, int] = field(default_factory=dict)
    total_pss_kb: int | None = None
    total_rss_kb: int | None = None
    total_swap_pss_kb: int | None = None
    total_swap_kb: int | None = None

    def row(self, name: str) -> MeminfoRow | None:
        return next((r for r in self.rows if r.name == name), None)


def _layout(columns: list[str]) -> str:
    if "swapped_dirty" in columns:
        return "android6"
    if "swappss_dirty" in columns:
        return "android10" if "rss_total" in columns else "android8"
    return "legacy"


def parse_meminfo(text: str) -> AppMeminfo:
    lines = [line.rstrip() for line in text_lines(text)]
    m = next((_PID.search(line) for line in lines if _PID.search(line)), None)
    columns: list[str] = []
    rows: list[MeminfoRow] = []
    summary_pss: dict[str, int] = {}
    summary_rss: dict[str, int] = {}
    totals: dict[str, int | None] = {}
    i = 0
    while i < len(lines):
        s = lines[i].strip()
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if not columns and s.startswith("Pss") and nxt.split()[:1] == ["Total"]:
            top, bottom = s.split(), nxt.split()
            if len(top) == len(bottom):
                columns = [f"{a}_{b}".lower() for a, b in zip(top, bottom)]
            i += 2
            continue
        if columns and s and not s.startswith("-") and not rows_done(rows):
            r = _ROW.match(s)
            if r and not s.endswith(":"):
                nums = [int(n) for n in r.group("nums").split()]
                rows.append(MeminfoRow(r.group("name"), dict(zip(columns, nums))))
                i += 1
                continue
        if s.startswith("App Summary"):
            i = _summary(lines, i + 1, summary_pss, summary_rss)
            continue
        for label, value in re.findall(r"(TOTAL(?: [A-Z]+)*(?: \(KB\))?):\s*(-?\d+)", s):
            key = _TOTALS.get(label)
            if key:
                totals.setdefault(key, integer(value))
        i += 1
    total_row = next((r for r in rows if r.name == "TOTAL"), None)
    if total_row is not None:  # Android 6 and cut-off captures: the table's TOTAL row
        totals.setdefault("total_pss_kb", total_row.pss_total_kb)
        if total_row.rss_total_kb is not None:
            totals.setdefault("total_rss_kb", total_row.rss_total_kb)
    return AppMeminfo(
        pid=int(m.group("pid")) if m else None,
        process=m.group("name") if m else None,
        layout=_layout(columns) if columns else None,
        columns=tuple(columns),
        rows=tuple(rows),
        summary_pss_kb=summary_pss,
        summary_rss_kb=summary_rss,
        **totals,  # type: ignore[arg-type]
    )


def rows_done(rows: list[MeminfoRow]) -> bool:
    """The category table ends at its TOTAL row."""
    return bool(rows) and rows[-1].name == "TOTAL"


def _summary(lines: list[str], i: int, pss: dict[str, int], rss: dict[str, int]) -> int:
    """App Summary: values right-aligned under ``Pss(KB)`` / ``Rss(KB)`` (Rss only since Android 10)."""
    ends: dict[str, int] = {}
    while i < len(lines):
        line = lines[i]
        s = line.strip()
        if "Pss(KB)" in line:
            ends = {k: line.index(k) + len(k) for k in ("Pss(KB)", "Rss(KB)") if k in line}
        elif s.startswith("TOTAL") or (not s and ends and (pss or rss)):
            return i
        elif ":" in s and ends:
            label = s.split(":", 1)[0].strip()
            for num in re.finditer(r"-?\d+", line[line.index(":") + 1 :]):
                end = line.index(":") + 1 + num.end()
                column = min(ends, key=lambda k: abs(ends[k] - end))
                (pss if column == "Pss(KB)" else rss)[label] = int(num.group())
        i += 1
    return i
