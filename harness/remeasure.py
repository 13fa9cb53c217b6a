"""Adaptive repetitions: re-run the gate's undecided cases on the candidate's devices until it can decide.

The fixed gate looks once at the repetitions it is given. Here the gate looks, and every case it
cannot settle (``noisy`` for a reason more candidate repetitions remove, or a comparison that neither
shows a slowdown nor excludes one) is run again on the device of the candidate run, a batch of the
suite's ``repetitions`` at a time, up to ``[gate] max_repetitions`` repetitions of the case in all and
``max_seconds`` of re-measuring, and the gate looks again at everything measured so far.

Sequential error control: look ``k`` of a case, at ``n_k`` candidate repetitions, tests at the alpha
spent between ``t_{k-1}`` and ``t_k = n_k / max_repetitions`` (:func:`harness.stats.alpha_spent`,
Pocock or O'Brien-Fleming type); the first look, on the candidate run as it was, is one of them. By the
union bound the chance of a false "slower" over all looks stays at or below ``alpha`` (1% by default)
however the looks correlate; stopping early (decided, or out of time) only spends less. A case still
undecided when its budget is spent gets its last verdict: ``noisy`` with its reasons ("undecided after N
repetitions"), whose effect on the exit code ``noisy = "fail" | "warn"`` decides, or ``same`` when the
only doubt was a slowdown not shown.

The added repetitions are results of a new run (suite ``<suite>.remeasure-of-<candidate run id>``, every
result on disk as it ends, device leases as for any run): the candidate run stays as it was measured. The
gate pools them with the candidate's own results of the same case (same model bytes, delegate, threads,
api and device); ``harness gate --run CANDIDATE --also RUN`` repeats that verdict later. ``latest`` never
names such a run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness import stats
from harness.devices.base import Device
from harness.errors import UsageError
from harness.gate import Budget, CaseKey, CaseVerdict, GateConfig, GateOutcome, Look, case_key, gate
from harness.leases import DEFAULT_TIMEOUT_S, LeaseKeeper
from harness.names import MAX_LEN
from harness.orchestrator import CaseRunner
from harness.results import Result
from harness.store import REMEASURE_MARK, Store, new_run_id
from harness.suite import Case, Suite

log = logging.getLogger("harness")


@dataclass(frozen=True)
class Batch:
    """One look's re-measuring: which cases got how many repetitions, and how long it took."""

    look: int
    cases: tuple[str, ...]
    repetitions: tuple[int, ...]
    seconds: float

    @property
    def line(self) -> str:
        each = ", ".join(f"{c} +{n}" for c, n in zip(self.cases, self.repetitions))
        return f"look {self.look}: re-measured {len(self.cases)} undecided case(s) in {self.seconds:.1f} s: {each}"


@dataclass
class Remeasured:
    """The gate's last outcome and what re-measuring did (``run_id`` None: nothing was re-run)."""

    outcome: GateOutcome
    run_id: str | None = None
    results_path: Path | None = None
    batches: list[Batch] = field(default_factory=list)
    added: list[Result] = field(default_factory=list)
    stopped: str = ""  # why it stopped: all decided, the budgets, nothing more to run, interrupted
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """What the CLI prints above the gate's own lines."""
        out = [b.line for b in self.batches]
        where = f" (run {self.run_id})" if self.run_id else ""
        out.append(f"remeasure: {len(self.added)} result(s) added{where} in {self.seconds:.1f} s; {self.stopped}")
        return out


class _Spending:
    """Alpha spent per case over its looks: the test level of each new look (same data, same level)."""

    def __init__(self, config: GateConfig) -> None:
        self.config = config
        self.spent: dict[CaseKey, float] = {}
        self.level: dict[CaseKey, tuple[int, float, int]] = {}  # key -> (n at the last look, its alpha, look no.)

    def look(self, key: CaseKey, n: int, final: bool) -> Look:
        c = self.config
        if key not in self.level or self.level[key][0] != n:
            total = stats.alpha_spent(n / c.max_repetitions, c.alpha, c.spending)
            alpha = max(total - self.spent.get(key, 0.0), 0.0)
            self.spent[key] = total
            number = self.level[key][2] + 1 if key in self.level else 1
            self.level[key] = (n, alpha, number)
        n_seen, alpha, number = self.level[key]
        note = (f"look {number}, {n_seen} of up to {c.max_repetitions} repetitions, alpha {alpha:.2g} of "
                f"{c.alpha:g} ({c.spending} spending)")
        return Look(alpha, final, note)


def _candidate_reps(results: Sequence[Result]) -> dict[CaseKey, int]:
    counts: dict[CaseKey, int] = {}
    for r in results:
        if r.status == "ok" and r.latency is not None:
            counts[case_key(r)] = counts.get(case_key(r), 0) + len(r.latency.repetitions)
    return counts


def _suite_case(cases: Sequence[Case], name: str, v: CaseVerdict) -> Case:
    for case in cases:
        m = case.model
        if (m.name, case.delegate, case.threads, m.run.api_for(case.delegate)) == (v.model, v.delegate, v.threads,
                                                                                   v.api):
            return case
    raise UsageError(f"{v.label}: undecided, but suite {name!r} has no such case to re-measure",
                     hint="give the suite the candidate run was made from (--suite)")


def run_name(name: str, candidate_run_id: str) -> str:
    """The suite name of the run holding the repetitions added to ``candidate_run_id`` (a valid name)."""
    tail = f"{REMEASURE_MARK}{candidate_run_id}"
    return name[:max(1, MAX_LEN - len(tail))] + tail


class Remeasurer:
    """The run the added repetitions go to and the devices they run on, begun on first need.

    :func:`remeasure` makes one per call; a front that gates case by case (the pytest plugin's session)
    makes one and passes it to every call (``into``), so one session's re-measuring is one run, and closes
    it when the session ends. ``borrowed``: the devices are the caller's (``open_device`` hands out the
    session's own): each device's lease is given back after every case (the session measuring its own next
    case on the same device must not wait for this run's lease), and :meth:`close` leaves them open.
    """

    def __init__(self, store: Store, name: str, candidate_run_id: str, *,
                 open_device: Callable[[str], Device] | None = None, cancel: threading.Event | None = None,
                 lease_timeout_s: float = DEFAULT_TIMEOUT_S, lease_dir: str | Path | None = None,
                 borrowed: bool = False) -> None:
        if open_device is None:
            from harness.devices.discovery import open_device
        self.store, self.open_device, self.borrowed = store, open_device, borrowed
        self.cancel = cancel if cancel is not None else threading.Event()
        self.name = run_name(name, candidate_run_id)
        self.lease_timeout_s, self.lease_dir = lease_timeout_s, lease_dir
        self.runner: CaseRunner | None = None
        self.keeper: LeaseKeeper | None = None
        self.devices: dict[str, Device] = {}

    @property
    def run_id(self) -> str | None:
        return self.runner.run_id if self.runner is not None else None

    @property
    def results_path(self) -> Path | None:
        return self.runner.writer.path if self.runner is not None and self.runner.writer is not None else None

    def begin(self) -> CaseRunner:
        """The run's case runner (the run is begun, and its results file made, on the first call)."""
        if self.runner is None:
            run_id = new_run_id()
            writer = self.store.begin_run(run_id, self.name)
            self.keeper = LeaseKeeper(self.store.leases(self.lease_dir), run_id, self.lease_timeout_s,
                                      cancel=self.cancel)
            self.runner = CaseRunner(run_id, writer, cancel=self.cancel, leases=self.keeper)
        return self.runner

    def run_case(self, device_id: str, case: Case) -> Result:
        """Measure ``case`` on the device named ``device_id`` under its lease; the result is on disk."""
        runner = self.begin()
        if device_id not in self.devices:
            self.devices[device_id] = self.open_device(device_id)
        try:
            return runner.run_case(self.devices[device_id], case)
        finally:
            if self.borrowed and self.keeper is not None:
                self.keeper.release(device_id)

    def close(self, *, interrupted: bool = False) -> None:
        """Finish the run (when one was begun), give the leases back, close the devices it opened; safe twice."""
        runner, self.runner = self.runner, None
        if runner is not None and runner.writer is not None:
            runner.writer.close()
            self.store.finish_run(runner.run_id, interrupted=interrupted)
        if self.keeper is not None:
            self.keeper.release_all()
            self.keeper = None
        devices, self.devices = self.devices, {}
        for dev in devices.values() if not self.borrowed else ():
            dev.close()


def remeasure(
    store: Store,
    baseline: Sequence[Result],
    candidate: Sequence[Result],
    suite: Suite | Sequence[Case],
    config: GateConfig,
    budgets: Mapping[str, Budget] | None = None,
    *,
    open_device: Callable[[str], Device] | None = None,
    on_batch: Callable[[Batch], None] | None = None,
    cancel: threading.Event | None = None,
    lease_timeout_s: float = DEFAULT_TIMEOUT_S,
    lease_dir: str | Path | None = None,
    clock: Callable[[], float] = time.monotonic,
    into: Remeasurer | None = None,
) -> Remeasured:
    """Gate ``candidate`` against ``baseline`` adaptively (see module doc); the devices are opened by the
    candidate's device ids (``open_device``: :func:`harness.devices.discovery.open_device` by default).

    ``suite``: the suite the candidate ran, or just its cases (a front that gates one case at a time).
    ``into``: the run to add the repetitions to, kept open for the caller (see :class:`Remeasurer`);
    by default a new run, finished before this returns.
    """
    cases = suite.cases() if isinstance(suite, Suite) else list(suite)
    name = suite.name if isinstance(suite, Suite) else "cases"
    spending, started = _Spending(config), clock()
    own = into is None
    target = into if into is not None else Remeasurer(
        store, name, candidate[0].run_id, open_device=open_device, cancel=cancel, lease_timeout_s=lease_timeout_s,
        lease_dir=lease_dir)
    token = target.cancel
    done = Remeasured(GateOutcome(0, (), (), (), ()))
    last_s: dict[CaseKey, float] = {}  # how long each case's last batch took: the next one is expected as long
    skip: set[CaseKey] = set()  # cases that cannot be re-measured (another model file, a failing batch)

    def looks(final: bool) -> dict[CaseKey, Look]:
        counts = _candidate_reps([*candidate, *done.added])
        return {key: spending.look(key, n, final or key in skip) for key, n in counts.items()}

    try:
        while True:
            outcome = gate(baseline, [*candidate, *done.added], config, budgets, looks(final=False))
            undecided = [v for v in outcome.verdicts if v.undecided]
            if not undecided:
                done.stopped = "every case decided"
                break
            if token.is_set():
                done.stopped = "interrupted"
                break
            batch = _batch(target, cases, name, undecided, config, spending, done, last_s, skip, clock, started)
            if batch is None:
                done.stopped = _why_stopped(undecided, config, spending, skip)
                break
            done.batches.append(batch)
            if on_batch is not None:
                on_batch(batch)
        done.outcome = gate(baseline, [*candidate, *done.added], config, budgets, looks(final=True))
    finally:
        if target.run_id is not None and (own or done.added):
            done.run_id, done.results_path = target.run_id, target.results_path
        if own:
            target.close(interrupted=done.stopped == "interrupted")
    done.seconds = clock() - started
    return done


def _batch(target: Remeasurer, cases: Sequence[Case], name: str, undecided: Sequence[CaseVerdict],
           config: GateConfig, spending: _Spending, done: Remeasured, last_s: dict[CaseKey, float],
           skip: set[CaseKey], clock: Callable[[], float], started: float) -> Batch | None:
    """One batch of repetitions for each undecided case its budgets allow; None when none could run."""
    labels, reps, t0 = [], [], clock()
    number = 0
    for v in undecided:
        n_seen, _alpha, number = spending.level[v.key]
        room = config.max_repetitions - n_seen
        if v.key in skip or room <= 0:
            continue
        if clock() - started + last_s.get(v.key, 0.0) > config.max_seconds:
            continue
        case = _suite_case(cases, name, v)
        if target.begin().model(case.model).sha256 != v.key[0]:
            log.warning("%s: the suite's model file is not the candidate's (sha256 differs): not re-measured", v.label)
            skip.add(v.key)
            continue
        n = min(case.model.run.repetitions, room)
        sub = Case(replace(case.model, run=replace(case.model.run, repetitions=n)), case.delegate, case.threads)
        t_case = clock()
        result = target.run_case(v.device, sub)
        last_s[v.key] = clock() - t_case
        if result.status != "ok" or case_key(result) != v.key:
            log.warning("%s: re-measuring gave %s%s: not re-measured further", v.label, result.status,
                        f" ({result.reason})" if result.reason else "")
            skip.add(v.key)
            continue
        done.added.append(result)
        labels.append(v.label)
        reps.append(n)
    if not labels:
        return None
    return Batch(number + 1, tuple(labels), tuple(reps), clock() - t0)


def _why_stopped(undecided: Sequence[CaseVerdict], config: GateConfig, spending: _Spending,
                 skip: set[CaseKey]) -> str:
    left = [v for v in undecided if v.key not in skip]
    if not left:
        return f"{len(undecided)} case(s) undecided that could not be re-measured (see the warnings)"
    if all(spending.level[v.key][0] >= config.max_repetitions for v in left):
        return f"{len(undecided)} case(s) still undecided at max_repetitions = {config.max_repetitions}"
    return f"{len(undecided)} case(s) still undecided when max_seconds = {config.max_seconds:g} ran out"
