"""The charts the folder report draws as plain SVG (no matplotlib): geometry, then :func:`draw`.

matplotlib costs about 0.1 s and 50 kB per chart; a fleet report has hundreds of pages. Here
a chart is numbers first: an axis maps values to x, rows carry their boxes or dots as
coordinates, and :func:`draw` writes the ``<svg>`` elements with every label escaped. Boxes
span the 25th-75th percentile with a bar at the median, whiskers the 10th-90th.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from markupsafe import Markup

from harness.report.text import esc

LOG_RANGE = 20.0  # log axis when the values span more than this factor (as charts.py)
LABEL_W = 230  # px left of the plot for row labels
PLOT_W = 640
ROW_GAP = 6
BOX_H = 9
LABEL_CHARS = 34


@dataclass(frozen=True)
class Axis:
    """Values ``lo..hi`` drawn over ``width`` px from ``left``; log10 when ``log``."""

    lo: float
    hi: float
    log: bool
    left: float = LABEL_W
    width: float = PLOT_W

    @functools.cached_property
    def _log_ends(self) -> tuple[float, float]:
        return math.log10(self.lo), math.log10(self.hi)  # once per axis, not per mark (~120,000 at 10,000 cases)

    def x(self, value: float) -> float:
        if self.log:
            (lo, hi), v = self._log_ends, math.log10(max(value, self.lo))
        else:
            lo, hi, v = self.lo, self.hi, value
        frac = 0.0 if hi == lo else (v - lo) / (hi - lo)
        return round(self.left + self.width * min(max(frac, 0.0), 1.0), 1)

    def ticks(self) -> list[tuple[float, str]]:
        """About 5-8 round tick values with their x and a short label."""
        if self.log:
            values = [m * 10.0 ** e for e in range(math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi)) + 1)
                      for m in (1, 2, 5)]
        else:
            step = _nice_step((self.hi - self.lo) / 6 or 1.0)
            first = math.ceil(self.lo / step) * step
            values = [first + i * step for i in range(int((self.hi - first) / step) + 1)]
        inside = [v for v in values if self.lo <= v * (1 + 1e-9) and v <= self.hi * (1 + 1e-9)]
        return [(self.x(v), f"{v:g}") for v in inside]


def _nice_step(raw: float) -> float:
    mag = 10.0 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def axis_for(values: Sequence[float], *, include: float | None = None, log: bool | None = None) -> Axis:
    """An axis spanning ``values`` (and ``include``, e.g. 1x), log when they span more than 20x."""
    vals = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    if include is not None:
        vals.append(include)
    if not vals:
        return Axis(0.0, 1.0, False)
    lo, hi = min(vals), max(vals)
    use_log = (hi / lo > LOG_RANGE) if log is None else log
    if use_log:
        return Axis(lo / 1.1, hi * 1.1, True)
    pad = (hi - lo) * 0.05 or hi * 0.05 or 1.0
    return Axis(max(0.0, lo - pad), hi + pad, False)


@dataclass
class Mark:
    """One box (or dot) in a row: colour, tooltip, and x of p10, p25, p50, p75, p90 (a dot uses p50)."""

    colour: str
    title: str
    x10: float
    x25: float
    x50: float
    x75: float
    x90: float
    slot: int = 0
    y: float = 0.0

    def box(self) -> Markup:
        """The whisker, box and median bar; numbers only (the template adds colour and tooltip, escaped)."""
        y, mid = self.y, round(self.y + BOX_H / 2, 1)
        return Markup(  # noqa: S704 - floats formatted by this method, nothing else
            f'<line x1="{self.x10}" x2="{self.x90}" y1="{mid}" y2="{mid}"/>'
            f'<rect x="{self.x25}" y="{y}" width="{max(round(self.x75 - self.x25, 1), 1)}" height="{BOX_H}"/>'
            f'<line x1="{self.x50}" x2="{self.x50}" y1="{round(y - 1, 1)}" y2="{round(y + BOX_H + 1, 1)}" '
            f'stroke-width="2.5"/>')


@dataclass
class Row:
    label: str
    full_label: str
    href: str
    y: float = 0.0
    height: float = 0.0
    marks: list[Mark] = field(default_factory=list)


@dataclass
class Chart:
    """A drawn chart: its axis, rows with coordinates, the x of a reference line, size and axis title."""

    axis: Axis
    rows: list[Row]
    x_title: str
    ref_x: float | None = None
    height: float = 0.0
    width: float = LABEL_W + PLOT_W + 20
    dots: bool = False
    legend: list[tuple[str, str]] = field(default_factory=list)  # (label, colour) per slot, top to bottom


def short(label: str, limit: int = LABEL_CHARS) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def mark(axis: Axis, colour: str, title: str, q: dict[str, float], slot: int = 0) -> Mark:
    """A box from quantiles ``p10 p25 p50 p75 p90`` (a dict as :func:`harness.report.fleet.spread` gives)."""
    return Mark(colour, title, axis.x(q["p10"]), axis.x(q["p25"]), axis.x(q["p50"]), axis.x(q["p75"]),
                axis.x(q["p90"]), slot)


def lay_out(chart: Chart, top: float = 8.0) -> Chart:
    """Give rows and marks their y: a box at its slot's place in the row; dots share the row's middle line."""
    y = top
    slots = 1 if chart.dots else max([len(chart.legend), *(m.slot + 1 for r in chart.rows for m in r.marks)])
    for row in chart.rows:
        row.y = y
        row.height = slots * (BOX_H + 2) + ROW_GAP
        for m in row.marks:
            m.y = round(y + (0 if chart.dots else m.slot) * (BOX_H + 2), 1)
        y += row.height
    chart.height = y + 34  # room for the tick labels and the axis title
    return chart


def draw(ch: Chart, label: str) -> Markup:
    """The ``<svg>`` of a laid-out chart (and its legend above it); every label and tooltip escaped.

    Written here rather than by a template: a fleet report draws ~25,000 marks, and a template
    expression per attribute cost more than the rest of the page.
    """
    out = []
    if ch.legend:
        out.append(f'<p class="legend chart-legend">{"Colours:" if ch.dots else "Each row, top to bottom:"}\n')
        out += [f'<span><b style="color: {esc(colour)}">■</b> {esc(text)}</span>' for text, colour in ch.legend]
        out.append("</p>")
    bottom = ch.height - 34
    out.append(f'<svg class="plot" role="img" aria-label="{esc(label)}" width="{ch.width}" height="{ch.height}" '
               f'viewBox="0 0 {ch.width} {ch.height}" xmlns="http://www.w3.org/2000/svg">\n')
    out += [f'<rect class="band" x="0" y="{row.y - 3}" width="{ch.width}" height="{row.height}"/>'
            for i, row in enumerate(ch.rows, 1) if i % 2 == 0]
    out += [f'<line class="tick" x1="{x}" x2="{x}" y1="4" y2="{bottom}"/><text x="{x}" y="{bottom + 13}" '
            f'text-anchor="middle">{esc(text)}</text>\n' for x, text in ch.axis.ticks()]
    if ch.ref_x is not None:
        out.append(f'<line class="ref" x1="{ch.ref_x}" x2="{ch.ref_x}" y1="4" y2="{bottom}"/>')
    for row in ch.rows:
        mid = row.y + (row.height - 6) / 2 + 4
        text = (f'<text x="{ch.axis.left - 8}" y="{mid}" text-anchor="end"><title>{esc(row.full_label)}</title>'
                f"{esc(row.label)}</text>")
        out.append(f'<a href="{esc(row.href)}">{text}</a>' if row.href else text)
        for m in row.marks:
            colour, title = esc(m.colour), esc(m.title)
            if ch.dots:
                out.append(f'<circle cx="{m.x50}" cy="{m.y + 5}" r="3.5" fill="{colour}" fill-opacity="0.6">'
                           f"<title>{title}</title></circle>\n")
            else:
                out.append(f'<g stroke="{colour}" fill="{colour}" fill-opacity="0.35"><title>{title}</title>'
                           f"{m.box()}</g>\n")
    out.append(f'<text x="{ch.axis.left + ch.axis.width / 2}" y="{ch.height - 4}" text-anchor="middle">'
               f"{esc(ch.x_title)}</text>\n</svg>\n")
    return Markup("".join(out))  # noqa: S704 - every text escaped, numbers formatted here
