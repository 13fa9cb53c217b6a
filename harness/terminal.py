"""What ``harness run`` shows while it runs and when it ends: progress, one line per case, the run's table.

On a terminal a live display (``rich``) shows per device the cases done out of its total, the case
running, the elapsed time and an estimate of the time left; finished cases print above it. When stdout
is not a terminal (CI logs, a pipe) it degrades to one plain line per finished case with its median
and status. Both end with a table of the run: per case and device the median, p90, n and the speedup
over ``cpu`` (same model, device and threads), failures with their one-line reason.

``rich`` is confined to this module (an import-linter contract); every stored or device-supplied
string shown goes through :func:`harness.textsafe.escape`, and ``rich`` gets it as plain
:class:`~rich.text.Text` (never markup: a case id's ``[host-cpu-t1]`` is not a style tag).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import IO, TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from harness import stats
from harness.report.text import BASELINE_DELEGATE, fmt_ms, fmt_x
from harness.results import Result
from harness.textsafe import escape

if TYPE_CHECKING:
    from harness.orchestrator import RunSummary
    from harness.plan import Entry

_STYLE = {"ok": "green", "skipped": "yellow", "failed": "red", "timeout": "red", "device_lost": "red"}
_REASON_CHARS = 400  # a failure's reason in the table: its first line, cut here


@dataclass(frozen=True)
class CaseRow:
    """One result as the run's table (and ``--json``) shows it; latencies in microseconds, None when unknown."""

    case_id: str
    model: str
    device: str
    delegate: str
    threads: int
    status: str
    reason: str | None
    median_us: float | None
    p90_us: float | None
    n: int
    repetitions: int
    speedup: float | None  # the cpu case's median / this case's median: > 1 is faster
    emulated: bool = False  # the device's code is translated (qemu-user): its latencies are not hardware figures


def _latency(result: Result) -> tuple[float | None, float | None]:
    """Median and p90 over the pooled iterations (p90 unknown when the tool gave only aggregates)."""
    lat = result.latency
    if result.status != "ok" or lat is None:
        return None, None
    try:
        if lat.samples_us:
            s = stats.summarize([r.samples_us for r in lat.repetitions if r.samples_us], n_boot=0)
            return s.median_us, s.p90_us
        centers = [(r.center_us,) for r in lat.repetitions if r.center_us is not None]
        return (stats.summarize(centers, n_boot=0).median_us, None) if centers else (None, None)
    except ValueError:  # no usable value: shown as unknown, never as a number
        return None, None


def case_rows(results: Sequence[Result]) -> list[CaseRow]:
    """The table's rows, by device, model and threads (delegates in run order), with speedups over ``cpu``."""
    figures = {id(r): _latency(r) for r in results}
    cpu: dict[tuple[str, str, int], list[Result]] = {}
    for r in results:
        if r.case.delegate == BASELINE_DELEGATE and figures[id(r)][0] is not None:
            cpu.setdefault((r.device.id, r.case.model_sha256 or r.case.model, r.case.threads), []).append(r)
    rows = []
    for r in sorted(results, key=lambda r: (r.device.id, r.case.model, r.case.threads)):
        median, p90 = figures[id(r)]
        bases = cpu.get((r.device.id, r.case.model_sha256 or r.case.model, r.case.threads), [])
        base = next((b for b in bases if b.case.api == r.case.api), bases[0] if bases else None)
        speedup = figures[id(base)][0] / median if base is not None and median else None  # type: ignore[operator]
        lat = r.latency
        rows.append(CaseRow(
            r.case.case_id, r.case.model, r.device.id,
            f"{r.case.delegate} @{r.endpoint.network}" if r.endpoint else r.case.delegate,  # an endpoint's profile
            r.case.threads, r.status, r.reason,
            median, p90, lat.n_iterations if lat else 0, len(lat.repetitions) if lat else 0, speedup,
            bool(r.device.emulated)))
    return rows


def run_json(summary: RunSummary, suite: str) -> dict:
    """The run's summary for scripts (``harness run --json``): where it went, the counts, one entry per case."""
    return {
        "run_id": summary.run_id, "suite": suite, "interrupted": summary.interrupted,
        "counts": summary.counts(), "results_path": str(summary.results_path),
        "report_path": str(summary.report_path) if summary.report_path else None,
        "cases": [asdict(row) for row in case_rows(summary.results)],
    }


def _reason(reason: str | None) -> str:
    first = (reason or "").strip().split("\n", 1)[0]
    return escape(first if len(first) <= _REASON_CHARS else first[:_REASON_CHARS] + "...")


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=int(seconds)))


def _emulated(figure: str, row: CaseRow) -> str:
    """A latency figure of an emulated device carries the label wherever it is shown."""
    return f"{figure} emulated" if row.emulated and figure != "—" else figure


def case_line(result: Result, done: int, total: int, elapsed_s: float) -> str:
    """``[host 2/4] face[host-xnnpack-t1]: ok, median 1.23 ms (0:00:03)``: one finished case, escaped."""
    what = f"median {fmt_ms(_latency(result)[0])}" if result.status == "ok" else _reason(result.reason)
    if result.status == "ok" and result.device.emulated:
        what += " (emulated)"
    head = escape(f"[{result.device.id} {done}/{total}] {result.case.case_id}: {result.status}")
    return f"{head}, {what} ({_clock(elapsed_s)})"


class RunDisplay:
    """Progress of one run on stdout: live on a terminal, plain lines elsewhere, nothing when ``silent``.

    ``started`` and ``finished`` are the run's ``on_start``/``on_result`` hooks (called from the devices'
    threads); use it as a context manager around the run, then :meth:`table` with the results.
    """

    def __init__(self, cases_per_device: int, devices: int, *, silent: bool = False,
                 stream: IO[str] | None = None) -> None:
        self.per_device = cases_per_device
        self.devices = devices
        self.silent = silent
        self.console = Console(file=stream or sys.stdout, highlight=False)
        self.live = not silent and self.console.is_terminal and not self.console.is_dumb_terminal
        self._lock = threading.Lock()
        self._done: dict[str, int] = {}
        self._tasks: dict[str, TaskID] = {}
        self._begun = time.monotonic()
        self._open = False
        self._progress: Progress | None = None
        self._handlers: list[tuple[logging.StreamHandler, IO[str]]] = []

    def __enter__(self) -> RunDisplay:
        self._begun = time.monotonic()
        self._open = True
        if self.live:
            self._progress = Progress(
                TextColumn("{task.description}", markup=False), BarColumn(bar_width=20), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[running]}",
                                                                                         markup=False),
                console=self.console, redirect_stderr=sys.stderr.isatty(),
            )
            self._overall = self._progress.add_task("all devices", total=self.per_device * self.devices, running="")
            self._progress.start()
            self._log_through_display()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._open = False  # a device left behind after a stop prints nothing more
        for handler, stream in self._handlers:
            handler.setStream(stream)
        if self._progress is not None:
            self._progress.stop()

    def _log_through_display(self) -> None:
        """Log lines to the terminal go above the live display instead of through it."""
        if sys.stderr is sys.__stderr__:  # not redirected: stderr is not the terminal
            return
        for handler in logging.getLogger().handlers:
            if type(handler) is logging.StreamHandler and handler.stream is sys.__stderr__:
                self._handlers.append((handler, handler.setStream(sys.stderr)))  # type: ignore[misc]

    def _task(self, device_id: str) -> TaskID:
        assert self._progress is not None
        if device_id not in self._tasks:
            self._tasks[device_id] = self._progress.add_task(escape(device_id), total=self.per_device, running="")
        return self._tasks[device_id]

    def started(self, entry: Entry) -> None:
        """A device begins a case (the run's ``on_start``)."""
        with self._lock:
            if self._open and self._progress is not None:
                self._progress.update(self._task(entry.device_id), running=escape(entry.case_id))
                self._progress.update(self._overall, running=escape(entry.case_id))

    def finished(self, result: Result) -> None:
        """A case's result is stored (the run's ``on_result``)."""
        with self._lock:
            if not self._open or self.silent:
                return
            device = result.device.id
            self._done[device] = self._done.get(device, 0) + 1
            line = case_line(result, self._done[device], self.per_device, time.monotonic() - self._begun)
            if self._progress is None:
                self.console.file.write(line + "\n")
                self.console.file.flush()
                return
            self._progress.console.print(Text(line, style=_STYLE.get(result.status, "")), markup=False,
                                         soft_wrap=True)
            self._progress.update(self._task(device), advance=1, running="")
            self._progress.update(self._overall, advance=1)

    def table(self, results: Sequence[Result]) -> None:
        """The run's table, then its failures (and skips) with their one-line reason."""
        rows = case_rows(results)
        if not rows:
            return
        table = Table(box=box.SIMPLE_HEAD if self.live else box.ASCII, show_edge=not self.live,
                      pad_edge=not self.live, collapse_padding=self.live)
        for name in ("model", "device", "delegate", "threads", "status", "median", "p90", "n", "speedup"):
            number = name in ("threads", "median", "p90", "n", "speedup")
            folds = name in ("model", "device")  # a narrow terminal folds names, never figures
            table.add_column(name, justify="right" if number else "left", no_wrap=not folds, overflow="fold",
                             min_width=12 if name == "model" else None)
        for row in rows:
            table.add_row(
                Text(escape(row.model)), Text(escape(row.device)), Text(escape(row.delegate)), str(row.threads),
                Text(escape(row.status), style=_STYLE.get(row.status, "") if self.live else ""),
                _emulated(fmt_ms(row.median_us), row), _emulated(fmt_ms(row.p90_us), row), str(row.n),
                fmt_x(row.speedup))
        console = self.console if self.live else Console(file=self.console.file, width=10_000, no_color=True,
                                                         highlight=False)
        console.print(table, markup=False, crop=False)
        emulated = sorted({r.device.id: r.device.emulated for r in results if r.device.emulated}.items())
        for device, how in emulated:
            console.print(Text(f"emulated: {escape(device)} runs translated code ({escape(how)}); its latencies "
                               "measure the emulator, not hardware, and are never gated against another device"),
                          markup=False, soft_wrap=True)
        for row in rows:
            if row.status != "ok":
                console.print(Text(f"{escape(row.case_id)}: {escape(row.status)}: {_reason(row.reason)}"),
                              markup=False, soft_wrap=True)
