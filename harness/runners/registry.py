"""The runners by name (what a plan's job names and a result records)."""

from __future__ import annotations

from harness.runners.base import Runner
from harness.runners.benchmark_model import BenchmarkModelRunner
from harness.runners.endpoint import EndpointRunner
from harness.runners.ios_app import AppRunner
from harness.runners.litert_benchmark import LiteRtBenchmarkRunner
from harness.runners.litert_python import LiteRtPythonRunner

RUNNERS: dict[str, Runner] = {r.name: r for r in (LiteRtPythonRunner(), BenchmarkModelRunner(),
                                                  LiteRtBenchmarkRunner(), AppRunner(), EndpointRunner())}


def runner(name: str) -> Runner:
    """The runner called ``name`` (a plan only names runners listed here)."""
    return RUNNERS[name]
