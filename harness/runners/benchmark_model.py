"""Runner ``benchmark_model``: TFLite's native benchmark tool, a binary per ABI pushed to the device.

Builds the quoted command of one repetition; the tool's output becomes an outcome through
:mod:`harness.runners.tool_output`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

from harness.runners import flags, tool_output
from harness.runners.base import RawOutput, ShellInvocation, Staged, Task
from harness.runners.outcome import RunnerOutcome

NAME = tool_output.BENCHMARK_MODEL


def argv(binary: str, model: str, *, delegate: str, threads: int, warmup_runs: int, measured_runs: int,
         options: Mapping[str, object] | None = None, capabilities: Collection[str] | None = None) -> list[str]:
    """The tool's argv for one repetition (quote it with :func:`flags.to_shell`)."""
    return flags.build_benchmark_model_argv(binary, model, delegate=delegate, threads=threads,
                                            warmup_runs=warmup_runs, num_runs=measured_runs,
                                            options=options, capabilities=capabilities)


class BenchmarkModelRunner:
    """The :class:`~harness.runners.base.Runner` for ``benchmark_model``."""

    name = NAME

    def files(self, task: Task) -> Mapping[str, Path]:
        return {"binary": Path(task.tool.binary_for(task.abi) or "")}

    def invocation(self, task: Task, staged: Staged) -> ShellInvocation:
        s = task.settings
        binary = staged.files["binary"]
        options = dict(task.tool.options)
        if task.profile_ops:  # the suite asked for op profiles ([gate] profile_ops): the tool's own profiler
            options.setdefault("enable_op_profiling", True)
        cmd = flags.to_shell(argv(binary, staged.model, delegate=task.delegate, threads=task.threads,
                                  warmup_runs=s.warmup_runs, measured_runs=s.measured_runs, options=options))
        return ShellInvocation(cmd, s.timeout_s, executables=(binary,))

    def parse(self, raw: RawOutput, task: Task) -> RunnerOutcome:
        return tool_output.outcome(NAME, raw.text, raw.exit_code, timeout_s=task.settings.timeout_s)
