#!/usr/bin/env python3
"""The fake iPhone's benchmark app: honours the edgeharness app contract with the host runner.

The fake starts this script as the "app process" when DVT launches the benchmark bundle.
Exactly like the real app must (see ``docs/ios.md``), it reads
``Documents/benchmark_params.json`` (TFLite benchmark flags; ``graph`` relative to
``Documents/``), runs the model (here in-process with ``harness/runners/pyrunner.py``, so the
process's CPU and memory are the benchmark's), writes ``Documents/results/RUN_ID.json`` and
prints ``EDGEHARNESS_DONE RUN_ID STATUS`` (the fake forwards stdout to syslog, as NSLog does).

Standalone: standard library plus whatever pyrunner imports.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import sys
import time
from pathlib import Path

SENTINEL = "EDGEHARNESS_DONE"
RESULT_PREFIX = "EDGEHARNESS_RESULT "
STATUS_BY_EXIT = {0: "ok", 1: "failed", 2: "model_rejected", 3: "delegate_unavailable"}


def runner_argv(params: dict, documents: Path) -> tuple[list[str] | None, str | None]:
    """Map TFLite benchmark flags to pyrunner arguments; (None, reason) for what the fake cannot run."""
    if _flag(params.get("use_coreml")):
        return None, "Core ML delegate is not available on the fake iPhone (no Apple Neural Engine)"
    graph = str(params.get("graph", ""))
    model = (documents / graph).resolve()
    if not graph or documents.resolve() not in model.parents:
        return None, f"graph {graph!r} is not a file inside Documents/"
    delegate = "gpu" if _flag(params.get("use_gpu")) else "xnnpack" if _flag(params.get("use_xnnpack")) else "cpu"
    return [
        "--model",
        str(model),
        "--delegate",
        delegate,
        "--threads",
        str(int(params.get("num_threads", 1))),
        "--warmup",
        str(int(params.get("warmup_runs", 1))),
        "--runs",
        str(int(params.get("num_runs", 20))),
    ], None


def _flag(value: object) -> bool:
    return str(value).lower() in ("1", "true", "yes")


def run_contract(documents: Path, run_id: str, pyrunner: Path) -> str:
    """Run one benchmark per the app contract; return the status written."""
    started = time.time()
    log = io.StringIO()
    try:
        params = json.loads((documents / "benchmark_params.json").read_text())
    except (OSError, ValueError) as exc:
        params, argv, reason = {}, None, f"cannot read benchmark_params.json: {exc}"
    else:
        argv, reason = runner_argv(params, documents)
    result: dict = {"status": "delegate_unavailable" if reason and "delegate" in reason else "failed", "reason": reason}
    if argv is not None:
        spec = importlib.util.spec_from_file_location("edgeharness_pyrunner", pyrunner)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        with contextlib.redirect_stdout(log):
            code = module.main(argv)
        line = next((ln for ln in log.getvalue().splitlines() if ln.startswith(RESULT_PREFIX)), None)
        result = json.loads(line[len(RESULT_PREFIX) :]) if line else {"reason": "runner printed no result"}
        result["status"] = STATUS_BY_EXIT.get(code, "failed")
    result.update(
        {"run_id": run_id, "params": params, "log": log.getvalue(), "started_at": started, "finished_at": time.time()}
    )
    results = documents / "results"
    results.mkdir(exist_ok=True)
    tmp = results / f".{run_id}.json.tmp"
    tmp.write_text(json.dumps(result))
    os.replace(tmp, results / f"{run_id}.json")
    return result["status"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--container", required=True, type=Path)
    p.add_argument("--pyrunner", required=True, type=Path)
    p.add_argument("--edgeharness-run", dest="run_id")
    p.add_argument("--hang", action="store_true", help="fault: never finish")
    args, _unknown = p.parse_known_args(argv)
    print("EdgeBench launched", flush=True)
    if args.hang:
        while True:
            time.sleep(3600)
    if not args.run_id:
        print("no --edgeharness-run: idle app launch", flush=True)
        return 0
    status = run_contract(args.container / "Documents", args.run_id, args.pyrunner)
    print(f"{SENTINEL} {args.run_id} {status}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
