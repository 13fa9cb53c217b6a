"""Helpers several test modules share (a test module never imports another): synthetic results, soak records
and suites."""

from __future__ import annotations

import math

import numpy as np

from harness.results import CaseInfo, DeviceInfo, Latency, Repetition, Result, Soak, Thermal
from harness.samplers.thermal import ThermalSnapshot
from harness.soak import SoakRecorder, SoakSettings
from harness.suite import Case, parse_suite

#: A quick case, then one that runs until it is stopped (100000 runs x 3 repetitions of face_landmark).
STOPPED_SUITE = """
[suite]
name = "stopped"
delegates = ["xnnpack"]
warmup_runs = 1
repetitions = 3
measured_runs = 100000
[[models]]
zoo = "face_detection_front"
name = "quick"
measured_runs = 2
repetitions = 1
[[models]]
zoo = "face_landmark"
"""


def make_result(
    run_id="r1",
    factor=1.0,
    n_reps=10,
    n_iter=30,
    seed=0,
    model="mobilenet",
    sha="a" * 64,
    device="host-1",
    rep_cv=0.03,
    status="ok",
    throttled=False,
    case_id="test_case[mobilenet-cpu]",
    reps=None,
    **extra,
):
    """A seeded synthetic result: ``n_reps`` repetitions of ``n_iter`` samples around 2000 us x ``factor``."""
    rng = np.random.default_rng(seed)
    if reps is None:
        reps = []
        for _ in range(n_reps):
            center = 2000.0 * factor * math.exp(rng.normal(0, rep_cv))
            reps.append(Repetition(samples_us=tuple(center * np.exp(rng.normal(0, 0.02, n_iter))), init_us=15000.0))
    case = CaseInfo(case_id, model, sha, "cpu", 1, "pyrunner")
    dev = DeviceInfo(device, "host", model="x86_64-box", device_class=extra.pop("device_class", ""))
    thermal = Thermal("test", throttled=True, throttle_reasons=("cpu0 capped",)) if throttled else None
    latency = Latency("perf_counter_ns", tuple(reps)) if status == "ok" else None
    return Result(run_id, case, dev, status, latency=latency, thermal=thermal, **extra)


def one_case(zoo: str, *, runs: int = 150, reps: int = 1, delegate: str = "xnnpack", extra: str = "") -> Case:
    """The one case of a one-model suite (``extra``: more ``[suite]`` lines), 3 warm-up runs."""
    suite = parse_suite(f'[suite]\ndelegates=["{delegate}"]\nmeasured_runs={runs}\nrepetitions={reps}\n'
                        f'warmup_runs=3\n{extra}\n[[models]]\nzoo="{zoo}"\n')
    return suite.cases()[0]


def thermal_snapshot(ratio: float, status: int = 0, temp: float = 40.0) -> ThermalSnapshot:
    """One CPU zone at ``temp`` C, thermal ``status``, cpu0 capped at ``ratio`` of its 2.4 GHz maximum."""
    return ThermalSnapshot({"cpu": temp}, status, {"cpu0": (int(2_400_000 * ratio), 2_400_000, int(2_400_000 * ratio))})


def throttled_soak_record() -> Soak:
    """A 30 s soak in 10 s windows: 1 ms per iteration, then 2 ms from 15 s on, when the cap drops to 60%."""
    rec = SoakRecorder(SoakSettings(30, 10))
    rec.add_snapshot(0.0, thermal_snapshot(1.0))
    for k, ms in enumerate((1.0, 1.0, 2.0, 2.0, 2.0, 2.0)):
        rec.add_repetition(5.0 * (k + 1), Repetition(samples_us=(ms * 1000,) * 20))
        rec.add_snapshot(5.0 * (k + 1), thermal_snapshot(1.0 if k < 2 else 0.6, temp=40 + 3 * k))
    return rec.build(30.4)
