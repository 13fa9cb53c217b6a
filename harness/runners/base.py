"""The runner seam: what a runner is given, what it hands back, and the :class:`Runner` protocol.

A runner never touches a device. For one repetition of a job it names the host files it needs on
the device (:meth:`Runner.files`), builds an invocation from where they were staged
(:meth:`Runner.invocation`: a shell command quoted with ``shlex.quote``, or the app contract's
parameters) and turns the raw output into one :class:`~harness.runners.outcome.RunnerOutcome`
(:meth:`Runner.parse`). The orchestrator stages, runs the invocation on the device and stores.

``RunnerOutcome`` (one repetition as a result record takes it, validated) and
:class:`~harness.runners.measurement.Measurement` (everything a tool's text says, for ``harness parse``)
are different things: a runner parses text into Measurements and keeps of them what a result holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from harness.devices.endpoint.network import ClientPolicy, NetworkProfile
from harness.runners.outcome import RunnerOutcome

_EMPTY: Mapping[str, Any] = MappingProxyType({})


NPU_COMPILE = ("jit", "aot")


@dataclass(frozen=True)
class NpuSettings:
    """``npu = { compile, cpu_fallback }``: how the npu delegate compiles the model (``jit`` when the model is
    created, ``aot`` before) and whether ops the plugin refuses may run on the CPU (validated by the suite loader)."""

    compile: str = "jit"
    cpu_fallback: bool = True


@dataclass(frozen=True)
class RunSettings:
    """How each case of a model is run (validated by the suite loader; see ``harness.suite.SETTING_RANGES``)."""

    warmup_runs: int = 5
    measured_runs: int = 50
    repetitions: int = 10
    timeout_s: float = 120.0
    api: str = "interpreter"
    runner: str = "auto"
    npu: NpuSettings = field(default_factory=NpuSettings)
    #: Minimum measured seconds per repetition (measured runs are extended to reach it); None: what the
    #: device's samplers need (enough power samples), 0: no minimum.
    min_duration_s: float | None = None

    def api_for(self, delegate: str) -> str:
        """The API a case of ``delegate`` runs through: the NPU path is CompiledModel's only, whatever ``api`` says."""
        return "compiled" if delegate == "npu" else self.api


@dataclass(frozen=True)
class ToolConfig:
    """``[suite.tool]``: the native ``benchmark_model`` binary per ABI (``*`` = any), the iOS benchmark app,
    and extra tool flags. Paths are absolute host paths (resolved against the suite file at load)."""

    benchmark_model: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    ios_app: str | None = None
    options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def binary_for(self, abi: str) -> str | None:
        """The configured ``benchmark_model`` binary for a device ABI, or None."""
        return self.benchmark_model.get(abi) or self.benchmark_model.get("*")

    def merged_over(self, defaults: ToolConfig) -> ToolConfig:
        """This table's keys winning over ``defaults`` (``harness.toml``'s ``[tool]``)."""
        return ToolConfig(
            benchmark_model=self.benchmark_model or defaults.benchmark_model,
            ios_app=self.ios_app if self.ios_app is not None else defaults.ios_app,
            options=self.options or defaults.options,
        )


@dataclass(frozen=True)
class Task:
    """One case as a runner sees it: delegate, threads and the model's settings."""

    delegate: str
    threads: int
    settings: RunSettings
    tool: ToolConfig = field(default_factory=ToolConfig)
    abi: str = ""
    #: The OpenVINO device the npu delegate compiles to: the device profile's ``npu_backend``.
    npu_backend: str = "CPU"
    #: Unique name of one repetition (the app contract's run id).
    tag: str = ""
    #: An endpoint case's network profile and the client's policy (None for on-device cases).
    network: NetworkProfile | None = None
    client: ClientPolicy | None = None
    #: Time each operator too (``[gate] profile_ops``): the runner's per-op profile goes into the result's ``ops``.
    profile_ops: bool = False


@dataclass(frozen=True)
class Staged:
    """Where the model and the runner's files are on the device (``files`` keyed as :meth:`Runner.files` named them)."""

    model: str
    files: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    python: str | None = None
    launcher: tuple[str, ...] = ()  # ShellDevice.pyrunner_launcher(): a prefix for the single-file runner


@dataclass(frozen=True)
class ShellInvocation:
    """A command for the device shell (every argument quoted); ``executables`` need ``chmod 755`` first
    (a pushed binary), unless the device shares the host's filesystem."""

    command: str
    timeout_s: float
    executables: tuple[str, ...] = ()


@dataclass(frozen=True)
class AppInvocation:
    """One launch of the benchmark app (``docs/ios.md``): its ``benchmark_params.json`` and the app to install."""

    params: Mapping[str, Any]
    timeout_s: float
    app: Path | None = None


Invocation = ShellInvocation | AppInvocation


@dataclass(frozen=True)
class RawOutput:
    """What a device gave back for one invocation: text (shell output or the app's log), the exit code
    when known, and for the app contract its result document and own status/reason."""

    text: str
    exit_code: int | None = None
    payload: Any = None
    status: str | None = None
    reason: str | None = None


class Runner(Protocol):
    """One way of running a benchmark (litert-python, benchmark_model, litert-benchmark, the iOS app)."""

    name: str

    def files(self, task: Task) -> Mapping[str, Path]:
        """Host files the runner needs on the device besides the model (name -> host path)."""

    def invocation(self, task: Task, staged: Staged) -> Invocation:
        """The command (or app parameters) for one repetition."""

    def parse(self, raw: RawOutput, task: Task) -> RunnerOutcome:
        """One repetition's outcome from its raw output (never raises for bad output)."""
