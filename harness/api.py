"""The plain-Python front: what ``harness run`` and the pytest plugin call, for users who script the harness.

    from harness.api import run
    summary = run("suites/smoke.toml", devices=["host"], out_dir="reports")
    print(summary.report_path)
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from harness import profiles
from harness.config import ProjectConfig, from_environment
from harness.devices.discovery import open_device
from harness.errors import HarnessError, RunInterrupted, UsageError
from harness.gate import Budget, CaseVerdict, GateConfig, GateOutcome, compare, gate, stored_settings
from harness.leases import DEFAULT_TIMEOUT_S, LeaseKeeper
from harness.names import check_name, inside
from harness.orchestrator import RunSummary, run_suite
from harness.plan import Entry
from harness.remeasure import Batch, Remeasured, remeasure
from harness.results import Result
from harness.store import Store, load_results, open_store
from harness.suite import Suite, load_suite, with_overrides
from harness.trend import CaseTrend, case_trends, gate_marks

log = logging.getLogger("harness")


def render(results: Sequence[Result], out_path: str | Path, *, title: str | None = None,
           gate: GateOutcome | None = None, baseline: Sequence[Result] | None = None,
           trends: Sequence[CaseTrend] = ()) -> Path:
    """Render an HTML report of ``results`` (imports pandas/matplotlib only when called).

    With ``gate`` (and the ``baseline``'s results) the page opens with the gate's verdicts
    and the suite's budgets; ``trends`` (:func:`harness.trend.case_trends`) adds the History section.
    """
    from harness.report.html import render_report
    from harness.report.trend import trend_section

    used = budgets(results) if gate is not None else None
    return render_report(list(results), Path(out_path), title=title, gate=gate, baseline=baseline, budgets=used,
                         extra_sections=[s for s in [trend_section(trends)] if s is not None])


def render_files(results_files: Sequence[str | Path], out_path: str | Path, *, title: str | None = None,
                 form: str = "auto") -> Path:
    """Render the report of JSONL results files; returns the page to open.

    ``form``: ``file`` (one self-contained HTML file at ``out_path``), ``folder`` (``index.html``
    plus a page per device and model in ``out_path`` without ``.html``; streamed, for fleet-size
    runs) or ``auto`` (the folder above ``harness.report.folder.FOLDER_THRESHOLD`` results).
    """
    from harness.report.folder import render_files as render_any

    return render_any(results_files, out_path, title=title, form=form)


def run(
    suite: str | Path | Suite,
    *,
    devices: Sequence[str] = ("host",),
    out_dir: str | Path = "reports",
    db_path: str | Path | None = None,
    report: bool = True,
    repetitions: int | None = None,
    measured_runs: int | None = None,
    min_duration_s: float | None = None,
    on_result: Callable[[Result], None] | None = None,
    cancel: threading.Event | None = None,
    config: ProjectConfig | None = None,
    report_form: str = "auto",
    lease_timeout_s: float = DEFAULT_TIMEOUT_S,
    lease_dir: str | Path | None = None,
    on_start: Callable[[Entry], None] | None = None,
) -> RunSummary:
    """Run a suite on devices, store every result, and write ``<suite>.html`` (latest) plus a per-run copy.

    ``config`` is the project's ``harness.toml`` (tool defaults for a suite given as a path); by default
    this front looks it up as the CLI does (``$HARNESS_CONFIG``, else ``./harness.toml``).

    In the folder form (``report_form``, see :func:`render_files`) the per-run report is the folder
    ``<suite>-<run>/`` and ``<suite>.html`` a page that links to its ``index.html``; the History section
    (the suite's stored runs, :func:`report_trends`) is in both forms: in the folder form on each device
    page, and the cases that changed on the opening page.

    ``on_start`` and ``on_result`` hear each case as it begins and each result once stored (from the
    devices' threads): what a progress display needs.

    Setting ``cancel`` (or Ctrl-C) stops the run: the finished results stay stored, the run is marked
    interrupted, its partial report is written (the per-run report only: ``<suite>.html`` keeps the last
    complete run), and :class:`RunInterrupted` is raised carrying the summary.

    ``out_dir`` holds the JSONL files; ``db_path`` is the index (a SQLite file, or a ``postgresql://`` team
    store). Each device is used under a lease (file locks in ``lease_dir``, default ``OUT/leases``, or the
    team store's): a device another run holds is waited for up to ``lease_timeout_s``, then its cases are
    recorded ``skipped: device busy (...)``.
    """
    if report_form not in ("auto", "file", "folder"):  # before any device work
        raise UsageError(f"report form {report_form!r} is not one of auto, file, folder")
    loaded = suite if isinstance(suite, Suite) else load_suite(suite, config or from_environment())
    profiles.load_profiles()  # a broken device profile is a load error, before any case runs
    loaded = with_overrides(loaded, repetitions=repetitions, measured_runs=measured_runs,
                            min_duration_s=min_duration_s)
    check_name(loaded.name, "suite name")  # before any device work: it names the run's files
    store = open_store(out_dir, db_path)
    if report:  # loaded now (pandas, matplotlib: seconds), so a stopped run writes its report at once
        import harness.report.html  # noqa: F401
    opened = [open_device(d) for d in devices]
    try:
        summary = run_suite(loaded, opened, store, on_result=on_result, cancel=cancel, on_start=on_start,
                            leases=lambda run_id, token: LeaseKeeper(store.leases(lease_dir), run_id, lease_timeout_s,
                                                                     cancel=token))
    finally:
        for dev in opened:
            dev.close()
    per_run = None
    try:  # the run is finished (every result on disk) even when its report cannot be written
        if report:
            from harness.report.folder import choose_form, render_folder, write_link_page

            latest = inside(store.root, f"{loaded.name}.html")  # a symlink there must not lead out
            note = f" (interrupted after {len(summary.results)} result(s))" if summary.interrupted else ""
            title = f"{loaded.name} — run {summary.run_id}{note}"
            if choose_form(report_form, len(summary.results)) == "folder":
                folder = inside(store.root, f"{loaded.name}-{summary.run_id}")
                per_run = render_folder([summary.results_path], folder, title=title,
                                        trends=report_trends(store, loaded.name))
                summary.report_path = per_run
                if not summary.interrupted:  # <suite>.html keeps the last complete run
                    write_link_page(latest, per_run, title)
            else:
                per_run = inside(store.root, f"{loaded.name}-{summary.run_id}.html")
                render(summary.results, per_run, title=title, trends=report_trends(store, loaded.name))
                summary.report_path = per_run
                if not summary.interrupted:  # <suite>.html keeps the last complete run
                    shutil.copyfile(per_run, latest)
                    summary.report_path = latest
    finally:
        store.finish_run(summary.run_id, per_run if summary.report_path else None, interrupted=summary.interrupted)
    if summary.interrupted:
        raise RunInterrupted(f"run {summary.run_id} interrupted: {len(summary.results)} finished result(s) kept",
                             summary=summary)
    return summary


def report_trends(store: Store, suite: str, last: int = 20) -> list[CaseTrend]:
    """The suite's case histories for a run's report (none when the store holds one run of it, or cannot say)."""
    try:
        trends = case_trends(store, suite, last)
    except HarnessError as exc:  # the report goes on without its history (the store already warned of its index)
        log.debug("no history section: %s", exc)
        return []
    return trends if any(len(t.points) > 1 for t in trends) else []


def report_from_files(results_files: Sequence[str | Path], out_path: str | Path, *, title: str | None = None,
                      baseline: str | None = None, store: Store | None = None, form: str = "auto") -> Path:
    """One report from one or more JSONL result files (several runs or devices in one page).

    With ``baseline`` (a name in ``store``) the page gets the gate section for these results
    (single-file form only). ``form``: see :func:`render_files`.
    """
    if baseline is None or store is None:
        return render_files(results_files, out_path, title=title, form=form)
    if form == "folder":
        raise UsageError("the folder form of the report has no gate section",
                         hint="drop --baseline (or use `harness gate`), or --form file")
    results: list[Result] = []
    for path in results_files:
        results.extend(load_results(path))
    return _render_gated(results, out_path, title, baseline, store)


def report_from_store(store: Store, refs: Sequence[str], out_path: str | Path, *,
                      title: str | None = None, baseline: str | None = None, form: str = "auto") -> Path:
    files = [store.resolve_run(ref).results_path for ref in refs]
    return report_from_files(files, out_path, title=title, baseline=baseline, store=store, form=form)


def _render_gated(results: Sequence[Result], out_path: str | Path, title: str | None, baseline: str | None,
                  store: Store | None) -> Path:
    if baseline is None or store is None:
        return render(results, out_path, title=title)
    base = load_baseline(store, baseline)
    outcome = gate(base, results, gate_config(results), budgets(results))
    return render(results, out_path, title=title, gate=outcome, baseline=base)


# -- comparisons and the gate ---------------------------------------------------------------
def gate_config(results: Sequence[Result], overrides: dict | None = None) -> GateConfig:
    """The suite's ``[gate]`` table (carried in each result's settings) with command-line overrides on top.

    ``overrides`` are option values (``{"alpha": "0.05", "allow_missing": True}``; None = not given):
    a bad one is a :class:`~harness.errors.GateConfigError` naming the option (``--alpha``).
    """
    table: dict = {}
    for r in results:
        table.update(stored_settings(r.case.settings, r.case.model)[1])
    return GateConfig.from_mapping(table, overrides={k: v for k, v in (overrides or {}).items() if v is not None})


def budgets(results: Sequence[Result]) -> dict[str, Budget]:
    """Per-model budgets from the suite (carried in each result's settings)."""
    out: dict[str, Budget] = {}
    for r in results:
        if r.case.model not in out:
            budget = stored_settings(r.case.settings, r.case.model)[0]
            if budget != Budget():
                out[r.case.model] = budget
    return out


def compare_runs(store: Store, run_a: str, run_b: str, overrides: dict | None = None) -> list[CaseVerdict]:
    """Case-by-case verdicts of run B against run A (ids, prefixes, ``latest`` or baseline names)."""
    a, b = store.load_run(run_a), store.load_run(run_b)
    return compare(a, b, gate_config(b, overrides))


def load_baseline(store: Store, name: str) -> list[Result]:
    """The results of the run named ``name`` as a baseline; a clear error when there is no such name."""
    return store.load_baseline(name)


def gate_run(store: Store, baseline: str | None, run: str = "latest",
             overrides: dict | None = None, report: str | Path | None = None, *,
             suite: str | Path | Suite | None = None, also: Sequence[str] = (),
             on_batch: Callable[[Batch], None] | None = None, cancel: threading.Event | None = None,
             remeasured: list[Remeasured] | None = None) -> GateOutcome:
    """The CI gate: regressions against a named baseline (if any) and the suite's absolute budgets.

    With ``report`` an HTML report of the candidate run, opening with the gate section, is written there.
    ``also``: runs whose results join the candidate's (the repetitions an earlier re-measuring added).

    Adaptive mode (``[gate] remeasure = true`` or ``overrides={"remeasure": True}``): the cases the gate cannot
    decide are run again on the candidate's devices from ``suite`` (the suite file the candidate ran), with
    alpha spent over the looks (:mod:`harness.remeasure`); ``on_batch`` hears each batch, and ``remeasured``
    (a list) receives what was done (the run holding the added results, why it stopped).
    """
    candidate = store.load_run(run)
    for ref in also:
        candidate += store.load_run(ref)
    base = load_baseline(store, baseline) if baseline is not None else None
    config = gate_config(candidate, overrides)
    if config.remeasure:
        if base is None or suite is None:
            raise UsageError("remeasure needs a baseline and the suite the candidate ran",
                             hint="harness gate --baseline NAME --remeasure --suite SUITE.toml")
        loaded = suite if isinstance(suite, Suite) else load_suite(suite, from_environment())
        done = remeasure(store, base, candidate, loaded, config, budgets(candidate), on_batch=on_batch, cancel=cancel)
        candidate += done.added
        outcome = replace(done.outcome, remeasure=tuple(done.lines()))
        if remeasured is not None:
            remeasured.append(done)
    else:
        outcome = gate(base, candidate, config, budgets(candidate))
    if baseline is not None and candidate:  # the trend shows the gate's verdicts; a failed note loses no verdict
        try:
            run_id = candidate[0].run_id
            store.record_gate(run_id, baseline, gate_marks(run_id, baseline, store.baseline_run_id(baseline), outcome))
        except HarnessError as exc:
            log.warning("warning: gate verdicts not recorded in %s: %s", store.location, exc)
    if report is not None:
        render(candidate, report, gate=outcome, baseline=base)
    return outcome
