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


VERDICT_COLORS = {"slower": _SLOWER, "failed": "#c92a2a", "faster": _FASTER, "noisy": "#e67700", "same": "#1864ab"}
_BASE_COLOR = "#868e96"


def _gate_label(row: dict) -> str:
    base, cand = row["base_median_us"] / 1000.0, row["cand_median_us"] / 1000.0
    return f"{row['model']} · {row['delegate']} · {row['threads']} thr\n{base:.3g} → {cand:.3g} ms"


def _gate_row(ax: matplotlib.axes.Axes, i: int, r: dict, *, first: bool) -> None:
    """One case of :func:`gate_chart`: baseline dots above, candidate dots and the ratio below."""
    color = VERDICT_COLORS.get(r["verdict"], _NONE)
    scale = r["base_median_us"]
    for values, y, c, label in ((r["base_rep_us"], i - 0.17, _BASE_COLOR, "baseline repetitions"),
                                (r["cand_rep_us"], i + 0.17, color, "candidate repetitions")):
        ax.scatter(np.asarray(values) / scale, np.full(len(values), y), s=14, color=c, alpha=0.8,
                   label=label if first else None)
    if r["ci_low"] is not None:
        err = [[r["ratio"] - r["ci_low"]], [r["ci_high"] - r["ratio"]]]
        ax.errorbar([r["ratio"]], [i + 0.17], xerr=err, fmt="D", color="#212529", markersize=5, capsize=3,
                    linewidth=1, label=f"ratio of medians, {r['level']:.0%} interval" if first else None)
    ax.annotate(r["verdict"], (1.0, i), xycoords=("axes fraction", "data"), xytext=(4, 0),
                textcoords="offset points", va="center", color=color, fontweight="bold")


def gate_chart(rows: list[dict]) -> Chart | None:
    """Baseline vs candidate per-repetition medians of each compared case, on one relative axis.

    ``rows`` are :func:`harness.report.gate_rows.verdict_row` dicts; each repetition's median
    (the unit the gate tests) is divided by the baseline's pooled median, so cases of any
    speed share the axis and the gap between the two rows of dots is the slowdown. The
    diamond is the ratio of medians, its bar the bootstrap interval; colour is the verdict.
    """
    rows = [r for r in rows if r["ratio"] is not None and r["base_rep_us"]]
    if not rows:
        return None
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(_WIDTH_IN, 1.2 + 0.62 * len(rows)))
        ax = fig.subplots()
        for i, r in enumerate(rows):
            _gate_row(ax, i, r, first=i == 0)
        ax.set_yticks(np.arange(len(rows)), [_gate_label(r) for r in rows])
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.axvline(1.0, color="#212529", linewidth=1, linestyle="--")
        ax.set_xlabel("per-repetition median latency / baseline median (×; right of 1 is slower)")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
        svg = to_svg(fig)
    caption = ("Dots: one per repetition (a separate process or launch), its median latency divided by the "
               "baseline's median; grey = baseline, coloured = candidate (colour = verdict). Diamond and bar: "
               "ratio of medians with its bootstrap interval (repetitions, then iterations, resampled).")
    return Chart(title="Baseline vs candidate", svg=svg, caption=caption)


_LOCAL, _REMOTE = "#1864ab", "#e67700"


def hybrid_chart(model: str, options: list) -> Chart | None:
    """On-device options and the endpoint per network profile on one axis: bar = p50, whisker to p90 (ms).

    ``options`` are :class:`harness.hybrid.Option`s of one model.
    """
    if not options:
        return None
    rows = sorted(options, key=lambda o: (o.remote, o.p50_ms))
    p50 = np.array([o.p50_ms for o in rows])
    p90 = np.array([o.p90_ms for o in rows])
    with matplotlib.rc_context(_RC):
        fig = _figure(len(rows))
        ax = fig.subplots()
        y = np.arange(len(rows))
        ax.barh(y, p50, xerr=np.vstack([np.zeros_like(p50), np.maximum(p90 - p50, 0)]), height=0.6, capsize=3,
                color=[_REMOTE if o.remote else _LOCAL for o in rows], error_kw={"linewidth": 1})
        ax.set_yticks(y, [("server · " if o.remote else "device · ") + o.label for o in rows])
        ax.invert_yaxis()
        if p90.max() / max(p50.min(), 1e-3) > _LOG_RANGE:
            _log_axis(ax.xaxis)
        ax.set_xlabel("latency (ms): bar p50, whisker p90")
        ax.grid(axis="x", alpha=0.3)
        svg = to_svg(fig)
    return Chart(title=f"{model}: on-device vs server", svg=svg,
                 caption="Blue: on-device (per invocation); orange: the endpoint under each network profile "
                         "(end to end per request).")
