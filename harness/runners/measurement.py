"""What a benchmark tool's text says about one run, as typed values (times in microseconds).

Parsers fill these from text they never fully trust: a field the text does not
show stays ``None``; nothing is guessed. ``Measurement.to_dict()`` is the JSON shape
``harness parse --json`` prints.

Not a :class:`~harness.runners.outcome.RunnerOutcome`: a Measurement is everything one capture says
(params, every statistic, op tables, delegate lines, possibly several runs), read by ``harness parse``
and by the tool runners; a RunnerOutcome is one repetition as a result record takes it, validated
against the case's settings (:func:`harness.runners.tool_output.outcome` turns the one into the other).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

MEASUREMENT_STATUSES = ("ok", "failed", "incomplete")
DELEGATE_APPLIED = ("full", "partial", "none", "failed")


@dataclass(frozen=True)
class InferenceStats:
    """The tool's statistics line for the timed runs (``count= first= curr= min= max= avg= std=``), in us."""

    count: int | None = None
    min_us: float | None = None
    max_us: float | None = None
    avg_us: float | None = None
    std_us: float | None = None
    p5_us: float | None = None
    median_us: float | None = None
    p95_us: float | None = None
    first_us: float | None = None
    curr_us: float | None = None


@dataclass(frozen=True)
class MemoryFootprint:
    """Memory the tool reports, in MB: footprint after init, overall, and the periodically sampled peak."""

    init_mb: float | None = None
    overall_mb: float | None = None
    peak_mb: float | None = None


@dataclass(frozen=True)
class DelegateOutcome:
    """How one delegate fared: ``applied`` is full|partial|none|failed, or None when the text does not say.

    ``partitions`` is the count the tool printed: delegate kernels/partitions from a
    summary line when there is one, else the "yielding N partitions" graph count.
    """

    name: str
    accelerator: str | None = None
    applied: str | None = None
    nodes_delegated: int | None = None
    nodes_total: int | None = None
    partitions: int | None = None


@dataclass(frozen=True)
class OpRow:
    """One row of an op-profiling table; the tool prints ms, stored here in us.

    ``section`` is ``init`` (Benchmark Initialization) or ``run`` (Regular Benchmark Runs);
    ``table`` is ``run_order``, ``top_by_time``, ``top_by_memory`` or ``summary`` (by node type).
    """

    section: str
    table: str
    node_type: str
    name: str | None = None
    start_us: float | None = None
    first_us: float | None = None
    avg_us: float | None = None
    percent: float | None = None
    cdf_percent: float | None = None
    mem_kb: float | None = None
    times_called: int | None = None
    count: int | None = None


@dataclass(frozen=True)
class Measurement:
    """One run found in a tool's output: status, timings (us), memory (MB), delegates, op rows, params."""

    tool: str
    status: str
    error: str | None = None
    init_us: float | None = None
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None
    inference_avg_us: float | None = None
    inference: InferenceStats | None = None
    memory: MemoryFootprint | None = None
    delegates: tuple[DelegateOutcome, ...] = ()
    ops: tuple[OpRow, ...] = ()
    params: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in MEASUREMENT_STATUSES:
            raise ValueError(f"status {self.status!r} not one of {MEASUREMENT_STATUSES}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists, nested records dicts)."""
        data = dataclasses.asdict(self)
        data["delegates"] = [dataclasses.asdict(d) for d in self.delegates]
        data["ops"] = [dataclasses.asdict(o) for o in self.ops]
        data["params"] = dict(self.params)
        return data

    def profile_rows(self) -> list[OpRow]:
        """The timed runs' profile as a result keeps it: every op type (summary) and every node (run order)."""
        timed = [o for o in self.ops if o.section == "run" and o.avg_us is not None]
        rows = [o for o in timed if o.table == "summary"] + [o for o in timed if o.table == "run_order"]
        return rows or self.top_ops(50)

    def top_ops(self, n: int = 5) -> list[OpRow]:
        """The costliest op types of the timed runs (summary table, else run order), by average time."""
        for table in ("summary", "run_order", "top_by_time"):
            rows = [o for o in self.ops if o.section == "run" and o.table == table and o.avg_us is not None]
            if rows:
                return sorted(rows, key=lambda o: o.avg_us or 0.0, reverse=True)[:n]
        return []
