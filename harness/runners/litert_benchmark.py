"""Runner ``litert-benchmark``: Google's LiteRT benchmark, run as ``python -m`` by the device's Python.

Builds the quoted command of one repetition; the tool's output becomes an outcome through
:mod:`harness.runners.tool_output`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from harness.errors import DelegateUnavailable
from harness.runners import flags, tool_output
from harness.runners.base import RawOutput, ShellInvocation, Staged, Task
from harness.runners.outcome import RunnerOutcome

NAME = tool_output.LITERT_BENCHMARK
MODULE = "ai_edge_litert.tools.benchmark_litert_model"
# Our delegate names -> litert-benchmark's accelerator: its CPU accelerator runs XNNPACK.
_ACCEL = {"xnnpack": "cpu", "gpu": "gpu", "npu": "npu"}


def argv(model: str, *, delegate: str, threads: int, warmup_runs: int, measured_runs: int,
         options: Mapping[str, object] | None = None, python: str | None = None) -> list[str]:
    """The tool's argv for one repetition (quote it with :func:`flags.to_shell`).

    With ``python`` the device runs ``python -m ai_edge_litert.tools.benchmark_litert_model`` (the same
    code as the console script); without, the ``litert-benchmark`` console script.
    """
    accel = _ACCEL.get(delegate)
    if accel is None:
        raise DelegateUnavailable(f"litert-benchmark cannot run delegate {delegate!r}",
                                  hint="it offers xnnpack (its CPU accelerator), gpu and npu")
    args = flags.build_litert_argv(NAME, model, delegate=accel, threads=threads,
                                   warmup_runs=warmup_runs, num_runs=measured_runs, options=options, python=True)
    return ([python, "-m", MODULE] if python else [NAME]) + args[1:]


class LiteRtBenchmarkRunner:
    """The :class:`~harness.runners.base.Runner` for ``litert-benchmark``."""

    name = NAME

    def files(self, task: Task) -> Mapping[str, Path]:
        return {}

    def invocation(self, task: Task, staged: Staged) -> ShellInvocation:
        s = task.settings
        cmd = flags.to_shell(argv(staged.model, delegate=task.delegate, threads=task.threads,
                                  warmup_runs=s.warmup_runs, measured_runs=s.measured_runs,
                                  options=task.tool.options, python=staged.python))
        return ShellInvocation(cmd, s.timeout_s)

    def parse(self, raw: RawOutput, task: Task) -> RunnerOutcome:
        return tool_output.outcome(NAME, raw.text, raw.exit_code, timeout_s=task.settings.timeout_s)
