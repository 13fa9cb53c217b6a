"""One result's figures from its repetitions' outcomes (and the app's own readings): pure assembly."""

from __future__ import annotations

import statistics
from dataclasses import replace

from harness.results import ENDPOINT_SERIES, Accelerator, Endpoint, Energy, Memory
from harness.runners import accelerator
from harness.runners.outcome import RunnerOutcome
from harness.samplers.app import MEMORY_METHOD, AppRun, app_energy, app_memory


def with_app_readings(parsed: RunnerOutcome, launched: AppRun) -> RunnerOutcome:
    """The app's outcome with the readings its observers took (Sysmontap memory, battery energy)."""
    if parsed.status != "ok" or parsed.repetition is None:
        return parsed
    measured_s = sum(parsed.repetition.samples_us) / 1e6
    peak, steady, rows = app_memory(launched.samples)
    energy = parsed.energy if parsed.energy is not None else app_energy(  # a runner's own word wins (endpoints)
        launched.battery, launched.energy_refusal, measured_s, len(parsed.repetition.samples_us))
    interval = f", every {launched.sample_interval_s:.2f} s" if launched.sample_interval_s else ""
    return replace(
        parsed, energy=energy, steady_rss_mb=steady,
        peak_rss_mb=parsed.peak_rss_mb if parsed.peak_rss_mb is not None else peak,
        memory_method=f"{parsed.memory_method}; steady: {MEMORY_METHOD} ({rows} rows{interval})" if rows
        else parsed.memory_method,
    )


def accelerator_of(delegate: str, outcome: RunnerOutcome, raw: str, *, ran: bool = True) -> Accelerator | None:
    """What actually executed: the runner's own verdict, else one read from a native tool's delegate lines (and
    LiteRT log lines) in ``raw``; ``ran=False`` for a repetition that did not finish (its verdict is ``failed``)."""
    if outcome.accelerator is not None:
        return outcome.accelerator
    return accelerator.from_delegates(delegate, outcome.delegates, raw, ran=ran,
                                      failure=None if ran else outcome.reason)


def reported_energy(outcomes: list[RunnerOutcome]) -> Energy | None:
    """The device's own energy readings over the repetitions (mean per inference), or the first refusal."""
    readings = [o.energy for o in outcomes if o.energy is not None]
    if not readings:
        return None
    measured = [e for e in readings if e.gross_per_inference_mj is not None]
    if len(measured) < len(readings):
        return next(e for e in readings if e.gross_per_inference_mj is None)
    return replace(measured[0], gross_per_inference_mj=statistics.fmean(e.gross_per_inference_mj for e in measured),
                   samples=sum(e.samples for e in measured))


def ops_over(outcomes: list[RunnerOutcome]) -> tuple[dict, ...]:
    """One op profile over the repetitions: each row (op type or node) with the median of its ``avg_ms`` and
    ``percent`` over the repetitions that profiled it, and how many did (``repetitions``)."""
    rows: dict[tuple, list[dict]] = {}
    for o in outcomes:
        seen: dict[tuple, int] = {}  # a name a tool printed twice is two rows, not one
        for row in o.ops:
            key = (row.get("table"), row.get("node_type"), row.get("name"), row.get("index"))
            seen[key] = seen.get(key, 0) + 1
            rows.setdefault((*key, seen[key]), []).append(row)
    merged = []
    for seen in rows.values():
        row = dict(seen[0], repetitions=len(seen))
        for key in ("avg_ms", "percent"):
            values = [r[key] for r in seen if r.get(key) is not None]
            row[key] = statistics.median(values) if values else None
        merged.append(row)
    return tuple(merged)


def memory_over(outcomes: list[RunnerOutcome]) -> Memory:
    """One memory record over the repetitions: the highest peak, the median of every other reading."""
    peaks = present(outcomes, "peak_rss_mb")
    # the method of a repetition that gave the steady figure (an app's Sysmontap rows may miss one repetition)
    method = next((o.memory_method for o in outcomes if o.steady_rss_mb is not None), outcomes[0].memory_method)
    return Memory(
        method=method,
        peak_rss_mb=max(peaks) if peaks else None,
        rss_before_init_mb=median_of(outcomes, "rss_before_init_mb"),
        rss_after_init_mb=median_of(outcomes, "rss_after_init_mb"),
        footprint_init_mb=median_of(outcomes, "footprint_init_mb"),
        footprint_overall_mb=median_of(outcomes, "footprint_overall_mb"),
        steady_rss_mb=median_of(outcomes, "steady_rss_mb"),
        samples=len(outcomes),
    )


def present(outcomes: list[RunnerOutcome], field_name: str) -> list[float]:
    return [v for v in (getattr(o, field_name) for o in outcomes) if v is not None]


def median_of(outcomes: list[RunnerOutcome], field_name: str) -> float | None:
    values = present(outcomes, field_name)
    return statistics.median(values) if values else None


def endpoint_over(outcomes: list[RunnerOutcome]) -> Endpoint | None:
    """One endpoint record over the repetitions: per-request figures in order, counts summed, the cold request
    from the first repetition (only it can have sent the server's first request)."""
    parts = [o.endpoint for o in outcomes if o.endpoint is not None]
    if not parts:
        return None
    first = parts[0]
    counts: dict[str, int] = {}
    for part in parts:
        for key, value in part.counts.items():
            if isinstance(value, int) and not isinstance(value, bool):
                counts[key] = counts.get(key, 0) + value
    return replace(
        first, counts=counts,
        **{k: tuple(x for p in parts for x in getattr(p, k))
           for k in ENDPOINT_SERIES},
    )
