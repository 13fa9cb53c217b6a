"""What a runner makes of one repetition's output: the shared record every runner returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.results import Energy, Repetition


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
