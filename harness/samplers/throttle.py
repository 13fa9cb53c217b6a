"""Was a run throttled? Three independent signs, each with its reason:

- thermal status rose to or past the profile's ``[thermal] throttle_status`` (Android thermalservice);
- the CPU frequency cap dropped during the case, or sits below ``[throttle] min_freq_ratio`` of max;
- latency drifted: median of the last third of iterations over the first third, minus 1, beyond
  ``[throttle] latency_drift`` (iterations in execution order, all repetitions).
A throttled result is still a result: the gate treats it as noisy and the report marks it.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from harness.samplers.thermal import ThermalSnapshot


@dataclass(frozen=True)
class ThrottleLimits:
    min_freq_ratio: float = 0.9
    freq_drop: float = 0.05  # a cap falling by more than this fraction of max during the case
    latency_drift: float = 0.25
    min_iterations: int = 9

    @classmethod
    def from_profile(cls, table: dict | None) -> ThrottleLimits:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in dict(table or {}).items() if k in known})


def latency_drift(samples_us: Sequence[float]) -> float | None:
    """Last third's median over the first third's, minus 1 (0.2 = 20 % slower by the end)."""
    third = len(samples_us) // 3
    if third < 3:
        return None
    first, last = statistics.median(samples_us[:third]), statistics.median(samples_us[-third:])
    return last / first - 1 if first > 0 else None


def assess(before: ThermalSnapshot, after: ThermalSnapshot, samples_us: Sequence[float], limits: ThrottleLimits,
           throttle_status: int) -> tuple[str, ...]:
    """Reasons the run counts as throttled (empty: not throttled)."""
    reasons = []
    if after.status is not None and after.status >= throttle_status and (before.status or 0) < after.status:
        reasons.append(f"thermal status rose {before.status} -> {after.status} (profile level {throttle_status})")
    elif after.status is not None and after.status >= throttle_status:
        reasons.append(f"thermal status {after.status} >= profile level {throttle_status} throughout")
    rb, ra = before.freq_ratio, after.freq_ratio
    if ra is not None and rb is not None and rb - ra > limits.freq_drop:
        reasons.append(f"CPU frequency cap dropped {rb * 100:.0f}% -> {ra * 100:.0f}% of max")
    elif ra is not None and ra < limits.min_freq_ratio:
        reasons.append(f"CPU frequency capped at {ra * 100:.0f}% of max (< {limits.min_freq_ratio * 100:.0f}%)")
    drift = latency_drift(samples_us) if len(samples_us) >= limits.min_iterations else None
    if drift is not None and drift > limits.latency_drift:
        reasons.append(f"latency drifted +{drift * 100:.0f}% (last third vs first third of {len(samples_us)} "
                       f"iterations; limit {limits.latency_drift * 100:.0f}%)")
    return tuple(reasons)
