"""Readings taken around an app-based run (the iOS benchmark app): battery energy and Sysmontap memory.

The backend hands over what the phone reported: battery readings (current mA, negative while
discharging; voltage mV) from diagnostics_relay about once a second, and Sysmontap rows of the
app process at the interval the phone really used. There is no idle baseline on iOS (the app
is launched for the run), so energy is **gross**: mean battery power over the app's run times
the measured inference time, divided by the measured iterations.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from harness.results import Energy

ENERGY_METHOD = ("iOS diagnostics_relay battery InstantAmperage x Voltage, mean over the app run, x measured "
                 "inference time / iterations (gross: no idle baseline)")
MEMORY_METHOD = "iOS Sysmontap physFootprint/resident of the app process"


def app_energy(battery: Sequence[Any], refusal: str | None, measured_s: float, iterations: int) -> Energy:
    """Energy per inference (mJ) from battery readings, or the reason there is none."""
    if refusal:
        return Energy(method=ENERGY_METHOD, reason=refusal, samples=len(battery))
    powers = [r.power_mw for r in battery if r.power_mw is not None]
    if len(powers) < 2 or iterations <= 0:
        return Energy(method=ENERGY_METHOD, samples=len(powers),
                      reason=f"{len(powers)} battery reading(s) during the run: too few to integrate")
    mean_mw = statistics.fmean(powers)
    sem_mw = statistics.stdev(powers) / len(powers) ** 0.5
    per_inf = mean_mw * measured_s / iterations  # mW x s = mJ
    return Energy(method=ENERGY_METHOD, gross_per_inference_mj=per_inf,
                  uncertainty_mj=sem_mw * measured_s / iterations, samples=len(powers))


def app_memory(samples: Sequence[Any]) -> tuple[float | None, float | None, int]:
    """(peak MB, steady MB = median, row count) of the app's memory over its Sysmontap rows."""
    values = [s.footprint_mb if s.footprint_mb is not None else s.resident_mb for s in samples]
    values = [v for v in values if v is not None]
    if not values:
        return None, None, 0
    return max(values), statistics.median(values), len(values)
