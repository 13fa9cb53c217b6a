"""What the device-side readings of issue 17 give, side by side, on the virtual Android device.

1. ``proc_stat``: other work's share of the device's CPUs per case, quiet vs with one CPU-burning process
   (the device's /proc is this machine's, so other engineers' load shows in the quiet figure too), and the
   host's own psutil reading (``host_cpu``) of the same case run on the host right after the quiet one.
2. ``min_duration_s``: face_landmark at few measured runs with no minimum vs the default one (what the
   battery sampler needs): planned and actual runs, measured seconds per repetition, energy and samples.

Usage: ``python benchmarks/device_context.py [REPS]`` (default 3 repetitions per case).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from harness.devices.discovery import open_device
from harness.devices.host import HostDevice
from harness.orchestrator import CaseRunner
from harness.suite import parse_suite
from harness.testing import VirtualDevice
from harness.testing.android.physics import PhysicsConfig


def case(zoo: str, runs: int, reps: int, extra: str = ""):
    return parse_suite(f'[suite]\ndelegates=["xnnpack"]\nmeasured_runs={runs}\nrepetitions={reps}\nwarmup_runs=3\n'
                       f'{extra}\n[[models]]\nzoo="{zoo}"\n').cases()[0]


def main(reps: int) -> None:
    with VirtualDevice(physics=PhysicsConfig(tick_s=0.05, tau_s=2.0)) as vd:
        device = open_device("adb:" + vd.address)
        runner = CaseRunner("bench")
        print("proc_stat: other work's share of the device CPUs (median over repetitions)")
        quiet = runner.run_case(device, case("face_detection_front", 200, reps))
        host = runner.run_case(HostDevice(), case("face_detection_front", 200, reps))  # psutil, same machine
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
        try:
            time.sleep(0.5)
            busy = runner.run_case(device, case("face_detection_front", 200, reps))
        finally:
            os.killpg(hog.pid, signal.SIGKILL)
            hog.wait()
        for name, r in (("quiet", quiet), ("host psutil", host), ("one CPU hog", busy)):
            print(f"  {name:<12} other_cpu {r.thermal.other_cpu_fraction:.1%}  p50 "
                  f"{sorted(r.latency.samples_us)[len(r.latency.samples_us) // 2] / 1000:.2f} ms  "
                  f"({reps} repetitions x 200 runs)")
        print("min_duration_s: face_landmark, 30 planned runs per repetition")
        for label, extra in (("no minimum", "min_duration_s = 0"), ("default", "")):
            r = runner.run_case(device, case("face_landmark", 30, reps, extra))
            secs = [sum(x.samples_us) / 1e6 for x in r.latency.repetitions]
            e = r.energy
            figure = (f"{e.per_inference_mj:.2f} +/- {e.uncertainty_mj:.2f} mJ/inference from {e.samples} samples"
                      if e.per_inference_mj is not None else f"null: {e.reason}")
            print(f"  {label:<10} planned {r.case.measured_runs}, actual {r.case.actual_runs or r.case.measured_runs}"
                  f", min_duration_s {r.case.min_duration_s}, measured {min(secs):.3f}-{max(secs):.3f} s/rep; "
                  f"energy {figure}")
        device.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
