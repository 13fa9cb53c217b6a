"""Does the host runner measure what Google's own tool measures?

For each zoo model, runs interleaved (A B C, A B C, ...) over N rounds, each arm a fresh process:
  A = edgeharness host runner, Interpreter API (XNNPACK, the suite default)
  B = edgeharness host runner, CompiledModel API (what the official tool uses)
  C = Google's ``litert-benchmark`` (installed with ai-edge-litert; CompiledModel, CPU accelerator)
all with the same thread count, warm-up and run counts. Prints, per model, the ratio of medians
runner/tool with a 95% bootstrap interval over rounds (each round pairs one A, B, C launched
back to back, so slow drifts of this shared machine cancel in the ratio).

Usage: python benchmarks/agreement.py [--rounds 10] [--runs 50] [--threads 1] [--models a,b]
Target: A/C and B/C within 0.90-1.10.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from harness import zoo
from harness.runners import litert_python

TOOL = Path(sys.executable).with_name("litert-benchmark")


def runner_median_us(model: Path, api: str, threads: int, warmup: int, runs: int) -> float:
    cmd = litert_python.command(sys.executable, str(litert_python.SCRIPT), str(model), delegate="xnnpack",
                                threads=threads, warmup_runs=warmup, measured_runs=runs, api=api)
    proc = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=300)
    outcome = litert_python.parse(proc.stdout, proc.returncode)
    if outcome.status != "ok":
        raise SystemExit(f"runner failed on {model}: {outcome.reason}")
    return statistics.median(outcome.repetition.samples_us)


def tool_median_us(model: Path, threads: int, warmup: int, runs: int) -> float:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [str(TOOL), f"--model={model}", f"--num_threads={threads}", f"--warmup_runs={warmup}",
               f"--num_runs={runs}", f"--result_json={out.name}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise SystemExit(f"litert-benchmark failed on {model}: {proc.stderr[-400:]}")
        data = json.loads(Path(out.name).read_text())
    return float(data["latency"]["median_ms"]) * 1000.0


def ratio_ci(a: list[float], b: list[float], seed: int = 0, n_boot: int = 4000) -> tuple[float, float, float]:
    """Median of per-round ratios a/b with a bootstrap 95% interval over rounds."""
    ratios = np.asarray(a) / np.asarray(b)
    rng = np.random.default_rng(seed)
    boots = np.median(rng.choice(ratios, size=(n_boot, len(ratios)), replace=True), axis=1)
    return float(np.median(ratios)), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", default="", help="comma-separated zoo names (default: every distinct model)")
    args = ap.parse_args()
    if not TOOL.exists():
        raise SystemExit(f"{TOOL} not found: install ai-edge-litert in this environment")
    names = args.models.split(",") if args.models else []
    if not names:
        seen: set[str] = set()
        for name, m in sorted(zoo.MODELS.items()):
            if m.sha256 not in seen:  # face_detection_short_range has the same bytes as _front
                seen.add(m.sha256)
                names.append(name)
    print(f"# agreement: {args.rounds} interleaved rounds, {args.warmup} warm-up + {args.runs} runs, "
          f"{args.threads} thread(s); latency = median of per-iteration times in one process (us)")
    print(f"{'model':<34}{'A interp':>10}{'B compiled':>12}{'C tool':>10}   {'A/C (95% CI)':<22}{'B/C (95% CI)':<22}")
    verdicts = []
    for name in names:
        model = zoo.fetch(name)
        a, b, c = [], [], []
        for _ in range(args.rounds):
            a.append(runner_median_us(model, "interpreter", args.threads, args.warmup, args.runs))
            b.append(runner_median_us(model, "compiled", args.threads, args.warmup, args.runs))
            c.append(tool_median_us(model, args.threads, args.warmup, args.runs))
        ac, bc = ratio_ci(a, c), ratio_ci(b, c)
        verdicts.append((name, ac, bc))
        print(f"{name:<34}{statistics.median(a):>10.0f}{statistics.median(b):>12.0f}{statistics.median(c):>10.0f}   "
              f"{ac[0]:.3f} ({ac[1]:.3f}-{ac[2]:.3f})    {bc[0]:.3f} ({bc[1]:.3f}-{bc[2]:.3f})", flush=True)
    inside = [n for n, ac, bc in verdicts if 0.90 <= ac[0] <= 1.10 and 0.90 <= bc[0] <= 1.10]
    print(f"# within 0.90-1.10 (both APIs): {len(inside)}/{len(verdicts)} models")
    return 0


if __name__ == "__main__":
    sys.exit(main())
