"""Charts for the report: matplotlib figures returned as SVG text to inline in the page.

SVG keeps the report one self-contained file (no image files, no fetches) and its text
selectable. Text is written as SVG ``<text>`` (``svg.fonttype = none``), which
matplotlib XML-escapes, and mathtext is off so a ``$`` in a model name stays a ``$``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from markupsafe import Markup  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

_RC = {"svg.fonttype": "none", "text.parse_math": False, "font.size": 9, "axes.titlesize": 10}
_LOG_RANGE = 20.0  # use a log axis when the plotted values span more than this factor
_ROW_IN = 0.32  # figure height per box or bar, inches
_WIDTH_IN = 7.5
_FASTER, _SLOWER, _NONE = "#2b8a3e", "#d9480f", "#868e96"


@dataclass(frozen=True)
class Chart:
    """One inline chart: a title for the page and the SVG markup (trusted, made by matplotlib)."""

    title: str
    svg: Markup
    caption: str = ""


def to_svg(fig: Figure) -> Markup:
    """Serialise a figure to bare ``<svg>`` markup (no XML prolog, DOCTYPE or metadata).

    Returned as :class:`Markup` (trusted) because matplotlib escapes every text it writes.
    """
    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", bbox_inches="tight",
                    metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = buf.getvalue()
    return Markup(text[text.index("<svg"):])  # noqa: S704


def _figure(rows: int) -> Figure:
    with matplotlib.rc_context(_RC):
        return Figure(figsize=(_WIDTH_IN, 1.1 + _ROW_IN * max(rows, 1)))


def _log_axis(axis: matplotlib.axis.Axis) -> None:
    """Log scale with plain-number tick labels (1, 2, 5, 10 ...): mathtext is off, so no 10^x labels."""
    axis.axes.set_xscale("log")
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))


def _box_label(group: tuple, multi_device: bool) -> str:
    device, delegate, threads = group
    label = f"{delegate} · {threads} thr"
    return f"{label} · {device}" if multi_device else label


def latency_charts(samples: pd.DataFrame) -> list[Chart]:
    """One box plot per model: a box per delegate x threads (x device), latency in ms.

    ``samples`` is :func:`harness.report.frames.samples_frame`. Boxes span the
    interquartile range, whiskers 1.5 IQR, dots the iterations beyond them.
    """
    charts = []
    if samples.empty:
        return charts
    multi_device = samples["device_id"].nunique() > 1
    for model, per_model in samples.groupby("model", sort=True):
        groups = list(per_model.groupby(["device", "delegate", "threads"], sort=True))
        data = [g["latency_us"].to_numpy() / 1000.0 for _, g in groups]
        labels = [_box_label(key, multi_device) for key, _ in groups]
        with matplotlib.rc_context(_RC):
            fig = _figure(len(groups))
            ax = fig.subplots()
            ax.boxplot(data, orientation="horizontal", tick_labels=labels, widths=0.6, showfliers=True,
                       flierprops={"markersize": 2, "alpha": 0.5},
                       medianprops={"color": "#1864ab", "linewidth": 2})
            ax.invert_yaxis()
            lows = [np.min(d) for d in data]
            highs = [np.max(d) for d in data]
            log = min(lows) > 0 and max(highs) / min(lows) > _LOG_RANGE
            if log:
                _log_axis(ax.xaxis)
            ax.set_xlabel("latency per inference (ms" + (", log scale)" if log else ")"))
            ax.set_title(str(model))
            ax.grid(axis="x", alpha=0.3, which="both" if log else "major")
            svg = to_svg(fig)
        counts = ", ".join(f"{lbl}: n={len(d)}" for lbl, d in zip(labels, data))
        charts.append(Chart(title=str(model), svg=svg, caption=counts))
    return charts


def speedup_chart(speedups: pd.DataFrame, baseline: str = "cpu", confidence: float = 0.95) -> Chart | None:
    """Horizontal bars of speedup over ``baseline`` (x, >1 is faster) with the interval as error bars.

    ``speedups`` is :func:`harness.report.frames.speedup_frame`; rows without a
    number (no baseline) are left out here and listed in the page's table.
    """
    rows = speedups.dropna(subset=["speedup"])
    if rows.empty:
        return None
    multi_device = rows["device_id"].nunique() > 1
    labels = [
        f"{r.model} · {r.delegate} · {r.threads} thr" + (f" · {r.device}" if multi_device else "")
        for r in rows.itertuples()
    ]
    values = rows["speedup"].to_numpy()
    err = np.vstack([values - rows["ci_low"].to_numpy(), rows["ci_high"].to_numpy() - values])
    colors = [_FASTER if lo > 1 else _SLOWER if hi < 1 else _NONE for lo, hi in zip(rows["ci_low"], rows["ci_high"])]
    with matplotlib.rc_context(_RC):
        fig = _figure(len(rows))
        ax = fig.subplots()
        y = np.arange(len(rows))
        ax.barh(y, values, xerr=err, color=colors, capsize=3, height=0.6, error_kw={"linewidth": 1})
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        ax.axvline(1.0, color="#212529", linewidth=1, linestyle="--")
        for yi, v in zip(y, values):
            ax.annotate(f"{v:.2f}×", (0, yi), xytext=(3, 0), textcoords="offset points", va="center",
                        color="white", fontweight="bold")
        ax.set_xlabel(f"speedup over {baseline} (×, median {baseline} latency / median latency; >1 is faster)")
        ax.set_xlim(left=0)
        ax.grid(axis="x", alpha=0.3)
        svg = to_svg(fig)
    caption = (f"Bars: ratio of medians; error bars: bootstrap {confidence:.0%} interval. "
               f"Green: faster than {baseline} beyond the interval; orange: slower; grey: interval includes 1×.")
    return Chart(title=f"Speedup over {baseline}", svg=svg, caption=caption)
