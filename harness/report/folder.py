"""The report as a folder for fleet-size runs: ``index.html`` (device x model matrix) plus a page per device and model.

A run of 100 devices x 100 cases is 10,000 results and 100 MB of JSONL; one HTML file of
all of it (the single-file report, :mod:`harness.report.html`) takes minutes and is too big
for a browser. Here the results files are streamed once (:mod:`harness.report.scan`), each
case's details block is rendered as its line is read, and the pages are written from the
summaries. Every page is self-contained like the single file: inline CSS and SVG, no script,
a Content-Security-Policy of ``default-src 'none'``, every value autoescaped. Page names are
numbered (``device-0001.html``), never taken from the data, and every file is written with
:func:`harness.names.inside` the folder.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, Undefined
from markupsafe import Markup

from harness.errors import UsageError
from harness.names import inside
from harness.report import case_html, fleet, forked, soak_block, svgplot
from harness.report.case_html import figure_cells, reading, show
from harness.report.runctx import ContextTally
from harness.report.scan import Case, Part, Tally, count_records, iter_cases, split, total_bytes
from harness.report.shelf import Shelf
from harness.report.text import BASELINE_DELEGATE, fmt_mb, fmt_ms, fmt_x
from harness.report.trend import history

if TYPE_CHECKING:  # annotations only: harness.trend pulls in the gate and numpy
    from harness.trend import CaseTrend

#: ``auto`` writes the folder form above this many results (lines in the input files), one file up to it.
FOLDER_THRESHOLD = 200
FORMS = ("auto", "file", "folder")
#: Inputs this big are read by two processes (on a machine with two CPUs or more).
PARALLEL_BYTES = 24 << 20
#: Parts the input is cut into when two processes read it (each takes the next part as it finishes one).
SCAN_PIECES = 40
TEMPLATES = Path(__file__).parent / "templates"
CSP = Markup("default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'")
GENERATOR = "edgeharness fleet report"
INDEX_PROBLEMS = 20  # not-ok cases listed on the opening page (all of them on problems.html)
log = logging.getLogger("harness.report")
_PAGES = ("fleet/index.html.j2", "fleet/device.html.j2", "fleet/model.html.j2", "fleet/problems.html.j2")
_PAGE_NAME = re.compile(r"(device|model)-\d+\.html|problems\.html|index\.html")


def choose_form(form: str, n_results: int) -> str:
    """``file`` or ``folder``: ``form`` itself when forced, else by :data:`FOLDER_THRESHOLD`."""
    if form not in FORMS:
        raise UsageError(f"report form {form!r} is not one of {', '.join(FORMS)}")
    if form != "auto":
        return form
    return "folder" if n_results > FOLDER_THRESHOLD else "file"


def form_for_files(form: str, paths: Sequence[str | Path]) -> str:
    """:func:`choose_form` for results files, counting their lines (cheap: no parsing)."""
    return form if form in ("file", "folder") else choose_form(form, count_records(paths, FOLDER_THRESHOLD))


def render_files(paths: Sequence[str | Path], out_path: str | Path, *, title: str | None = None,
                 form: str = "auto") -> Path:
    """The report of JSONL results files in the ``form`` asked (see :func:`choose_form`); the page to open.

    Imports pandas and matplotlib only for the single-file form (the folder form does not need them).
    """
    if form_for_files(form, paths) == "folder":
        return render_folder(paths, out_path, title=title)
    from harness.report.html import render_report
    from harness.store import load_results

    return render_report([r for path in paths for r in load_results(path)], Path(out_path), title=title)


def folder_for(out_path: str | Path) -> Path:
    """Where the folder form of a report asked for at ``out_path`` goes: ``x.html`` -> ``x/``, else ``out_path``."""
    out = Path(out_path)
    return out.with_suffix("") if out.suffix.lower() in (".html", ".htm") else out


@functools.cache
def environment() -> Environment:
    """Autoescaped, like the single-file report's; a field missing from a record renders as ``—``.

    One per process, every page template compiled at once (~0.1 s) and never checked again
    (``auto_reload`` off): a forked helper inherits them compiled instead of compiling its own.
    """
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=Undefined,
                      trim_blocks=True, lstrip_blocks=True, auto_reload=False)
    env.filters.update(ms=fmt_ms, mb=fmt_mb, x=fmt_x, val=show, reading=reading)
    env.globals.update(figure_cells=figure_cells, case_rows=case_html.case_rows,
                       draw_chart=svgplot.draw, model_rows=case_html.model_rows)
    for name in _PAGES:
        env.get_template(name)
    return env


# -- pages -----------------------------------------------------------------------------------
@dataclass
class Facts:
    """What the opening page says about the input besides the cases."""

    runs: set[str]
    started: str
    finished: str
    devices: dict[str, dict]
    versions: dict[str, set[str]]
    contexts: ContextTally = field(default_factory=ContextTally)  # run contexts per device and run


def _collect(facts: Facts, case: Case, data: dict[str, Any]) -> None:
    facts.runs.add(case.run_id)
    started, finished = data.get("started_at"), data.get("finished_at")
    if isinstance(started, str) and started and (not facts.started or started < facts.started):
        facts.started = started
    if isinstance(finished, str) and finished > facts.finished:
        facts.finished = finished
    if case.device_id not in facts.devices:
        facts.devices[case.device_id] = data["device"]
    env = data.get("environment")
    if isinstance(env, dict):
        for key in ("harness", "runtime", "runtime_version"):
            value = env.get(key)
            if isinstance(value, str) and len(facts.versions.setdefault(key, set())) < 10:
                facts.versions[key].add(value)
    facts.contexts.add(case.device_id, case.run_id, data.get("context"), label=case.device)


def _box_chart(rows: Iterable[tuple[str, str, list[tuple[Any, str, str, dict]]]], x_title: str, *,
               slots: Sequence[tuple[Any, str, str]], ref: float | None = None,
               dots: bool = False) -> svgplot.Chart | None:
    """A chart from ``(label, href, [(slot key, colour, tooltip, quantiles)])`` rows; None when nothing to draw.

    ``slots`` ``(key, legend label, colour)`` give each kind of mark a fixed place in every row
    (top to bottom), so a missing one leaves a gap instead of shifting the others; dots share a line.
    """
    rows = [r for r in rows if r[2]]
    if not rows:
        return None
    keys = ("p50",) if dots else ("p10", "p90")
    values = [q[k] for _, _, marks in rows for _, _, _, q in marks for k in keys]
    axis = svgplot.axis_for(values, include=ref)
    chart = svgplot.Chart(axis, [], x_title, ref_x=axis.x(ref) if ref is not None else None, dots=dots,
                          legend=[(label, colour) for _, label, colour in slots])
    place = {key: i for i, (key, _, _) in enumerate(slots)}
    for label, href, marks in rows:
        chart.rows.append(svgplot.Row(svgplot.short(label), label, href, marks=[
            svgplot.mark(axis, colour, title, q, place[key]) for key, colour, title, q in marks]))
    unit = " (log scale)" if axis.log else ""
    chart.x_title = x_title + unit
    return svgplot.lay_out(chart)


def _latency_quantiles(c: Case) -> dict[str, float]:
    if not math.isnan(c.p10_us):
        return {k: getattr(c, f"{k}_us") / 1000.0 for k in ("p10", "p25", "p75", "p90")} | {"p50": c.median_us / 1000}
    med = c.median_us / 1000.0  # tool aggregates only: the median is all there is
    return dict.fromkeys(("p10", "p25", "p50", "p75", "p90"), med)


def _case_marks(cases: Iterable[Case], colours: dict[str, tuple[str, str]], name: str) -> list:
    return [((c.delegate, c.threads), colours[c.delegate][1], f"{name} · {c.config}: median {fmt_ms(c.median_us)}, "
             f"p10-p90 {fmt_ms(c.p10_us)}-{fmt_ms(c.p90_us)}, n={c.n}", _latency_quantiles(c)) for c in cases if c.ok]


def _slots(configs: Iterable[tuple[str, int]], colours: dict[str, tuple[str, str]]) -> list[tuple[Any, str, str]]:
    return [((d, t), f"{d} · {t} thr", colours[d][1]) for d, t in configs]


@dataclass
class Scanned:
    """Cases read from some parts of the input (details rendered), what else the pages say, and the warnings."""

    cases: list[Case]
    facts: Facts
    tally: Tally
    warnings: list[str]

    def extend(self, other: Scanned) -> None:
        """Append ``other`` (read from later parts) and renumber the cases in input order."""
        offset = len(self.cases)
        for c in other.cases:
            c.index += offset
        self.cases.extend(other.cases)
        f, g = self.facts, other.facts
        f.runs |= g.runs
        f.started = min(filter(None, (f.started, g.started)), default="")
        f.finished = max(f.finished, g.finished)
        for key, value in g.devices.items():
            f.devices.setdefault(key, value)
        for key, values in g.versions.items():
            f.versions.setdefault(key, set()).update(values)
        f.contexts.merge(g.contexts)
        self.tally.cases += other.tally.cases
        self.tally.skipped += other.tally.skipped
        self.warnings.extend(other.warnings)


def scan_parts(parts: Sequence[Part], shelves: Sequence[Shelf], number: int) -> Scanned:
    """Read ``parts`` and put each case's details block on ``shelves[number]`` (runs in a worker process too:
    returns, never logs)."""
    out = Scanned([], Facts(set(), "", "", {}, {}), Tally(), [])
    shelf = shelves[number]
    for case, data in iter_cases(parts, out.tally, out.warnings.append):
        _collect(out.facts, case, data)
        case.details = (number, *shelf.put(case_html.details(case, data)))
        soak = data.get("soak")
        if soak is not None and case.ok and (figures := soak_block.summary(soak)) is not None:
            case.soak = figures  # a soak run: its curve and windows on the device page, its figures on the index
            case.soak_block = (number, *shelf.put(soak_block.block(case, soak, figures)))
        case.reps = []  # shown in the details now; less to hold and to pass between processes
        out.cases.append(case)
    shelf.flush()
    return out


def read(paths: Sequence[str | Path], shelves: Sequence[Shelf], *, parallel_bytes: int | None = None) -> Scanned:
    """Every results file read once, the details blocks put on ``shelves`` (two: this process's, the helper's).

    Inputs of ``parallel_bytes`` or more (default :data:`PARALLEL_BYTES`) are cut into :data:`SCAN_PIECES`
    parts shared as they go with a forked helper (:func:`harness.report.forked.share`) when that is safe;
    the parts' cases are put back in input order.
    """
    limit = PARALLEL_BYTES if parallel_bytes is None else parallel_bytes
    parts = split(paths, SCAN_PIECES) if total_bytes(paths) >= limit and forked.available() else []
    if len(parts) < 2:  # one process: a file is one part (at most 20 bad-line warnings a file)
        scanned = scan_parts(split(paths, 1), shelves, 0)
    else:
        pieces = forked.share(len(parts), lambda i, worker: scan_parts(parts[i:i + 1], shelves, worker))
        scanned = pieces[0]
        for piece in pieces[1:]:
            scanned.extend(piece)
    for line in scanned.warnings:
        log.warning("%s", line)
    return scanned


class FolderReport:
    """Reads the results, then writes every page; :meth:`pages` yields them, the index first."""

    def __init__(self, paths: Sequence[str | Path], *, title: str | None = None,
                 baseline: str = BASELINE_DELEGATE, parallel_bytes: int | None = None,
                 trends: Sequence[CaseTrend] = ()) -> None:
        self.env = environment()
        self.baseline = baseline
        self.input_bytes = total_bytes(paths)
        self.shelves = (Shelf(), Shelf())  # the details blocks, written by this process and the helper
        scanned = read(paths, self.shelves, parallel_bytes=parallel_bytes)
        self.cases, self.facts, self.tally = scanned.cases, scanned.facts, scanned.tally
        runs = sorted(self.facts.runs)
        self.title = title or ("edgeharness report — " + ", ".join(runs[:3]) + (" …" if len(runs) > 3 else "")
                               if runs else "edgeharness report")
        self.generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        self.speed = fleet.speedups(self.cases, baseline)
        self.devices = fleet.groups(self.cases, "device_id", "device", "device")
        self.models = fleet.groups(self.cases, "model", "model", "model")
        self.colours = fleet.delegate_colours(self.cases, baseline)
        self.device_page = {g.key: g.page for g in self.devices}
        # the Run context, analysed once here: a forked page writer inherits it instead of redoing it
        self.context = self.facts.contexts.table(link=self.device_page.get) if self.facts.contexts else None
        self.trends: dict[str, list[CaseTrend]] = {}  # device id -> its cases' histories (more than one run)
        for t in trends:
            if len(t.points) > 1 and t.device_id in self.device_page:
                self.trends.setdefault(t.device_id, []).append(t)

    def _common(self, page_title: str) -> dict[str, Any]:
        return {"page_title": page_title, "report_title": self.title, "generated": self.generated,
                "baseline": self.baseline, "csp": CSP, "colours": self.colours, "speed": self.speed,
                "device_page": self.device_page}

    def index(self) -> str:
        matrix = fleet.matrix(self.devices, self.models, self.speed)
        problems = [c for c in self.cases if c.status != "ok"]
        rows = []
        for model in self.models:
            marks = []
            for delegate, threads in fleet.configs(model.cases, self.baseline):
                if delegate == self.baseline:
                    continue
                values = [s.value for c in model.cases if c.delegate == delegate and c.threads == threads
                          and (s := self.speed.get(c.index)) is not None and s.known]
                q = fleet.spread(values)
                if q:
                    marks.append(((delegate, threads), self.colours[delegate][1],
                                  f"{model.label} · {delegate} · {threads} thr: median "
                                  f"{q['p50']:.2f}× over {q['n']} devices, p10-p90 {q['p10']:.2f}-{q['p90']:.2f}×", q))
            rows.append((model.label, model.page, marks))
        others = [k for k in fleet.configs(self.cases, self.baseline) if k[0] != self.baseline]
        chart = _box_chart(rows, f"speedup over {self.baseline} across devices (×, >1 is faster)",
                           slots=_slots(others, self.colours), ref=1.0)
        return self.env.get_template("fleet/index.html.j2").render(
            **self._common(self.title), devices=self.devices, models=self.models, matrix=matrix,
            counts=fleet.status_counts(self.cases), total=len(self.cases), facts=self.facts,
            runs=sorted(self.facts.runs), skipped=self.tally.skipped, chart=chart,
            problems=problems[:INDEX_PROBLEMS], n_problems=len(problems), config_count=len(fleet.configs(self.cases)),
            history_cases=sum(map(len, self.trends.values())),
            changed=sorted((t for ts in self.trends.values() for t in ts if t.changes),
                           key=lambda t: (t.changes[-1].started_at, t.label), reverse=True),
            index_changes=INDEX_PROBLEMS,
            soaks=self._soaks(), index_soaks=INDEX_PROBLEMS,
            context=self.context,
        )

    def _soaks(self) -> list[Case]:
        """The soak cases, the ones that kept the least of their peak throughput first (no ratio: last)."""
        soaks = [c for c in self.cases if c.soak is not None]
        if not soaks:
            return soaks
        return sorted(soaks, key=lambda c: (c.soak["sustained_peak_ratio"] is None,
                                            c.soak["sustained_peak_ratio"] or 0.0, c.device, c.model, c.index))

    def device(self, group: fleet.Group) -> str:
        """The device page of ``group`` as text (:meth:`device_bytes` is what the writer uses)."""
        return self._device_page(group, case_html.case_blocks(group.cases, self.details))

    def device_bytes(self, group: fleet.Group) -> list[bytes]:
        """The device page of ``group`` as UTF-8 chunks, the same bytes as :meth:`device` encoded.

        The cases' details blocks (most of the page: ~1 MB at 100 cases) are copied from the shelves
        as the bytes they were stored as, not decoded, joined into the page and encoded again. The
        page is rendered with a marker where the blocks go, cut at its last occurrence (what follows
        it is the template's own text, no record value) and the blocks put between the two parts.
        """
        marker = f"<!--details-{secrets.token_hex(16)}-->"
        head, found, tail = self._device_page(group, Markup(marker)).rpartition(marker)  # noqa: S704 - ours
        if not found:  # cannot happen: the template shows the blocks; the text form is always right
            return [self.device(group).encode("utf-8")]
        out = [head.encode("utf-8")]
        for c in group.cases:
            before, after = case_html.block_frame(c)
            number, *where = c.details
            out += [before.encode("utf-8"), self.shelves[number].get_bytes(where), after.encode("utf-8")]
        out.append(tail.encode("utf-8"))
        return out

    def _device_page(self, group: fleet.Group, blocks: Markup) -> str:
        by_model: dict[str, list[Case]] = {}
        for c in group.cases:
            by_model.setdefault(c.model, []).append(c)
        model_page = {m.key: m.page for m in self.models}
        rows = [(model, model_page[model], _case_marks(cases, self.colours, model))
                for model, cases in by_model.items()]
        chart = _box_chart(rows, "latency per inference (ms)",
                           slots=_slots(fleet.configs(group.cases, self.baseline), self.colours))
        return self.env.get_template("fleet/device.html.j2").render(
            **self._common(group.label), group=group, info=self.facts.devices.get(group.key, {}), chart=chart,
            model_page=model_page, multi_run=len(self.facts.runs) > 1,
            blocks=blocks, history=history(self.trends.get(group.key, ())), soaks=self._soak_blocks(group),
            context=self.facts.contexts.table(devices=(group.key,), every_field=True)
            if self.facts.contexts else None,
        )

    def _soak_blocks(self, group: fleet.Group) -> Markup | None:
        """The device's soak runs (curve, figures, windows) from the shelves, framed; None when it has none."""
        out = []
        for c in group.cases:
            if c.soak_block is not None:
                number, *where = c.soak_block
                before, after = soak_block.frame(c)
                out += [before, self.shelves[number].get(where), after]
        return Markup("".join(out)) if out else None  # noqa: S704 - built by soak_block: values escaped there

    def details(self, case: Case) -> str:
        """The details block of ``case``, from the shelf it was put on when its line was read."""
        number, *where = case.details
        return self.shelves[number].get(where)

    def close(self) -> None:
        """Drop the details blocks (their temporary files)."""
        for shelf in self.shelves:
            shelf.close()

    def model(self, group: fleet.Group) -> str:
        cfgs = fleet.configs(group.cases, self.baseline)
        by_device: dict[str, dict[tuple[str, int], Case]] = {}
        for c in group.cases:
            cell = by_device.setdefault(c.device_id, {})
            if (c.delegate, c.threads) not in cell or (c.ok and not cell[(c.delegate, c.threads)].ok):
                cell[(c.delegate, c.threads)] = c
        labels = {c.device_id: c.device for c in group.cases}
        order = sorted(by_device, key=lambda d: (labels[d], d))
        dist = _box_chart(((labels[d], self.device_page[d], _case_marks(
            [by_device[d][k] for k in cfgs if k in by_device[d]], self.colours, labels[d])) for d in order),
            "median latency per inference (ms)", slots=_slots(cfgs, self.colours), dots=True)
        dots = []
        for delegate, threads in cfgs:
            if delegate == self.baseline:
                continue
            marks = []
            for d in order:
                c = by_device[d].get((delegate, threads))
                s = self.speed.get(c.index) if c is not None else None
                if s is not None and s.known:
                    marks.append(((delegate, threads), self.colours[delegate][1],
                                  f"{labels[d]}: {s.value:.2f}× ({s.clarity})",
                                  dict.fromkeys(("p10", "p25", "p50", "p75", "p90"), s.value)))
            dots.append((f"{delegate} · {threads} thr", "", marks))
        speed_chart = _box_chart(dots, f"speedup over {self.baseline} (×, >1 is faster; one dot per device)",
                                 slots=_slots([k for k in cfgs if k[0] != self.baseline], self.colours),
                                 ref=1.0, dots=True)
        return self.env.get_template("fleet/model.html.j2").render(
            **self._common(group.label), group=group, configs=cfgs, order=order, labels=labels,
            by_device=by_device, dist=dist, speed_chart=speed_chart,
        )

    def problems(self) -> str:
        rows = [c for c in self.cases if c.status != "ok"]
        rows.sort(key=lambda c: (fleet._WORST_FIRST.index(c.status), c.device, c.model, c.delegate, c.threads))
        return self.env.get_template("fleet/problems.html.j2").render(
            **self._common("Failed, skipped and lost cases"), rows=rows, total=len(self.cases))

    def page_jobs(self) -> list[tuple[str, Callable[[], str | list[bytes]]]]:
        """``(file name, render)`` of every page, the index first; a render gives text or UTF-8 chunks."""
        jobs: list[tuple[str, Callable[[], str | list[bytes]]]] = [("index.html", self.index),
                                                                    ("problems.html", self.problems)]
        jobs += [(g.page, partial(self.model, g)) for g in self.models]  # the bigger pages first: two processes
        jobs += [(g.page, partial(self.device_bytes, g)) for g in self.devices]  # sharing them finish together
        return jobs


def write_link_page(page: Path, index: Path, title: str) -> Path:
    """Write ``page`` (e.g. the latest ``<suite>.html``): a link to the folder report's ``index``, which it opens."""
    href = "/".join(quote(part) for part in index.relative_to(page.parent).parts)
    page.write_text(environment().get_template("fleet/link.html.j2").render(href=href, title=title, csp=CSP),
                    encoding="utf-8")
    return page


def _old_pages(folder: Path) -> set[str]:
    """The pages of an earlier fleet report in ``folder`` (none when it does not exist); refuses anything else."""
    if not folder.exists():
        return set()
    if not folder.is_dir():
        raise UsageError(f"{folder} exists and is not a folder", hint="give another -o for the report folder")
    names = {p.name for p in folder.iterdir()}
    if names:
        index = folder / "index.html"
        ours = index.is_file() and GENERATOR in index.read_text(encoding="utf-8", errors="replace")[:2000]
        if not ours or any(not _PAGE_NAME.fullmatch(n) for n in names):
            raise UsageError(f"{folder} holds files that are not an edgeharness report",
                             hint="give a new or empty folder (or an earlier report's) for -o")
    return names


def _write(folder: Path, jobs: Sequence[tuple[str, Callable[[], str | list[bytes]]]]) -> list[str]:
    for name, render in jobs:
        page = render()
        if isinstance(page, str):
            inside(folder, name).write_text(page, encoding="utf-8")
        else:
            with inside(folder, name).open("wb") as fh:
                fh.writelines(page)
    return [name for name, _ in jobs]


def render_folder(paths: Sequence[str | Path], out_path: str | Path, *, title: str | None = None,
                  parallel_bytes: int | None = None, trends: Sequence[CaseTrend] = ()) -> Path:
    """Write the folder form of the report of ``paths`` (JSONL results files) and return its ``index.html``.

    ``out_path`` ``x.html`` gives the folder ``x/``. An earlier report in that folder is replaced
    (its pages that this report does not write are removed); a folder holding anything else is
    refused. ``trends`` (:func:`harness.trend.case_trends` of the stored runs) add a History section to
    each device page (its cases' medians and intervals per run, changes flagged) and the changed cases to
    the opening page. Inputs of ``parallel_bytes`` or more (default :data:`PARALLEL_BYTES`) use a second
    process when that is safe: both read parts of the input, then write pages, each taking the next as it is done.
    """
    folder = folder_for(out_path)
    old = _old_pages(folder)  # refused before the input is read, created after (a bad input leaves nothing)
    report = FolderReport(paths, title=title, parallel_bytes=parallel_bytes, trends=trends)
    try:
        written = _write_pages(report, folder, parallel_bytes)
    finally:
        report.close()
    for name in old - set(written):
        inside(folder, name).unlink(missing_ok=True)
    return folder / "index.html"


def _write_pages(report: FolderReport, folder: Path, parallel_bytes: int | None) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    jobs = report.page_jobs()
    limit = PARALLEL_BYTES if parallel_bytes is None else parallel_bytes
    if report.input_bytes >= limit and len(jobs) > 2 and forked.available():
        return [name for names in forked.share(len(jobs), lambda i, _: _write(folder, jobs[i:i + 1]))
                for name in names]
    return _write(folder, jobs)
