"""Parse the iOS TFLite benchmark app (``TFLiteBenchmark``) as it appears in the Xcode console.

The app runs the same benchmark core as ``benchmark_model``, so the lines are the classic
ones; Xcode shows most of them twice (NSLog-prefixed and plain ``INFO:``), which is
collapsed first. ``Benchmark name`` and ``Graph`` (the bundle path) land in ``params``.
"""

from __future__ import annotations

from harness.runners.measurement import Measurement
from harness.runners.parsers.benchmark_model import scan
from harness.runners.parsers.unwrap import collapse_console_duplicates, unwrap

TOOL = "ios_benchmark_app"


def parse(text: str) -> list[Measurement]:
    """Every benchmark run in an Xcode console capture of the iOS benchmark app."""
    return scan(collapse_console_duplicates(unwrap(text)), TOOL)
