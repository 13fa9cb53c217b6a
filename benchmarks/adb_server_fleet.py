"""Eight virtual devices behind one adb server, one suite each, in parallel from one harness run, vs one device.

Starts N virtual devices (default 8), each in its own process (``python -m harness.testing serve``: in this
process their threads and benchmark subprocesses would be counted as the controller's CPU), and Debian's
``adb`` server on a private port (``adb -L tcp:PORT nodaemon server``, killed at the end), attaches every
device to it (``adb connect``), then runs one tiny suite (zoo ``face_detection_front``, delegate ``cpu``,
2 repetitions x 20 measured runs) with ``harness.api.run`` on the ids
``adb-server:127.0.0.1:PORT/127.0.0.1:VPORT``: first on one device, then on all N in one run (the
orchestrator drives each device from its own thread). Prints, for both: the wall time and the ratio
N/1 (1.00 would be perfect scaling; on a 2-core machine the devices' benchmark processes compete for
the cores), whether every result is stored (JSONL lines, distinct cases and SQLite index rows vs the
expected count), and the controller's own CPU time (``getrusage(RUSAGE_SELF)`` user+sys of this process
around ``api.run``, report rendering off) per case, plus the marginal CPU per added case
((CPU_N - CPU_1) / (N - 1)), which removes the run's fixed cost.

Usage: python benchmarks/adb_server_fleet.py [--devices 8]
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path

from harness import api
from harness.devices.adb_server import list_server
from harness.devices.adb_servers import ServerAddress
from harness.testing.android.client import AdbClient

SUITE = """[suite]
name = "{name}"
delegates = ["cpu"]
threads = [1]
warmup_runs = 2
measured_runs = {runs}
repetitions = {repetitions}
timeout_s = 600

[[models]]
zoo = "face_detection_front"
"""
CASES_PER_DEVICE = 1  # one model x one delegate x one thread count
REPETITIONS, MEASURED_RUNS = 2, 20


def write_suite(path: Path, name: str) -> Path:
    """The tiny suite every device runs (one case)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SUITE.format(name=name, runs=MEASURED_RUNS, repetitions=REPETITIONS))
    return path


def start_devices(count: int, work: Path, stack: ExitStack) -> list[str]:
    """Start ``count`` virtual devices, each in its own process; return their ``HOST:PORT`` addresses."""
    procs = []
    for i in range(count):
        proc = subprocess.Popen([sys.executable, "-m", "harness.testing", "serve", "--root", str(work / f"dev{i}"),
                                 "--static-sensors"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        stack.callback(_stop, proc)
        procs.append(proc)
    addresses = []
    for proc in procs:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if " on " not in line:
            raise RuntimeError(f"a virtual device did not start (printed {line!r})")
        addresses.append(line.split(" on ", 1)[1].split()[0])
    return addresses


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def cpu_s(who: int = resource.RUSAGE_SELF) -> float:
    """User + system CPU seconds of this process (or of its reaped children)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Stored:
    """What the store holds after a run: JSONL lines, distinct (run, case, device), ok ones, index rows,
    latency samples (over every repetition) and the runners that measured."""

    lines: int
    distinct: int
    ok: int
    index_rows: int
    samples: int
    runners: str

    def verdict(self, expected: int) -> str:
        complete = self.lines == self.distinct == self.index_rows == expected
        missing = expected - self.distinct
        dupes = self.lines - self.distinct
        return "all stored once" if complete else f"NOT complete: {missing} missing, {dupes} duplicated"


def stored(out_dir: Path) -> Stored:
    """Count the results in a store folder: every JSONL file (parts included) and the SQLite index."""
    rows = [json.loads(line) for path in sorted(out_dir.glob("*.jsonl"))
            for line in path.read_text().splitlines() if line.strip()]
    keys = {(r["run_id"], r["case"]["case_id"], r["device"]["id"]) for r in rows}
    index_rows = 0
    if (out_dir / "harness.sqlite").is_file():  # absent when the run stored nothing
        with closing(sqlite3.connect(out_dir / "harness.sqlite")) as conn:
            (index_rows,) = conn.execute("SELECT count(*) FROM results").fetchone()
    samples = sum(len(rep["samples_us"]) for r in rows if r.get("latency") for rep in r["latency"]["repetitions"])
    runners = ",".join(sorted({r["case"]["runner"] for r in rows}))
    return Stored(len(rows), len(keys), sum(r["status"] == "ok" for r in rows), index_rows, samples, runners)


@dataclass
class Measured:
    """One run: devices, wall seconds, controller CPU seconds, what was stored."""

    devices: int
    wall_s: float
    cpu_s: float
    store: Stored

    @property
    def cases(self) -> int:
        return self.devices * CASES_PER_DEVICE


def measure(devices: int, out_dir: Path, action: Callable[[], None], who: int = resource.RUSAGE_SELF) -> Measured:
    """Time ``action`` (wall and the CPU of ``who``) and count what it stored in ``out_dir``."""
    cpu0, wall0 = cpu_s(who), time.perf_counter()
    action()
    wall, cpu = time.perf_counter() - wall0, cpu_s(who) - cpu0
    return Measured(devices, wall, cpu, stored(out_dir))


def print_rows(title: str, one: Measured, many: Measured, cpu_what: str) -> None:
    """The figures of one front side by side: 1 device vs N, stored counts, CPU per case."""
    print(f"{title:44s} {'wall s':>8s} {'cases':>6s} {'JSONL':>6s} {'index':>6s} {'ok':>4s} "
          f"{'samples':>7s} {'CPU s':>7s} {'CPU s/case':>10s}  stored")
    for m in (one, many):
        print(f"  {m.devices:3d} device(s){'':29s} {m.wall_s:8.1f} {m.cases:6d} {m.store.lines:6d} "
              f"{m.store.index_rows:6d} {m.store.ok:4d} {m.store.samples:7d} {m.cpu_s:7.2f} {m.cpu_s / m.cases:10.3f}  "
              f"{m.store.verdict(m.cases)}")
    marginal = (many.cpu_s - one.cpu_s) / max(1, many.cases - one.cases)
    print(f"  runner {many.store.runners}; samples expected per case: {REPETITIONS} x {MEASURED_RUNS}")
    print(f"  wall {many.devices}/1 = {many.wall_s / one.wall_s:.2f}   (1.00: perfect scaling; "
          f"{many.devices} x 1 device in series = {many.devices:.2f})")
    print(f"  {cpu_what}: marginal CPU per added case = {marginal:.3f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=8, help="virtual devices behind the one adb server")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="eh-srv-fleet-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        suite = write_suite(work / "fleet.toml", "fleet")
        adb = AdbClient(work / "adb-home")
        server = subprocess.Popen([adb.adb, "-L", f"tcp:{adb.server_port}", "nodaemon", "server"], env=adb.env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stack.callback(lambda: (server.kill(), server.wait(timeout=10)))
        address = ServerAddress("127.0.0.1", adb.server_port)
        deadline = time.monotonic() + 15
        while list_server(address).error is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        serials = start_devices(args.devices, work, stack)
        for serial in serials:
            if adb.connect(serial) != "device":
                print(f"adb could not connect to {serial}", file=sys.stderr)
                return 1
        ids = [f"adb-server:127.0.0.1:{adb.server_port}/{serial}" for serial in serials]

        def run_on(device_ids: list[str], out: Path) -> Callable[[], None]:
            return lambda: api.run(suite, devices=device_ids, out_dir=out, report=False)

        one = measure(1, work / "out-1", run_on(ids[:1], work / "out-1"))
        many = measure(len(ids), work / "out-n", run_on(ids, work / "out-n"))
    print("# one suite (face_detection_front, cpu, 2 repetitions x 20 runs) per virtual device, devices behind "
          "one adb server (Debian adb), one harness.api.run; each device in its own process; 1 sample per row")
    print_rows("harness.api.run via adb-server", one, many,
               "CPU = this process's getrusage(RUSAGE_SELF) user+sys around api.run, report off")
    return 0


if __name__ == "__main__":
    sys.exit(main())
