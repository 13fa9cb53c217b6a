"""One case's details block of the folder report, built in Python as each line is read.

A fleet report writes this block 10,000 times; through a Jinja2 template it cost about 0.27 ms
a case (a filter call, an escape and a ``Markup`` object per value, ~80 values), more than
parsing the line. Here every value from the record goes through :func:`~harness.report.text.esc` (the same five
replacements as Jinja2's autoescaping, so the output is the same text) or is a number this
module formats; nothing from the record reaches the page unescaped. The page templates wrap
the result, as ``Markup``, like any other block.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from jinja2 import Undefined
from markupsafe import Markup

from harness.report.scan import Case
from harness.report.text import esc, fmt_mb, fmt_ms, fmt_x

_UNITS = {"us": ("ms", 1e-3), "mb": ("MB", 1.0), "mj": ("mJ", 1.0), "mw": ("mW", 1.0), "c": ("°C", 1.0),
          "s": ("s", 1.0)}
RAW_TAIL = 8000  # characters of a case's raw tool output shown on its device page (the end, where errors are)
_REP_KEYS = ("median_us", "min_us", "max_us", "avg_us", "init_us", "first_inference_us", "warmup_avg_us")
_BLOCKS = (("memory", "Memory"), ("energy", "Energy"), ("thermal", "Thermal"), ("delegates", "Delegates"),
           ("ops", "Operators"), ("environment", "Environment"))
_REPS_HEAD = ('<table class="reps">\n  <thead><tr><th class="num">repetition</th><th class="num">n</th>'
              '<th class="num">median</th><th class="num">min</th><th class="num">max</th>\n'
              '    <th class="num">tool avg</th><th class="num">init</th><th class="num">first inference</th>'
              '<th class="num">warm-up avg</th></tr></thead>\n  <tbody>\n')


def show(value: object, limit: int | None = 400) -> str:
    """Any record value as short text (not escaped): numbers with 4 significant digits, containers as compact JSON."""
    if type(value) is str:  # the common case first (a string from a parsed record)
        return value if limit is None or len(value) <= limit else value[:limit] + "…"
    if value is None or isinstance(value, Undefined):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:.4g}" if isinstance(value, float) else str(value)
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if limit is None or len(text) <= limit else text[:limit] + "…"


@functools.lru_cache(maxsize=1024)
def _unit(key: str) -> tuple[str, float] | None:
    """The unit a reading's key names (``peak_rss_mb`` -> MB), None when it names none."""
    return _UNITS.get(key.rpartition("_")[2]) if "_" in key else None


def reading(value: object, key: str) -> str:
    """A memory/energy/thermal value with the unit its key names (``peak_rss_mb`` -> MB, ``*_us`` -> ms)."""
    unit = _unit(key)
    if unit is None:
        return show(value)
    name, scale = unit
    if isinstance(value, dict):
        return ", ".join(f"{k} {reading(v, key)}" for k, v in value.items())
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value * scale:.4g} {name}"
    return show(value)


def reading_lines(record: dict[str, Any]) -> list[tuple[str, str]]:
    """The record's other blocks (memory, energy, thermal, delegates, ...) as one text line each (not escaped).

    ``key value unit`` pairs joined by `` · ``; values in their key's unit, empty ones left out.
    """
    out = []
    for key, title in _BLOCKS:
        block = record.get(key)
        if not block:
            continue
        if isinstance(block, dict):
            text = " · ".join(f"{k} {reading(v, k)}" for k, v in block.items() if v not in (None, "", [], {}))
        else:
            text = show(block, 800)
        out.append((title, text))
    return out


def raw_tail(raw: object) -> tuple[str, int]:
    """The last :data:`RAW_TAIL` characters of a raw tool output and how many came before them."""
    text = raw if isinstance(raw, str) else show(raw, None)
    cut = max(0, len(text) - RAW_TAIL)
    return text[cut:], cut


def _num_cells(texts: Iterable[str]) -> str:
    return "".join(f'<td class="num">{t}</td>' for t in texts)


def rep_rows(case: Case) -> str:
    """The repetitions table's rows: number, n, then median .. warm-up average in ms (numbers only)."""
    rows = (_num_cells((str(i), str(int(rep["n"])), *(fmt_ms(rep[k]) for k in _REP_KEYS)))
            for i, rep in enumerate(case.reps, 1))
    return "".join(f"<tr>{row}</tr>\n" for row in rows)


def figure_cells(case: Case) -> Markup:
    """The cases table's figure cells of ``case`` (median, p90, p99, std, n, repetitions); numbers only."""
    return Markup(_num_cells((fmt_ms(case.median_us), fmt_ms(case.p90_us), fmt_ms(case.p99_us),  # noqa: S704
                              fmt_ms(case.std_us), str(case.n), str(case.repetitions))))


def _val(mapping: dict[str, Any], key: str) -> str:
    return esc(show(mapping.get(key)))


def details(c: Case, r: dict[str, Any]) -> Markup:
    """The details block of case ``c`` read from record ``r`` (checked by :func:`harness.report.scan.read_record`)."""
    k: dict[str, Any] = r["case"]
    out = ['<dl class="kv">\n  <dt>run</dt><dd>', esc(c.run_id), "</dd>\n  <dt>case id</dt><dd>", _val(k, "case_id"),
           "</dd>\n  <dt>model</dt><dd>", esc(c.model), " <small>sha256 ", _val(k, "model_sha256"), "</small>"]
    if k.get("model_path"):
        out += ["<br><small>", _val(k, "model_path"), "</small>"]
    out += ["</dd>\n  <dt>runner / API</dt><dd>", _val(k, "runner"), " / ", esc(c.api),
            "</dd>\n  <dt>planned runs</dt><dd>", _val(k, "warmup_runs"), " warm-up, ", _val(k, "measured_runs"),
            " measured, × ", _val(k, "repetitions"), " repetitions</dd>\n"]
    if k.get("settings"):
        out += ["<dt>settings</dt><dd>", _val(k, "settings"), "</dd>"]
    out += ["  <dt>time</dt><dd>", _val(r, "started_at"), " → ", _val(r, "finished_at"), "</dd>\n"]
    if c.reason:
        out += ['<dt>reason</dt><dd class="reason">', esc(c.reason), "</dd>"]
    out.append("</dl>\n")
    if c.reps:
        lat = r.get("latency")
        method = lat.get("method") if isinstance(lat, dict) else None
        out += ['<p class="how">Latency method: ', esc(show(method)), "; basis: ", esc(c.basis or "—"), "; ",
                str(c.n), " iterations in\n  ", str(len(c.reps)), " repetitions. Median ", fmt_ms(c.median_us),
                ", p90 ", fmt_ms(c.p90_us), ", p99 ", fmt_ms(c.p99_us), ",\n  mean ", fmt_ms(c.mean_us), " ± ",
                fmt_ms(c.std_us), " (std).</p>\n", _REPS_HEAD, rep_rows(c), "\n  </tbody>\n</table>\n"]
    out.append('<dl class="kv">\n')
    for part, line in reading_lines(r):
        out += ["<dt>", esc(part), "</dt><dd>", esc(line), "</dd>\n"]
    out.append("</dl>\n")
    if r.get("raw"):
        tail, cut = raw_tail(r["raw"])
        size = (f"its last {len(tail)} of {cut + len(tail)} characters; all of it is in the results file" if cut
                else f"{len(tail)} characters")
        out += ['<details class="raw"><summary>raw tool output (', size, ")</summary>\n<pre>", esc(tail),
                "</pre>\n</details>\n"]
    else:
        out.append('<p class="how">The runner kept no output for this case.</p>')
    return Markup("".join(out))  # noqa: S704 - every value from the record went through esc()


def _status(status: str) -> str:
    value = esc(status)
    return f'<span class="badge s-{value}">{value}</span>'


def case_rows(cases: Iterable[Case], speed: dict[int, Any], model_page: dict[str, str], multi_run: bool) -> Markup:
    """The cases table's rows of a device page (``speed``: :func:`harness.report.fleet.speedups`)."""
    out = []
    for c in cases:
        s = speed.get(c.index)
        if s is not None and s.known:
            clarity = esc(s.clarity)
            shown = f'<span class="clear-{clarity.replace(" ", "-")}" title="{clarity}">{fmt_x(s.value)}</span>'
        elif s is not None:
            shown = f'<span title="{esc(s.clarity)}">—</span>'
        else:
            shown = "—"
        run = f"<td>{esc(c.run_id)}</td>" if multi_run else ""
        out.append(f'    <tr class="{"ok" if c.status == "ok" else "not-ok"}">{run}<td><a href="'
                   f'{esc(model_page[c.model])}">{esc(c.model)}</a></td><td>{esc(c.delegate)}</td><td class="num">'
                   f"{c.threads}</td><td>{_status(c.status)}</td>{figure_cells(c)}<td class=\"num\">{shown}</td>"
                   f'<td class="num">{fmt_mb(c.peak_memory_mb)}</td><td><a href="#case-{c.index}">case {c.index}'
                   f"</a>{_soak_link(c) if c.soak is not None else ''}</td></tr>\n")
    return Markup("".join(out))  # noqa: S704 - record values escaped, numbers formatted here


def _soak_link(c: Case) -> str:
    ratio = c.soak["sustained_peak_ratio"] if c.soak else None
    shown = f" {ratio:.2f}" if ratio is not None else ""
    return f' · <a href="#soak-{c.index}" title="sustained / peak throughput">soak{shown}</a>'


def block_frame(c: Case) -> tuple[str, str]:
    """The HTML before and after case ``c``'s details block on its device page: a heading naming it."""
    return (f'<div class="case-block" id="case-{c.index}">\n<h4>case {c.index}: {esc(c.model)} · {esc(c.delegate)} · '
            f"{c.threads} thr — {_status(c.status)}</h4>\n", "\n</div>\n")


def case_blocks(cases: Iterable[Case], details: Callable[[Case], str]) -> Markup:
    """Each case's details (rendered by :func:`details` as it was read; ``details(case)`` gives it back)
    under a heading naming it."""
    out = []
    for c in cases:
        head, tail = block_frame(c)
        out += [head, details(c), tail]
    return Markup("".join(out))  # noqa: S704 - record values escaped; details is Markup already


def _speed_mark(s: Any) -> str:  # noqa: ANN401 - a fleet.Speedup
    clarity = esc(s.clarity)
    return f'<small class="clear-{clarity.replace(" ", "-")}" title="{clarity}">{fmt_x(s.value)}</small>'


def model_rows(order: Iterable[str], configs: Sequence[tuple[str, int]], by_device: dict[str, dict],
               labels: dict[str, str], device_page: dict[str, str], speed: dict[int, Any], baseline: str) -> Markup:
    """A model page's device x configuration table rows: median (and speedup), or the status, opening the case."""
    out = []
    for d in order:
        page = esc(device_page[d])
        out.append(f'<tr><th><a href="{page}">{esc(labels[d])}</a></th>\n')
        cells = by_device[d]
        for key in configs:
            c = cells.get(key)
            if c is None:
                out.append("<td></td>")
            elif c.ok:
                s = speed.get(c.index)
                mark = f" {_speed_mark(s)}" if s is not None and s.known and c.delegate != baseline else ""
                out.append(f'<td class="num"><a href="{page}#case-{c.index}">{fmt_ms(c.median_us)}</a>{mark}</td>')
            else:
                out.append(f'<td><a href="{page}#case-{c.index}">{_status(c.status)}</a></td>')
        out.append("</tr>\n")
    return Markup("".join(out))  # noqa: S704 - record values escaped, numbers formatted here
