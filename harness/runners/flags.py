"""Command lines for the benchmark tools, built from one table of flags per tool.

Every value is validated here (unknown option names are a :class:`UsageError` listing the
allowed ones) and every argument is quoted by :func:`to_shell` for the device shell. A
delegate the device profile does not list raises :class:`DelegateUnavailable`, which the
orchestrator records as a ``skipped`` case rather than a failed run.
"""

from __future__ import annotations

import shlex
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from harness.errors import DelegateUnavailable, UsageError

DELEGATES = ("cpu", "xnnpack", "gpu", "nnapi", "hexagon", "coreml", "external")
LITERT_DELEGATES = ("cpu", "gpu", "npu")
IOS_DELEGATES = ("cpu", "xnnpack", "gpu", "coreml")


@dataclass(frozen=True)
class Flag:
    """One option: the tool's flag name, its value kind, and the delegate it belongs to (None: any)."""

    flag: str
    kind: str  # "bool" | "int" | "float" | "str" | "path" | "choice"
    delegate: str | None = None
    choices: tuple[str, ...] = ()


#: Options of TFLite ``benchmark_model`` (CLI, Android APK args, iOS app params), by harness name.
BENCHMARK_MODEL_FLAGS: dict[str, Flag] = {
    "min_secs": Flag("min_secs", "float"),
    "max_secs": Flag("max_secs", "float"),
    "warmup_min_secs": Flag("warmup_min_secs", "float"),
    "run_delay": Flag("run_delay", "float"),
    "enable_op_profiling": Flag("enable_op_profiling", "bool"),
    "report_peak_memory_footprint": Flag("report_peak_memory_footprint", "bool"),
    "memory_footprint_check_interval_ms": Flag("memory_footprint_check_interval_ms", "int"),
    "signature_to_run_for": Flag("signature_to_run_for", "str"),
    "nnapi_accelerator_name": Flag("nnapi_accelerator_name", "str", "nnapi"),
    "nnapi_allow_fp16": Flag("nnapi_allow_fp16", "bool", "nnapi"),
    "nnapi_execution_preference": Flag(
        "nnapi_execution_preference", "choice", "nnapi", ("fast_single_answer", "sustained_speed", "low_power")
    ),
    "gpu_precision_loss_allowed": Flag("gpu_precision_loss_allowed", "bool", "gpu"),
    "gpu_backend": Flag("gpu_backend", "choice", "gpu", ("cl", "gl")),
    "gpu_wait_type": Flag("gpu_wait_type", "choice", "gpu", ("passive", "active", "do_not_wait", "aggressive")),
    "hexagon_lib_path": Flag("hexagon_lib_path", "path", "hexagon"),
    "coreml_version": Flag("coreml_version", "int", "coreml"),
    "external_delegate_path": Flag("external_delegate_path", "path", "external"),
    "external_delegate_options": Flag("external_delegate_options", "str", "external"),
}

#: Options of LiteRT's C++ ``benchmark_model`` (CompiledModel API).
LITERT_FLAGS: dict[str, Flag] = {
    "min_secs": Flag("min_secs", "float"),
    "max_secs": Flag("max_secs", "float"),
    "run_delay": Flag("run_delay", "float"),
    "report_peak_memory_footprint": Flag("report_peak_memory_footprint", "bool"),
    "memory_footprint_check_interval_ms": Flag("memory_footprint_check_interval_ms", "int"),
    "signature_to_run_for": Flag("signature_to_run_for", "str"),
    "require_full_delegation": Flag("require_full_delegation", "bool"),
    "gpu_backend": Flag("gpu_backend", "str", "gpu"),
    "allow_fp16": Flag("allow_fp16", "bool"),
    "dispatch_library_path": Flag("dispatch_library_path", "path", "npu"),
    "compiler_plugin_library_path": Flag("compiler_plugin_library_path", "path", "npu"),
    "use_profiler": Flag("use_profiler", "bool"),
}

#: Options of Google's Python ``litert-benchmark`` (argparse; booleans are bare switches).
LITERT_PY_FLAGS: dict[str, Flag] = {
    "signature_to_run_for": Flag("signature", "str"),
    "require_full_delegation": Flag("require_full_delegation", "bool"),
    "dispatch_library_path": Flag("dispatch_library_path", "path", "npu"),
    "compiler_plugin_library_path": Flag("compiler_plugin_path", "path", "npu"),
    "result_json": Flag("result_json", "path"),
}

_BENCHMARK_MODEL_DELEGATE = {
    "cpu": ("--use_xnnpack=false",),
    "xnnpack": ("--use_xnnpack=true",),
    "gpu": ("--use_gpu=true",),
    "nnapi": ("--use_nnapi=true",),
    "hexagon": ("--use_hexagon=true",),
    "coreml": ("--use_coreml=true",),
    "external": (),
}


def _render(name: str, spec: Flag, value: object) -> str:
    """The option's value as the tool expects it, or a UsageError naming the option."""
    if spec.kind == "bool":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return "true" if value.lower() in ("true", "1") else "false"
    elif spec.kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    elif spec.kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return f"{float(value):g}"
    elif spec.kind == "choice":
        if isinstance(value, str) and value in spec.choices:
            return value
        raise UsageError(f"option {name}={value!r}: expected one of {', '.join(spec.choices)}")
    elif isinstance(value, str) and value and "\x00" not in value:
        return value
    raise UsageError(f"option {name}={value!r}: expected a {spec.kind} value")


def _check_delegate(delegate: str, allowed: Sequence[str], capabilities: Collection[str] | None, tool: str) -> str:
    name = delegate.strip().lower()
    if name not in allowed:
        raise UsageError(f"unknown delegate {delegate!r} for {tool}", hint=f"use one of: {', '.join(allowed)}")
    if name != "cpu" and capabilities is not None and name not in {c.strip().lower() for c in capabilities}:
        caps = ", ".join(sorted(capabilities)) or "none"
        raise DelegateUnavailable(
            f"delegate {name} is not available on this device (profile lists: {caps})",
            hint="add it to the profile's delegates if the device really has it",
        )
    return name


def _check_counts(threads: int, warmup_runs: int, num_runs: int) -> None:
    def bad(value: object) -> bool:
        return not isinstance(value, int) or isinstance(value, bool)

    if bad(threads) or not (threads >= 1 or threads == -1):
        raise UsageError(f"threads={threads!r}: expected an integer >= 1 (or -1 for the tool's default)")
    if bad(warmup_runs) or warmup_runs < 0:
        raise UsageError(f"warmup_runs={warmup_runs!r}: expected an integer >= 0")
    if bad(num_runs) or num_runs < 1:
        raise UsageError(f"num_runs={num_runs!r}: expected an integer >= 1")


def _options(
    options: Mapping[str, object] | None, table: Mapping[str, Flag], delegate: str, tool: str
) -> list[tuple[str, Flag, str]]:
    out = []
    for name, value in (options or {}).items():
        spec = table.get(name)
        if spec is None:
            raise UsageError(f"unknown option {name!r} for {tool}", hint=f"allowed: {', '.join(sorted(table))}")
        if spec.delegate is not None and spec.delegate != delegate:
            raise UsageError(f"option {name} only applies to delegate {spec.delegate}, not {delegate}")
        out.append((name, spec, _render(name, spec, value)))
    return out


def _graph_argv(tool: str, model: str, threads: int, warmup_runs: int, num_runs: int) -> list[str]:
    """The flags both C++ tools (TFLite and LiteRT ``benchmark_model``) share, in their ``--flag=value`` form."""
    return [tool, f"--graph={model}", f"--num_threads={threads}", f"--warmup_runs={warmup_runs}",
            f"--num_runs={num_runs}"]


def build_benchmark_model_argv(
    tool: str,
    model: str,
    *,
    delegate: str,
    threads: int,
    warmup_runs: int,
    num_runs: int,
    options: Mapping[str, object] | None = None,
    capabilities: Collection[str] | None = None,
) -> list[str]:
    """argv for TFLite ``benchmark_model`` at path ``tool`` (also the APK's ``--es args`` content).

    ``cpu`` means TFLite's own kernels (``--use_xnnpack=false``); ``external`` needs the
    ``external_delegate_path`` option. Raises UsageError for bad values or unknown options,
    DelegateUnavailable when ``capabilities`` (the device profile's delegates) lacks the delegate.
    """
    name = _check_delegate(delegate, DELEGATES, capabilities, "benchmark_model")
    _check_counts(threads, warmup_runs, num_runs)
    opts = _options(options, BENCHMARK_MODEL_FLAGS, name, "benchmark_model")
    if name == "external" and not any(n == "external_delegate_path" for n, _, _ in opts):
        raise UsageError("delegate external needs the external_delegate_path option")
    argv = _graph_argv(tool, model, threads, warmup_runs, num_runs) + list(_BENCHMARK_MODEL_DELEGATE[name])
    argv += [f"--{spec.flag}={value}" for _, spec, value in opts]
    return argv


def build_litert_argv(
    tool: str,
    model: str,
    *,
    delegate: str,
    threads: int,
    warmup_runs: int,
    num_runs: int,
    options: Mapping[str, object] | None = None,
    capabilities: Collection[str] | None = None,
    python: bool | None = None,
) -> list[str]:
    """argv for LiteRT's C++ ``benchmark_model`` or, when ``python`` (default: ``tool`` names
    ``litert-benchmark``), Google's Python ``litert-benchmark``. Delegates: cpu, gpu, npu."""
    name = _check_delegate(delegate, LITERT_DELEGATES, capabilities, "litert")
    _check_counts(threads, warmup_runs, num_runs)
    if python is None:
        python = "litert-benchmark" in tool.replace("\\", "/").rsplit("/", 1)[-1]
    if python:
        opts = _options(options, LITERT_PY_FLAGS, name, "litert-benchmark")
        argv = [tool, "--model", model, "--num_threads", str(threads)]
        argv += ["--warmup_runs", str(warmup_runs), "--num_runs", str(num_runs)]
        argv += {"cpu": [], "gpu": ["--use_gpu"], "npu": ["--use_npu"]}[name]
        for _, spec, value in opts:
            if spec.kind == "bool":
                argv += [f"--{spec.flag}"] if value == "true" else []
            else:
                argv += [f"--{spec.flag}", value]
        return argv
    opts = _options(options, LITERT_FLAGS, name, "litert benchmark_model")
    argv = _graph_argv(tool, model, threads, warmup_runs, num_runs)
    argv += {
        "cpu": ["--use_cpu=true", "--use_gpu=false", "--use_npu=false"],
        "gpu": ["--use_gpu=true"],
        "npu": ["--use_npu=true"],
    }[name]
    argv += [f"--{spec.flag}={value}" for _, spec, value in opts]
    return argv


def app_params(delegate: str, threads: int, warmup_runs: int, num_runs: int) -> dict[str, int | bool]:
    """``benchmark_params.json`` for the benchmark app (``docs/ios.md``): TFLite benchmark flags as JSON.

    The harness adds ``graph`` (the model's path relative to ``Documents/``) when it pushes the model.
    A delegate that does not exist on iOS is :class:`DelegateUnavailable` (the case is skipped).
    """
    name = delegate.strip().lower()
    if name not in IOS_DELEGATES:
        raise DelegateUnavailable(f"delegate {delegate} does not exist on iOS",
                                  hint=f"use one of: {', '.join(IOS_DELEGATES)}")
    _check_counts(threads, warmup_runs, num_runs)
    return {
        "num_threads": threads, "warmup_runs": warmup_runs, "num_runs": num_runs,
        "use_xnnpack": name == "xnnpack", "use_gpu": name == "gpu", "use_coreml": name == "coreml",
    }


def to_shell(argv: Sequence[str]) -> str:
    """One device-shell command line with every argument ``shlex.quote`` d."""
    return " ".join(shlex.quote(str(a)) for a in argv)
