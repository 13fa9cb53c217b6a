"""Scale of the controller: 16 virtual devices in parallel from one ``harness run`` and through pytest-xdist.

Starts N virtual devices (default 16), each in its own process (``python -m harness.testing serve``), and a
temporary project holding one tiny suite under ``suites/`` (zoo ``face_detection_front``, delegate ``cpu``,
2 repetitions x 20 measured runs: one case per device). Then, each on 1 device and on all N
(direct ``adb:127.0.0.1:PORT`` ids), in this order:

- ``harness run suites/fleet.toml --device ... --out DIR`` (one process; the orchestrator drives each device
  from its own thread);
- ``pytest suites/ -n 4 --harness-device ... --harness-out DIR`` (pytest-xdist: a controller and 4 workers;
  the plugin schedules by device and folds the workers' parts into one run).

Prints per row: wall seconds, cases, what the store holds (JSONL lines over every file, SQLite index rows,
ok results; "all stored once" when lines = distinct (run, case, device) = index rows = cases), and the
controller's own CPU seconds (``getrusage(RUSAGE_CHILDREN)`` user+sys of this script around the command:
the front's process tree, i.e. the CLI, or pytest's controller and its workers, including their start-up
and the HTML report both fronts render; the devices' processes are reaped only at the end, so their CPU
is not in it), per case and marginal per added case ((CPU_N - CPU_1) / (N - 1)). One sample per row.

Usage: python benchmarks/fleet.py [--devices 16] [--workers 4]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from adb_server_fleet import measure, print_rows, start_devices, write_suite  # the script next to this one

CHILDREN = resource.RUSAGE_CHILDREN


def _command(argv: list[str], cwd: Path) -> None:
    done = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:  # the counts still print; say why they may be short
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        print(f"warning: {' '.join(argv[:4])} ... exited {done.returncode}: " + " | ".join(tail), file=sys.stderr)


def harness_run(project: Path, ids: list[str], out: Path) -> None:
    """One ``harness run`` of the suite on ``ids``."""
    devices = [arg for i in ids for arg in ("--device", i)]
    _command([sys.executable, "-m", "harness.cli", "run", "suites/fleet.toml", *devices, "--out", str(out)], project)


def pytest_xdist(project: Path, ids: list[str], out: Path, workers: int) -> None:
    """``pytest suites/ -n WORKERS`` on ``ids`` in the temporary project."""
    devices = [arg for i in ids for arg in ("--harness-device", i)]
    _command([sys.executable, "-m", "pytest", "suites/", "-n", str(workers), "-q", "-p", "no:cacheprovider",
              *devices, "--harness-out", str(out)], project)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=16, help="virtual devices driven at once")
    ap.add_argument("--workers", type=int, default=4, help="pytest-xdist workers (-n)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="eh-fleet-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        project = work / "project"
        write_suite(project / "suites" / "fleet.toml", "fleet")
        ids = [f"adb:{address}" for address in start_devices(args.devices, work, stack)]
        n = len(ids)
        cli = [measure(len(sel), work / f"run-{len(sel)}",
                       lambda sel=sel: harness_run(project, sel, work / f"run-{len(sel)}"), CHILDREN)
               for sel in (ids[:1], ids)]
        xdist = [measure(len(sel), work / f"xdist-{len(sel)}",
                         lambda sel=sel: pytest_xdist(project, sel, work / f"xdist-{len(sel)}", args.workers), CHILDREN)
                 for sel in (ids[:1], ids)]
    print(f"# one suite (face_detection_front, cpu, 2 repetitions x 20 runs) per virtual device, 1 vs {n} devices "
          f"(direct adb), each device in its own process; 1 sample per row")
    print_rows("harness run (one process)", *cli, "CPU = the CLI process (RUSAGE_CHILDREN), start-up + report included")
    print_rows(f"pytest suites/ -n {args.workers} (xdist)", *xdist,
               f"CPU = pytest controller + {args.workers} workers (RUSAGE_CHILDREN), start-up + report included")
    return 0


if __name__ == "__main__":
    sys.exit(main())
