"""Numerics beside speed: how far a delegate's outputs drift from the ``cpu`` reference on the same inputs.

Every delegate of a case gets the same seeded inputs (``--seed 0`` in the runner), and each result
keeps, per output tensor, up to 4096 of its values (``outputs[i].values``: every value of a tensor of
at most 4096 elements; of a larger one every ``stride``-th, the same positions for every delegate)
and the full tensor's ``argmax``. Metrics per output tensor, candidate ``c`` against reference ``r``
over those values (exact for tensors up to 4096 values, a uniform sample beyond):

- ``max_abs``: max |c - r|;
- ``rel_l2``: ||c - r|| / ||r||;
- ``cosine``: c·r / (||c|| ||r||) (1 = same direction);
- ``psnr_db``: 20 log10(max|r| / RMSE) (infinite when identical);
- ``top1``: do the argmaxes agree, for outputs that look like class scores (one row of >= 2 scores
  named like scores/logits/probabilities, or non-negative and summing to 1).

Anchors: LiteRT's ``inference_diff`` tool, its ``npu_numerics_check``, and the accuracy mode of
Google's Delegate Performance Benchmark, which compare a delegate with the CPU reference the same way.
A value the runtime gave as NaN or infinity is stored as null: such a pair makes the tensor
``nonfinite`` and its metrics the worst possible.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.results import Result

METRICS = ("max_abs", "rel_l2", "cosine", "psnr_db", "top1")
_SCORES_NAME = re.compile(r"logit|score|prob|class|softmax|predict", re.IGNORECASE)


@dataclass(frozen=True)
class TensorDrift:
    """One output tensor's drift from the reference (see the module doc for each metric)."""

    name: str
    n_values: int
    exact: bool  # every value compared (False: a strided sample)
    max_abs: float
    rel_l2: float | None
    cosine: float | None
    psnr_db: float | None
    top1: bool | None  # None: the output does not look like class scores
    nonfinite: bool = False


@dataclass(frozen=True)
class Drift:
    """A delegate's drift over all output tensors of one case; ``problem`` says why it could not be computed."""

    tensors: tuple[TensorDrift, ...] = ()
    problem: str | None = None

    @property
    def worst(self) -> TensorDrift | None:
        """The tensor with the lowest cosine (then the largest max_abs): the one a rule would fail first."""
        if not self.tensors:
            return None
        return min(self.tensors, key=lambda t: (t.cosine if t.cosine is not None else -2.0, -t.max_abs))

    def value(self, metric: str) -> float | bool | None:
        """The worst value of ``metric`` over the tensors (min for cosine/psnr/top1, max otherwise)."""
        values = [getattr(t, metric) for t in self.tensors if getattr(t, metric) is not None]
        if not values:
            return None
        if metric == "top1":
            return all(values)
        return min(values) if metric in ("cosine", "psnr_db") else max(values)


def _looks_like_scores(fingerprint: Mapping[str, Any], values: Sequence[float]) -> bool:
    shape = fingerprint.get("shape") or []
    if not shape or shape[-1] < 2 or math.prod(shape[:-1]) != 1:
        return False
    if _SCORES_NAME.search(str(fingerprint.get("name") or "")):
        return True
    return fingerprint.get("stride") == 1 and min(values) >= 0 and abs(sum(values) - 1.0) < 1e-2


def tensor_drift(ref: Mapping[str, Any], cand: Mapping[str, Any]) -> TensorDrift | str:
    """Drift of one output tensor, or why the two are not comparable."""
    name = str(ref.get("name") or cand.get("name") or "?")
    if ref.get("shape") != cand.get("shape"):
        return f"{name}: shapes differ ({ref.get('shape')} vs {cand.get('shape')})"
    r_vals, c_vals = ref.get("values") or [], cand.get("values") or []
    if not r_vals or len(r_vals) != len(c_vals) or ref.get("stride") != cand.get("stride"):
        return f"{name}: no stored values to compare (results recorded before numerics were kept?)"
    pairs = [(r, c) for r, c in zip(r_vals, c_vals, strict=True) if r is not None and c is not None]
    nonfinite = len(pairs) != len(r_vals)
    if not pairs:
        return TensorDrift(name, len(r_vals), ref.get("stride") == 1, math.inf, None, None, None, None, True)
    diff2 = sum((c - r) ** 2 for r, c in pairs)
    ref2 = sum(r * r for r, _ in pairs)
    cand2 = sum(c * c for _, c in pairs)
    max_abs = max(abs(c - r) for r, c in pairs)
    rel_l2 = math.sqrt(diff2 / ref2) if ref2 > 0 else (0.0 if diff2 == 0 else None)
    if ref2 > 0 and cand2 > 0:
        cosine = max(-1.0, min(1.0, sum(r * c for r, c in pairs) / math.sqrt(ref2 * cand2)))
    else:
        cosine = 1.0 if ref2 == cand2 == 0 else 0.0
    peak = max(abs(r) for r, _ in pairs)
    rmse = math.sqrt(diff2 / len(pairs))
    psnr = math.inf if rmse == 0 else (20 * math.log10(peak / rmse) if peak > 0 else None)
    top1 = None
    if _looks_like_scores(ref, [r for r, _ in pairs]) and ref.get("argmax") is not None:
        top1 = ref.get("argmax") == cand.get("argmax")
    if nonfinite:
        return TensorDrift(name, len(r_vals), ref.get("stride") == 1, math.inf, None, None, None, top1, True)
    return TensorDrift(name, len(r_vals), ref.get("stride") == 1, max_abs, rel_l2, cosine, psnr, top1)


def drift(reference: Sequence[Mapping[str, Any]], candidate: Sequence[Mapping[str, Any]]) -> Drift:
    """Drift of every output tensor of ``candidate`` against ``reference`` (matched by position)."""
    if not reference or not candidate:
        return Drift(problem="no outputs recorded")
    if len(reference) != len(candidate):
        return Drift(problem=f"{len(candidate)} outputs vs {len(reference)} in the reference")
    tensors = []
    for ref, cand in zip(reference, candidate, strict=True):
        got = tensor_drift(ref, cand)
        if isinstance(got, str):
            return Drift(problem=got)
        tensors.append(got)
    return Drift(tuple(tensors))


def case_key(result: Result) -> tuple[str, str, int]:
    """What must match for two results to be compared: device, model bytes, threads (not the delegate).

    The API should match too, and does when the run has the reference under the candidate's API;
    else (the npu delegate runs through CompiledModel only) the reference under another API is used.
    """
    return (result.device.id, result.case.model_sha256, result.case.threads)


def against(results: Iterable[Result], reference: str = "cpu") -> list[tuple[Result, Result, Drift]]:
    """(reference result, candidate result, drift) for every ``ok`` candidate with an ``ok`` reference of its case."""
    results = [r for r in results if r.status == "ok"]
    refs: dict[tuple[str, str, int], list[Result]] = {}
    for r in results:
        if r.case.delegate == reference:
            refs.setdefault(case_key(r), []).append(r)
    out = []
    for res in results:
        candidates = refs.get(case_key(res), [])
        ref = next((r for r in candidates if r.case.api == res.case.api), candidates[0] if candidates else None)
        if ref is not None and res.case.delegate != reference:
            out.append((ref, res, drift(ref.outputs, res.outputs)))
    return out


def device_case_key(result: Result) -> tuple[str, str, int, str]:
    """What must match for one case to be compared across devices: model bytes, delegate, threads, API."""
    return (result.case.model_sha256, result.case.delegate, result.case.threads, result.case.api)


def reference_device(results: Iterable[Result]) -> str | None:
    """The device other devices' outputs are compared with: the first native (not emulated) one, in run order."""
    devices = list(dict.fromkeys(r.device.id for r in results))
    native = [d for d in devices if not any(r.device.emulated for r in results if r.device.id == d)]
    return (native or devices or [None])[0]


def across_devices(results: Iterable[Result], reference: str | None = None) -> list[tuple[Result, Result, Drift]]:
    """(reference device's result, another device's result, drift) per case both ran ``ok``: cross-ISA drift.

    The same case (model bytes, delegate, threads, API) on the same seeded inputs on two devices: an
    emulated arm64 device against the x86 host shows what the ISA (its kernels, its float paths) changes.
    ``reference`` defaults to :func:`reference_device`.
    """
    results = [r for r in results if r.status == "ok"]
    reference = reference or reference_device(results)
    refs: dict[tuple[str, str, int, str], Result] = {}
    for r in results:
        if r.device.id == reference:
            refs.setdefault(device_case_key(r), r)
    return [(refs[device_case_key(r)], r, drift(refs[device_case_key(r)].outputs, r.outputs))
            for r in results if r.device.id != reference and device_case_key(r) in refs]


def fmt(metric: str, value: float | bool | None) -> str:
    """A metric for a table: ``1.2e-06``, ``0.999998``, ``126.4 dB``, ``inf``, ``yes``/``NO``, ``-``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if metric == "cosine":
        return f"{value:.6f}"
    if metric == "psnr_db":
        return f"{value:.1f} dB"
    return f"{value:.3g}"


def table(rows: list[tuple[Result, Result, Drift]], *, across_devices: bool = False) -> str:
    """The ``harness drift`` table: one line per output tensor of each delegate against the reference.

    ``across_devices``: the rows come from :func:`across_devices`; ``vs`` names the reference device.
    """
    head = ("case", "vs", "output", "values", "max_abs", "rel_l2", "cosine", "psnr", "top1")
    lines = [head]
    for ref, res, d in rows:
        vs = ref.device.id if across_devices else ref.case.delegate
        if d.problem:
            lines.append((res.case.case_id, vs, "-", "-", d.problem, "", "", "", ""))
            continue
        for t in d.tensors:
            n = f"{t.n_values}" + ("" if t.exact else " (sample)") + (" nonfinite" if t.nonfinite else "")
            lines.append((res.case.case_id, vs, t.name, n, fmt("max_abs", t.max_abs),
                          fmt("rel_l2", t.rel_l2), fmt("cosine", t.cosine), fmt("psnr_db", t.psnr_db),
                          fmt("top1", t.top1)))
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in lines)
