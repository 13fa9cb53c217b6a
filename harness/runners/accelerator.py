"""Accelerator truth: what actually executed, read from the runtime's own log lines and the tools' output.

Two sources, one verdict (:class:`harness.results.Accelerator`):

- LiteRT's NPU path (host runner, and LiteRT's ``benchmark_model`` on devices) logs how its
  compiler plugin partitioned each subgraph (``Partitioned subgraph<0>, selected 97 ops, from a
  total of 97 ops. resulted in 1 partitions.``), whether the plugin was applied (``1 compiler
  plugins were applied successfully``) and why not (``Exception in compilation: ...``,
  ``Failed to load plugin ...``); the host runner adds ``is_fully_accelerated()``.
- TFLite tools' delegate lines, already read by :mod:`harness.runners.delegates` into
  ``{name, applied, nodes_delegated, nodes_total, partitions}`` entries.

The verdict: ``full``; ``partial`` (k of n ops in p partitions, the rest on CPU); ``fallback``
(the accelerator took nothing and the figures are CPU figures); ``failed`` (the model did not
run: the first error line is the reason). A plugin that is not there at all (missing library)
makes the case ``skipped`` instead: the accelerator is not available on this device.

Every input here is untrusted (a device's output): malformed entries are ignored or refused with
:class:`~harness.runners.outcome.BadOutput`, text is bounded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from harness.errors import one_line
from harness.results import Accelerator, Repetition
from harness.runners.parsers.delegates import canonical

METHOD_LOG = "LiteRT runtime log lines (fd 2 captured while the model was created): partitions, plugin applied, errors"
METHOD_TOOL = "the tool's delegate lines"
METHOD_TOOL_LOG = "LiteRT runtime log lines in the tool's output"
MAX_EVIDENCE = 16
MAX_LINE = 300
MAX_LOG = 2000  # lines read from a device's log
# Delegates that are accelerators (a verdict is meaningful); cpu is the reference itself.
ACCELERATED = ("xnnpack", "gpu", "nnapi", "hexagon", "coreml", "npu")

_PARTITIONED = re.compile(
    r"Partitioned subgraph<(?P<sg>\d+)>, selected (?P<k>\d+) ops, from a total of (?P<n>\d+) ops\. "
    r"resulted in (?P<p>\d+) partitions")
_APPLIED = re.compile(r"(?P<n>\d+) compiler plugins were applied successfully")
_PLUGIN_MISSING = re.compile(r"Failed to load plugin at: |No compiler plugin found|Could not load shared library")
_ERROR = re.compile(r"^(?:ERROR|E\d*|F\d*)\b|Exception in compilation|Failed to apply|failed to apply|Error: ")
_PRECOMPILED = re.compile(r"the model is pre-compiled|Openvino InvocationContext Initialize SUCCESS")
_PREFIX = re.compile(r"^(?:INFO|WARNING|ERROR|VERBOSE|DEBUG):\s*(?:\[[^\]]*\]\s*)?")
_PATH = re.compile(r"(?<![\w.])(?:/[\w.+-]+){2,}/(?P<base>[\w.+-]+)")


def _text(line: object) -> str | None:
    """One log entry as text: ``[at_us, text]`` from the host runner, or a bare string."""
    if isinstance(line, list | tuple) and len(line) == 2:
        line = line[1]
    return line[:2000] if isinstance(line, str) else None


def _clean(line: str) -> str:
    """A log line for a reason: no level/source prefix, long paths cut to their file name, one line."""
    return one_line(_PATH.sub(lambda m: ".../" + m.group("base"), _PREFIX.sub("", line.strip())), MAX_LINE)


def first_error(lines: Sequence[str]) -> str | None:
    """The runtime's first error, with its innermost cause when it spans lines (``Cannot load library ...``)."""
    for i, line in enumerate(lines):
        if not _ERROR.search(line) and not _PLUGIN_MISSING.search(line):
            continue
        if "Plugin errs:" in line or line.rstrip().endswith("]"):  # a summary pointing back at the real error
            continue
        cause = None
        for follow in lines[i + 1:i + 12]:
            stripped = follow.strip(" └\t")
            if not stripped:
                continue
            if _PREFIX.match(follow):  # the next log statement: the error's own text has ended
                break
            if not stripped.startswith("Exception from"):
                cause = stripped
        first = _clean(line)
        return one_line(f"{first} ... {_clean(cause)}", MAX_LINE) if cause and cause not in line else first
    return None


def _evidence(lines: Iterable[str]) -> tuple[str, ...]:
    keep = [_clean(t) for t in lines if _PARTITIONED.search(t) or _APPLIED.search(t) or _ERROR.search(t)
            or _PLUGIN_MISSING.search(t) or _PRECOMPILED.search(t) or "Compiling partition" in t]
    return tuple(dict.fromkeys(keep))[:MAX_EVIDENCE]


def compile_us(log: Sequence[object]) -> float | None:
    """JIT compile time: from the first compiler-plugin line to ``compiler plugins were applied`` (µs).

    The stamps are when the line reached the runner's reader process, µs since capture started.
    """
    start = end = None
    for entry in log[:MAX_LOG]:
        if not (isinstance(entry, list | tuple) and len(entry) == 2):
            continue
        at, text = entry
        if isinstance(at, bool) or not isinstance(at, int | float) or not isinstance(text, str):
            continue
        if start is None and "compiler_plugin" in text:
            start = float(at)
        if _APPLIED.search(text):
            end = float(at)
    return end - start if start is not None and end is not None and end >= start else None


def from_log(requested: str, lines: Sequence[str], *, ran: bool, fully_accelerated: bool | None,
             backend: str | None = None, compile_mode: str | None = None,
             failure: str | None = None, method: str = METHOD_LOG) -> tuple[Accelerator, str | None]:
    """The verdict from LiteRT's log lines; second value: why the accelerator is *unavailable* (skip), or None.

    ``ran``: the model ran (the case has figures); ``failure``: the runner's reason when it did not.
    """
    parts = [m for m in (_PARTITIONED.search(t) for t in lines) if m]
    selected = sum(int(m["k"]) for m in parts) if parts else None
    total = sum(int(m["n"]) for m in parts) if parts else None
    partitions = sum(int(m["p"]) for m in parts) if parts else None
    applied = [int(m["n"]) for m in (_APPLIED.search(t) for t in lines) if m]
    precompiled = any(_PRECOMPILED.search(t) for t in lines)
    plugin_ran = (applied and applied[-1] > 0) or (precompiled and compile_mode == "aot")
    error = first_error(lines)
    common = {"requested": requested, "ops_total": total, "backend": backend, "compile": compile_mode,
              "method": method, "evidence": _evidence(lines)}
    missing = any(_PLUGIN_MISSING.search(t) for t in lines) and not parts and not plugin_ran
    if missing:
        why = error or "the compiler plugin could not be loaded"
        return Accelerator(verdict="fallback" if ran else "failed", ops_accelerated=0, partitions=0,
                           reason=why, **common), f"the {requested} accelerator is not available here: {why}"
    if not ran:
        return Accelerator(verdict="failed", ops_accelerated=selected if plugin_ran else 0,
                           partitions=partitions if plugin_ran else 0,
                           reason=one_line(error or failure or "the model did not run", MAX_LINE), **common), None
    # is_fully_accelerated() alone proves nothing: it is also True when the plugin was not applied and XNNPACK
    # (the CPU accelerator) took every op. The plugin must have been applied and have taken the ops.
    if plugin_ran and total and selected == total:
        return Accelerator(verdict="full", ops_accelerated=total, partitions=partitions, **common), None
    if plugin_ran and selected:
        why = f"{total - selected} of {total} ops stay on CPU" if total is not None else None
        return Accelerator(verdict="partial", ops_accelerated=selected, partitions=partitions, reason=why,
                           **common), None
    if plugin_ran and not parts and fully_accelerated:  # applied, but the partition lines were not captured
        return Accelerator(verdict="full", **common), None
    if parts and selected:
        what = f"the plugin selected {selected} of {total} ops in {partitions} partitions, then"
        why = f"{what}: {error}" if error else f"{what} was not applied"
    else:
        why = error or ("the plugin selected no op" if parts else "the runtime did not report a partition")
    return Accelerator(verdict="fallback", ops_accelerated=0, partitions=0, reason=one_line(why, MAX_LINE),
                       **common), None


def from_payload(info: object, *, ran: bool, failure: str | None = None) -> tuple[Accelerator | None, str | None]:
    """The host runner's ``accelerator`` entry (untrusted JSON) read into a verdict; (None, None) when absent."""
    if not isinstance(info, Mapping):
        return None, None
    log = info.get("log")
    entries = log[:MAX_LOG] if isinstance(log, list) else []
    lines = [t for t in (_text(e) for e in entries) if t is not None]
    requested = info.get("requested")
    backend, mode = info.get("backend"), info.get("compile")
    return from_log(
        requested if isinstance(requested, str) and requested in ACCELERATED else "npu", lines, ran=ran,
        fully_accelerated=info.get("fully_accelerated") is True,
        backend=one_line(backend, 20) if isinstance(backend, str) else None,
        compile_mode=mode if mode in ("jit", "aot") else None, failure=failure)


def payload_compile_us(info: object) -> float | None:
    """Compile time of one repetition: the runner's own figure (AOT) or read from the log's stamps (JIT)."""
    if not isinstance(info, Mapping):
        return None
    given = info.get("compile_us")
    if isinstance(given, int | float) and not isinstance(given, bool):
        return float(given)
    log = info.get("log")
    return compile_us(log) if isinstance(log, list) else None


def from_delegates(requested: str, delegates: Sequence[Mapping[str, Any]], text: str = "",
                   *, ran: bool = True, failure: str | None = None) -> Accelerator | None:
    """The verdict from a native tool's delegate entries (and LiteRT log lines in its output, for ``npu``).

    None when the delegate is not an accelerator or the output says nothing about it: no verdict
    is invented (the gate treats a missing verdict as not shown to run on the accelerator).
    """
    if requested not in ACCELERATED:
        return None
    lines = text.splitlines()[:MAX_LOG] if text else []
    if requested == "npu" and any(_PARTITIONED.search(t) for t in lines):
        verdict, _ = from_log(requested, lines, ran=ran, fully_accelerated=False, failure=failure,
                              method=METHOD_TOOL_LOG)
        return verdict
    names = {"npu": ("npu", "external", "nnapi")}.get(requested, (requested,))
    entry = next((d for d in delegates if isinstance(d, Mapping) and isinstance(d.get("name"), str)
                  and canonical(d["name"]) in names), None)
    if entry is None or entry.get("applied") not in ("full", "partial", "none", "failed"):
        return None
    done, total, parts = (_count(entry.get(k)) for k in ("nodes_delegated", "nodes_total", "partitions"))
    applied = entry["applied"]
    common = {"requested": requested, "ops_total": total, "partitions": parts, "method": METHOD_TOOL,
              "backend": one_line(entry["accelerator"], 40) if isinstance(entry.get("accelerator"), str) else None}
    if applied == "failed" or not ran:
        why = failure or f"{entry['name']} delegate failed to apply"
        return Accelerator(verdict="failed", ops_accelerated=done, reason=one_line(why, MAX_LINE), **common)
    if applied == "full":
        return Accelerator(verdict="full", ops_accelerated=done if done is not None else total, **common)
    if applied == "partial":
        return Accelerator(verdict="partial", ops_accelerated=done, **common)
    return Accelerator(verdict="fallback", ops_accelerated=0, reason=f"the tool says the {entry['name']} delegate "
                       "was not applied: the figures are CPU figures", **common)


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9 else None


def with_compile(repetition: Repetition, info: object) -> Repetition:
    """``repetition`` with its compile time from the runner's accelerator entry (when there is one)."""
    from dataclasses import replace

    value = payload_compile_us(info)
    return replace(repetition, compile_us=value) if value is not None else repetition
