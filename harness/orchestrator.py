"""Run a plan: devices in parallel, cases on one device in series, every result persisted at once.

The data path for one case: resolve the model (zoo or path, validated) -> check the device
can run the delegate (profile) -> stage model and runner on the device (skipped when the
same sha256 is there) -> run ``repetitions`` separate processes -> parse each -> one
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
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

from harness import __version__, profiles, zoo
from harness.devices.base import AppHost, Device, sha256_file
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
from harness.names import sanitise
from harness.results import CaseInfo, DeviceInfo, Energy, Latency, Memory, Result, Thermal, truncate_raw
from harness.runners import flags, litert_python, tool
from harness.runners.outcome import RunnerOutcome
from harness.samplers.app import MEMORY_METHOD, app_energy, app_memory, run_app_benchmark
from harness.samplers.case import CaseSampling
from harness.store import ResultWriter, Store, new_run_id, now_iso
from harness.suite import Case, ModelSpec, Suite

log = logging.getLogger("harness")
STOP_GRACE_S = 3.0  # how long an interrupted run waits for its devices to stop


class DeviceLogger(logging.LoggerAdapter):
    """Every line says which device it came from (a farm log interleaves many)."""

    def process(self, msg: str, kwargs: dict) -> tuple[str, dict]:
        return f"[{self.extra['device']}] {msg}", kwargs


def device_label(device_id: str) -> str:
    """Short, id-safe label for case ids: ``host``, ``adb-127.0.0.1-5555``, ``ios-00008030``."""
    return sanitise(device_id, "device", 40)


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
        self._info: dict[str, DeviceInfo] = {}
        self._staged: dict[tuple[str, str], str] = {}

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

    def device_info(self, device: Device) -> DeviceInfo:
        with self._lock:
            info = self._info.get(device.id)
        if info is None:
            info = device.info()
            with self._lock:
                self._info[device.id] = info
        return info

    def stage(self, device: Device, local: Path, sha256: str | None = None) -> str:
        """Put ``local`` on the device once per run (the backend also skips same-hash files)."""
        if getattr(device, "shares_host_fs", False):
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
        case_id = case.case_id(device_label(device.id))
        if busy is not None:
            info = DeviceInfo(id=device.id, platform=device.platform)
            return self._finish(self._result(case, case_id, None, info, "skipped", busy, started))
        try:
            return self._run_case(device, case, case_id, started)
        except Exception as exc:  # noqa: BLE001 - one case's fault must not end the other cases' run
            dlog = DeviceLogger(log, {"device": device.id})
            dlog.debug("%s: unexpected error", case_id, exc_info=True)
            with self._lock:
                info = self._info.get(device.id) or DeviceInfo(id=device.id, platform=device.platform)
                artifact = self._models.get((case.model.zoo, str(case.model.path)))
            artifact = artifact if isinstance(artifact, ModelArtifact) else None
            # A named harness error (a device that cannot be reached...) says what it is; anything else is a bug.
            reason = str(exc) if isinstance(exc, HarnessError) else f"internal error in this case: {describe(exc)}"
            dlog.info("%s: failed (%s)", case_id, reason)
            return self._finish(self._result(case, case_id, artifact, info, "failed", reason, started))

    def _run_case(self, device: Device, case: Case, case_id: str, started: str) -> Result:
        dlog = DeviceLogger(log, {"device": device.id})
        try:
            info = self.device_info(device)
        except DeviceLost as exc:
            info = DeviceInfo(id=device.id, platform=device.platform)
            return self._finish(self._result(case, case_id, None, info, "device_lost", str(exc), started))
        try:
            artifact = self.model(case.model)
        except ModelError as exc:
            return self._finish(self._result(case, case_id, None, info, "failed", str(exc), started))
        profile = profiles.find(info.profile)
        if profile is not None and not profile.supports(case.delegate):
            reason = profile.lacks_reason(case.delegate)
            return self._finish(self._result(case, case_id, artifact, info, "skipped", reason, started))
        dlog.info("%s: %d repetition(s) x %d runs", case_id, case.model.repetitions, case.model.measured_runs)
        try:
            result = self._measure(device, case, case_id, artifact, info, started)
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

    def _strategy(self, device: Device, case: Case, info: DeviceInfo) -> tuple[Callable | None, str]:
        """How to run this case here: (repetition function, runner name), or (None, why not)."""
        runner = case.model.runner
        if device.capabilities().app_host:
            return self._repetition_app, "ios-app"
        has_python = device.python() is not None
        tool_path = _tool_for_abi(case.model.tool, info.abi)
        if runner == "auto":
            if case.delegate in litert_python.DELEGATES and has_python:
                runner = litert_python.NAME
            elif tool_path:
                runner = tool.BENCHMARK_MODEL
            else:
                return None, (f"delegate {case.delegate!r} needs the native benchmark_model tool: set "
                              f"[suite.tool] benchmark_model for ABI {info.abi or '?'}"
                              if case.delegate not in litert_python.DELEGATES
                              else f"{device.id} has no Python for the litert-python runner and no "
                                   f"benchmark_model tool is configured")
        if runner == litert_python.NAME:
            if not has_python:
                return None, f"{device.id} has no python3 for the litert-python runner"
            if case.delegate not in litert_python.DELEGATES:
                return None, f"the litert-python runner cannot run delegate {case.delegate!r}"
            return self._repetition_python, runner
        if runner == tool.LITERT_BENCHMARK:
            if not has_python:
                return None, f"{device.id} has no python3 for litert-benchmark"
            return self._repetition_tool, runner
        if not tool_path:
            return None, f"no benchmark_model binary for ABI {info.abi or '?'} in [suite.tool]"
        return self._repetition_tool, runner

    def _measure(self, device: Device, case: Case, case_id: str, artifact: ModelArtifact, info: DeviceInfo,
                 started: str) -> Result:
        """Run the case's repetitions with the strategy the device supports; assemble one result."""
        strategy, runner = self._strategy(device, case, info)
        if strategy is None:
            return self._result(case, case_id, artifact, info, "skipped", runner, started)
        m = case.model
        raws, outcomes = [], []
        profile = profiles.find(info.profile)
        sampling = CaseSampling(device, profile, m.cooldown)  # cooldown, memory/energy/thermal samplers
        sampling.before_case()
        for i in range(m.repetitions):
            if self.cancel is not None and self.cancel.is_set():
                raise RunInterrupted(f"{case_id}: stopped before repetition {i + 1}")
            with sampling.around_repetition() as sampled_device:
                outcome, raw = strategy(sampled_device, case, artifact, i)
            raws.append(truncate_raw(raw))  # bounded per repetition: ten huge outputs must not add up
            if outcome.status != "ok":
                reason = outcome.reason if m.repetitions == 1 else f"repetition {i + 1}: {outcome.reason}"
                status = outcome.status if outcome.status in ("skipped", "timeout") else "failed"
                return self._result(case, case_id, artifact, info, status, reason, started, raw="\n".join(raws),
                                    runner=runner, delegates=outcome.delegates)
            outcomes.append(outcome)
        first = outcomes[0]
        latency = Latency(method=first.latency_method, repetitions=tuple(o.repetition for o in outcomes))
        memory, energy, thermal = sampling.finish(latency, _memory(outcomes))
        energy = energy or _reported_energy(outcomes)
        return self._result(
            case, case_id, artifact, info, "ok", None, started, runner=runner, latency=latency,
            memory=memory, energy=energy, thermal=thermal, raw="\n".join(raws), env=dict(first.environment),
            outputs=first.outputs, delegates=first.delegates, ops=first.ops,
        )

    def _repetition_python(self, device: Device, case: Case, artifact: ModelArtifact,
                           index: int) -> tuple[RunnerOutcome, str]:
        """One process of the single-file runner, through the device's shell."""
        model_remote = self.stage(device, artifact.path, artifact.sha256)
        script_remote = self.stage(device, litert_python.SCRIPT)
        m = case.model
        cmd = litert_python.command(
            device.python() or "python3", script_remote, model_remote, delegate=case.delegate,
            threads=case.threads, warmup_runs=m.warmup_runs, measured_runs=m.measured_runs, api=m.api, seed=0,
        )
        shell = device.shell(cmd, timeout_s=m.timeout_s)
        outcome = litert_python.parse(shell.output, shell.exit_code, runs=m.measured_runs, timeout_s=m.timeout_s)
        return outcome, f"$ {cmd}\n{shell.output}"

    def _repetition_tool(self, device: Device, case: Case, artifact: ModelArtifact,
                         index: int) -> tuple[RunnerOutcome, str]:
        """One process of a native tool (benchmark_model, or litert-benchmark through the device's Python)."""
        m = case.model
        model_remote = self.stage(device, artifact.path, artifact.sha256)
        kind = tool.LITERT_BENCHMARK if m.runner == tool.LITERT_BENCHMARK else tool.BENCHMARK_MODEL
        binary = ""
        if kind == tool.BENCHMARK_MODEL:
            binary = self.stage(device, Path(_tool_for_abi(m.tool, self.device_info(device).abi) or ""))
            if not getattr(device, "shares_host_fs", False):
                device.shell(f"chmod 755 {shlex.quote(binary)}", timeout_s=30).check(device.id)
        argv = tool.argv(kind, binary, model_remote, delegate=case.delegate, threads=case.threads,
                         warmup_runs=m.warmup_runs, measured_runs=m.measured_runs,
                         options=m.tool.get("options"), python=device.python())
        cmd = flags.to_shell(argv)
        shell = device.shell(cmd, timeout_s=m.timeout_s)
        return tool.outcome(kind, shell.output, shell.exit_code, timeout_s=m.timeout_s), f"$ {cmd}\n{shell.output}"

    def _repetition_app(self, device: Device, case: Case, artifact: ModelArtifact,
                        index: int) -> tuple[RunnerOutcome, str]:
        """One launch of the benchmark app (iOS app contract); the app's result file has the runner's keys."""
        m = case.model
        params = flags.app_params(case.delegate, case.threads, m.warmup_runs, m.measured_runs)
        run_tag = f"{self.run_id}-{case.model.name}-{case.delegate}-t{case.threads}-r{index + 1}"
        app = m.tool.get("ios_app")
        with self._lock:  # install (or confirm the installed version) once per device and run
            first_use = app is not None and (device.id, app) not in self._staged
            if first_use:
                self._staged[(device.id, app)] = app
        outcome = run_app_benchmark(
            cast(AppHost, device), artifact.path, params, run_tag, m.timeout_s, app=Path(app) if first_use else None)
        raw = "\n".join(outcome.log_lines)
        if outcome.status == "timeout":
            return RunnerOutcome("timeout", outcome.reason), raw
        if outcome.result is None:
            return RunnerOutcome("failed", outcome.reason or "the app wrote no result"), raw
        parsed = litert_python.from_payload(outcome.result, raw, runs=m.measured_runs, timeout_s=m.timeout_s)
        if parsed.repetition is None:
            return parsed, raw
        measured_s = sum(parsed.repetition.samples_us) / 1e6
        peak, steady, rows = app_memory(outcome.samples)
        energy = app_energy(outcome.battery, outcome.energy_refusal, measured_s, len(parsed.repetition.samples_us))
        interval = f", every {outcome.sample_interval_s:.2f} s" if outcome.sample_interval_s else ""
        return replace(
            parsed, energy=energy, steady_rss_mb=steady,
            peak_rss_mb=parsed.peak_rss_mb if parsed.peak_rss_mb is not None else peak,
            memory_method=f"{parsed.memory_method}; steady: {MEMORY_METHOD} ({rows} rows{interval})" if rows
            else parsed.memory_method,
        ), raw

    def _result(self, case: Case, case_id: str, artifact: ModelArtifact | None, info: DeviceInfo, status: str,
                reason: str | None, started: str, *, latency: Latency | None = None, memory: Memory | None = None,
                energy: Energy | None = None, thermal: Thermal | None = None,
                raw: str = "", env: dict | None = None, outputs: tuple = (), runner: str = "",
                delegates: tuple = (), ops: tuple = ()) -> Result:
        m = case.model
        return Result(
            run_id=self.run_id,
            case=CaseInfo(
                case_id=case_id, model=m.name, model_sha256=artifact.sha256 if artifact else "",
                delegate=case.delegate, threads=case.threads, runner=runner or m.runner,
                model_path=str(artifact.path) if artifact else str(m.path or m.zoo or ""), api=m.api,
                warmup_runs=m.warmup_runs, measured_runs=m.measured_runs, repetitions=m.repetitions,
                settings={"timeout_s": m.timeout_s, "zoo": m.zoo, "budget": m.budget, "gate": m.gate,
                          "model_size_bytes": artifact.size_bytes if artifact else None,
                          "model_ops": artifact.op_total if artifact else None},
            ),
            device=info, status=status, reason=reason, latency=latency, memory=memory, energy=energy, thermal=thermal,
            environment={"harness": __version__, "host": platform.node(),
                         "host_python": platform.python_version(), **(env or {})},
            raw=truncate_raw(raw), started_at=started, finished_at=now_iso(), outputs=outputs,
            delegates=tuple(delegates), ops=tuple(ops),
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


def _tool_for_abi(tool_config: dict, abi: str) -> str | None:
    """The configured benchmark_model binary for a device ABI (``*`` matches any)."""
    paths = tool_config.get("benchmark_model") or {}
    return paths.get(abi) or paths.get("*")


def _reported_energy(outcomes: list[RunnerOutcome]) -> Energy | None:
    """The device's own energy readings over the repetitions (mean per inference), or the first refusal."""
    readings = [o.energy for o in outcomes if o.energy is not None]
    if not readings:
        return None
    measured = [e for e in readings if e.gross_per_inference_mj is not None]
    if len(measured) < len(readings):
        return next(e for e in readings if e.gross_per_inference_mj is None)
    return replace(measured[0], gross_per_inference_mj=statistics.fmean(e.gross_per_inference_mj for e in measured),
                   samples=sum(e.samples for e in measured))


def _memory(outcomes: list[RunnerOutcome]) -> Memory:
    """One memory record over the repetitions: the highest peak, the median of every other reading."""
    peaks = _present(outcomes, "peak_rss_mb")
    return Memory(
        method=outcomes[0].memory_method,
        peak_rss_mb=max(peaks) if peaks else None,
        rss_before_init_mb=_median_of(outcomes, "rss_before_init_mb"),
        rss_after_init_mb=_median_of(outcomes, "rss_after_init_mb"),
        footprint_init_mb=_median_of(outcomes, "footprint_init_mb"),
        footprint_overall_mb=_median_of(outcomes, "footprint_overall_mb"),
        steady_rss_mb=_median_of(outcomes, "steady_rss_mb"),
        samples=len(outcomes),
    )


def _present(outcomes: list[RunnerOutcome], field_name: str) -> list[float]:
    return [v for v in (getattr(o, field_name) for o in outcomes) if v is not None]


def _median_of(outcomes: list[RunnerOutcome], field_name: str) -> float | None:
    values = _present(outcomes, field_name)
    return statistics.median(values) if values else None


def run_suite(
    suite: Suite,
    devices: Sequence[Device],
    store: Store,
    *,
    run_id: str | None = None,
    on_result: Callable[[Result], None] | None = None,
    cancel: threading.Event | None = None,
    leases: Callable[[str, threading.Event], LeaseKeeper] | None = None,
) -> RunSummary:
    """Run every case of ``suite`` on every device; results are on disk as each case ends.

    ``leases(run_id, cancel)`` gives the run's device leases: each device is used under its lease,
    released when the run ends.

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

    def one_device(device: Device) -> None:
        try:
            for case in suite.cases():
                if token.is_set():
                    stopped.append(device.id)
                    return
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
