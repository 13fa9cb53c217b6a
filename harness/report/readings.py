"""Rows and chart for the memory, energy and thermal section: values with their methods, simulated labelled."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np

from harness.report.charts import _RC, Chart, _figure, to_svg
from harness.results import Energy, Result

#: From this share of all host CPUs taken by other work, a case is flagged as measured on a busy host.
BUSY_FRACTION = 0.25


class Notes:
    """Numbered method texts: each distinct text is written once under the table, cells cite its number.

    A method description is long ("peak: child's own /proc/self/status VmRSS ... ru_maxrss") and
    the same for every case of a device; repeating it in every row buries the numbers.
    """

    def __init__(self) -> None:
        self._numbers: dict[str, int] = {}

    @property
    def texts(self) -> list[str]:
        return list(self._numbers)  # dicts keep insertion order: text i has number i + 1

    def ref(self, text: str | None) -> int | None:
        return self._numbers.setdefault(text, len(self._numbers) + 1) if text else None


def _energy_text(energy: Energy) -> str:
    if energy.per_inference_mj is not None:
        return energy.method
    prefix = "simulated device; " if energy.simulated else ""
    return f"{prefix}not measured: {energy.reason or 'no reason recorded'}"


def rows(results: Sequence[Result]) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per ok case with any reading (memory, energy, thermal), and the numbered method notes."""
    notes = Notes()
    out = []
    for i, r in enumerate(results):
        if r.status != "ok" or not (r.memory or r.energy or r.thermal):
            continue
        out.append({
            "index": i, "result": r, "memory": r.memory, "energy": r.energy, "thermal": r.thermal,
            "memory_ref": notes.ref(r.memory.method) if r.memory else None,
            "energy_ref": notes.ref(_energy_text(r.energy)) if r.energy else None,
            "thermal_ref": notes.ref(r.thermal.method) if r.thermal else None,
        })
    return out, notes.texts


def energy_chart(results: Sequence[Result]) -> Chart | None:
    """Bars of net energy per inference (mJ) per case with 1-sigma error bars; lower is better."""
    picked = [r for r in results if r.status == "ok" and r.energy and r.energy.per_inference_mj is not None]
    if not picked:
        return None
    picked.sort(key=lambda r: (r.device.id, r.case.model, r.case.delegate, r.case.threads))
    labels = [f"{r.case.model} · {r.case.delegate} · {r.case.threads} thr · {r.device.id}"
              + (" (simulated)" if r.energy.simulated else "") for r in picked]
    values = np.array([r.energy.per_inference_mj for r in picked])
    err = np.array([r.energy.uncertainty_mj or 0.0 for r in picked])
    with matplotlib.rc_context(_RC):
        fig = _figure(len(picked))
        ax = fig.subplots()
        y = np.arange(len(picked))
        ax.barh(y, values, xerr=err, color=["#adb5bd" if r.energy.simulated else "#1864ab" for r in picked],
                capsize=3, height=0.6)
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        ax.set_xlabel("energy per inference (mJ, idle subtracted; lower is better)")
        ax.grid(axis="x", alpha=0.3)
        svg = to_svg(fig)
    caption = ("Net energy per inference per delegate, error bars 1 sigma. Grey bars: simulated by the virtual "
               "device's physics model, not measured on hardware.")
    return Chart(title="Energy per inference", svg=svg, caption=caption)
