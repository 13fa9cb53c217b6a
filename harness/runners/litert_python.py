"""Runner ``litert-python``: the single-file :mod:`harness.runners.pyrunner` run by a device's Python.

Builds the (quoted) command line for one repetition and turns its output into a
:class:`RunnerOutcome`. It never talks to a device: the orchestrator runs the command
and hands the output back.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.errors import describe, one_line
from harness.results import Repetition
from harness.runners import accelerator
from harness.runners.base import NpuSettings, RawOutput, ShellInvocation, Staged, Task
from harness.runners.outcome import (
    MAX_COUNT,
    MAX_TEXT,
    MAX_US,
    BadOutput,
    RunnerOutcome,
    number,
    rejected,
    sequence,
    validate,
)

NAME = "litert-python"
SCRIPT = Path(__file__).with_name("pyrunner.py")
RESULT_PREFIX = "EDGEHARNESS_RESULT "
METHOD = "perf_counter_ns around each invoke() in a child process (per-iteration samples)"
MEMORY_METHOD = ("child's own /proc/self/status VmRSS before/after init and VmHWM at the end (peak; getrusage "
                 "ru_maxrss where /proc is absent)")
PROFILE_INVOKES = 10  # invocations per operator when a suite asks for op profiles (after one warm-up)
# pyrunner takes these delegates; the others need a native tool (benchmark_model).
DELEGATES = ("cpu", "xnnpack", "gpu", "npu")


def command(
    python: str,
    script: str,
    model: str,
    *,
    delegate: str,
    threads: int,
    warmup_runs: int,
    measured_runs: int,
    api: str = "interpreter",
    seed: int = 0,
    npu: NpuSettings | None = None,
    npu_backend: str = "CPU",
    launcher: tuple[str, ...] = (),
    profile_ops: int = 0,
) -> str:
    """The shell command for one repetition; every argument is quoted for the device shell.

    ``npu``: the npu delegate's settings (the suite's ``compile`` jit|aot and ``cpu_fallback``);
    ``npu_backend``: the OpenVINO device it compiles to (CPU|GPU|NPU, the device profile's);
    ``launcher``: a prefix that runs the same command faster (the host's zygote, :mod:`zygote_client`);
    ``profile_ops``: after the timed runs, time each operator alone this many times (0: no op profile).
    """
    argv = [*launcher,
        python, script, "--model", model, "--delegate", delegate, "--threads", str(threads),
        "--warmup", str(warmup_runs), "--runs", str(measured_runs), "--api", api, "--seed", str(seed),
    ]
    if profile_ops:
        argv += ["--profile-ops", str(profile_ops)]
    if delegate == "npu" and npu is not None:
        argv += ["--npu-backend", npu_backend, "--npu-compile", npu.compile,
                 "--npu-cpu-fallback", "1" if npu.cpu_fallback else "0"]
    return " ".join(shlex.quote(a) for a in argv)


def _diagnostic_line(output: str) -> str | None:
    """The runtime's own error line from stderr (e.g. 'No adapters found'), to make a reason useful."""
    for line in output.splitlines():
        low = line.lower()
        if ("failed" in low or "error" in low or "cannot" in low) and not line.startswith(RESULT_PREFIX):
            text = " ".join(line.split())
            if "source location" not in low and len(text) > 20:
                return text[:240]
    return None


def parse(output: str, exit_code: int | None, *, runs: int | None = None,
          timeout_s: float | None = None) -> RunnerOutcome:
    """Read the ``EDGEHARNESS_RESULT`` line; anything else is a failure that keeps the raw output.

    ``runs`` and ``timeout_s`` are what the case asked for: the result is checked against them
    (see :func:`harness.runners.outcome.validate`).
    """
    payload, unreadable = None, None
    for line in output.splitlines():
        if line.startswith(RESULT_PREFIX):
            try:
                payload, unreadable = json.loads(line[len(RESULT_PREFIX):]), None
            except (ValueError, RecursionError) as exc:  # bad JSON, a 5000-digit integer, [[[[...]]]] nested deep
                payload, unreadable = None, describe(exc, 120)
    if not isinstance(payload, dict):
        tail = " | ".join(output.strip().splitlines()[-3:])[-300:]
        why = (f"unreadable result line: {unreadable}" if unreadable
               else "the result line is not a JSON object" if payload is not None
               else f"exit code {exit_code}" if exit_code not in (None, 0) else "no result line")
        return RunnerOutcome("failed", f"runner produced no result ({why}): {one_line(tail, 300) or 'no output'}")
    return from_payload(payload, output, runs=runs, timeout_s=timeout_s)


SKIP_STATUSES = ("skipped", "delegate_unavailable")


def from_payload(payload: dict[str, Any], output: str = "", *, runs: int | None = None,
                 timeout_s: float | None = None) -> RunnerOutcome:
    """A runner result dict (the JSON line, or the iOS app's result file, which has the same keys).

    The figures go through :func:`validate` as they came; a malformed one makes the outcome
    ``failed`` with the field named.
    """
    if not isinstance(payload, dict):
        return RunnerOutcome("failed", f"the result is not a JSON object: {one_line(repr(payload), 80)}")
    status = payload.get("status", "failed")
    if status != "ok":
        reason = one_line(payload.get("reason") or "unknown error", MAX_TEXT)
        extra = _diagnostic_line(output)
        if extra and extra not in reason:
            reason = f"{reason} ({extra})"
        verdict, unavailable = accelerator.from_payload(payload.get("accelerator"), ran=False, failure=reason)
        if verdict is not None and verdict.reason and verdict.reason not in reason:  # the runtime's own words
            reason = one_line(f"{payload.get('reason') or 'failed'}: {verdict.reason}", MAX_TEXT)
        if unavailable and status not in SKIP_STATUSES:
            return validate(RunnerOutcome("skipped", unavailable, accelerator=verdict))
        return validate(RunnerOutcome("skipped" if status in SKIP_STATUSES else "failed", reason, accelerator=verdict))
    verdict, unavailable = accelerator.from_payload(payload.get("accelerator"), ran=True)
    if unavailable:  # the plugin is not there at all: the figures would be CPU figures under the npu name
        return validate(RunnerOutcome("skipped", unavailable, accelerator=verdict))
    try:
        listed = sequence("warmup_us", _listed(payload, "warmup_us"), MAX_COUNT)
        warmup = [number(f"warmup_us[{i}]", x, MAX_US) for i, x in enumerate(listed)]
    except BadOutput as exc:
        return rejected(exc)
    rep = accelerator.with_compile(Repetition(
        samples_us=_listed(payload, "samples_us"),
        init_us=payload.get("init_us"),
        first_inference_us=payload.get("first_inference_us"),
        warmup_avg_us=(sum(warmup) / len(warmup)) if warmup else None,
        **{k: payload.get(k) for k in ("count", "avg_us", "std_us", "min_us", "max_us", "median_us")},
    ), payload.get("accelerator"))
    env = {k: payload.get(k) for k in ("runtime", "runtime_version", "vendor_libs", "python", "api")
           if payload.get(k) is not None}
    return validate(RunnerOutcome(
        "ok",
        None,
        repetition=rep,
        peak_rss_mb=payload.get("peak_rss_mb"),
        rss_before_init_mb=payload.get("rss_before_init_mb"),
        rss_after_init_mb=payload.get("rss_after_init_mb"),
        environment=env,
        outputs=_listed(payload, "outputs"),
        ops=_listed(payload, "ops"),
        ops_method=_ops_method(payload),
        latency_method=METHOD,
        memory_method=_memory_method(payload),
        accelerator=verdict,
    ), runs=runs, timeout_s=timeout_s)


def _ops_method(payload: dict[str, Any]) -> str:
    """How the script timed its operators, or why it could not (``ops_problem``): one bounded line."""
    for key in ("ops_method", "ops_problem"):
        said = payload.get(key)
        if isinstance(said, str) and said.strip():
            return one_line(said if key == "ops_method" else f"no op profile: {said}", MAX_TEXT)
    return ""


def _memory_method(payload: dict[str, Any]) -> str:
    """The script's own memory method when it says one (a child forked by the host's zygote), else the usual."""
    said = payload.get("memory_method")
    return one_line(said, MAX_TEXT) if isinstance(said, str) and said.strip() else MEMORY_METHOD


def _listed(payload: dict[str, Any], key: str) -> Any:
    """A list as a tuple; an absent or null key as empty; anything else as it came (validate names it)."""
    value = payload.get(key)
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list) else value


class LiteRtPythonRunner:
    """The :class:`~harness.runners.base.Runner` for ``litert-python``: the script run by the device's Python."""

    name = NAME

    def files(self, task: Task) -> Mapping[str, Path]:
        return {"script": SCRIPT}

    def invocation(self, task: Task, staged: Staged) -> ShellInvocation:
        s = task.settings
        cmd = command(staged.python or "python3", staged.files["script"], staged.model, delegate=task.delegate,
                      threads=task.threads, warmup_runs=s.warmup_runs, measured_runs=s.measured_runs,
                      api=s.api_for(task.delegate), seed=0, npu=s.npu, npu_backend=task.npu_backend,
                      launcher=staged.launcher, profile_ops=PROFILE_INVOKES if task.profile_ops else 0)
        return ShellInvocation(cmd, s.timeout_s)

    def parse(self, raw: RawOutput, task: Task) -> RunnerOutcome:
        return parse(raw.text, raw.exit_code, runs=task.settings.measured_runs, timeout_s=task.settings.timeout_s)
