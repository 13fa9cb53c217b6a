"""``harness parse``: detect which tool wrote a capture, parse it, and render the runs as a table.

``parse_text`` never raises on odd text: a capture with no benchmark output at all is one
``incomplete`` run whose ``error`` says so. Times are microseconds in the records and shown
in milliseconds in the table.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from harness.errors import UsageError
from harness.runners.measurement import Measurement
from harness.runners.parsers import benchmark_model, litert_benchmark, tflite_tools, xcode_console
from harness.runners.parsers.unwrap import strip_corpus_header

NO_OUTPUT = "no benchmark output recognised in the text"

_CLASSIC = re.compile(
    r"STARTING!|Inference timings in us|Average inference timings in us|Running benchmark for |"
    r"Initialized session in|^\W*(?:INFO: )?count=\d+ |Peak memory footprint \(MB\)|"
    r"Memory footprint delta from the start of the tool|Profiling Info for|Summary by node type|"
    r"Log parameter values verbosely|Min num runs: \[|Num runs: \[",
    re.M,
)
_LITERT = re.compile(r"BENCHMARK RESULTS|benchmark_litert_model|litert/tools/benchmark")
_IOS = re.compile(r"TFLiteBenchmark\[\d+|TFLiteBenchmark\.app")
_APK = re.compile(r"tflite_BenchmarkModelActivity|tflite_Ben\S*Activity|org\.tensorflow\.lite\.benchmark")
_LABEL_IMAGE = re.compile(r"\blabel_image\b|^\W*(?:INFO: )?average time: ", re.M)
_INFERENCE_DIFF = re.compile(r"inference_profiler_stage|inference_diff|Test run latency:|Num evaluation runs:")
_TFLITE_LOG = re.compile(r"TfLite|tflite|TensorFlow Lite|[Dd]elegate|Node number \d+")


def detect_tool(text: str, source: str = "") -> str:
    """Which tool family wrote ``text``; ``source`` (a file name) only breaks ties for bare runtime logs."""
    body = strip_corpus_header(text)
    if _LITERT.search(body):
        return litert_benchmark.TOOL_PY if litert_benchmark.is_python_tool(body) else litert_benchmark.TOOL_CPP
    if _IOS.search(body):
        return xcode_console.TOOL
    if _APK.search(body):
        return "benchmark_model_apk"
    if _CLASSIC.search(body):
        return "benchmark_model"
    if _INFERENCE_DIFF.search(body):
        return tflite_tools.INFERENCE_DIFF
    if _LABEL_IMAGE.search(body):
        return tflite_tools.LABEL_IMAGE
    if _TFLITE_LOG.search(body):
        name = Path(source).name.lower()
        if "litert" in name:
            return litert_benchmark.TOOL_CPP
        if "benchmark" in name:
            return "benchmark_model"
        return tflite_tools.APP_LOG
    return "unknown"


def _json_document(text: str) -> object | None:
    body = strip_corpus_header(text).strip()
    start = body.find("{")
    if start < 0 or body[start:].rstrip()[-1:] != "}":
        return None
    try:
        return json.loads(body[start:])
    except ValueError:
        return None


def _parse(text: str, source: str) -> list[Measurement]:
    doc = _json_document(text)
    if isinstance(doc, dict) and isinstance(doc.get("latency"), dict):
        return [litert_benchmark.parse_result_json(doc)]
    tool = detect_tool(text, source)
    if tool in (litert_benchmark.TOOL_CPP, litert_benchmark.TOOL_PY):
        runs = litert_benchmark.parse(text)
    elif tool == xcode_console.TOOL:
        runs = xcode_console.parse(text)
    elif tool in ("benchmark_model", "benchmark_model_apk"):
        runs = benchmark_model.parse(text, tool)
    elif tool != "unknown":
        runs = tflite_tools.parse(text, tool)
    else:
        runs = []
    return runs or [Measurement(tool=tool, status="incomplete", error=NO_OUTPUT)]


def parse_text(text: str, source: str = "") -> list[Measurement]:
    """The runs found in one capture, in order; never raises (a parser bug becomes an incomplete run)."""
    try:
        return _parse(text, source)
    except Exception as exc:  # noqa: BLE001 - the contract is "never raise on odd text"
        return [Measurement(tool="unknown", status="incomplete", error=f"parser error: {type(exc).__name__}: {exc}")]


def parse_file(path: str | os.PathLike[str]) -> list[Measurement]:
    """Read a capture (any encoding; bad bytes replaced) and parse it; a missing file is a UsageError."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        hint = "pass a file holding a tool's output"
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}", hint=hint) from exc
    return parse_text(data.decode("utf-8", errors="replace"), source=str(path))


def _ms(us: float | None) -> str:
    if us is None:
        return "-"
    ms = us / 1000.0
    return f"{ms:.3f}" if abs(ms) < 100 else f"{ms:.1f}"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _delegate_text(m: Measurement) -> list[str]:
    out = []
    for d in m.delegates:
        parts = [d.name + (f" ({d.accelerator})" if d.accelerator else ""), d.applied or "outcome not shown"]
        if d.nodes_delegated is not None:
            parts.append(f"{d.nodes_delegated}/{d.nodes_total if d.nodes_total is not None else '?'} nodes")
        if d.partitions is not None:
            parts.append(f"{d.partitions} partition{'s' if d.partitions != 1 else ''}")
        out.append(" ".join(parts[:2]) + (", " + ", ".join(parts[2:]) if parts[2:] else ""))
    return out


def render_table(results: dict[str, list[Measurement]]) -> str:
    """Readable text for ``harness parse`` without ``--json``: one block per file, one row per run."""
    header = ("run", "tool", "status", "init ms", "first ms", "warmup ms", "infer ms")
    header += ("n", "p50 ms", "std ms", "mem MB")
    lines: list[str] = []
    for path, runs in results.items():
        lines.append(f"== {path}")
        rows = [header]
        details: list[list[str]] = []
        for i, m in enumerate(runs, 1):
            st = m.inference
            mem = m.memory
            rows.append(
                (
                    str(i),
                    m.tool,
                    m.status,
                    _ms(m.init_us),
                    _ms(m.first_inference_us),
                    _ms(m.warmup_avg_us),
                    _ms(m.inference_avg_us),
                    str(st.count) if st and st.count is not None else "-",
                    _ms(st.median_us) if st else "-",
                    _ms(st.std_us) if st else "-",
                    "/".join(_mb(v) for v in (mem.init_mb, mem.overall_mb, mem.peak_mb)) if mem else "-",
                )
            )
            extra = []
            if m.error:
                extra.append(f"   #{i} {'error' if m.status == 'failed' else 'why'}: {m.error}")
            for d in _delegate_text(m):
                extra.append(f"   #{i} delegate: {d}")
            top = m.top_ops(3)
            if top:
                shown = ", ".join(
                    f"{o.node_type} {_ms(o.avg_us)} ms" + (f" ({o.percent:g}%)" if o.percent is not None else "")
                    for o in top
                )
                extra.append(f"   #{i} top ops: {shown}")
            details.append(extra)
        widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
        for row in rows:
            lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        for extra in details:
            lines.extend(extra)
        lines.append("")
    if any(r for r in results.values()):
        lines.append("times in ms (records keep us); mem MB = init/overall/peak")
    return "\n".join(lines).rstrip() + "\n"
