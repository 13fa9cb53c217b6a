"""A native benchmark tool's output (TFLite ``benchmark_model``, Google's ``litert-benchmark``) as a
:class:`RunnerOutcome`: shared by the runners :mod:`harness.runners.benchmark_model` and
:mod:`harness.runners.litert_benchmark`.

The tool reports aggregates only (count, avg, std, min, max, percentiles), so each repetition
(one tool process) contributes one aggregate record, never invented per-iteration samples.
Its output goes through the parsers of :mod:`harness.runners.parsers.parse`; the raw text is kept.
"""

from __future__ import annotations

from harness.results import Repetition
from harness.runners.measurement import Measurement, OpRow
from harness.runners.outcome import RunnerOutcome, validate
from harness.runners.parsers.parse import parse_text

BENCHMARK_MODEL = "benchmark_model"
LITERT_BENCHMARK = "litert-benchmark"
KINDS = (BENCHMARK_MODEL, LITERT_BENCHMARK)
LATENCY_METHOD = {
    BENCHMARK_MODEL: "benchmark_model's own timing (per-run aggregates: count, avg, std, min, max)",
    LITERT_BENCHMARK: "litert-benchmark's own timing (per-run aggregates, reported in ms with 0.01 ms resolution)",
}
MEMORY_METHOD = "the tool's memory footprint lines"
OPS_METHOD = ("the tool's own op profiler (--enable_op_profiling): per node and per op type, ms per inference "
              "averaged over its timed runs (the profiler's own overhead is inside the run's latency)")


def _repetition(m: Measurement) -> Repetition:
    stats = m.inference
    return Repetition(
        init_us=m.init_us,
        first_inference_us=m.first_inference_us,
        warmup_avg_us=m.warmup_avg_us,
        count=stats.count if stats else None,
        avg_us=(stats.avg_us if stats and stats.avg_us is not None else m.inference_avg_us),
        std_us=stats.std_us if stats else None,
        min_us=stats.min_us if stats else None,
        max_us=stats.max_us if stats else None,
        median_us=stats.median_us if stats else None,
    )


def _op(row: OpRow) -> dict[str, object]:
    """One op-profiling row as the result keeps it: ms per inference run, share, calls per run.

    ``table`` says what a row is: ``summary`` = one op type (``nodes`` nodes of it, times
    summed), ``run_order``/``top_by_time`` = one node (``name`` is the node's).
    """
    return {"node_type": row.node_type, "name": row.name,
            "avg_ms": row.avg_us / 1000.0 if row.avg_us is not None else None, "percent": row.percent,
            "times_called": row.times_called, "table": row.table, "nodes": row.count}


def outcome(kind: str, output: str, exit_code: int | None, *, timeout_s: float | None = None) -> RunnerOutcome:
    """Parse one repetition's output; a failed or cut-short run keeps the tool's first error line.

    The figures go through :func:`validate` (``timeout_s`` bounds every timing); the run count
    is not held to ``--num_runs``: the tool's own ``--min_secs``/``--max_secs`` change it.
    """
    runs = parse_text(output, kind)
    last = runs[-1] if runs else None
    if last is None or last.status != "ok":
        why = (last.error if last and last.error else None) or f"exit code {exit_code}, no result in the output"
        # A failed run still tells how far the delegate got (e.g. 2136 of 2168 nodes, then allocation failed).
        return RunnerOutcome("failed", f"{kind}: {why}",
                             delegates=tuple(d.__dict__ for d in last.delegates) if last else ())
    mem = last.memory
    return validate(RunnerOutcome(
        "ok",
        None,
        repetition=_repetition(last),
        peak_rss_mb=mem.peak_mb if mem else None,
        footprint_init_mb=mem.init_mb if mem else None,
        footprint_overall_mb=mem.overall_mb if mem else None,
        environment={"tool": kind},
        delegates=tuple(d.__dict__ for d in last.delegates),
        ops=tuple(_op(o) for o in last.profile_rows()),
        ops_method=OPS_METHOD if last.ops else "",
        latency_method=LATENCY_METHOD[kind],
        memory_method=MEMORY_METHOD,
    ), timeout_s=timeout_s)
