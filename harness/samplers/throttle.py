"""Was a run throttled, and what made its latency drift? Independent signs, each with its reason:

- thermal status rose to or past the profile's ``[thermal] throttle_status`` (Android thermalservice);
- the CPU frequency cap dropped during the case, or sits below ``[throttle] min_freq_ratio`` of max;
- latency drifted: median of the last third of iterations over the first third, minus 1, beyond
  ``[throttle] latency_drift`` (iterations in execution order, all repetitions).

Drift alone is not throttling: it is *attributed* (:func:`attribute_drift`). To ``thermal`` only with
thermal or frequency evidence (the signs above, or a zone that warmed ``[throttle] temp_rise_c`` or more
during the case), or on a profile that declares it
(``[throttle] drift_means_heat = true``: a phone without readable sensors); to ``contention`` when
other work took at least ``[throttle] contention_min`` of the CPUs during the run (the host's
``host_cpu`` reading, or a device's ``proc_stat`` one: :mod:`harness.samplers.contention`); otherwise
``unknown``. Only thermal throttling marks a result throttled (the gate's hard "noisy" reason); drift from
contention or of unknown cause is recorded and named, and the gate still decides when its test can.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from harness.samplers.thermal import ThermalSnapshot

DRIFT_CAUSES = ("thermal", "contention", "unknown")


@dataclass(frozen=True)
class ThrottleLimits:
    min_freq_ratio: float = 0.9
    freq_drop: float = 0.05  # a cap falling by more than this fraction of max during the case
    latency_drift: float = 0.25
    min_iterations: int = 9
    temp_rise_c: float = 10.0  # a watched zone warming this much during the case is thermal evidence
    contention_min: float = 0.10  # other work's share of all CPUs that counts as contention (0.5: one core of two)
    drift_means_heat: bool = False  # the profile's word: on this device, drift without other evidence is heat

    @classmethod
    def from_profile(cls, table: dict | None) -> ThrottleLimits:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in dict(table or {}).items() if k in known})


@dataclass(frozen=True)
class Assessment:
    """Throttling reasons (empty: not throttled) and the drift with its attributed cause."""

    reasons: tuple[str, ...] = ()
    drift: float | None = None  # last third over first third, minus 1 (None: too few iterations)
    drift_cause: str | None = None  # thermal | contention | unknown; None: no drift beyond the limit
    drift_why: str = ""


def latency_drift(samples_us: Sequence[float]) -> float | None:
    """Last third's median over the first third's, minus 1 (0.2 = 20 % slower by the end)."""
    third = len(samples_us) // 3
    if third < 3:
        return None
    first, last = statistics.median(samples_us[:third]), statistics.median(samples_us[-third:])
    return last / first - 1 if first > 0 else None


def evidence(before: ThermalSnapshot, after: ThermalSnapshot, limits: ThrottleLimits,
             throttle_status: int) -> tuple[str, ...]:
    """Thermal and frequency signs of throttling, in words (empty: none)."""
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
    return tuple(reasons)


def warming(before: ThermalSnapshot, after: ThermalSnapshot, limits: ThrottleLimits) -> str | None:
    """A zone that warmed ``temp_rise_c`` or more during the case: thermal evidence for a drift, not throttling."""
    rise = [(z, after.zones_c[z] - c) for z, c in before.zones_c.items() if z in after.zones_c]
    zone, warmed = max(rise, key=lambda zr: zr[1], default=(None, 0.0))
    if zone is None or warmed < limits.temp_rise_c:
        return None
    return f"{zone} warmed {warmed:.1f} C during the case (>= {limits.temp_rise_c:g} C)"


def attribute_drift(drift: float, signs: Sequence[str], other_cpu: float | None,
                    limits: ThrottleLimits) -> tuple[str, str]:
    """``(cause, why)`` of a drift beyond the limit: thermal evidence, else contention, else the profile's word."""
    if signs:
        return "thermal", f"with {'; '.join(signs)}"
    if other_cpu is not None and other_cpu >= limits.contention_min:
        return "contention", (f"other work took {other_cpu:.0%} of the CPUs during the run "
                              f"(>= {limits.contention_min:.0%})")
    if limits.drift_means_heat:
        return "thermal", "the device profile says drift means heat ([throttle] drift_means_heat)"
    seen = f"other work {other_cpu:.0%} of the CPUs" if other_cpu is not None else "no contention reading"
    return "unknown", f"no thermal or frequency evidence, {seen}"


def judge(before: ThermalSnapshot, after: ThermalSnapshot, samples_us: Sequence[float], limits: ThrottleLimits,
          throttle_status: int, other_cpu: float | None = None) -> Assessment:
    """Throttling signs and the attributed drift; ``other_cpu``: the most other work took in any repetition."""
    signs = evidence(before, after, limits, throttle_status)
    drift = latency_drift(samples_us) if len(samples_us) >= limits.min_iterations else None
    if drift is None or drift <= limits.latency_drift:
        return Assessment(signs, drift)
    warm = warming(before, after, limits)
    cause, why = attribute_drift(drift, (*signs, warm) if warm else signs, other_cpu, limits)
    text = (f"latency drifted +{drift * 100:.0f}% (last third vs first third of {len(samples_us)} "
            f"iterations; limit {limits.latency_drift * 100:.0f}%)")
    reasons = (*signs, f"{text}, attributed to heat: {why}") if cause == "thermal" else signs
    return Assessment(reasons, drift, cause, f"{text}; {why}")


def assess(before: ThermalSnapshot, after: ThermalSnapshot, samples_us: Sequence[float], limits: ThrottleLimits,
           throttle_status: int, other_cpu: float | None = None) -> tuple[str, ...]:
    """Reasons the run counts as throttled (empty: not throttled); drift counts only when attributed to heat."""
    return judge(before, after, samples_us, limits, throttle_status, other_cpu).reasons
