"""Parse LiteRT's benchmark tools: the C++ ``benchmark_model`` (CompiledModel API) and Google's Python
``litert-benchmark`` (text and ``--result_json``).

Both end with a ``BENCHMARK RESULTS`` block in **milliseconds** (``Inference (std)`` has no
unit in C++ and is ms too); values are converted to microseconds. The C++ tool may also
print the classic ``count=`` lines, which are exact microseconds and win over the rounded
block values. File:line tags (``[benchmark_litert_model.h:92]``) move between versions, so
labels are matched on their text.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from harness.runners.measurement import DelegateOutcome, InferenceStats, Measurement
from harness.runners.parsers.benchmark_model import RunBuilder, RunScanner
from harness.runners.parsers.textnum import NUM, ms_to_us, to_float, to_int
from harness.runners.parsers.unwrap import Line, unwrap

TOOL_CPP = "litert_benchmark_model"
TOOL_PY = "litert-benchmark"

_HEADER = re.compile(r"^=*\s*BENCHMARK RESULTS\s*=*$")
_RULE = re.compile(r"^=+$")
_MS = rf"(?P<v>{NUM})\s*(?:ms)?(?:\s*\((?P<n>\d+) runs\))?"
_BLOCK = (
    (re.compile(rf"^Model initialization:\s*{_MS}"), "init"),
    (re.compile(rf"^Warmup \(first\):\s*{_MS}"), "first"),
    (re.compile(rf"^Warmup \(avg\):\s*{_MS}"), "warmup"),
    (re.compile(rf"^Inference \(avg\):\s*{_MS}"), "inference"),
    (re.compile(rf"^Inference \((?P<k>min|max|median|std|p5|p95)\):\s*{_MS}"), "stat"),
)
_MEMORY = (
    (re.compile(rf"^Init footprint:\s*(?P<v>{NUM})\s*MB"), "init"),
    (re.compile(rf"^Overall footprint:\s*(?P<v>{NUM})\s*MB"), "overall"),
    (re.compile(rf"^Peak memory(?: usage)?:\s*(?P<v>{NUM})\s*MB"), "peak"),
)
_THROUGHPUT = re.compile(rf"^Throughput:\s*(?P<v>{NUM})\s*MB/s")
_SIGNATURE = re.compile(r"^Signature name:\s*(?P<v>\S.*)$")
_FULLY = re.compile(r"^Fully accelerated:\s*(?P<v>True|False)")
_PY_PARAM = re.compile(
    r"^(?P<k>Model|Model size|Accelerators|Num threads|Warmup runs|Benchmark runs|Signatures|Using signature|"
    r"Dispatch lib|Compiler plugin):\s+(?P<v>.*)$"
)


class _LiteRtLines:
    """Extra line handler for the run scanner: the results block and the Python tool's log lines."""

    def __init__(self) -> None:
        self.in_block = False

    def __call__(self, run: RunBuilder, line: Line) -> bool:
        text = line.text
        if _HEADER.match(text) and "BENCHMARK RESULTS" in text:
            self.in_block = True
            return True
        m = _PY_PARAM.match(text) if line.wrapper == "pylog" else None
        if m:
            run.params.setdefault(m.group("k"), m.group("v").strip())
            if m.group("k") == "Accelerators":
                for acc in re.split(r"[|,\s]+", m.group("v")):
                    if acc.upper() in ("GPU", "NPU"):
                        run.delegates.request(acc.lower())
            return True
        m = _FULLY.match(text)
        if m:
            run.params["fully_accelerated"] = m.group("v")
            return True
        if not self.in_block:
            return False
        if _RULE.match(text):
            self.in_block = not run.block  # the Python tool's rule under the title opens, a later one closes
            return True
        return self._block_line(run, text)

    def _block_line(self, run: RunBuilder, text: str) -> bool:
        m = _SIGNATURE.match(text)
        if m:
            run.params.setdefault("signature", m.group("v").strip())
            return True
        for pattern, key in _BLOCK:
            m = pattern.match(text)
            if not m:
                continue
            value = ms_to_us(to_float(m.group("v")))
            if value is None:
                return True
            if key == "stat":
                run.block_stats[m.group("k")] = value
            else:
                run.block[key] = value
                if key == "inference":
                    run.block_stats["avg"] = value
                    run.final = True
                if m.group("n") is not None:
                    target = "count" if key == "inference" else f"{key}_runs"
                    if key == "inference":
                        run.block_stats["count"] = float(m.group("n"))
                    else:
                        run.params.setdefault(target, m.group("n"))
            return True
        for pattern, key in _MEMORY:
            m = pattern.match(text)
            if m:
                value = to_float(m.group("v"))
                if value is not None:
                    run.memory[key] = value
                return True
        m = _THROUGHPUT.match(text)
        if m:
            run.params.setdefault("throughput_mb_s", m.group("v"))
            return True
        if text.startswith("No inference runs were performed"):
            run.error(text)
            return True
        return False


class _LiteRtScanner(RunScanner):
    def __init__(self, tool: str) -> None:
        self.handler = _LiteRtLines()
        super().__init__(tool, self._extra)

    def _extra(self, run: RunBuilder, line: Line) -> bool:
        text = line.text
        if _HEADER.match(text) and "BENCHMARK RESULTS" in text and run.block:
            run = self.new_run()
        elif _SIGNATURE.match(text) and "inference" in run.block:
            run = self.new_run()
            self.handler.in_block = True
        return self.handler(run, line)


def is_python_tool(text: str) -> bool:
    """The Python ``litert-benchmark`` logs through ``logging`` as ``benchmark_litert_model:``."""
    return bool(
        re.search(r"\b(?:INFO|ERROR|WARNING|DEBUG|CRITICAL) benchmark_litert_model:", text)
        or re.search(r"^Inference \(median\):", text, re.M)
        or re.search(r"^Fully accelerated:\s+(?:True|False)\s*$", text, re.M)
    )


def parse(text: str) -> list[Measurement]:
    """Every LiteRT benchmark run in ``text`` (C++ tool or Python tool)."""
    tool = TOOL_PY if is_python_tool(text) else TOOL_CPP
    scanner = _LiteRtScanner(tool)
    for line in unwrap(text):
        scanner.feed(line)
    runs = scanner.finish()
    return [_with_full_acceleration(m) for m in runs]


def _with_full_acceleration(m: Measurement) -> Measurement:
    """``Fully accelerated: True/False`` says how the GPU/NPU accelerator took the graph."""
    fully = m.params.get("fully_accelerated")
    if fully is None:
        return m
    delegates = tuple(
        DelegateOutcome(
            name=d.name,
            accelerator=d.accelerator,
            applied=d.applied or ("full" if fully == "True" else "partial"),
            nodes_delegated=d.nodes_delegated,
            nodes_total=d.nodes_total,
            partitions=d.partitions,
        )
        if d.name in ("gpu", "npu")
        else d
        for d in m.delegates
    )
    return dataclasses.replace(m, delegates=delegates)


def _ms(latency: dict[str, Any], key: str) -> float | None:
    return ms_to_us(to_float(latency.get(key))) if isinstance(latency, dict) else None


def parse_result_json(data: object) -> Measurement:
    """One ``litert-benchmark --result_json`` document (``latency`` in ms) as a Measurement."""
    if not isinstance(data, dict):
        return Measurement(tool=TOOL_PY, status="incomplete", error="result JSON is not an object")
    latency = data.get("latency") if isinstance(data.get("latency"), dict) else {}
    assert isinstance(latency, dict)
    avg = _ms(latency, "avg_ms")
    stats = None
    if avg is not None:
        stats = InferenceStats(
            count=to_int(latency.get("num_runs")),
            min_us=_ms(latency, "min_ms"),
            max_us=_ms(latency, "max_ms"),
            avg_us=avg,
            std_us=_ms(latency, "std_ms"),
            p5_us=_ms(latency, "p5_ms"),
            median_us=_ms(latency, "median_ms"),
            p95_us=_ms(latency, "p95_ms"),
        )
    params = {
        k: (", ".join(map(str, v)) if isinstance(v, list) else str(v))
        for k, v in data.items()
        if k != "latency" and isinstance(v, (str, int, float, bool, list))
    }
    if "num_warmup_runs" in latency:
        params["warmup_runs"] = str(latency["num_warmup_runs"])
    accelerators = data.get("accelerators") if isinstance(data.get("accelerators"), list) else []
    fully = data.get("fully_accelerated")
    delegates = tuple(
        DelegateOutcome(
            name=str(acc).lower(),
            applied=None if not isinstance(fully, bool) else ("full" if fully else "partial"),
        )
        for acc in accelerators or ()
        if str(acc).upper() in ("GPU", "NPU")
    )
    return Measurement(
        tool=TOOL_PY,
        status="ok" if avg is not None else "incomplete",
        error=None if avg is not None else "no latency.avg_ms in result JSON",
        init_us=_ms(latency, "init_ms"),
        first_inference_us=_ms(latency, "warmup_first_ms"),
        warmup_avg_us=_ms(latency, "warmup_avg_ms"),
        inference_avg_us=avg,
        inference=stats,
        delegates=delegates,
        params=params,
    )
