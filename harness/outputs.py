"""Does a delegate change a model's outputs? Compare output fingerprints of two results.

The host runner feeds every delegate the same seeded inputs and records, per output tensor,
its shape, mean, largest magnitude and first 16 values (and up to 4096 values, which
:mod:`harness.numerics` compares in full: max abs error, cosine, PSNR...). The drift of a candidate against a
reference (usually ``cpu``) is the largest absolute difference over those values, relative to
the reference's largest magnitude: 0 means identical; float rounding from a different kernel
order gives ~1e-6; a wrong kernel gives something near 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def relative_drift(reference: Sequence[dict[str, Any]], candidate: Sequence[dict[str, Any]]) -> float | None:
    """Max |candidate - reference| / max|reference| over matching outputs; None when not comparable."""
    if not reference or len(reference) != len(candidate):
        return None
    worst = 0.0
    for ref, cand in zip(reference, candidate, strict=True):
        head = ref.get("head") or []
        if ref.get("shape") != cand.get("shape") or not head or len(head) != len(cand.get("head") or ()):
            return None
        if None in head or None in cand["head"]:  # the runtime gave NaN or infinity: no drift figure
            return None
        scale = max(abs(ref.get("abs_max") or 0.0), 1e-12)
        diff = max(abs(a - b) for a, b in zip(ref["head"], cand["head"], strict=True))
        worst = max(worst, diff / scale)
    return worst
