"""Tables (pandas DataFrames) built from :class:`harness.results.Result` records.

The report never computes from the records directly: it reads these frames, so the
numbers in a table, a chart and a test are the same numbers. Latencies stay in
microseconds (``_us``) and memory in MB (2^20 bytes, ``_mb``) here; the templates
convert for display.

Summaries and speedup intervals come from :mod:`harness.stats` (hierarchical bootstrap:
repetitions, then iterations within each), so the report and the gate agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from harness import stats
from harness.numerics import drift as outputs_drift
from harness.numerics import fmt as numerics_fmt
from harness.outputs import relative_drift
from harness.report.text import BASELINE_DELEGATE, device_name
from harness.results import STATUSES, Result

CONFIDENCE = 0.95
N_BOOT = 2000
SEED = stats.DEFAULT_SEED

CASE_COLUMNS = [
    "index",
    "run_id",
    "device_id",
    "device",
    "model",
    "model_sha256",
    "delegate",
    "threads",
    "api",
    "status",
    "reason",
    "median_us",
    "p90_us",
    "p99_us",
    "mean_us",
    "std_us",
    "n",
    "repetitions",
    "latency_basis",
    "latency_method",
    "init_us",
    "first_inference_us",
    "peak_memory_mb",
    "memory_method",
    "throttled",
]

SPEEDUP_COLUMNS = [
    "run_id",
    "device_id",
    "device",
    "model",
    "delegate",
    "threads",
    "baseline_median_us",
    "median_us",
    "speedup",
    "ci_low",
    "ci_high",
    "baseline_repetitions",
    "repetitions",
    "output_drift",
    "accelerator",
    "cosine",
    "max_abs",
    "psnr",
    "note",
]


def device_label(result: Result) -> str:
    """Human name of the device a result came from: model name when known, always the id."""
    dev = result.device
    name = device_name(dev.id, dev.model, dev.platform)
    return f"{name} [emulated]" if dev.emulated else name  # every table and chart then labels its latencies




def repetition_arrays(result: Result) -> list[np.ndarray]:
    """Per-repetition latency values in microseconds, the unit the bootstrap resamples.

    A repetition with per-iteration samples gives all of them; one with only the
    tool's aggregates gives its single centre value (median, else average).
    """
    if result.latency is None:
        return []
    arrays = []
    for rep in result.latency.repetitions:
        if rep.samples_us:
            arrays.append(np.asarray(rep.samples_us, dtype=float))
        elif rep.center_us is not None:
            arrays.append(np.asarray([rep.center_us], dtype=float))
    return arrays


def _latency_summary(result: Result) -> dict[str, object]:
    """Median, p90, p99, mean, std (us) over pooled iterations, or over repetition aggregates."""
    empty = dict.fromkeys(("median_us", "p90_us", "p99_us", "mean_us", "std_us"), np.nan)
    lat = result.latency
    if lat is None or not lat.repetitions:
        return {**empty, "n": 0, "repetitions": 0, "latency_basis": "", "latency_method": ""}
    base = {"n": lat.n_iterations, "repetitions": len(lat.repetitions), "latency_method": lat.method}
    if lat.samples_us:
        summary = stats.summarize([r.samples_us for r in lat.repetitions if r.samples_us], n_boot=0)
        return {
            **base,
            "median_us": summary.median_us,
            "p90_us": summary.p90_us,
            "p99_us": summary.p99_us,
            "mean_us": summary.mean_us,
            "std_us": summary.std_us if summary.n > 1 else np.nan,
            "latency_basis": "per-iteration samples",
        }
    centers = [r.center_us for r in lat.repetitions if r.center_us is not None]
    weighted = [(r.avg_us, r.n) for r in lat.repetitions if r.avg_us is not None and r.n]
    mean = sum(a * n for a, n in weighted) / sum(n for _, n in weighted) if weighted else np.nan
    stds = [r.std_us for r in lat.repetitions if r.std_us is not None]
    return {
        **empty,
        **base,
        "median_us": float(np.median(centers)) if centers else np.nan,
        "mean_us": mean,
        "std_us": float(np.median(stds)) if stds else np.nan,
        "latency_basis": "tool aggregates per repetition",
    }


def _memory_summary(result: Result) -> dict[str, object]:
    mem = result.memory
    if mem is None:
        return {"peak_memory_mb": np.nan, "memory_method": ""}
    if mem.peak_rss_mb is not None:
        return {"peak_memory_mb": mem.peak_rss_mb, "memory_method": f"{mem.method} (peak RSS)"}
    if mem.footprint_overall_mb is not None:
        return {"peak_memory_mb": mem.footprint_overall_mb, "memory_method": f"{mem.method} (overall footprint)"}
    return {"peak_memory_mb": np.nan, "memory_method": mem.method}


def cases_frame(results: Sequence[Result]) -> pd.DataFrame:
    """One row per result: identity, status, latency summary (us), init (us) and peak memory (MB).

    ``index`` is the result's position in ``results`` so a row can link to its details.
    """
    rows = []
    for i, res in enumerate(results):
        lat = res.latency
        rows.append(
            {
                "index": i,
                "run_id": res.run_id,
                "device_id": res.device.id,
                "device": device_label(res),
                "model": res.case.model,
                "model_sha256": res.case.model_sha256,
                "delegate": res.case.delegate,
                "threads": res.case.threads,
                "api": res.case.api,
                "status": res.status,
                "reason": res.reason or "",
                **_latency_summary(res),
                "init_us": lat.init_us if lat and lat.init_us is not None else np.nan,
                "first_inference_us": lat.first_inference_us if lat and lat.first_inference_us is not None else np.nan,
                **_memory_summary(res),
                "throttled": bool(res.thermal and res.thermal.throttled),
            }
        )
    return pd.DataFrame(rows, columns=CASE_COLUMNS)


def samples_frame(results: Sequence[Result]) -> pd.DataFrame:
    """Long table of every latency value (us) of ok results, one row per iteration (or repetition)."""
    rows = []
    for res in results:
        if res.status != "ok":
            continue
        for rep_no, values in enumerate(repetition_arrays(res)):
            for v in values:
                rows.append(
                    (res.run_id, res.device.id, device_label(res), res.case.model, res.case.delegate,
                     res.case.threads, rep_no, float(v))
                )
    cols = ["run_id", "device_id", "device", "model", "delegate", "threads", "repetition", "latency_us"]
    return pd.DataFrame(rows, columns=cols)


def speedup_interval(
    baseline: Sequence[np.ndarray],
    candidate: Sequence[np.ndarray],
    *,
    confidence: float = CONFIDENCE,
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> tuple[float, float, float]:
    """Speedup = baseline median / candidate median (x, >1 is faster) with its bootstrap interval.

    The interval inverts :func:`harness.stats.ratio_ci` (candidate/baseline), which
    resamples repetitions, then iterations, so one lucky process does not look certain.
    """
    point = float(np.median(np.concatenate(baseline)) / np.median(np.concatenate(candidate)))
    ratio = stats.ratio_ci(baseline, candidate, n_boot=n_boot, seed=seed, level=confidence)
    speedup = stats.Interval(1.0 / ratio.high, 1.0 / ratio.low, confidence).including(point)
    return point, speedup.low, speedup.high


def _speedup_key(res: Result) -> tuple[str, str, str, int]:
    return (res.run_id, res.device.id, res.case.model_sha256 or res.case.model, res.case.threads)


def speedup_frame(
    results: Sequence[Result],
    *,
    baseline: str = BASELINE_DELEGATE,
    confidence: float = CONFIDENCE,
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> pd.DataFrame:
    """Speedup of every ok non-baseline case over the ``baseline`` delegate of the same run, device,
    model and threads, with a bootstrap interval. Cases without a usable baseline get a row with
    no number and a ``note`` saying why, so the report can say it instead of dropping them.
    """
    bases: dict[tuple[str, str, str, int], list[Result]] = {}
    for res in results:
        if res.case.delegate == baseline:
            bases.setdefault(_speedup_key(res), []).append(res)
    rows = []
    for res in results:
        if res.case.delegate == baseline or res.status != "ok":
            continue
        cand = repetition_arrays(res)
        if not cand:
            continue
        row = {
            "run_id": res.run_id,
            "device_id": res.device.id,
            "device": device_label(res),
            "model": res.case.model,
            "delegate": res.case.delegate,
            "threads": res.case.threads,
            "median_us": float(np.median(np.concatenate(cand))),
            "repetitions": len(cand),
            "baseline_median_us": np.nan,
            "speedup": np.nan,
            "ci_low": np.nan,
            "ci_high": np.nan,
            "baseline_repetitions": 0,
            "output_drift": np.nan,
            "accelerator": res.accelerator.summary() if res.accelerator else "",
            "cosine": "",
            "max_abs": "",
            "psnr": "",
            "note": "",
        }
        candidates = bases.get(_speedup_key(res), [])
        ok = [b for b in candidates if b.status == "ok" and repetition_arrays(b)]
        if not ok:
            if candidates:
                first = candidates[0]
                row["note"] = f"{baseline} baseline {first.status}: {first.reason or 'no latency'}"
            else:
                row["note"] = f"no {baseline} result for this model, device and thread count"
            rows.append(row)
            continue
        same_api = [b for b in ok if b.case.api == res.case.api]
        reference = (same_api or ok)[0]
        base_arrays = repetition_arrays(reference)
        drift = relative_drift(reference.outputs, res.outputs)
        if drift is not None:
            row["output_drift"] = drift
        numerics = outputs_drift(reference.outputs, res.outputs)
        for col, metric in (("cosine", "cosine"), ("max_abs", "max_abs"), ("psnr", "psnr_db")):
            value = numerics.value(metric)
            row[col] = numerics_fmt(metric, value) if value is not None else ""
        point, low, high = speedup_interval(base_arrays, cand, confidence=confidence, n_boot=n_boot, seed=seed)
        row.update(
            baseline_median_us=float(np.median(np.concatenate(base_arrays))),
            speedup=point,
            ci_low=low,
            ci_high=high,
            baseline_repetitions=len(base_arrays),
        )
        if min(len(base_arrays), len(cand)) < 2:
            row["note"] = "1 repetition: the interval cannot include process-to-process noise"
        rows.append(row)
    return pd.DataFrame(rows, columns=SPEEDUP_COLUMNS)


def status_counts(results: Sequence[Result]) -> dict[str, int]:
    """Number of results per status, in the record's status order, zeros included."""
    counts = dict.fromkeys(STATUSES, 0)
    for res in results:
        counts[res.status] = counts.get(res.status, 0) + 1
    return counts
