"""Runner ``ios-app``: the benchmark-app contract (``docs/ios.md``) on an app host.

The app takes ``benchmark_params.json`` (TFLite benchmark flags as JSON) and writes a result file
with the keys of the ``litert-python`` result line, so it is read by the same validating reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from harness.runners import flags, litert_python
from harness.runners.base import AppInvocation, RawOutput, Staged, Task
from harness.runners.outcome import RunnerOutcome

NAME = "ios-app"


class AppRunner:
    """The :class:`~harness.runners.base.Runner` for the benchmark-app contract (nothing to stage: the app
    host pushes the model itself)."""

    name = NAME

    def files(self, task: Task) -> Mapping[str, Path]:
        return {}

    def invocation(self, task: Task, staged: Staged) -> AppInvocation:
        s = task.settings
        params = flags.app_params(task.delegate, task.threads, s.warmup_runs, s.measured_runs)
        return AppInvocation(params, s.timeout_s, Path(task.tool.ios_app) if task.tool.ios_app else None)

    def parse(self, raw: RawOutput, task: Task) -> RunnerOutcome:
        if raw.status == "timeout":
            return RunnerOutcome("timeout", raw.reason)
        if raw.payload is None:
            return RunnerOutcome("failed", raw.reason or "the app wrote no result")
        s = task.settings
        return litert_python.from_payload(raw.payload, raw.text, runs=s.measured_runs, timeout_s=s.timeout_s)
