"""Sampling overhead: median latency with the samplers on vs off, interleaved, as a ratio.

Runs the single-file runner on the host (psutil memory poller) and on the virtual device with its
physics model (the on-device power/memory probe loop), alternating on/off repetitions so drift on the
shared machine hits both arms alike. Usage: ``python benchmarks/sampling_overhead.py [ROUNDS]``.
"""

from __future__ import annotations

import statistics
import sys

from harness import profiles, zoo
from harness.devices.discovery import open_device
from harness.devices.host import HostDevice
from harness.runners import litert_python
from harness.samplers.case import CaseSampling
from harness.testing import VirtualDevice
from harness.testing.android.physics import PhysicsConfig


def one(device, model: str, sampling: CaseSampling | None) -> float:
    script = litert_python.SCRIPT
    cmd = litert_python.command(device.python() or "python3", str(script), model, delegate="xnnpack", threads=1,
                                warmup_runs=5, measured_runs=150)
    if sampling is None:
        out = device.shell(cmd, timeout_s=120)
    else:
        with sampling.around_repetition() as dev:
            out = dev.shell(cmd, timeout_s=120)
    rep = litert_python.parse(out.output, out.exit_code).repetition
    return statistics.median(rep.samples_us)


def compare(name: str, device, profile_name: str, model: str, rounds: int) -> None:
    on, off = [], []
    sampling = CaseSampling(device, profiles.get(profile_name), {})
    sampling.before_case()
    for _ in range(rounds):
        off.append(one(device, model, None))
        on.append(one(device, model, sampling))
    ratio = statistics.median(on) / statistics.median(off)
    print(f"{name:14s} median latency off {statistics.median(off):8.1f} us  on {statistics.median(on):8.1f} us  "
          f"ratio on/off {ratio:.3f}  ({rounds} interleaved pairs, 150 iterations each)")


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    model = str(zoo.fetch("face_detection_front"))
    compare("host", HostDevice(), "host", model, rounds)
    with VirtualDevice(physics=PhysicsConfig(tick_s=0.1)) as vd:
        device = open_device("adb:" + vd.address)
        try:
            remote = device.workdir() + "/bench-model.tflite"
            device.push(zoo.fetch("face_detection_front"), remote)
            compare("virtual-device", device, "virtual-android", remote, rounds)
        finally:
            device.close()


if __name__ == "__main__":
    main()
