"""Push throughput of the Android backend vs the real ``adb push``, to the same virtual device.

Starts one virtual device, then pushes the same random file (100 MB by default) with our backend
(adb-shell) and with the AOSP ``adb`` client, interleaved (ours, adb, ours, adb, ...) so both see
the same machine load, ``--rounds`` times each (default 5). Each of our pushes goes to a fresh path,
so none is skipped. Prints both medians in MB/s and their ratio (target: ours >= 0.5 x adb), then
the median time to "push" the unchanged file again (the sha256 check finds it on the device; target:
under 5% of a first push).

``--device-fast-checksum`` is a diagnosis, not the measurement: it swaps the virtual device's pure-Python
payload checksum for a numpy one in this process, to show how much of the gap is the device verifying
checksums (adb-shell speaks protocol 0x01000000, which requires them; the AOSP client negotiates
0x01000001, which skips them).

Usage: python benchmarks/push_throughput.py [--size-mb 100] [--rounds 5] [--device-fast-checksum]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.devices.android import AndroidDevice
from harness.testing import VirtualDevice
from harness.testing.android.client import AdbClient

REMOTE_DIR = "/data/local/tmp/edgeharness/bench"


def _write_random(path: Path, size_bytes: int) -> None:
    with path.open("wb") as fh:
        left = size_bytes
        while left > 0:
            chunk = os.urandom(min(left, 1 << 22))
            fh.write(chunk)
            left -= len(chunk)


def _timed(action) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=100.0, help="file size in MB (10^6 bytes)")
    ap.add_argument("--rounds", type=int, default=5, help="pushes per tool (median reported)")
    ap.add_argument("--device-fast-checksum", action="store_true", help="diagnosis: vectorise the device's checksum")
    args = ap.parse_args()
    if args.device_fast_checksum:
        from harness.devices.android import _fast_checksum
        from harness.testing.android import codec as adb_codec

        adb_codec.checksum = _fast_checksum
    size_bytes = int(args.size_mb * 1e6)
    with tempfile.TemporaryDirectory(prefix="eh-push-bench-") as tmp:
        work = Path(tmp)
        local = work / "payload.bin"
        _write_random(local, size_bytes)
        key = work / "key" / "adbkey"
        with VirtualDevice(root=work / "device") as vdev:
            adb = AdbClient(work / "adb-home")
            adb.start_server()
            ours = AndroidDevice(f"adb:{vdev.address}", key=key)
            try:
                if adb.connect(vdev.address) != "device":
                    print(f"adb could not connect to {vdev.address}", file=sys.stderr)
                    return 1
                ours.shell(f"mkdir -p {REMOTE_DIR}").check()
                ours_s, adb_s = [], []
                for i in range(args.rounds):
                    ours_s.append(_timed(lambda i=i: ours.push(local, f"{REMOTE_DIR}/ours-{i}.bin")))
                    vdev.host_path(f"{REMOTE_DIR}/ours-{i}.bin").unlink()  # keep the sandbox's disk use flat

                    def adb_push(i: int = i) -> None:
                        done = adb.run("push", str(local), f"{REMOTE_DIR}/adb-{i}.bin", serial=vdev.address,
                                       timeout_s=600)
                        if done.returncode != 0:
                            raise RuntimeError(done.stderr.decode(errors="replace"))

                    adb_s.append(_timed(adb_push))
                    vdev.host_path(f"{REMOTE_DIR}/adb-{i}.bin").unlink()
                assert ours.push(local, f"{REMOTE_DIR}/kept.bin") is True
                again_s = []
                for _ in range(args.rounds):
                    start = time.perf_counter()
                    skipped = ours.push(local, f"{REMOTE_DIR}/kept.bin") is False
                    again_s.append(time.perf_counter() - start)
                    assert skipped, "an unchanged file was transferred again"
            finally:
                ours.close()
                adb.close()
    ours_mb_s = size_bytes / 1e6 / statistics.median(ours_s)
    adb_mb_s = size_bytes / 1e6 / statistics.median(adb_s)
    first_s, again_med_s = statistics.median(ours_s), statistics.median(again_s)
    print(f"# push of {size_bytes / 1e6:.0f} MB to one virtual device, interleaved, median of {args.rounds}"
          + (" (device checksum vectorised: diagnosis)" if args.device_fast_checksum else ""))
    print(f"edgeharness (adb-shell) {ours_mb_s:8.1f} MB/s   ({first_s:.2f} s)   runs: "
          + " ".join(f"{s:.2f}" for s in ours_s))
    print(f"adb push (AOSP client)  {adb_mb_s:8.1f} MB/s   ({statistics.median(adb_s):.2f} s)   runs: "
          + " ".join(f"{s:.2f}" for s in adb_s))
    ratio = ours_mb_s / adb_mb_s
    print(f"ratio ours/adb          {ratio:8.2f}      (target >= 0.50: {'met' if ratio >= 0.5 else 'NOT met'})")
    share = again_med_s / first_s
    print(f"unchanged push again    {again_med_s * 1000:8.1f} ms     = {share:.1%} of a first push "
          f"(target < 5%: {'met' if share < 0.05 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
