"""The soak section's chart: latency per window over time, the hottest zone beside it, throttled windows shaded."""

from __future__ import annotations

import matplotlib
import numpy as np

from harness.report.charts import _RC, _WIDTH_IN, Chart, to_svg
from harness.results import Result, Soak

_P50, _MEAN, _P90, _TEMP, _SHADE = "#1864ab", "#5f3dc4", "#74c0fc", "#d9480f", "#ffe8cc"


def soak_chart(result: Result) -> Chart | None:
    """p50 and p90 latency (ms) per window against the window's middle (s); hottest zone (deg C) on the right."""
    soak: Soak | None = result.soak
    if soak is None:
        return None
    windows = [w for w in soak.windows if w.p50_us is not None]
    if not windows:
        return None
    mid = np.array([(w.start_s + min(w.end_s, max(soak.elapsed_s, w.start_s))) / 2 for w in windows])
    with matplotlib.rc_context(_RC):
        from matplotlib.figure import Figure

        fig = Figure(figsize=(_WIDTH_IN, 3.2))
        ax = fig.subplots()
        for w in soak.windows:
            if w.throttled:
                ax.axvspan(w.start_s, w.end_s, color=_SHADE, linewidth=0)
        ax.plot(mid, [w.p50_us / 1000 for w in windows], marker="o", color=_P50, label="p50")
        for key, colour, label, style in (("mean_us", _MEAN, "mean", "--"), ("p90_us", _P90, "p90", "-")):
            points = [(m, getattr(w, key) / 1000) for m, w in zip(mid, windows) if getattr(w, key) is not None]
            if points:
                ax.plot(*zip(*points), marker=".", color=colour, linestyle=style, label=label)
        if soak.time_to_throttle_s is not None:
            ax.axvline(soak.time_to_throttle_s, color="#212529", linestyle="--", linewidth=1,
                       label=f"first throttle ({soak.time_to_throttle_s:.1f} s)")
        ax.set_xlabel("time since the soak began (s; points at window middles)")
        ax.set_ylabel("latency per inference (ms)")
        ax.set_ylim(bottom=0)
        ax.set_xlim(0, max(soak.duration_s, soak.elapsed_s))
        ax.grid(alpha=0.3)
        temps = [(m, max(w.temps_c.values())) for m, w in zip(mid, windows) if w.temps_c]
        handles, labels = ax.get_legend_handles_labels()
        if temps:
            right = ax.twinx()
            right.plot([t for t, _ in temps], [c for _, c in temps], color=_TEMP, marker="s", markersize=3,
                       linewidth=1, label="hottest zone")
            right.set_ylabel("hottest zone (°C)")
            more_h, more_l = right.get_legend_handles_labels()
            handles, labels = handles + more_h, labels + more_l
        ax.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=5, frameon=False)
        ax.set_title(f"{result.case.model} · {result.case.delegate} · {result.case.threads} thr · {result.device.id}",
                     pad=22)
        svg = to_svg(fig)
    n = sum(w.iterations for w in soak.windows)
    caption = (f"{len(soak.windows)} windows of {soak.window_s:g} s, {n} iterations in all, "
               f"{soak.snapshots} thermal snapshots. Shaded: windows with thermal or frequency evidence of "
               "throttling. Latency: p50, mean and p90 of the iterations that ended in each window "
               "(throughput = 1 / mean).")
    return Chart(title=result.case.case_id, svg=svg, caption=caption)
