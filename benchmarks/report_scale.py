"""How long does `harness report` take on a fleet-size run, and how much memory?

1. Runs ``suites/smoke.toml`` on the host (3 models x cpu/xnnpack x 1/2 threads, 3 repetitions x 30
   iterations: 12 real results, about 11 kB of JSONL each), or takes ``--from FILE.jsonl``.
2. Replicates those real records into 1,000 results (10 devices x 25 models x 4 configurations) and
   10,000 (100 devices x 25 models x 4 = 100 devices x 100 cases, about 100 MB). Each copy gets a new
   device id and model name (and sha256, as another model would); its samples are scaled by a per-device
   speed factor (0.5-3x) and, for xnnpack, a per-device-and-model factor (0.4-15x), so the matrix has both
   delegates winning;
   3% of cases become ``failed`` (latency dropped). Everything else (raw output, readings) is the real record.
3. Times ``harness report FILE -o OUT.html`` as a user runs it (a fresh process: interpreter start and
   imports included) ``--runs`` times per size, in the folder form (``--form auto`` picks it), and
   today's single-file renderer (``--form file``) on the 1,000 ``--old-runs`` times. With ``--before TREE``
   (a checkout of an earlier commit, e.g. ``git worktree add /tmp/before main``), that tree's folder
   renderer is timed too, run for run interleaved with this one (before, now, before, now, ...), so both
   see the same load on a shared machine.

Printed per run: wall s (perf_counter around the process), CPU s (user+sys of the process and its
helper; the main process's own share alone, which waits for the helper rather than burning CPU, is a
lower bound of the wall time on an idle 2-CPU machine), peak RSS MB of the main process and of its
forked helper (ru_maxrss; the helper shares most pages with the parent copy-on-write, so their sum
over-counts), peak PSS MB of both together (shared pages split between them; psutil, sampled every
20 ms), opening page size. Then the medians and the load average before and after (the machine may be
shared: wall time depends on it, CPU less).

Usage: python benchmarks/report_scale.py [--from FILE.jsonl] [--runs 5] [--old-runs 1] [--keep DIR]
                                        [--sizes 1000,10000] [--before TREE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
MODELS = 25
SIZES = {1_000: 10, 10_000: 100}  # results -> devices (x 25 models x 4 configurations)

# Runs the CLI in this (fresh) process, then prints its resource usage as JSON on the last line of stderr.
_PROBE = """
import json, resource, sys
from harness.cli import main
code = main(sys.argv[1:])
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"code": code, "rss_mb": me.ru_maxrss / 1024, "helper_rss_mb": kids.ru_maxrss / 1024,
                  "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
                  "main_cpu_s": me.ru_utime + me.ru_stime}), file=sys.stderr)
"""


def real_records(source: str | None, work: Path) -> list[dict]:
    """The records of a real run: ``source``, or a fresh smoke run on the host."""
    if source is None:
        from harness.api import run

        print("# measuring the real run: suites/smoke.toml on host, 3 repetitions x 30 iterations ...", flush=True)
        summary = run(ROOT / "suites" / "smoke.toml", out_dir=work / "real", report=False, repetitions=3)
        source = str(summary.results_path)
    records = [json.loads(line) for line in Path(source).read_text(encoding="utf-8").splitlines() if line.strip()]
    ok = sum(r["status"] == "ok" for r in records)
    print(f"# real run: {source}: {len(records)} records ({ok} ok)")
    return records


def _scaled(latency: dict | None, factor: float) -> dict | None:
    if latency is None:
        return None
    reps = []
    for rep in latency["repetitions"]:
        rep = dict(rep)
        rep["samples_us"] = [round(v * factor, 3) for v in rep.get("samples_us") or []]
        for key in ("init_us", "first_inference_us", "warmup_avg_us", "avg_us", "min_us", "max_us", "median_us"):
            if rep.get(key) is not None:
                rep[key] = rep[key] * factor
        reps.append(rep)
    return {**latency, "repetitions": reps}


def replicate(records: list[dict], devices: int, out: Path, seed: int = 0) -> int:
    """Write ``devices x MODELS x configurations`` records made from the real ones; returns the count."""
    rng = random.Random(seed)
    by_model: dict[str, list[dict]] = {}
    for r in records:
        by_model.setdefault(r["case"]["model"], []).append(r)
    names = sorted(by_model)
    count = 0
    with out.open("w", encoding="utf-8") as fh:
        for d in range(devices):
            dev_id = f"adb:10.0.{d // 250}.{d % 250}:5555"
            speed = math.exp(rng.uniform(math.log(0.5), math.log(3.0)))
            for m in range(MODELS):
                source = names[m % len(names)]
                accel = math.exp(rng.uniform(math.log(0.4), math.log(15.0)))
                for r in by_model[source]:
                    r = json.loads(json.dumps(r))
                    factor = speed * (accel if r["case"]["delegate"] != "cpu" else 1.0)
                    r["device"] = {**r["device"], "id": dev_id, "model": f"Phone {d % 23}", "platform": "android"}
                    case = r["case"]
                    case["model"] = f"{source}_v{m:02d}"
                    case["model_sha256"] = hashlib.sha256(case["model"].encode()).hexdigest()  # another model
                    case["case_id"] = f"{case['model']}[{dev_id}-{case['delegate']}-t{case['threads']}]"
                    r["latency"] = _scaled(r.get("latency"), factor)
                    if rng.random() < 0.03:
                        r.update(status="failed", latency=None,
                                 reason=f"delegate {r['case']['delegate']} failed to prepare on this device")
                    fh.write(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n")
                    count += 1
    return count


def _pss_mb(pid: int) -> float:
    """Proportional set size of a process and its children (shared pages split between them), MB."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_full_info().pss
        except psutil.Error:
            pass
    return total / 2**20


def timed(args: list[str], root: Path = ROOT) -> dict:
    """Run ``harness ARGS`` (of the source tree ``root``) in a fresh process; its wall time, CPU, peak RSS and
    peak PSS (sampled every 20 ms)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(root), os.environ.get("PYTHONPATH"))))}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _PROBE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=root)  # cwd: "-c" puts it first on sys.path
    peak_pss = 0.0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_pss
        while not stop.wait(0.02):
            peak_pss = max(peak_pss, _pss_mb(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    proc = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if proc.returncode != 0:
        raise SystemExit(f"harness {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    stats = json.loads(proc.stderr.strip().splitlines()[-1])
    page = Path(proc.stdout.split("report:", 1)[1].strip())
    return {**stats, "wall_s": wall, "pss_mb": peak_pss, "page": page, "page_mb": page.stat().st_size / 2**20,
            "load": os.getloadavg()[0]}


def folder_size(path: Path) -> tuple[int, float, float]:
    files = [p for p in path.iterdir() if p.is_file()]
    sizes = [p.stat().st_size / 2**20 for p in files]
    return len(files), sum(sizes), max(sizes)


def report(label: str, runs: list[dict]) -> dict:
    for i, r in enumerate(runs, 1):
        print(f"  {label} run {i}: wall {r['wall_s']:6.2f} s  cpu {r['cpu_s']:6.2f} s (main {r['main_cpu_s']:5.2f} s)"
              f"  peak RSS {r['rss_mb']:6.0f} MB"
              f" (helper {r['helper_rss_mb']:4.0f} MB)  peak PSS both {r['pss_mb']:5.0f} MB"
              f"  opening page {r['page_mb']:6.2f} MB  load {r['load']:.1f}")
    keys = ("wall_s", "cpu_s", "main_cpu_s", "rss_mb", "helper_rss_mb", "pss_mb", "page_mb")
    med = {k: statistics.median(r[k] for r in runs) for k in keys}
    print(f"  {label} MEDIAN of {len(runs)}: wall {med['wall_s']:.2f} s, cpu {med['cpu_s']:.2f} s "
          f"(main process {med['main_cpu_s']:.2f} s), "
          f"peak RSS {med['rss_mb']:.0f} MB (helper {med['helper_rss_mb']:.0f} MB), peak PSS of both "
          f"{med['pss_mb']:.0f} MB, opening page {med['page_mb']:.2f} MB")
    return med


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="source", help="a real run's JSONL (default: run suites/smoke.toml now)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per size (default 5)")
    ap.add_argument("--old-runs", type=int, default=1, help="timed runs of the single-file renderer on 1,000")
    ap.add_argument("--keep", help="write inputs and reports here (default: a temporary folder)")
    ap.add_argument("--sizes", default="1000,10000", help="which sizes to time (default 1000,10000)")
    ap.add_argument("--before", help="a source tree whose folder renderer is timed too, interleaved run for run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        records = real_records(args.source, work)
        print(f"# load average before: {os.getloadavg()}, CPUs: {os.cpu_count()}")
        summary = {}
        sizes = {n: SIZES[n] for n in map(int, args.sizes.split(","))}
        for n, devices in sizes.items():
            src = work / f"fleet-{n}.jsonl"
            count = replicate(records, devices, src)
            print(f"# {count} results ({devices} devices x {MODELS} models x 4 configurations), "
                  f"{src.stat().st_size / 2**20:.1f} MB of JSONL; new renderer (folder form)")
            runs, before = [], []
            for _ in range(args.runs):
                if args.before:
                    before.append(timed(["report", str(src), "-o", str(work / f"before-{n}.html")], Path(args.before)))
                runs.append(timed(["report", str(src), "-o", str(work / f"new-{n}.html")]))
            if before:
                summary[f"before-{n}"] = report(f"{n:>6} before", before)
            summary[n] = report(f"{n:>6} new", runs)
            pages, total_mb, biggest_mb = folder_size(runs[0]["page"].parent)
            print(f"  {n:>6} new folder: {pages} pages, {total_mb:.1f} MB in all, largest page {biggest_mb:.2f} MB")
        if args.old_runs:
            src = work / "fleet-1000.jsonl"
            if not src.exists():
                replicate(records, SIZES[1000], src)
            print("# 1000 results, today's single-file renderer (--form file)")
            old = [timed(["report", str(src), "-o", str(work / "old-1000.html"), "--form", "file"])
                   for _ in range(args.old_runs)]
            summary["old"] = report("  1000 old", old)
        print(f"# load average after: {os.getloadavg()}")
        print("# targets: 10,000 results <= 3 s wall and <= 500 MB peak RSS; 1,000 <= 1 s; opening page <= 2 MB")
        for n in sizes:
            m = summary[n]
            print(f"#   {n}: median wall {m['wall_s']:.2f} s, median cpu {m['cpu_s']:.2f} s (main process "
                  f"{m['main_cpu_s']:.2f} s: a lower bound of the wall time on an idle 2-CPU machine), peak RSS "
                  f"{m['rss_mb']:.0f} MB (helper {m['helper_rss_mb']:.0f} MB; PSS of both {m['pss_mb']:.0f} MB), "
                  f"opening page {m['page_mb']:.2f} MB")
        for n in sizes:
            if f"before-{n}" in summary:
                m, b = summary[n], summary[f"before-{n}"]
                print(f"#   {n} with {args.before} (before), same runs interleaved: median wall {b['wall_s']:.2f} s "
                      f"-> {m['wall_s']:.2f} s, cpu {b['cpu_s']:.2f} s -> {m['cpu_s']:.2f} s, main process "
                      f"{b['main_cpu_s']:.2f} s -> {m['main_cpu_s']:.2f} s, peak RSS {b['rss_mb']:.0f} MB -> "
                      f"{m['rss_mb']:.0f} MB, PSS of both {b['pss_mb']:.0f} MB -> {m['pss_mb']:.0f} MB")
        if "old" in summary:
            m = summary["old"]
            print(f"#   1000 with today's single-file renderer: wall {m['wall_s']:.1f} s, cpu {m['cpu_s']:.1f} s, "
                  f"peak RSS {m['rss_mb']:.0f} MB, page {m['page_mb']:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
