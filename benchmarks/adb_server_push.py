"""Push through the adb server: the harness's ``adb-server`` backend vs ``adb push``, same file, same device.

Starts one virtual device in its own process (``python -m harness.testing serve``: in this process it
would compete with our pusher for the GIL, which ``adb push``, a separate process, never does) and
Debian's ``adb`` server on a private port, attaches the device to the server (``adb connect``), then
pushes the same random file (100 MB by default) with the harness's ``AdbServerDevice.push`` (sync
through the server via adbutils, temporary name, size check, rename, digest sidecar: three shell
commands besides the transfer) and with the AOSP ``adb push`` client through the same server,
interleaved (ours, adb, ours, adb, ...) so both see the same machine load, ``--rounds`` times each
(default 5). Each push goes to a fresh path (none is skipped by the sha256 check); the host-side
sha256 of the file is computed once before timing (the backend caches it per file, as in a run).
Prints both medians in MB/s (10^6 bytes per second) and their ratio (target: ours >= 0.8 x adb).

Usage: python benchmarks/adb_server_push.py [--size-mb 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from push_throughput import _timed, _write_random  # the script next to this one (same folder on sys.path)

from harness.devices.adb_server import AdbServerDevice, list_server
from harness.devices.adb_servers import ServerAddress
from harness.testing.android.client import AdbClient

REMOTE_DIR = "/data/local/tmp/edgeharness/bench"
TARGET = 0.8


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=100.0, help="file size in MB (10^6 bytes)")
    ap.add_argument("--rounds", type=int, default=5, help="pushes per tool (median reported)")
    args = ap.parse_args()
    size_bytes = int(args.size_mb * 1e6)
    with tempfile.TemporaryDirectory(prefix="eh-srv-push-bench-") as tmp:
        work = Path(tmp)
        local = work / "payload.bin"
        _write_random(local, size_bytes)
        adb = AdbClient(work / "adb-home")
        server = subprocess.Popen([adb.adb, "-L", f"tcp:{adb.server_port}", "nodaemon", "server"], env=adb.env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        address = ServerAddress("127.0.0.1", adb.server_port)
        try:
            deadline = time.monotonic() + 15
            while list_server(address).error is not None and time.monotonic() < deadline:
                time.sleep(0.1)
            device = subprocess.Popen([sys.executable, "-m", "harness.testing", "serve", "--root", str(work / "device"),
                                       "--static-sensors"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True)
            try:
                serial = device.stdout.readline().split(" on ", 1)[1].split()[0]  # type: ignore[union-attr]
                if adb.connect(serial) != "device":
                    print(f"adb could not connect to {serial}", file=sys.stderr)
                    return 1
                ours = AdbServerDevice(f"adb-server:{serial}", server=address, serial=serial)
                ours.shell(f"mkdir -p {REMOTE_DIR}").check()
                ours._local_sha256(local)  # once per file, as in a run (cached on path, size, mtime, inode)
                ours_s, adb_s = [], []
                for i in range(args.rounds):
                    ours_s.append(_timed(lambda i=i: ours.push(local, f"{REMOTE_DIR}/ours-{i}.bin")))
                    ours.shell(f"rm -f {REMOTE_DIR}/ours-{i}.bin").check()

                    def adb_push(i: int = i) -> None:
                        done = adb.run("push", str(local), f"{REMOTE_DIR}/adb-{i}.bin", serial=serial, timeout_s=600)
                        if done.returncode != 0:
                            raise RuntimeError(done.stderr.decode(errors="replace"))

                    adb_s.append(_timed(adb_push))
                    ours.shell(f"rm -f {REMOTE_DIR}/adb-{i}.bin").check()
            finally:
                device.terminate()
                device.wait(timeout=30)
        finally:
            server.kill()
            server.wait(timeout=10)
    ours_mb_s = size_bytes / 1e6 / statistics.median(ours_s)
    adb_mb_s = size_bytes / 1e6 / statistics.median(adb_s)
    print(f"# push of {size_bytes / 1e6:.0f} MB through one adb server to one virtual device, interleaved, "
          f"median of {args.rounds}")
    print(f"edgeharness (adb-server) {ours_mb_s:8.1f} MB/s   ({statistics.median(ours_s):.2f} s)   runs: "
          + " ".join(f"{s:.2f}" for s in ours_s))
    print(f"adb push (AOSP client)   {adb_mb_s:8.1f} MB/s   ({statistics.median(adb_s):.2f} s)   runs: "
          + " ".join(f"{s:.2f}" for s in adb_s))
    ratio = ours_mb_s / adb_mb_s
    verdict = "met" if ratio >= TARGET else "NOT met"
    print(f"ratio ours/adb           {ratio:8.2f}      (target >= {TARGET:.2f}: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
