"""A soak run in the folder report: its derived figures, its curve as plain SVG and its window table.

The single-file report draws the curve with matplotlib (:mod:`harness.report.soak`); the folder form
draws no chart with matplotlib (0.1 s and ~50 kB each), so here the same curve is written as SVG
elements: p50, mean and p90 latency per window against time (left axis, ms), the hottest thermal zone
(right axis, deg C), throttled windows shaded, the first throttle marked. Built in Python like the
details block (:mod:`harness.report.case_html`): every text from the record goes through
:func:`~harness.report.text.esc` after :func:`harness.textsafe.clip`; numbers are checked (finite, not
bool) and formatted here, a window whose figures are not numbers is left out of the curve and shown
as ``—`` in the table. Only records with a ``soak`` object reach this module.
"""

from __future__ import annotations

import math
from typing import Any

from harness.report.scan import Case
from harness.report.svgplot import Axis
from harness.report.text import esc, fmt_ms
from harness.textsafe import clip

MAX_TABLE_ROWS = 400  # windows listed in the table (a soak has at most 10,000; all are in the results file)
MAX_MARKERS = 200  # windows drawn with a hover marker (beyond that, the lines alone)
W, H, LEFT, RIGHT, TOP, BOTTOM = 880, 300, 64, 64, 34, 44
_P50, _MEAN, _P90, _TEMP, _SHADE = "#1864ab", "#5f3dc4", "#74c0fc", "#d9480f", "#ffe8cc"
FIGURES = ("duration_s", "window_s", "elapsed_s", "time_to_throttle_s", "peak_ips", "sustained_ips",
           "sustained_peak_ratio")


def num(value: object) -> float | None:
    """``value`` as a float when it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def summary(soak: object) -> dict[str, Any] | None:
    """The derived figures a page lists for a soak record (numbers checked; None when ``soak`` is no object)."""
    if not isinstance(soak, dict):
        return None
    out: dict[str, Any] = {k: num(soak.get(k)) for k in FIGURES}
    windows = soak.get("windows")
    out["windows"] = len(windows) if isinstance(windows, list) else 0
    out["sustained_windows"] = _count(soak.get("sustained_windows"))
    out["snapshots"] = _count(soak.get("snapshots"))
    evidence = soak.get("throttle_evidence")
    out["evidence"] = clip(evidence, 160) if isinstance(evidence, str) and evidence else ""
    return out


def figures_text(s: dict[str, Any]) -> tuple[str, str]:
    """(time to first throttle, sustained/peak) as short texts (not escaped: numbers and clipped evidence)."""
    ttt = s["time_to_throttle_s"]
    throttle = f"{ttt:.1f} s" if ttt is not None else "none seen"
    ratio = s["sustained_peak_ratio"]
    sustain = "—" if ratio is None else f"{ratio:.2f}"
    return throttle, sustain


def _window(w: object) -> dict[str, Any] | None:
    if not isinstance(w, dict):
        return None
    start, end = num(w.get("start_s")), num(w.get("end_s"))
    if start is None or end is None:
        return None
    temps = w.get("temps_c")
    hottest = max((t for t in (num(v) for v in temps.values()) if t is not None), default=None) \
        if isinstance(temps, dict) else None
    status = w.get("thermal_status")
    return {"start": start, "end": end, "n": _count(w.get("iterations")), "p50": num(w.get("p50_us")),
            "p90": num(w.get("p90_us")), "mean": num(w.get("mean_us")), "ips": num(w.get("throughput_ips")),
            "hot": hottest, "status": status if isinstance(status, int) and not isinstance(status, bool) else None,
            "freq": num(w.get("freq_ratio")), "throttled": w.get("throttled") is True,
            "mj": num(w.get("energy_per_inference_mj")), "mj_n": _count(w.get("energy_samples")),
            "mj_why": w.get("energy_reason") if isinstance(w.get("energy_reason"), str) else ""}


def _y(axis: Axis, value: float) -> float:
    return round(TOP + (H - TOP - BOTTOM) - (axis.x(value) - axis.left), 1)


def _line(points: list[tuple[float, float]], colour: str, dash: str = "") -> str:
    if not points:
        return ""
    coords = " ".join(f"{x},{y}" for x, y in points)
    extra = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.6"{extra}/>'


def curve(windows: list[dict[str, Any]], s: dict[str, Any], title: str) -> str:
    """The soak curve as an ``<svg>`` element ('' when no window has a p50)."""
    timed = [w for w in windows if w["p50"] is not None]
    if not timed:
        return ""
    span = max(s["duration_s"] or 0.0, s["elapsed_s"] or 0.0, max(w["end"] for w in windows))
    tx = Axis(0.0, span or 1.0, False, left=LEFT, width=W - LEFT - RIGHT)
    high = max(v for w in timed for v in (w["p50"], w["p90"], w["mean"]) if v is not None) / 1000.0
    ly = Axis(0.0, high * 1.08 or 1.0, False, left=0.0, width=H - TOP - BOTTOM)
    temps = [w["hot"] for w in timed if w["hot"] is not None]
    ry = Axis(min(temps) - 1.0, max(temps) + 1.0, False, left=0.0, width=H - TOP - BOTTOM) if temps else None
    bottom = H - BOTTOM
    out = [f'<svg class="plot soak" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" '
           f'height="{H}" role="img"><title>{esc(title)}</title>']
    for w in windows:
        if w["throttled"]:
            x0, x1 = tx.x(w["start"]), tx.x(min(w["end"], span))
            out.append(f'<rect x="{x0}" y="{TOP}" width="{round(x1 - x0, 1)}" height="{bottom - TOP}" fill="{_SHADE}">'
                       f'<title>throttled: {w["start"]:g}–{w["end"]:g} s</title></rect>')
    for x, label in tx.ticks():
        out.append(f'<line class="tick" x1="{x}" x2="{x}" y1="{TOP}" y2="{bottom}"/>'
                   f'<text x="{x}" y="{bottom + 14}" text-anchor="middle">{label}</text>')
    for pos, label in ly.ticks():
        y = round(bottom - pos, 1)
        out.append(f'<line class="tick" x1="{LEFT}" x2="{W - RIGHT}" y1="{y}" y2="{y}"/>'
                   f'<text x="{LEFT - 6}" y="{y + 4}" text-anchor="end">{label}</text>')
    if ry is not None:
        for pos, label in ry.ticks():
            y = round(bottom - pos, 1)
            out.append(f'<text x="{W - RIGHT + 6}" y="{y + 4}" fill="{_TEMP}">{label}</text>')
    mid = [(w, tx.x((w["start"] + min(w["end"], max(span, w["start"]))) / 2)) for w in timed]
    out.append(_line([(x, _y(ry, w["hot"])) for w, x in mid if w["hot"] is not None], _TEMP, "2 2")
               if ry is not None else "")
    out.append(_line([(x, _y(ly, w["p90"] / 1000)) for w, x in mid if w["p90"] is not None], _P90))
    out.append(_line([(x, _y(ly, w["mean"] / 1000)) for w, x in mid if w["mean"] is not None], _MEAN, "5 3"))
    out.append(_line([(x, _y(ly, w["p50"] / 1000)) for w, x in mid], _P50))
    if len(mid) <= MAX_MARKERS:
        for w, x in mid:
            hot = f", hottest {w['hot']:.1f} °C" if w["hot"] is not None else ""
            out.append(f'<circle cx="{x}" cy="{_y(ly, w["p50"] / 1000)}" r="3" fill="{_P50}"><title>'
                       f'{w["start"]:g}–{w["end"]:g} s: p50 {fmt_ms(w["p50"])}, p90 {fmt_ms(w["p90"])}, '
                       f'n={w["n"]}{hot}{", throttled" if w["throttled"] else ""}</title></circle>')
    ttt = s["time_to_throttle_s"]
    if ttt is not None and 0 <= ttt <= span:
        x = tx.x(ttt)
        out.append(f'<line class="ref" x1="{x}" x2="{x}" y1="{TOP}" y2="{bottom}"/>'
                   f'<text x="{x + 4}" y="{TOP + 12}">first throttle {ttt:.1f} s</text>')
    legend = [("p50", _P50, ""), ("mean", _MEAN, "5 3"), ("p90", _P90, "")] + (
        [("hottest zone (°C, right)", _TEMP, "2 2")] if ry is not None else [])
    x = LEFT
    for label, colour, dash in legend:
        out.append(_line([(x, 14), (x + 22, 14)], colour, dash) + f'<text x="{x + 27}" y="18">{label}</text>')
        x += 40 + 7 * len(label)
    out.append(f'<text x="{LEFT + (W - LEFT - RIGHT) / 2}" y="{H - 6}" text-anchor="middle">time since the soak '
               "began (s; points at window middles)</text>"
               f'<text transform="rotate(-90)" x="{-(TOP + (bottom - TOP) / 2)}" y="14" text-anchor="middle">'
               "latency per inference (ms)</text></svg>")
    return "".join(out)


def _secs(value: float | None, form: str) -> str:
    return "—" if value is None else f"{form % value} s"


def _cell(text: str) -> str:
    return f'<td class="num">{text}</td>'


def _table(windows: list[dict[str, Any]], simulated: bool) -> str:
    rows = []
    for i, w in enumerate(windows[:MAX_TABLE_ROWS], 1):
        if w["mj"] is not None:
            energy = f"{w['mj']:.3g} mJ ({w['mj_n']})" + (" <strong>(simulated)</strong>" if simulated else "")
        elif w["mj_why"]:
            energy = f'<span title="{esc(clip(w["mj_why"], 300))}">not measured</span>'
        else:
            energy = "—"
        cells = (str(i), f"{w['start']:g}–{w['end']:g}", str(w["n"]), fmt_ms(w["p50"]), fmt_ms(w["p90"]),
                 fmt_ms(w["mean"]), f"{w['ips']:.1f}/s" if w["ips"] is not None else "—",
                 f"{w['hot']:.1f} °C" if w["hot"] is not None else "—",
                 str(w["status"]) if w["status"] is not None else "—",
                 f"{100 * w['freq']:.0f}%" if w["freq"] is not None else "—")
        cls = ' class="throttled"' if w["throttled"] else ""
        rows.append(f"<tr{cls}>{''.join(map(_cell, cells))}<td>{'yes' if w['throttled'] else 'no'}</td>"
                    f'<td class="num">{energy}</td></tr>\n')
    more = (f"<p class=\"how\">The first {MAX_TABLE_ROWS} of {len(windows)} windows; all are in the results file.</p>"
            if len(windows) > MAX_TABLE_ROWS else "")
    return ('<table class="soak">\n<thead><tr><th class="num">window</th><th class="num">time (s)</th>'
            '<th class="num">n</th><th class="num">p50</th><th class="num">p90</th><th class="num">mean</th>'
            '<th class="num">throughput</th><th class="num">hottest zone</th><th class="num">status</th>'
            '<th class="num">frequency cap</th><th>throttled</th><th class="num">energy / inference (power samples)'
            "</th></tr></thead>\n<tbody>\n" + "".join(rows) + "</tbody>\n</table>\n" + more)


def frame(c: Case) -> tuple[str, str]:
    """The HTML before and after case ``c``'s soak block on its device page: a heading naming it, linking its
    details (added when the page is written: a case's number is final only then)."""
    return (f'<div class="soak-block" id="soak-{c.index}">\n<h3>{esc(c.model)} · {esc(c.delegate)} · {c.threads} thr'
            f' — <a href="#case-{c.index}">case {c.index}</a></h3>\n', "</div>\n")


def block(c: Case, soak: dict[str, Any], s: dict[str, Any]) -> str:
    """The soak block of case ``c`` for its device page: figures, curve, window table and methods (HTML; put in
    :func:`frame` when the page is written)."""
    raw = soak.get("windows")
    windows = [w for w in (_window(x) for x in raw) if w is not None] if isinstance(raw, list) else []
    throttle, sustain = figures_text(s)
    name = f"{c.model} · {c.delegate} · {c.threads} thr"
    dur, win, ran = (s[k] for k in ("duration_s", "window_s", "elapsed_s"))
    evidence = f" ({esc(s['evidence'])})" if s["evidence"] else ""
    head = (f'<p class="how">Soak of '
            f"{_secs(dur, '%g')} (ran {_secs(ran, '%.1f')}) in {s['windows']} windows of {_secs(win, '%g')}, "
            f"{c.repetitions} repetitions, {s['snapshots']} thermal snapshots. <strong>Time to first throttle:"
            f"</strong> {throttle}{evidence}. <strong>Sustained / peak throughput:</strong> {sustain}")
    if s["sustained_peak_ratio"] is not None and s["sustained_ips"] is not None and s["peak_ips"] is not None:
        head += (f" ({s['sustained_ips']:.1f} vs {s['peak_ips']:.1f} inferences/s; sustained = median of the last "
                 f"{s['sustained_windows']} window(s), peak = fastest window)")
    head += ".</p>\n"
    svg = curve(windows, s, f"soak curve of {name}")
    chart = (f'<div class="chart">{svg}</div>\n<p class="how">Shaded: windows with thermal or frequency evidence of '
             "throttling. Latency: p50, mean and p90 of the iterations that ended in each window (throughput = 1 / "
             "mean). Hover a point for the window's figures.</p>\n") if svg else (
        '<p class="message">No window has a latency: nothing to draw.</p>\n')
    method, emethod = soak.get("method"), soak.get("energy_method")
    how = ('<p class="how">n: measured iterations that ended in the window. Hottest zone, thermal status (highest) and '
           "frequency cap (lowest, of max) from the thermal snapshots taken after each repetition. Energy: idle-"
           "subtracted energy per inference of the repetitions that ended in the window, with its power sample count. "
           f"Method: {esc(clip(method, 2000)) if method else '—'}."
           f"{f' Energy method: {esc(clip(emethod, 1000))}.' if emethod else ''}</p>\n")
    opened = " open" if len(windows) <= 30 else ""
    return (head + chart + f'<details class="soak-windows"{opened}><summary>the {len(windows)} windows</summary>\n'
            + _table(windows, soak.get("energy_simulated") is True) + how + "</details>\n")
