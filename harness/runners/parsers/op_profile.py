"""Op-profiling tables (``--enable_op_profiling``): Run Order, Top by Computation Time, Summary by node type.

Columns come from the bracketed header (``[node type] [start] [first] [avg ms] ...``);
cells are split on tabs, or on runs of 2+ spaces when a paste turned tabs into spaces.
A row with too few cells (a cut-off paste) is dropped rather than guessed.
"""

from __future__ import annotations

import re

from harness.runners.measurement import OpRow
from harness.runners.parsers.textnum import ms_to_us, to_float, to_int

_TITLE = re.compile(r"^=+\s*(?P<title>[A-Za-z][^=]*?)\s*=+$")
_TABLES = {
    "run order": "run_order",
    "top by computation time": "top_by_time",
    "top by memory use": "top_by_memory",
    "summary by node type": "summary",
}
_END = re.compile(r"^(Number of nodes executed|Timings \(microseconds\)|Memory \(bytes\)|\d+ nodes observed)")
_FIELD = {
    "node type": "node_type",
    "start": "start_us",
    "first": "first_us",
    "avg ms": "avg_us",
    "%": "percent",
    "avg %": "percent",
    "cdf%": "cdf_percent",
    "cdf %": "cdf_percent",
    "mem kb": "mem_kb",
    "times called": "times_called",
    "count": "count",
    "name": "name",
}
_MS_FIELDS = ("start_us", "first_us", "avg_us")
_INT_FIELDS = ("times_called", "count")


class OpTableReader:
    """Feed unwrapped lines; collects :class:`OpRow` s for every table it recognises."""

    def __init__(self) -> None:
        self.rows: list[OpRow] = []
        self._section: str | None = None
        self._table: str | None = None
        self._columns: list[str] | None = None

    def feed(self, text: str) -> bool:
        """True when the line belonged to a profiling table (header, row or section title)."""
        if text.startswith("Profiling Info for Benchmark Initialization"):
            self._section, self._table, self._columns = "init", None, None
            return True
        if text.startswith("Operator-wise Profiling Info for Regular Benchmark Runs"):
            self._section, self._table, self._columns = "run", None, None
            return True
        m = _TITLE.match(text)
        if m and m.group("title").lower() in _TABLES:
            self._table, self._columns = _TABLES[m.group("title").lower()], None
            return True
        if self._table is None:
            return False
        if text.lower().startswith("[node type]"):
            names = [c.strip().lower() for c in re.findall(r"\[([^\]]*)\]", text)]
            self._columns = [_FIELD.get(c, c) for c in names]
            return True
        if not text or _END.match(text):
            self._table, self._columns = None, None
            return bool(text)
        if self._columns is None:
            return False
        row = self._row(text)
        if row is not None:
            self.rows.append(row)
        return True

    def _row(self, text: str) -> OpRow | None:
        assert self._columns is not None
        cells = [c.strip() for c in (re.split(r"\t+", text) if "\t" in text else re.split(r"\s{2,}", text))]
        cols = self._columns
        if len(cells) > len(cols) and cols[-1] == "name":
            cells = cells[: len(cols) - 1] + ["  ".join(cells[len(cols) - 1 :])]
        if len(cells) < len(cols) - (1 if cols[-1] == "name" else 0):
            return None
        values: dict[str, object] = {}
        for col, cell in zip(cols, cells):
            if col == "node_type" or col == "name":
                values[col] = cell or None
            elif col in _MS_FIELDS:
                f = to_float(cell)
                if f is None:
                    return None
                values[col] = ms_to_us(f)
            elif col in _INT_FIELDS:
                values[col] = to_int(cell)
                if values[col] is None:
                    return None
            elif col in ("percent", "cdf_percent", "mem_kb"):
                values[col] = to_float(cell)
                if values[col] is None:
                    return None
        if not values.get("node_type"):
            return None
        return OpRow(section=self._section or "run", table=self._table or "run_order", **values)  # type: ignore[arg-type]
