"""Where does the smoke suite's wall time go?

Runs ``suites/smoke.toml`` on the host device (no report), then prints side by side:
  - the wall time of the whole run,
  - the time spent inside measured inference (sum of every measured iteration),
  - the time spent inside warm-up and first inference, and in init (model load),
  - their ratio, and the per-repetition fixed cost = (wall - measured - warm-up - init) / repetitions,
    i.e. process spawn, Python and LiteRT import, model staging and result parsing.

The host device forks each repetition from a preloaded zygote (``harness/runners/zygote.py``, reached
through the sh client ``zygote_client.sh``); ``--zygote off`` runs every repetition as a fresh Python (the
"before" figure), ``--zygote both`` runs the suite both ways, one after the other. In this mode the fixed
cost also holds the zygote's one-time start (LiteRT import and warm-up, seconds on a loaded machine) spread
over the run's repetitions, and the harness's own per-repetition work (samplers' wrapper, store);
``--variance`` measures the per-repetition process cost alone.

``--variance N``: the process alone, without the rest of the harness (samplers, store, per-case work).
One model, N repetitions with the zygote and N fresh, interleaved (fresh, forked, fresh, ...) through
the host shell. Prints per way the process's fixed cost per repetition = wall of the shell command -
(init + first inference + warm-up + measured inference, as the runner timed them), and whether forking
artificially reduces the between-repetition variance: the coefficient of variation (CV) of the
repetitions' median latencies for each way, and Levene's (Brown-Forsythe) test that their spreads are equal.

Usage: python benchmarks/overhead.py [--suite suites/smoke.toml] [--repetitions N] [--runs N] [--zygote on|off|both]
       python benchmarks/overhead.py --variance 30 [--model face_landmark] [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.api import run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="suites/smoke.toml")
    ap.add_argument("--repetitions", type=int)
    ap.add_argument("--runs", type=int)
    ap.add_argument("--zygote", choices=("on", "off", "both"), default="both")
    ap.add_argument("--variance", type=int, metavar="N", help="the variance check with N repetitions per way")
    ap.add_argument("--model", default="face_landmark", help="zoo model of the variance check")
    args = ap.parse_args()
    if args.variance:
        return variance(args.model, args.variance, args.runs or 30)
    for way in (("on", "off") if args.zygote == "both" else (args.zygote,)):
        os.environ["HARNESS_HOST_ZYGOTE"] = "1" if way == "on" else "0"
        overhead(args, way)
    return 0


def overhead(args: argparse.Namespace, way: str) -> None:
    """Run the suite once and print where its wall time went."""
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
    print(f"# overhead of {args.suite} (zygote {way}): {len(summary.results)} cases, {reps} repetitions "
          f"(processes), statuses {summary.counts()}")
    print(f"wall time of the run           {wall_s:8.2f} s")
    print(f"inside measured inference      {measured_s:8.2f} s   ({measured_s / wall_s:6.1%} of wall)")
    print(f"warm-up + first inference      {warm_s:8.2f} s   ({warm_s / wall_s:6.1%})")
    print(f"init (model load, allocation)  {init_s:8.2f} s   ({init_s / wall_s:6.1%})")
    print(f"fixed cost (spawn, imports...) {fixed_s:8.2f} s   ({fixed_s / wall_s:6.1%})")
    print(f"wall / measured ratio          {wall_s / measured_s:8.2f} x")
    print(f"fixed cost per repetition      {1000 * fixed_s / max(reps, 1):8.1f} ms")


def variance(model_name: str, n: int, runs: int) -> int:
    """Interleaved fresh and forked repetitions of one model: CV of the per-repetition medians, each way."""
    from scipy.stats import levene

    from harness import zoo
    from harness.devices.host import HostDevice
    from harness.runners import litert_python

    model = str(zoo.fetch(model_name))
    with tempfile.TemporaryDirectory() as cache:
        device = HostDevice(cache_dir=Path(cache), zygote=True)
        launcher = device.pyrunner_launcher()
        if not launcher:
            print(f"no zygote: {device.zygote_off_reason}")
            return 1
        medians: dict[str, list[float]] = {"fresh": [], "zygote": []}
        fixed: dict[str, list[float]] = {"fresh": [], "zygote": []}
        try:
            for _ in range(n):
                for way, prefix in (("fresh", ()), ("zygote", launcher)):
                    cmd = litert_python.command(sys.executable, str(litert_python.SCRIPT), model, delegate="xnnpack",
                                                threads=1, warmup_runs=5, measured_runs=runs, launcher=prefix)
                    t0 = time.perf_counter()
                    done = device.shell(cmd, 120)
                    wall_ms = (time.perf_counter() - t0) * 1000
                    outcome = litert_python.parse(done.output, done.exit_code)
                    rep = outcome.repetition
                    if rep is None:
                        print(f"{way}: {outcome.reason}")
                        return 1
                    inside_us = ((rep.init_us or 0) + (rep.first_inference_us or 0) + (rep.warmup_avg_us or 0) * 4
                                 + sum(rep.samples_us))
                    fixed[way].append(wall_ms - inside_us / 1000)
                    medians[way].append(statistics.median(rep.samples_us))
        finally:
            device.close()
    print(f"# between-repetition variance, {model_name} xnnpack 1 thread, {runs} runs per repetition, "
          f"{n} repetitions per way, interleaved")
    for way, values in fixed.items():
        q = statistics.quantiles(values, n=10)
        print(f"{way:7s} process fixed cost per repetition: median {statistics.median(values):7.1f} ms "
              f"(p10 {q[0]:.1f}, p90 {q[-1]:.1f}, n={len(values)})")
    for way, values in medians.items():
        mean = statistics.fmean(values)
        print(f"{way:7s} median of medians {statistics.median(values):9.1f} us   "
              f"CV of medians {statistics.stdev(values) / mean:7.2%}   n={len(values)}")
    stat, p = levene(medians["fresh"], medians["zygote"], center="median")
    print(f"Levene (Brown-Forsythe) equal spread: W={stat:.3f} p={p:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
