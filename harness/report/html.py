"""Render results into ONE self-contained HTML file (Jinja2, autoescaped, inline CSS and SVG).

The page fetches nothing: no CDN, no fonts, no scripts, so it opens the same from a CI
artifact, an e-mail attachment or an air-gapped lab. Every value from a result (model
names, reasons, raw tool output) goes through Jinja2's autoescaping; only the SVG made
by :mod:`harness.report.charts` is marked safe.

The page is a list of :class:`Section`s, each built by one function of
:data:`SECTION_BUILDERS` from a :class:`ReportData`; a later feature (gate verdicts,
energy, thermal) adds its section by adding a builder and a template.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined

import harness
from harness import hybrid
from harness.gate import Budget, GateOutcome
from harness.report import charts, frames, gate_rows
from harness.report.text import fmt_mb, fmt_ms, fmt_x, is_nan
from harness.results import Result

TEMPLATES = Path(__file__).parent / "templates"
TOP_OPS = 10
_NOT_OK_ORDER = ("failed", "timeout", "device_lost", "skipped")


@dataclass(frozen=True)
class ReportData:
    """Everything the section builders read: the records and the frames built from them once."""

    results: Sequence[Result]
    cases: pd.DataFrame
    samples: pd.DataFrame
    speedups: pd.DataFrame
    baseline: str = frames.BASELINE_DELEGATE
    confidence: float = frames.CONFIDENCE
    gate: GateOutcome | None = None
    gate_baseline: Sequence[Result] = ()
    budgets: Mapping[str, Budget] | None = None

    @classmethod
    def build(cls, results: Sequence[Result], *, gate: GateOutcome | None = None,
              gate_baseline: Sequence[Result] = (), budgets: Mapping[str, Budget] | None = None) -> ReportData:
        return cls(
            results=list(results),
            cases=frames.cases_frame(results),
            samples=frames.samples_frame(results),
            speedups=frames.speedup_frame(results),
            gate=gate,
            gate_baseline=list(gate_baseline),
            budgets=budgets,
        )

    @property
    def multi_device(self) -> bool:
        return self.cases["device_id"].nunique() > 1

    @property
    def multi_run(self) -> bool:
        return self.cases["run_id"].nunique() > 1


@dataclass(frozen=True)
class Section:
    """One part of the page: its anchor, heading, template and the values that template reads."""

    anchor: str
    title: str
    template: str
    context: dict[str, Any] = field(default_factory=dict)


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as dicts with NaN turned into ``None`` (templates test ``is none``)."""
    return [{k: (None if is_nan(v) else v) for k, v in row.items()} for row in df.to_dict("records")]


def _sorted_cases(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["device", "model", "delegate", "threads", "run_id"], kind="stable")


def gate_section(data: ReportData) -> Section | None:
    """The gate's decision first: PASSED/FAILED and why, verdict per case, budgets, baseline vs candidate chart."""
    if data.gate is None:
        return None
    rows = gate_rows.verdict_rows(data.gate)
    return Section(
        "gate",
        "Gate",
        "gate.html.j2",
        {
            "headline": gate_rows.headline(data.gate),
            "rows": rows,
            "chart": charts.gate_chart(rows),
            "budgets": gate_rows.budget_rows(data.gate, data.results, data.budgets),
            "all_budgets": bool(data.budgets),
            "baseline_runs": sorted({r.run_id for r in data.gate_baseline}),
        },
    )


def summary_section(data: ReportData) -> Section:
    """Run ids, time span, devices with their facts, versions and counts by status."""
    results = data.results
    devices = {}
    for res in results:
        devices.setdefault(res.device.id, res.device)
    versions: dict[str, set[str]] = {}
    for res in results:
        for key, value in res.environment.items():
            versions.setdefault(str(key), set()).add(str(value))
    starts = sorted(r.started_at for r in results if r.started_at)
    ends = sorted(r.finished_at for r in results if r.finished_at)
    return Section(
        "summary",
        "Run summary",
        "summary.html.j2",
        {
            "run_ids": sorted({r.run_id for r in results}),
            "devices": list(devices.values()),
            "versions": {k: sorted(v) for k, v in sorted(versions.items())},
            "started": starts[0] if starts else None,
            "finished": ends[-1] if ends else None,
            "counts": frames.status_counts(results),
            "total": len(results),
            "harness_version": harness.__version__,
        },
    )


def context_section(data: ReportData) -> Section | None:
    """Run context per device and run (the gate's baseline too, when given): what must match to compare figures.

    Absent when no result recorded one (records written before the run context existed)."""
    from harness.report.runctx import ContextTally

    tally = ContextTally()
    for side, results in (("baseline", data.gate_baseline), ("", data.results)):
        for res in results:
            tally.add(res.device.id, res.run_id, res.context, label=frames.device_label(res), side=side)
    table = tally.table()
    return None if table is None else Section("context", "Run context", "run_context.html.j2", table)


def results_section(data: ReportData) -> Section:
    """Per-device tables of model x delegate x threads, plus a device pivot of medians when several."""
    cases = _sorted_cases(data.cases)
    groups = [(device, records(df)) for device, df in cases.groupby("device", sort=True)]
    pivot = None
    if data.multi_device and (cases["status"] == "ok").any():
        ok = cases[cases["status"] == "ok"]
        table = ok.pivot_table(index=["model", "delegate", "threads"], columns="device",
                               values="median_us", aggfunc="median")
        pivot = {"devices": list(table.columns),
                 "rows": [(idx, [None if is_nan(v) else v for v in vals]) for idx, vals in zip(table.index,
                                                                                          table.to_numpy())]}
    return Section(
        "results",
        "Results",
        "results.html.j2",
        {
            "groups": groups,
            "pivot": pivot,
            "any_ok": bool((cases["status"] == "ok").any()),
            "multi_run": data.multi_run,
            "latency_methods": sorted({m for m in cases["latency_method"] if m}),
            "latency_bases": sorted({b for b in cases["latency_basis"] if b}),
            "memory_methods": sorted({m for m in cases["memory_method"] if m}),
        },
    )


def distributions_section(data: ReportData) -> Section:
    """Box plots of per-iteration latency, one chart per model."""
    return Section("distributions", "Latency distributions", "distributions.html.j2",
                   {"charts": charts.latency_charts(data.samples)})


def speedups_section(data: ReportData) -> Section:
    """Speedups over the baseline delegate with intervals, and the cases that have no baseline."""
    sp = data.speedups.sort_values(["device", "model", "delegate", "threads"], kind="stable")
    return Section(
        "speedups",
        f"Speedup over {data.baseline}",
        "speedups.html.j2",
        {
            "rows": records(sp),
            "chart": charts.speedup_chart(sp, data.baseline, data.confidence),
            "baseline": data.baseline,
            "confidence": data.confidence,
            "n_boot": frames.N_BOOT,
            "multi_device": data.multi_device,
        },
    )


_COVERAGE_KEYS = ("name", "accelerator", "applied", "nodes_delegated", "nodes_total", "partitions")


def coverage_section(data: ReportData) -> Section | None:
    """Per case, what actually ran (the accelerator verdict), then delegate coverage as the tool reported it.

    Absent when no result has either.
    """
    rows = [
        {"result": res, "index": i, "verdict": res.accelerator, **dict.fromkeys(_COVERAGE_KEYS), **entry}
        for i, res in enumerate(data.results)
        for entry in (res.delegates or ([{}] if res.accelerator else []))
    ]
    if not rows:
        return None
    return Section("coverage", "Delegate coverage", "coverage.html.j2", {"rows": rows})


def ops_section(data: ReportData) -> Section | None:
    """The slowest operators per case (op profiling), when the tool gave a profile."""
    cases = []
    for i, res in enumerate(data.results):
        if res.ops:
            by_type = [op for op in res.ops if op.get("table") == "summary"]  # op types, when the profile has them
            top = sorted(by_type or res.ops, key=lambda op: op.get("avg_ms") or 0.0, reverse=True)[:TOP_OPS]
            cases.append({"result": res, "index": i, "ops": top, "total": len(by_type or res.ops)})
    if not cases:
        return None
    return Section("ops", f"Top {TOP_OPS} operators", "ops.html.j2", {"cases": cases})


def cross_isa_section(data: ReportData) -> Section | None:
    """Each other device's outputs against the reference (native) device's on the same case and seeded inputs.

    Shown when the results hold an emulated device and a device to compare it with (numerics.across_devices).
    """
    from harness import numerics

    if not any(r.device.emulated for r in data.results):
        return None
    reference = numerics.reference_device(data.results)
    rows = []
    for _ref, res, d in numerics.across_devices(data.results, reference):
        for t in d.tensors or (None,):
            rows.append({"case": res.case.case_id, "device": frames.device_label(res), "delegate": res.case.delegate,
                         "output": t.name if t else "—", "problem": d.problem,
                         "values": (f"{t.n_values}" + ("" if t.exact else " (sample)")) if t else "—",
                         **{m: numerics.fmt(m, getattr(t, m)) if t else "—" for m in numerics.METRICS}})
    return Section("cross-isa", f"Cross-ISA drift against {reference}", "cross_isa.html.j2",
                   {"rows": rows, "reference": reference})


def problems_section(data: ReportData) -> Section:
    """Every case that did not finish ok, worst first, with its reason."""
    bad = data.cases[data.cases["status"] != "ok"].copy()
    bad["order"] = bad["status"].map({s: i for i, s in enumerate(_NOT_OK_ORDER)})
    bad = bad.sort_values(["order", "device", "model", "delegate", "threads"], kind="stable")
    return Section("problems", "Failed, skipped and lost cases", "problems.html.j2",
                   {"rows": records(bad), "total": len(data.cases)})


def details_section(data: ReportData) -> Section:
    """One collapsed block per case: how each number was measured, samples, raw tool output."""
    summaries = {row["index"]: row for row in records(data.cases)}
    items = [{"index": i, "result": res, "row": summaries[i]} for i, res in enumerate(data.results)]
    return Section("details", "Case details", "details.html.j2", {"cases": items})


def readings_section(data: ReportData) -> Section | None:
    """Memory, energy and thermal readings with their methods; energy chart; throttled cases marked."""
    from harness.report import readings

    rows, notes = readings.rows(data.results)
    if not rows:
        return None
    return Section("readings", "Memory, energy and thermal", "readings.html.j2",
                   {"rows": rows, "notes": notes, "chart": readings.energy_chart(data.results),
                    "busy": readings.BUSY_FRACTION})


def hybrid_section(data: ReportData) -> Section | None:
    """On-device, server or hybrid: one chart per model, the decision table and sentences, the endpoint's split."""
    endpoint_results = [r for r in data.results if r.endpoint is not None]
    if not endpoint_results:
        return None
    models = []
    for decision in hybrid.decisions(data.results):
        models.append({"decision": decision, "chart": charts.hybrid_chart(decision.model, list(decision.options))})
    endpoints = [o for o in (hybrid.option_of(r) for r in endpoint_results) if o is not None]
    drifts = [{"reference": ref.device.id, "endpoint": res.device.id, "network": res.endpoint.network,
               "max_abs": d.value("max_abs"), "cosine": d.value("cosine"), "problem": d.problem}
              for ref, res, d in hybrid.endpoint_drift(data.results) if res.endpoint is not None]
    skipped = [r for r in endpoint_results if r.status != "ok"] + [
        r for r in data.results if r.status == "skipped" and r.device.platform == "endpoint"]
    return Section("hybrid", "On-device, server or hybrid", "hybrid.html.j2",
                   {"models": models, "endpoints": endpoints, "drifts": drifts,
                    "energy_note": endpoint_results[0].endpoint.energy_note,
                    "skipped": list({r.case.case_id: r for r in skipped}.values())})


def soak_section(data: ReportData) -> Section | None:
    """Soak runs: per case the curve (latency and temperature per window), the derived figures and the window table."""
    from harness.report.soak import soak_chart

    cases = [{"result": r, "index": i, "chart": soak_chart(r)}
             for i, r in enumerate(data.results) if r.status == "ok" and r.soak is not None]
    if not cases:
        return None
    return Section("soak", "Soak runs", "soak.html.j2", {"cases": cases})


SECTION_BUILDERS: list[Callable[[ReportData], Section | None]] = [
    gate_section,
    summary_section,
    context_section,
    results_section,
    distributions_section,
    speedups_section,
    hybrid_section,
    coverage_section,
    cross_isa_section,
    ops_section,
    readings_section,
    soak_section,
    problems_section,
    details_section,
]


def environment() -> Environment:
    """The Jinja2 environment: autoescape on for every template, undefined names are errors."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ms=fmt_ms, mb=fmt_mb, x=fmt_x)
    return env


def render_html(results: Sequence[Result], *, title: str | None = None, gate: GateOutcome | None = None,
                baseline: Sequence[Result] = (), budgets: Mapping[str, Budget] | None = None,
                extra_sections: Sequence[Section] = ()) -> str:
    """The report page as a string (see :func:`render_report`)."""
    data = ReportData.build(results, gate=gate, gate_baseline=baseline, budgets=budgets)
    sections = [s for s in (build(data) for build in SECTION_BUILDERS) if s is not None] + list(extra_sections)
    runs = sorted({r.run_id for r in results})
    page_title = title or ("edgeharness report — " + ", ".join(runs) if runs else "edgeharness report")
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return environment().get_template("report.html.j2").render(
        title=page_title, sections=sections, generated=generated, empty=not results
    )


def render_report(results: Sequence[Result], out_path: Path, *, title: str | None = None,
                  gate: GateOutcome | None = None, baseline: Sequence[Result] | None = None,
                  budgets: Mapping[str, Budget] | None = None, extra_sections: Sequence[Section] = ()) -> Path:
    """Write the report for ``results`` to ``out_path`` (parents created) and return the path.

    With ``gate`` (the outcome of :func:`harness.gate.gate` for these results as the
    candidate) the page opens with a Gate section; ``baseline`` (the baseline's results)
    names the baseline run, and ``budgets`` lets it list every budget used, not only breaches.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    html = render_html(results, title=title, gate=gate, baseline=baseline or (), budgets=budgets,
                       extra_sections=extra_sections)
    out_path.write_text(html, encoding="utf-8")
    return out_path
