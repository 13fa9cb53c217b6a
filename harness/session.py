"""A harness session: one run id, its store and devices, driven case by case.

The pytest plugin holds one of these for the whole test session (as pytest-benchmark's
plugin holds a ``BenchmarkSession``); nothing here imports pytest, so a plain script can
drive cases the same way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from harness.devices.base import Device
from harness.devices.discovery import open_device
from harness.errors import HarnessError, UsageError
from harness.gate import GateOutcome
from harness.leases import DEFAULT_TIMEOUT_S, LeaseKeeper
from harness.names import check_name, inside
from harness.orchestrator import CaseRunner
from harness.remeasure import Remeasured, Remeasurer, remeasure, run_name
from harness.results import Result
from harness.runners.base import RunSettings
from harness.store import ResultWriter, Store, load_results, new_run_id, open_store
from harness.suite import Case, ModelSpec, checked_overrides

log = logging.getLogger("harness")


class HarnessSession:
    """Runs cases on demand; results go to ``<out>/<name>-<run_id>.jsonl`` as each case ends."""

    def __init__(
        self,
        device_ids: Sequence[str],
        out_dir: str | Path = "reports",
        *,
        name: str = "pytest",
        report_path: str | Path | None = None,
        db_path: str | Path | None = None,
        repetitions: int | None = None,
        measured_runs: int | None = None,
        baseline: str | None = None,
        gate_overrides: dict | None = None,
        run_id: str | None = None,
        part: str | None = None,
        lease_timeout_s: float | None = None,
        lease_dir: str | Path | None = None,
    ) -> None:
        """``run_id`` and ``part`` make this one worker of a run spread over processes
        (pytest-xdist): its results go to a part file that :meth:`adopt_parts` folds in later."""
        self.device_ids = list(device_ids)
        self.out_dir = Path(out_dir)
        self.name = check_name(name, "session name")
        self.report_path = Path(report_path) if report_path else None
        checked_overrides(repetitions=repetitions, measured_runs=measured_runs)
        self.repetitions = repetitions
        self.measured_runs = measured_runs
        self.run_id = run_id or new_run_id()
        self.part = part
        self.store: Store = open_store(self.out_dir, db_path)
        self.results: list[Result] = []
        self._writer: ResultWriter | None = None
        self._runner: CaseRunner | None = None
        self._devices: dict[str, Device] = {}
        self._lock = threading.Lock()
        self.baseline_name = baseline
        self.gate_overrides = gate_overrides or {}
        if self.gate_overrides.get("remeasure") and not baseline:
            raise UsageError("remeasure needs a baseline: undecided cases are those compared with one",
                             hint="add --harness-baseline NAME (or drop --harness-remeasure)")
        self.baseline: list[Result] | None = self.store.load_baseline(baseline) if baseline else None
        self.verdicts: list = []
        self.breaches: list = []
        self.collected: set[tuple[str, str]] = set()  # (device id, model name) of the cases a front offered
        self.lease_timeout_s = DEFAULT_TIMEOUT_S if lease_timeout_s is None else lease_timeout_s
        self.lease_dir = lease_dir
        #: what adaptive mode (``[gate] remeasure``) did, one entry per case it gated; the added results
        #: are one run of their own, ``<name>.remeasure-of-<run id>`` (:class:`~harness.remeasure.Remeasurer`)
        self.remeasured: list[Remeasured] = []
        self._remeasurer: Remeasurer | None = None

    def note_collected(self, device_id: str, cases: Sequence[Case]) -> None:
        """Cases a front collected for a device (run or deselected): the scope of :meth:`baseline_not_measured`."""
        self.collected |= {(device_id, c.model.name) for c in cases}

    @property
    def results_path(self) -> Path | None:
        return self._writer.path if self._writer else None

    def runner(self) -> CaseRunner:
        with self._lock:
            if self._runner is None:
                self._writer = (self.store.begin_part(self.run_id, self.name, self.part) if self.part
                                else self.store.begin_run(self.run_id, self.name))
                # leased case by case: xdist workers and other runs on this store take turns on a device
                keeper = LeaseKeeper(self.store.leases(self.lease_dir), self.run_id, self.lease_timeout_s)
                self._runner = CaseRunner(self.run_id, self._writer, leases=keeper)
            return self._runner

    def device(self, device_id: str) -> Device:
        with self._lock:
            if device_id not in self._devices:
                self._devices[device_id] = open_device(device_id)
            return self._devices[device_id]

    def adjust(self, case: Case) -> Case:
        """Apply session-wide overrides (e.g. fewer repetitions for a quick local check)."""
        changes = checked_overrides(repetitions=self.repetitions, measured_runs=self.measured_runs)
        return replace(case, model=replace(case.model, run=replace(case.model.run, **changes))) if changes else case

    def run_case(self, device_id: str, case: Case) -> Result:
        result = self._leased_case(self.device(device_id), self.adjust(case))
        self.results.append(result)
        return result

    def _leased_case(self, device: Device, case: Case) -> Result:
        runner = self.runner()
        try:
            return runner.run_case(device, case)
        finally:
            if runner.leases is not None:
                runner.leases.release(device.id)

    def judge(self, result: Result, case: Case | None = None, also: Sequence[Result] = ()) -> GateOutcome | None:
        """Gate one case: budgets always, regression when a baseline was given (never across devices).

        Adaptive mode (``[gate] remeasure = true`` in the suite or ``gate_overrides``), with a baseline and
        the ``case`` that made ``result``: a case the gate cannot decide is measured again on its device by
        :func:`harness.remeasure.remeasure`, its repetitions added to this session's re-measuring run.
        ``also``: repetitions of the same case measured before (pooled with ``result``, judged at the full alpha).
        Returns None when there is nothing to judge (no budget, no baseline for this case).
        """
        from harness.api import budgets, gate_config
        from harness.gate import gate

        base = None
        if self.baseline is not None:
            # the gate pairs same-bytes models by name itself
            base = [b for b in self.baseline if b.case.key == result.case.key] or None
        case_budgets = budgets([result])
        if base is None and not case_budgets:
            return None
        # one item: the baseline's other cases are not this item's fault (see baseline_not_measured)
        config = replace(gate_config([result], self.gate_overrides), allow_missing=True)
        if config.remeasure and base is not None and case is not None:
            done = remeasure(self.store, base, [result, *also], [self.adjust(case)], config, case_budgets,
                             into=self.remeasurer())
            self.remeasured.append(done)
            outcome = replace(done.outcome, remeasure=tuple(done.lines()))
        else:
            outcome = gate(base, [result, *also], config, case_budgets)
        self.verdicts.extend(outcome.verdicts)
        self.breaches.extend(outcome.breaches)
        return outcome

    def remeasurer(self) -> Remeasurer:
        """The session's re-measuring run (begun when a case first needs it), on the session's devices."""
        if self._remeasurer is None:
            self._remeasurer = Remeasurer(self.store, self.name, self.run_id, open_device=self.device,
                                          lease_timeout_s=self.lease_timeout_s, lease_dir=self.lease_dir,
                                          borrowed=True)
        return self._remeasurer

    def baseline_not_measured(self) -> list[str]:
        """Baseline cases of the collected models and devices this session did not measure, with why.

        Items are gated one by one (a ``-k`` selection is legitimate), so this is a report, not a verdict:
        it says what the per-item gate never saw. Without collection facts (an xdist controller) the
        scope is the models and devices that produced results.
        """
        if self.baseline is None:
            return []
        from harness.gate import unmeasured_lines

        scope = self.collected or {(r.device.id, r.case.model) for r in self.results}
        base = [b for b in self.baseline if (b.device.id, b.case.model) in scope]
        return unmeasured_lines(base, self.results)

    def judge_run(self) -> None:
        """Gate every successful result of the run (the controller of a distributed run: the workers
        judged their own cases, this gathers the verdicts for one summary).

        The repetitions the workers' adaptive gate added (their re-measuring runs, named after this run) are
        pooled with each case's result, as ``harness gate --also`` would pool them.
        """
        from harness.gate import case_key

        added = self._added_by_workers()
        for result in self.results:
            if result.status == "ok":
                try:
                    self.judge(result, also=[a for a in added if case_key(a) == case_key(result)])
                except HarnessError:
                    continue  # the worker already failed that item with the reason

    def _added_by_workers(self) -> list[Result]:
        name = run_name(self.name, self.run_id)
        added: list[Result] = []
        try:
            for run in self.store.runs():
                if run.suite == name and run.results_path:
                    added += [r for r in load_results(run.results_path) if r.status == "ok"]
        except HarnessError as exc:  # the summary goes on with the workers' own results
            log.warning("warning: the re-measured repetitions of run %s not read: %s", self.run_id, exc)
        return added

    def bench(
        self,
        model: str | Path,
        *,
        device_id: str | None = None,
        delegate: str = "xnnpack",
        threads: int = 1,
        warmup_runs: int = 3,
        measured_runs: int = 20,
        repetitions: int = 1,
        api: str = "interpreter",
        timeout_s: float = 120.0,
    ) -> Result:
        """Benchmark one model (zoo name or file path) ad hoc; the result joins this session's run."""
        from harness import zoo

        is_zoo = isinstance(model, str) and model in zoo.MODELS
        path = None if is_zoo else Path(model)
        spec = ModelSpec(
            name=str(model) if is_zoo else Path(model).stem, zoo=str(model) if is_zoo else None, path=path,
            delegates=(delegate,), threads=(threads,),
            run=RunSettings(warmup_runs=warmup_runs, measured_runs=measured_runs, repetitions=repetitions,
                            timeout_s=timeout_s, api=api),
        )
        device = device_id or self.device_ids[0]
        result = self._leased_case(self.device(device), Case(spec, delegate, threads))
        self.results.append(result)
        return result

    def adopt_parts(self) -> None:
        """Controller of a distributed run: take the workers' part files in as this session's run."""
        merged = self.store.merge_parts(self.run_id, self.name)
        if merged is not None:
            self._writer, results = merged
            self.results.extend(results)

    def finish(self, *, interrupted: bool = False) -> Path | None:
        """Close the results file and render the report (when any case ran); return the report path.

        A worker (``part``) only closes its part: the controller reports on the whole run.
        ``interrupted`` (Ctrl-C) marks the run as stopped before every case ended.
        """
        if self._remeasurer is not None:  # it borrowed the session's devices: they are closed below
            self._remeasurer.close(interrupted=interrupted)
        for dev in self._devices.values():
            dev.close()
        if self._writer is None:
            return None
        self._writer.close()
        if self.part:
            return None
        report = None
        if self.results:
            from harness.api import render

            target = self.report_path or inside(self.store.root, f"{self.name}-{self.run_id}.html")
            report = render(self.results, target, title=f"{self.name} — run {self.run_id}")
        self.store.finish_run(self.run_id, report, interrupted=interrupted)
        return report
