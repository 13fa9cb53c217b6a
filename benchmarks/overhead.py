"""Where does the smoke suite's wall time go?

Runs ``suites/smoke.toml`` on the host device (no report), then prints side by side:
  - the wall time of the whole run,
  - the time spent inside measured inference (sum of every measured iteration),
  - the time spent inside warm-up and first inference, and in init (model load),
  - their ratio, and the per-repetition fixed cost = (wall - measured - warm-up - init) / repetitions,
    i.e. process spawn, Python and LiteRT import, model staging and result parsing.

Usage: python benchmarks/overhead.py [--suite suites/smoke.toml] [--repetitions N] [--runs N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from harness.api import run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="suites/smoke.toml")
    ap.add_argument("--repetitions", type=int)
    ap.add_argument("--runs", type=int)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        summary = run(args.suite, out_dir=out, report=False, repetitions=args.repetitions, measured_runs=args.runs)
        wall_s = time.perf_counter() - t0
    measured_s = warm_s = init_s = 0.0
    reps = 0
    for r in summary.results:
        if r.latency is None:
            continue
        for rep in r.latency.repetitions:
            reps += 1
            measured_s += sum(rep.samples_us) / 1e6
            init_s += (rep.init_us or 0) / 1e6
            n_warm = max(0, r.case.warmup_runs - 1)
            warm_s += ((rep.first_inference_us or 0) + (rep.warmup_avg_us or 0) * n_warm) / 1e6
    fixed_s = wall_s - measured_s - warm_s - init_s
    print(f"# overhead of {args.suite}: {len(summary.results)} cases, {reps} repetitions (processes), "
          f"statuses {summary.counts()}")
    print(f"wall time of the run           {wall_s:8.2f} s")
    print(f"inside measured inference      {measured_s:8.2f} s   ({measured_s / wall_s:6.1%} of wall)")
    print(f"warm-up + first inference      {warm_s:8.2f} s   ({warm_s / wall_s:6.1%})")
    print(f"init (model load, allocation)  {init_s:8.2f} s   ({init_s / wall_s:6.1%})")
    print(f"fixed cost (spawn, imports...) {fixed_s:8.2f} s   ({fixed_s / wall_s:6.1%})")
    print(f"wall / measured ratio          {wall_s / measured_s:8.2f} x")
    print(f"fixed cost per repetition      {1000 * fixed_s / max(reps, 1):8.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
