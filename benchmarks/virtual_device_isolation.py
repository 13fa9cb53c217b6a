"""Per-command cost of the virtual device's isolation mechanisms (why it keeps one namespace alive).

Runs ``getprop ro.product.model`` N times through: a plain host shell (no device
view, the floor), a persistent mount namespace entered with nsenter (what the
device uses), a fresh namespace built for each command, and proot. Prints the
median milliseconds per command and the ratio to the floor.
"""

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.errors import DeviceError
from harness.testing.android.device_profile import load_profile
from harness.testing.android.isolation import NamespaceIsolation, ProotIsolation, _self_test, device_environment
from harness.testing.android.sandbox import Sandbox

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
COMMAND = "getprop ro.product.model >/dev/null"


def _median_ms(make_argv) -> float:
    samples = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(make_argv(), env=device_environment(), check=False, capture_output=True)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    sandbox = Sandbox(Path(tempfile.mkdtemp(prefix="eh-bench-")), load_profile())
    sandbox.populate()
    rows = [("plain sh (no device view)", _median_ms(lambda: ["/bin/sh", "-c", "true"]))]
    try:
        persistent = NamespaceIsolation(sandbox)
        rows.append(("namespace, kept alive + nsenter", _median_ms(lambda: persistent.argv(COMMAND))))
        persistent.close()

        def fresh() -> list[str]:
            iso = NamespaceIsolation(sandbox)
            iso.close()
            return ["/bin/sh", "-c", "true"]

        rows.append(("namespace built per command", _median_ms(fresh)))
    except DeviceError as exc:
        rows.append((f"namespace unavailable: {exc.message}", float("nan")))
    proot = ProotIsolation(sandbox)
    problem = _self_test(proot)
    label = "proot" if problem is None else f"proot (BROKEN here: {problem[:60]})"
    rows.append((label, _median_ms(lambda: proot.argv(COMMAND))))
    floor = rows[0][1]
    print(f"{'mechanism':60s} {'median ms':>10s} {'x plain':>8s}")
    for name, ms in rows:
        print(f"{name:60s} {ms:10.1f} {ms / floor:8.1f}")
    sandbox.wipe()


if __name__ == "__main__":
    main()
