"""What a runner makes of one repetition's output: the shared record every runner returns.

A device's output is untrusted: :func:`validate` is the one gate every runner passes its
``ok`` outcome through. A figure of the wrong type, NaN or infinite, negative, beyond what
the case allowed, or a sample count that does not match the runs asked for turns the outcome
into ``failed`` with a reason naming the field, instead of a record that breaks the
statistics, the JSONL writer or the report later.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from harness.errors import one_line
from harness.results import Accelerator, Endpoint, Energy, Repetition

MAX_US = 1e12  # 11.6 days: no timing of one benchmark process is longer (bound used when no timeout is known)
MAX_MB = 1e7  # 10 TiB of memory in MB
MAX_COUNT = 10**9  # runs in one repetition
MAX_OUTPUTS = 1024  # output tensors fingerprinted
MAX_OPS = 5000  # op-profile rows (a node per operator plus a row per op type)
MAX_HEAD = 64  # values per fingerprint (the runner keeps 16)
MAX_VALUES = 4096  # values kept per output tensor for numerics (the runner's --keep-values default)
MAX_TEXT = 300  # characters of a device-given reason or environment value
_TIME_FIELDS = ("init_us", "first_inference_us", "compile_us", "warmup_avg_us", "avg_us", "std_us", "min_us",
                "max_us", "median_us")
_MEMORY_FIELDS = ("peak_rss_mb", "rss_before_init_mb", "rss_after_init_mb", "footprint_init_mb",
                  "footprint_overall_mb", "steady_rss_mb")


@dataclass(frozen=True)
class RunnerOutcome:
    """One repetition's outcome. ``status``: ok | failed | skipped | timeout.

    Memory fields are MB (2^20 bytes): the process's own RSS readings for the Python runner,
    the tool's footprint lines for native tools; ``memory_method`` says which.
    """

    status: str
    reason: str | None
    repetition: Repetition | None = None
    peak_rss_mb: float | None = None
    rss_before_init_mb: float | None = None
    rss_after_init_mb: float | None = None
    footprint_init_mb: float | None = None
    footprint_overall_mb: float | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    outputs: tuple[dict[str, Any], ...] = ()
    delegates: tuple[dict[str, Any], ...] = ()
    ops: tuple[dict[str, Any], ...] = ()
    latency_method: str = ""
    memory_method: str = ""
    steady_rss_mb: float | None = None
    energy: Energy | None = None  # readings the device itself reported (iOS battery), when no sampler ran
    accelerator: Accelerator | None = None  # what actually executed (see harness.runners.accelerator)
    endpoint: Endpoint | None = None  # a case run against an inference endpoint: its network-side figures
    ops_method: str = ""  # how ``ops`` were timed


class BadOutput(ValueError):
    """A device's result breaks the runner contract; the message names the field and what is wrong."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name


def _show(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def finite(field_name: str, value: object) -> float:
    """``value`` as a finite float; :class:`BadOutput` for text, ``true``, lists, NaN and infinities."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadOutput(field_name, f"expected a number, got {type(value).__name__} {_show(value)}")
    if isinstance(value, int) and abs(value) > 1e300 or isinstance(value, float) and not math.isfinite(value):
        raise BadOutput(field_name, f"not a finite number ({_show(value)})")
    return float(value)


def number(field_name: str, value: object, limit: float) -> float:
    """``value`` as a float in ``[0, limit]`` (a time, a size, a count read from a device)."""
    f = finite(field_name, value)
    if f < 0:
        raise BadOutput(field_name, f"negative ({_show(value)})")
    if f > limit:
        raise BadOutput(field_name, f"{_show(value)} is beyond the possible maximum {limit:g}")
    return f


def rejected(exc: BadOutput, delegates: tuple[dict[str, Any], ...] = (),
             accelerator: Accelerator | None = None) -> RunnerOutcome:
    """The ``failed`` outcome of a result that broke the contract (the raw text stays with the orchestrator)."""
    return RunnerOutcome("failed", f"rejected the device's result: {exc}", delegates=delegates,
                         accelerator=accelerator)


def validate(outcome: RunnerOutcome, *, runs: int | None = None, timeout_s: float | None = None) -> RunnerOutcome:
    """The outcome with every figure checked and made a float, or a ``failed`` outcome naming the first bad field.

    ``runs``: the measured runs asked for (per-iteration samples must number exactly that);
    ``timeout_s``: the case's timeout (no timing of the process can be longer). A failed or
    skipped outcome only gets its reason made one bounded line.
    """
    if outcome.status != "ok":
        return replace(outcome, reason=one_line(outcome.reason or "unknown error", MAX_TEXT))
    try:
        return _checked(outcome, runs, timeout_s)
    except BadOutput as exc:
        return rejected(exc, outcome.delegates, outcome.accelerator)


def _checked(outcome: RunnerOutcome, runs: int | None, timeout_s: float | None) -> RunnerOutcome:
    rep = outcome.repetition
    if not isinstance(rep, Repetition):
        raise BadOutput("samples_us", "an ok result without latency figures")
    limit_us = timeout_s * 1e6 if timeout_s else MAX_US
    samples = sequence("samples_us", rep.samples_us, MAX_COUNT)
    if runs is not None and samples and len(samples) != runs:
        raise BadOutput("samples_us", f"{len(samples)} values for {runs} measured runs")
    times = {k: None if getattr(rep, k) is None else number(k, getattr(rep, k), limit_us) for k in _TIME_FIELDS}
    checked = replace(rep, samples_us=tuple(number(f"samples_us[{i}]", v, limit_us) for i, v in enumerate(samples)),
                      count=None if rep.count is None else int(_integer("count", rep.count, MAX_COUNT)), **times)
    # A tool may give only its average (some print no count); what it may not give is nothing, or 0 runs.
    if not checked.samples_us and checked.count == 0:
        raise BadOutput("count", "0 measured runs")
    if not checked.samples_us and checked.center_us is None:
        raise BadOutput("samples_us", "no measured runs (no samples, and no average or median)")
    memory = {k: None if getattr(outcome, k) is None else number(k, getattr(outcome, k), MAX_MB)
              for k in _MEMORY_FIELDS}
    env = outcome.environment
    if not isinstance(env, Mapping):
        raise BadOutput("environment", f"expected a table, got {type(env).__name__}")
    for key, value in env.items():
        if not isinstance(value, str):
            raise BadOutput(str(key), f"expected text, got {type(value).__name__} {_show(value)}")
    outputs = sequence("outputs", outcome.outputs, MAX_OUTPUTS)
    ops = sequence("ops", outcome.ops, MAX_OPS)
    return replace(outcome, repetition=checked, environment={k: one_line(v, MAX_TEXT) for k, v in env.items()},
                   outputs=tuple(_fingerprint(f"outputs[{i}]", o) for i, o in enumerate(outputs)),
                   ops=tuple(op_row(f"ops[{i}]", o, limit_us / 1000.0) for i, o in enumerate(ops)),
                   ops_method=one_line(outcome.ops_method, MAX_TEXT) if outcome.ops_method else "", **memory)


OP_TABLES = ("run_order", "summary", "top_by_time", "top_by_memory")


def op_row(where: str, entry: object, limit_ms: float) -> dict[str, Any]:
    """One op-profile row (``node_type, name, table, avg_ms, percent, times_called, nodes, index``), checked."""
    if not isinstance(entry, Mapping):
        raise BadOutput(where, f"expected a table, got {type(entry).__name__} {_show(entry)}")
    kind = entry.get("node_type")
    if not isinstance(kind, str) or not kind.strip():
        raise BadOutput(f"{where}.node_type", f"expected text, got {_show(kind)}")
    name = entry.get("name")
    if name is not None and not isinstance(name, str):
        raise BadOutput(f"{where}.name", f"expected text, got {_show(name)}")
    table = entry.get("table", "run_order")
    if table not in OP_TABLES:
        raise BadOutput(f"{where}.table", f"{_show(table)} is not one of {', '.join(OP_TABLES)}")
    out: dict[str, Any] = {"node_type": one_line(kind, 80), "name": None if name is None else one_line(name, MAX_TEXT),
                           "table": table}
    out["avg_ms"] = None if entry.get("avg_ms") is None else number(f"{where}.avg_ms", entry["avg_ms"], limit_ms)
    out["percent"] = None if entry.get("percent") is None else number(f"{where}.percent", entry["percent"], 100.5)
    for key in ("times_called", "nodes", "index"):
        out[key] = None if entry.get(key) is None else int(_integer(f"{where}.{key}", entry[key], MAX_COUNT))
    return out


def sequence(field_name: str, value: object, limit: int) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise BadOutput(field_name, f"expected a list, got {type(value).__name__} {_show(value)}")
    if len(value) > limit:
        raise BadOutput(field_name, f"{len(value)} entries, more than the {limit} possible")
    return tuple(value)


def _integer(field_name: str, value: object, limit: float) -> float:
    f = number(field_name, value, limit)
    if not f.is_integer():
        raise BadOutput(field_name, f"expected a whole number, got {_show(value)}")
    return f


def _fingerprint(where: str, entry: object) -> dict[str, Any]:
    """One output tensor's fingerprint (``name, shape, dtype, mean, abs_max, head``); other keys are dropped."""
    if not isinstance(entry, Mapping):
        raise BadOutput(where, f"expected a table, got {type(entry).__name__} {_show(entry)}")
    out: dict[str, Any] = {}
    for key in ("name", "dtype"):
        if entry.get(key) is not None:
            if not isinstance(entry[key], str):
                raise BadOutput(f"{where}.{key}", f"expected text, got {_show(entry[key])}")
            out[key] = one_line(entry[key], MAX_TEXT)
    shape = sequence(f"{where}.shape", entry.get("shape", []), 16)
    out["shape"] = [int(_integer(f"{where}.shape[{i}]", d, MAX_COUNT)) for i, d in enumerate(shape)]
    for key in ("mean", "abs_max"):
        out[key] = None if entry.get(key) is None else finite(f"{where}.{key}", entry[key])
    if out["abs_max"] is not None and out["abs_max"] < 0:
        raise BadOutput(f"{where}.abs_max", f"negative ({out['abs_max']})")
    for key, limit in (("head", MAX_HEAD), ("values", MAX_VALUES)):  # null: the runtime gave NaN or infinity
        listed = sequence(f"{where}.{key}", entry.get(key) or [], limit)
        out[key] = [None if v is None else finite(f"{where}.{key}[{i}]", v) for i, v in enumerate(listed)]
    for key in ("stride", "argmax", "nonfinite"):
        if entry.get(key) is not None:
            out[key] = int(_integer(f"{where}.{key}", entry[key], MAX_COUNT * 1000))
    return out
