"""Run a plan: devices in parallel, cases on one device in series, every result persisted at once.

The loop for one entry of the plan (:mod:`harness.plan`): read the device's facts once -> resolve
the model (zoo or path, validated) -> decide (a job with its runner, or a skip with the reason) ->
stage the model and the runner's files (skipped when the same sha256 is there) -> per repetition,
under the samplers, run the runner's invocation and parse it (:mod:`harness.runners.base`) -> one
:class:`Result` -> appended to the run's JSONL (fsync) and the SQLite index.

A failure stays inside its case: a bad model fails its cases with the reason, a timeout is
``timeout``, a vanished device is ``device_lost`` (and is tried again for the next case),
a delegate the device lacks is ``skipped``. The other cases and devices go on.
"""

from __future__ import annotations

import logging
import platform
import posixpath
import shlex
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

from harness import __version__, assemble, plan, profiles, soak, zoo
from harness.devices.base import AppHost, Device, ShellDevice, sha256_file
from harness.errors import (
    CommandTimeout,
    DelegateUnavailable,
    DeviceLost,
    HarnessError,
    ModelError,
    RunInterrupted,
    describe,
)
from harness.leases import LeaseKeeper
from harness.models import ModelArtifact, load_model
from harness.plan import DeviceFacts, Entry, Job, Skip
from harness.results import (
    Accelerator,
    CaseInfo,
    DeviceInfo,
    Endpoint,
    Energy,
    Latency,
    Memory,
    Result,
    Thermal,
    truncate_raw,
)
from harness.runners import registry
from harness.runners.base import AppInvocation, RawOutput, Runner, Staged, Task
from harness.runners.outcome import RunnerOutcome
from harness.samplers import context as runcontext
from harness.samplers import fitness
from harness.samplers.app import run_app_benchmark
from harness.samplers.case import CaseSampling
from harness.samplers.fitness import Requirements
from harness.schedule import RepetitionSchedule
from harness.store import ResultWriter, Store, new_run_id, now_iso
from harness.suite import Case, ModelSpec, Suite

log = logging.getLogger("harness")
STOP_GRACE_S = 3.0  # how long an interrupted run waits for its devices to stop


class DeviceLogger(logging.LoggerAdapter):
    """Every line says which device it came from (a farm log interleaves many)."""

    def process(self, msg: str, kwargs: dict) -> tuple[str, dict]:
        return f"[{self.extra['device']}] {msg}", kwargs


@dataclass
class RunSummary:
    run_id: str
    results_path: Path
    results: list[Result] = field(default_factory=list)
    report_path: Path | None = None
    #: True when the run was stopped (cancellation token, Ctrl-C) before every case ended.
    interrupted: bool = False

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out


class CaseRunner:
    """Runs single cases on devices, caching model validation, device info and staged files.

    Used case by case by the pytest plugin and in bulk by :func:`run_suite`.
    """

    def __init__(self, run_id: str, writer: ResultWriter | None = None,
                 cancel: threading.Event | None = None, leases: LeaseKeeper | None = None) -> None:
        self.run_id = run_id
        self.writer = writer
        self.cancel = cancel
        self.leases = leases  # a device is benchmarked only under its lease (no other run on it meanwhile)
        self._lock = threading.Lock()
        self._models: dict[tuple, ModelArtifact | ModelError] = {}
        self._facts: dict[str, DeviceFacts] = {}
        self._staged: dict[tuple[str, str], str] = {}
        self._unfit: set[str] = set()  # devices found unfit after a full wait ([suite] require)
        self._said: set[tuple[str, str]] = set()  # (device, condition it cannot report), logged once

    # -- inputs ---------------------------------------------------------------------------
    def model(self, spec: ModelSpec) -> ModelArtifact:
        key = (spec.zoo, str(spec.path))
        with self._lock:
            cached = self._models.get(key)
        if cached is None:
            try:
                path = zoo.fetch(spec.zoo) if spec.zoo else spec.path
                cached = load_model(path)  # type: ignore[arg-type]
            except ModelError as exc:
                cached = exc
            except HarnessError as exc:
                cached = ModelError(spec.zoo or spec.path, str(exc))
            with self._lock:
                self._models[key] = cached
        if isinstance(cached, ModelError):
            raise cached
        return cached

    def facts(self, device: Device) -> DeviceFacts:
        """What the plan needs of ``device``, read once per run (a lost device is asked again next case)."""
        with self._lock:
            facts = self._facts.get(device.id)
        if facts is None:
            info = device.info()
            caps = device.capabilities()
            python = cast(ShellDevice, device).python() if caps.shell else None
            facts = DeviceFacts(info, caps, python, profiles.find(info.profile))
            with self._lock:
                self._facts[device.id] = facts
        return facts

    def stage(self, device: Device, local: Path, sha256: str | None = None) -> str:
        """Put ``local`` on the device once per run (the backend also skips same-hash files)."""
        if device.capabilities().shares_host_fs:
            return str(local)
        digest = sha256 or sha256_file(local)
        key = (device.id, digest)
        with self._lock:
            if key in self._staged:
                return self._staged[key]
        remote = posixpath.join(device.workdir(), digest[:16], local.name)
        device.push(local, remote)
        with self._lock:
            self._staged[key] = remote
        return remote

    # -- one case -------------------------------------------------------------------------
    def run_case(self, device: Device, case: Case) -> Result:
        """Run one case on one device, persist and return its result (never raises for the case's own faults).

        Beyond the faults the harness names (timeout, lost device, bad model...), any other
        exception of the case (a device that cannot be reached, a bug, a parser's KeyError, an
        OSError) becomes the case's ``failed`` result with the exception on one line; the
        traceback goes to the debug log.
        Ctrl-C and ``SystemExit`` are not the case's: they go on up.
        Raises :class:`RunInterrupted` when the run is cancelled before the case ends (nothing is stored).
        """
        busy = self.leases.acquire(device.id) if self.leases is not None else None  # may wait for another run
        started = now_iso()
        entry = Entry(case, device.id)
        case_id = entry.case_id
        if busy is not None:  # another run holds the device: not touched, the case recorded as skipped
            info = DeviceInfo(id=device.id, platform=device.platform)
            return self._finish(self._result(case, case_id, None, info, "skipped", busy, started))
        try:
            return self._run_case(device, entry, case_id, started)
        except Exception as exc:  # noqa: BLE001 - one case's fault must not end the other cases' run
            dlog = DeviceLogger(log, {"device": device.id})
            dlog.debug("%s: unexpected error", case_id, exc_info=True)
            with self._lock:
                facts = self._facts.get(device.id)
                artifact = self._models.get((case.model.zoo, str(case.model.path)))
            info = facts.info if facts else DeviceInfo(id=device.id, platform=device.platform)
            artifact = artifact if isinstance(artifact, ModelArtifact) else None
            # A named harness error (a device that cannot be reached...) says what it is; anything else is a bug.
            reason = str(exc) if isinstance(exc, HarnessError) else f"internal error in this case: {describe(exc)}"
            dlog.info("%s: failed (%s)", case_id, reason)
            return self._finish(self._result(case, case_id, artifact, info, "failed", reason, started))

    def _run_case(self, device: Device, entry: Entry, case_id: str, started: str) -> Result:
        dlog = DeviceLogger(log, {"device": device.id})
        case = entry.case
        try:
            facts = self.facts(device)
        except DeviceLost as exc:
            info = DeviceInfo(id=device.id, platform=device.platform)
            return self._finish(self._result(case, case_id, None, info, "device_lost", str(exc), started))
        info = facts.info
        try:
            artifact = self.model(case.model)
        except ModelError as exc:
            return self._finish(self._result(case, case_id, None, info, "failed", str(exc), started))
        decision = plan.decide(entry, facts)
        if isinstance(decision, Skip):
            return self._finish(self._result(case, case_id, artifact, info, "skipped", decision.reason, started))
        try:
            unfit = self.unfit(device, case.model.require, dlog)
        except DeviceLost as exc:
            return self._finish(self._result(case, case_id, artifact, info, "device_lost", str(exc), started))
        if unfit is not None:
            return self._finish(self._result(case, case_id, artifact, info, "skipped", unfit, started))
        run = case.model.run
        if case.model.soak is not None:
            dlog.info("%s: soak of %g s in %g s windows, repetitions of %d runs", case_id,
                      case.model.soak.duration_s, case.model.soak.window_s, run.measured_runs)
        else:
            dlog.info("%s: %d repetition(s) x %d runs", case_id, run.repetitions, run.measured_runs)
        try:
            result = self._measure(device, decision, case_id, artifact, facts, started)
        except CommandTimeout as exc:
            result = self._result(case, case_id, artifact, info, "timeout", str(exc), started, raw=exc.output or "")
        except DeviceLost as exc:
            result = self._result(case, case_id, artifact, info, "device_lost", str(exc), started)
        except DelegateUnavailable as exc:
            result = self._result(case, case_id, artifact, info, "skipped", str(exc), started)
        except HarnessError as exc:
            result = self._result(case, case_id, artifact, info, "failed", str(exc), started)
        dlog.info("%s: %s%s", case_id, result.status, f" ({result.reason})" if result.reason else "")
        return self._finish(result)

    def unfit(self, device: Device, require: Requirements, dlog: logging.LoggerAdapter) -> str | None:
        """Why the device is not fit to be measured (``[suite] require``) after waiting for it, or None.

        A device found unfit after a full wait is read once, without waiting again, before each later case.
        The reading is chosen by the device's capabilities (:func:`harness.samplers.fitness.reader`);
        conditions that make no sense on it (an endpoint's battery) are said once, never silently dropped.
        """
        if not require.active:
            return None
        with self._lock:
            waited_before = device.id in self._unfit
        if waited_before:
            require = replace(require, wait_s=0.0)
        read_fit = fitness.reader(device, require)
        inapplicable = fitness.not_applicable(device.capabilities(), require)
        outcome = fitness.wait(require, read_fit, label=f"[{device.id}] ") if read_fit is not None else None
        said = [*(("not applicable", w) for w in inapplicable),
                *(("not checked", w) for w in (outcome.unchecked if outcome is not None else ()))]
        if outcome is None and not inapplicable:
            said.append(("not checked", "the device neither runs commands nor hosts an app to read"))
        with self._lock:
            unsaid = [(how, w) for how, w in said if (device.id, w) not in self._said]
            self._said.update((device.id, w) for _how, w in unsaid)
        for how, what in unsaid:
            dlog.warning("require: %s: %s", how, what)
        if outcome is None or not outcome.unmet:
            return None
        with self._lock:
            self._unfit.add(device.id)
        return (f"device not fit to measure after waiting {outcome.waited_s:.0f} s ([suite] require): "
                + "; ".join(outcome.unmet))

    def _measure(self, device: Device, job: Job, case_id: str, artifact: ModelArtifact, facts: DeviceFacts,
                 started: str) -> Result:
        """Stage, run the job's repetitions through its runner under the samplers; assemble one result."""
        case, info = job.entry.case, facts.info
        m, runner = case.model, registry.runner(job.runner)
        npu_backend = facts.profile.npu_backend if facts.profile is not None else "CPU"
        task = Task(case.delegate, case.threads, m.run, m.tool, info.abi, npu_backend,
                    network=m.network.profile(case.network) if case.network else None, client=m.network.client,
                    profile_ops=m.gate.profile_ops)
        raws, outcomes = [], []
        dlog = DeviceLogger(log, {"device": device.id})
        sampling = CaseSampling(device, facts.profile, dict(m.cooldown))  # cooldown, memory/energy/thermal
        sampling.before_case()
        soaking = self._soak_recorder(m, sampling)
        context = sampling.context()
        schedule = RepetitionSchedule(m.run, m.soak, sampling.min_duration_s)
        begun = time.monotonic()
        while schedule.another(time.monotonic() - begun):
            i = schedule.number
            if self.cancel is not None and self.cancel.is_set():
                raise RunInterrupted(f"{case_id}: stopped before repetition {i}")
            tag = f"{self.run_id}-{m.name}-{case.delegate}-t{case.threads}-r{i}{'-c' if schedule.calibrating else ''}"
            rep_task = replace(task, tag=tag, settings=replace(task.settings, measured_runs=schedule.runs))
            with sampling.around_repetition() as sampled_device:
                outcome, raw = self._repetition(sampled_device, runner, rep_task, artifact)
                ended_s = time.monotonic() - begun  # the command returned (before the samplers stop)
            raws.append(truncate_raw(raw))  # bounded per repetition: ten huge outputs must not add up
            if soaking is not None and outcome.status == "ok" and outcome.repetition is not None:
                soaking.add_repetition(ended_s, outcome.repetition)
                soaking.add_snapshot(time.monotonic() - begun, sampling.snapshot())
            if outcome.status != "ok":
                reason = outcome.reason if m.run.repetitions == 1 else f"repetition {i}: {outcome.reason}"
                status = outcome.status if outcome.status in ("skipped", "timeout") else "failed"
                return self._result(case, case_id, artifact, info, status, reason, started, raw="\n".join(raws),
                                    runner=runner.name, delegates=outcome.delegates,
                                    accelerator=assemble.accelerator_of(case.delegate, outcome, raw, ran=False))
            extension = schedule.after(outcome.repetition)
            if extension is not None:  # a calibration short of the minimum: measured again with more runs
                dlog.info("%s: %d runs measured %.3f s < min_duration_s %.3g s (%s): %d runs per repetition, "
                          "repetition 1 measured again", case_id, extension.planned, extension.took_s,
                          extension.minimum_s, extension.why, extension.runs)
                if extension.capped:
                    dlog.warning("%s: %d runs is as many as fit in half of timeout_s %.3g s: the minimum of %.3g s "
                                 "is not reached (hint: raise the suite's timeout_s, or lower min_duration_s)",
                                 case_id, extension.runs, extension.capped_by_timeout_s, extension.minimum_s)
                sampling.discard_last()
                raws.pop()
                continue
            outcomes.append(outcome)
        first = outcomes[0]
        latency = Latency(method=first.latency_method, repetitions=tuple(o.repetition for o in outcomes))
        memory, energy, thermal = sampling.finish(latency, assemble.memory_over(outcomes))
        energy = energy or assemble.reported_energy(outcomes)
        result = self._result(
            case, case_id, artifact, info, "ok", None, started, runner=runner.name, latency=latency,
            memory=memory, energy=energy, thermal=thermal, raw="\n".join(raws), env=dict(first.environment),
            outputs=first.outputs, delegates=first.delegates, ops=assemble.ops_over(outcomes),
            ops_method=first.ops_method,
            accelerator=assemble.accelerator_of(case.delegate, first, raws[0]),
            context={**context, **runcontext.from_environment(
                {"harness": __version__, **first.environment}, device.capabilities())},
            min_duration_s=schedule.min_duration_s, actual_runs=schedule.actual_runs,
            endpoint=assemble.endpoint_over(outcomes),
        )
        if soaking is None:
            return result
        record = soaking.build(time.monotonic() - begun, lambda idx: sampling.energy_of(idx, latency))
        return replace(result, soak=record, case=replace(result.case, repetitions=len(outcomes)))

    @staticmethod
    def _soak_recorder(m: ModelSpec, sampling: CaseSampling) -> soak.SoakRecorder | None:
        """A soak's recorder (its first snapshot: the one before the case), or None for a fixed count."""
        if m.soak is None:
            return None
        recorder = soak.SoakRecorder(m.soak, soak.ThrottleTest(sampling.limits.min_freq_ratio,
                                                               sampling.throttle_status))
        recorder.add_snapshot(0.0, sampling.start_snapshot)
        return recorder

    def _repetition(self, device: Device, runner: Runner, task: Task,
                    artifact: ModelArtifact) -> tuple[RunnerOutcome, str]:
        """One repetition: stage what the runner needs, run its invocation, parse (outcome, raw text)."""
        if not device.capabilities().shell:  # an app host pushes the model itself
            staged = Staged(str(artifact.path))
        else:
            model = self.stage(device, artifact.path, artifact.sha256)
            files = {k: self.stage(device, p) for k, p in runner.files(task).items()}
            shell_device = cast(ShellDevice, device)
            staged = Staged(model, files, shell_device.python(), shell_device.pyrunner_launcher())
        invocation = runner.invocation(task, staged)
        if isinstance(invocation, AppInvocation):
            return self._run_app(cast(AppHost, device), runner, task, invocation, artifact)
        shell = cast(ShellDevice, device)
        if not device.capabilities().shares_host_fs:
            for path in invocation.executables:
                shell.shell(f"chmod 755 {shlex.quote(path)}", timeout_s=30).check(device.id)
        done = shell.shell(invocation.command, timeout_s=invocation.timeout_s)
        outcome = runner.parse(RawOutput(done.output, done.exit_code), task)
        return outcome, f"$ {invocation.command}\n{done.output}"

    def _run_app(self, device: AppHost, runner: Runner, task: Task, invocation: AppInvocation,
                 artifact: ModelArtifact) -> tuple[RunnerOutcome, str]:
        """One launch of the benchmark app; the app's own readings (memory, battery) join its outcome."""
        first_use = False
        if invocation.app is not None:
            key = (device.id, str(invocation.app))
            with self._lock:  # install (or confirm the installed version) once per device and run
                first_use = key not in self._staged
                self._staged[key] = key[1]
        launched = run_app_benchmark(device, artifact.path, invocation.params, task.tag, invocation.timeout_s,
                                     app=invocation.app if first_use else None)
        raw = "\n".join(launched.log_lines)
        parsed = runner.parse(RawOutput(raw, None, launched.result, launched.status, launched.reason), task)
        return assemble.with_app_readings(parsed, launched), raw

    def _result(self, case: Case, case_id: str, artifact: ModelArtifact | None, info: DeviceInfo, status: str,
                reason: str | None, started: str, *, latency: Latency | None = None, memory: Memory | None = None,
                energy: Energy | None = None, thermal: Thermal | None = None,
                raw: str = "", env: dict | None = None, outputs: tuple = (), runner: str = "",
                delegates: tuple = (), ops: tuple = (), accelerator: Accelerator | None = None,
                context: dict[str, str] | None = None, min_duration_s: float | None = None,
                actual_runs: int | None = None, endpoint: Endpoint | None = None, ops_method: str = "") -> Result:
        m = case.model
        return Result(
            run_id=self.run_id,
            case=CaseInfo(
                case_id=case_id, model=m.name, model_sha256=artifact.sha256 if artifact else "",
                delegate=case.delegate, threads=case.threads, runner=runner or m.run.runner,
                model_path=str(artifact.path) if artifact else str(m.path or m.zoo or ""),
                # an endpoint case is invoked remotely under its network profile: part of its identity across runs
                api=f"remote-{case.network}" if case.network else m.run.api_for(case.delegate),
                warmup_runs=m.run.warmup_runs, measured_runs=m.run.measured_runs, repetitions=m.run.repetitions,
                settings={**m.settings_record(), "model_size_bytes": artifact.size_bytes if artifact else None,
                          "model_ops": artifact.op_total if artifact else None},
                min_duration_s=min_duration_s, actual_runs=actual_runs,
            ),
            device=info, status=status, reason=reason, latency=latency, memory=memory, energy=energy, thermal=thermal,
            environment={"harness": __version__, "host": platform.node(),
                         "host_python": platform.python_version(), **(env or {})},
            raw=truncate_raw(raw), started_at=started, finished_at=now_iso(), outputs=outputs,
            delegates=tuple(delegates), ops=tuple(ops), ops_method=ops_method, accelerator=accelerator,
            context=dict(context or {}),
            endpoint=endpoint,
        )

    def _finish(self, result: Result) -> Result:
        """Persist ``result``; one whose figures JSON cannot hold (NaN from a sampler...) is stored as
        ``failed`` without them, keeping its raw text, so the run and its file go on."""
        if self.writer is None:
            return result
        try:
            self.writer.append(result)
        except (ValueError, TypeError) as exc:  # raised while encoding, before anything is written
            log.debug("[%s] %s: result not storable", result.device.id, result.case.case_id, exc_info=True)
            result = replace(result, status="failed", reason=f"the result could not be stored: {describe(exc)}",
                             latency=None, memory=None, energy=None, thermal=None, outputs=(), delegates=(), ops=())
            self.writer.append(result)
        return result


def run_suite(
    suite: Suite,
    devices: Sequence[Device],
    store: Store,
    *,
    run_id: str | None = None,
    on_result: Callable[[Result], None] | None = None,
    cancel: threading.Event | None = None,
    leases: Callable[[str, threading.Event], LeaseKeeper] | None = None,
    on_start: Callable[[Entry], None] | None = None,
) -> RunSummary:
    """Run every case of ``suite`` on every device; results are on disk as each case ends.

    ``leases(run_id, cancel)`` gives the run's device leases: each device is used under its lease,
    released when the run ends. ``on_start`` hears each case as its device begins it, ``on_result`` each
    result once stored (both from the device's thread).

    Setting ``cancel`` (or Ctrl-C in the calling thread) stops the run: running commands are killed,
    no further case starts, and the summary comes back with ``interrupted`` set, holding the
    results that finished. Devices that do not stop within :data:`STOP_GRACE_S` are left behind.
    """
    run_id = run_id or new_run_id()
    token = cancel if cancel is not None else threading.Event()
    writer = store.begin_run(run_id, suite.name)
    keeper = leases(run_id, token) if leases is not None else None
    runner = CaseRunner(run_id, writer, cancel=token, leases=keeper)
    summary = RunSummary(run_id, writer.path)
    lock = threading.Lock()
    failures: list[BaseException] = []
    stopped: list[str] = []  # devices that stopped before their last case
    closed = False

    entries = plan.expand(suite.cases() + suite.endpoint_cases(), [d.id for d in devices])

    def one_device(device: Device) -> None:
        try:
            for case in (e.case for e in entries if e.device_id == device.id):
                if token.is_set():
                    stopped.append(device.id)
                    return
                if on_start:
                    on_start(Entry(case, device.id))
                result = runner.run_case(device, case)
                with lock:
                    if closed:  # finished after the run was given up on: the writer is gone
                        return
                    summary.results.append(result)
                if on_result:
                    on_result(result)
            if keeper is not None:  # this device is done: another run may have it while the others go on
                keeper.release(device.id)
        except RunInterrupted:
            stopped.append(device.id)
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread, which raises it
            failures.append(exc)

    for device in devices:
        device.cancel = token
    # Daemon threads, not a pool: a device that ignores the stop must not hold the process open.
    threads = [threading.Thread(target=one_device, args=(d,), name=f"device-{d.id}", daemon=True) for d in devices]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        summary.interrupted = bool(stopped)
    except KeyboardInterrupt:
        token.set()
        summary.interrupted = True
        stop_by = time.monotonic() + STOP_GRACE_S
        for thread in threads:
            if thread.ident is not None:  # started
                thread.join(max(0.0, stop_by - time.monotonic()))
        busy = [t.name for t in threads if t.is_alive()]
        if busy:
            log.warning("interrupted: %s did not stop within %.0f s; left behind", ", ".join(busy), STOP_GRACE_S)
    finally:
        with lock:
            closed = True
            writer.close()
        if keeper is not None:
            keeper.release_all()
    if failures:
        raise failures[0]
    return summary
