"""Other TFLite tools whose logs carry delegate outcomes and one timing: ``label_image``,
the ``inference_diff`` evaluation tool, and app logs (Java exceptions, native aborts).

They share the benchmark run scanner (delegate and error lines are the same runtime's);
only their result lines differ.
"""

from __future__ import annotations

import re

from harness.runners.measurement import Measurement
from harness.runners.parsers.benchmark_model import RunBuilder, scan
from harness.runners.parsers.textnum import NUM, ms_to_us, to_float, to_int
from harness.runners.parsers.unwrap import Line, unwrap

LABEL_IMAGE = "label_image"
INFERENCE_DIFF = "inference_diff"
APP_LOG = "tflite_app"

_AVG_TIME = re.compile(rf"^average time:\s*(?P<v>{NUM})\s*ms")
_DIFF_LATENCY = re.compile(
    rf"^(?P<which>Reference|Test) run latency:\s*avg=(?P<avg>{NUM})\s*\(us\)(?:,\s*std_dev=(?P<std>{NUM})\s*\(us\))?"
)
_DIFF_RUNS = re.compile(r"^Num evaluation runs:\s*(?P<n>\d+)")


def _extra(run: RunBuilder, line: Line) -> bool:
    text = line.text
    m = _AVG_TIME.match(text)
    if m and to_float(m.group("v")) is not None:
        run.block["inference"] = ms_to_us(to_float(m.group("v")))  # type: ignore[assignment]
        run.final = True
        return True
    m = _DIFF_RUNS.match(text)
    if m:
        run.params.setdefault("num_evaluation_runs", m.group("n"))
        run.block_stats["count"] = float(to_int(m.group("n")) or 0)
        return True
    m = _DIFF_LATENCY.match(text)
    if m:
        avg, std = to_float(m.group("avg")), to_float(m.group("std"))
        if m.group("which") == "Reference":
            run.params["reference_avg_us"] = m.group("avg")
        elif avg is not None:
            run.block["inference"] = avg
            run.block_stats["avg"] = avg
            if std is not None:
                run.block_stats["std"] = std
            run.final = True
        return True
    return False


def parse(text: str, tool: str = APP_LOG) -> list[Measurement]:
    """Runs in a ``label_image`` / ``inference_diff`` / app log capture, labelled ``tool``."""
    return scan(unwrap(text), tool, _extra)
