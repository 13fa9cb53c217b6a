"""The report's History section: each case's median and 95% interval over the stored runs, baselines and
the gate's verdicts marked, changes beyond the case's noise flagged (data from :mod:`harness.trend`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only named in annotations: importing harness.trend pulls in the gate and numpy
    from harness.report.html import Section
    from harness.trend import CaseTrend

_W, _H, _PAD = 240, 48, 4


def _sparkline(trend: CaseTrend) -> list[dict[str, Any]]:
    """Points of a small inline SVG: x per run, y for the median and the interval's ends (higher is slower)."""
    measured = [(i, p) for i, p in enumerate(trend.points) if p.measured]
    values = [v for _, p in measured for v in (p.median_us, p.ci_low_us, p.ci_high_us) if v is not None]
    if len(measured) < 2 or not values:
        return []
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = (_W - 2 * _PAD) / max(1, len(trend.points) - 1)

    def y(v: float | None) -> float | None:
        return None if v is None else round(_H - _PAD - (v - low) / span * (_H - 2 * _PAD), 1)

    return [{"x": round(_PAD + i * step, 1), "y": y(p.median_us), "lo": y(p.ci_low_us), "hi": y(p.ci_high_us),
             "change": p.change} for i, p in measured]


def history(trends: Sequence[CaseTrend]) -> dict[str, Any] | None:
    """What ``trend.html.j2`` shows (as ``ctx``), or None when no case has more than one stored run."""
    cases = [t for t in trends if len(t.points) > 1]
    if not cases:
        return None
    rows = [{"trend": t, "spark": _sparkline(t)} for t in sorted(cases, key=lambda t: (-len(t.changes), t.label))]
    return {"cases": rows, "width": _W, "height": _H, "changed": sum(1 for t in cases if t.changes)}


def trend_section(trends: Sequence[CaseTrend]) -> Section | None:
    """The single-file report's History section, or None when no case has more than one stored run."""
    from harness.report.html import Section  # here: the folder form uses history() without pandas

    context = history(trends)
    return None if context is None else Section("history", "History", "trend.html.j2", context)
