#!/usr/bin/env python3
"""Single-file LiteRT benchmark runner: runs in a child process on the host or on a device with Python.

It imports only the standard library, numpy and the LiteRT runtime (``ai_edge_litert``,
falling back to ``tflite_runtime``), so the harness can push this one file to a Linux
board or the virtual Android device and run it with the device's ``python3``.

Why a child process: a crash in a delegate cannot take the harness down, and the
process's resident memory belongs to the benchmark alone.

What it measures, all with ``time.perf_counter_ns`` (monotonic, ns resolution):

- ``init_us``: model load + interpreter/compiled-model creation + tensor allocation;
- ``first_inference_us``: the first ``invoke()`` (includes lazy delegate work);
- ``warmup_us``: each further warm-up ``invoke()`` (not used for statistics);
- ``samples_us``: every measured ``invoke()``, one value per iteration;
- ``rss_*_mb``: resident set size (MiB) read from ``/proc/self/status`` before and after
  init, and ``peak_rss_mb`` from ``getrusage(RUSAGE_SELF).ru_maxrss`` (the kernel's high-water mark).

Inputs are filled once from a seeded generator, so two delegates see the same inputs and
their outputs can be compared (``outputs`` holds a short fingerprint of each output tensor).

Output: one stdout line ``EDGEHARNESS_RESULT {json}``. Exit codes: 0 ok, 1 error,
2 model rejected by the runtime, 3 delegate unavailable on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

RESULT_PREFIX = "EDGEHARNESS_RESULT "
EXIT_OK, EXIT_ERROR, EXIT_MODEL, EXIT_DELEGATE = 0, 1, 2, 3
DELEGATES = ("cpu", "xnnpack", "gpu")
APIS = ("interpreter", "compiled")


class RunnerFailure(Exception):
    """A failure with the exit code and status the parent should record."""

    def __init__(self, code: int, status: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.status = status
        self.reason = reason


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _runtime() -> tuple[str, str]:
    try:
        import ai_edge_litert

        return "ai-edge-litert", getattr(ai_edge_litert, "__version__", "unknown")
    except ImportError:
        pass
    try:
        import tflite_runtime

        return "tflite-runtime", getattr(tflite_runtime, "__version__", "unknown")
    except ImportError as exc:
        raise RunnerFailure(EXIT_ERROR, "failed", "no LiteRT runtime: pip install ai-edge-litert") from exc


def _random_input(rng: object, shape: list[int], dtype: object) -> object:
    import numpy as np

    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.floating):
        return rng.uniform(-1.0, 1.0, size=shape).astype(dt)  # type: ignore[attr-defined]
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        return rng.integers(max(info.min, -128), min(info.max, 127) + 1, size=shape, dtype=dt)  # type: ignore[attr-defined]
    if dt == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)  # type: ignore[attr-defined]
    return np.zeros(shape, dtype=dt)


def _fingerprint(name: str, array: object) -> dict:
    import numpy as np

    arr = np.asarray(array)
    flat = arr.astype(np.float64).ravel() if arr.size else np.zeros(0)
    return {
        "name": name,
        "shape": list(arr.shape),
        "dtype": str(arr.dtype),
        "mean": float(flat.mean()) if flat.size else None,
        "abs_max": float(np.abs(flat).max()) if flat.size else None,
        "head": [float(x) for x in flat[:16]],
    }


class InterpreterSession:
    """The classic ``Interpreter`` API (what apps using TFLite's Java/Python API run)."""

    def __init__(self, model: str, delegate: str, threads: int) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType
        except ImportError:
            from tflite_runtime.interpreter import Interpreter, OpResolverType  # type: ignore[no-redef]
        if delegate == "gpu":
            raise RunnerFailure(
                EXIT_DELEGATE,
                "skipped",
                "the Interpreter API in this LiteRT wheel has no GPU delegate; use api = \"compiled\"",
            )
        resolver = (
            OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if delegate == "cpu" else OpResolverType.AUTO
        )
        try:
            self.interp = Interpreter(model_path=model, num_threads=threads, experimental_op_resolver_type=resolver)
            self.interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise RunnerFailure(EXIT_MODEL, "failed", f"runtime rejected the model: {exc}") from exc

    def set_inputs(self, rng: object) -> None:
        for d in self.interp.get_input_details():
            self.interp.set_tensor(d["index"], _random_input(rng, list(d["shape"]), d["dtype"]))

    def invoke(self) -> None:
        self.interp.invoke()

    def outputs(self) -> list[dict]:
        return [_fingerprint(d["name"], self.interp.get_tensor(d["index"])) for d in self.interp.get_output_details()]


class CompiledSession:
    """LiteRT's ``CompiledModel`` API (what the official ``benchmark_model``/``litert-benchmark`` run)."""

    def __init__(self, model: str, delegate: str, threads: int) -> None:
        try:
            from ai_edge_litert.compiled_model import CompiledModel
            from ai_edge_litert.cpu_kernel_mode import CpuKernelMode
            from ai_edge_litert.hardware_accelerator import HardwareAccelerator
            from ai_edge_litert.options import CpuOptions, Options
        except ImportError as exc:
            raise RunnerFailure(EXIT_DELEGATE, "skipped", "CompiledModel API needs ai-edge-litert >= 2.0") from exc
        cpu_kwargs: dict = {"num_threads": threads}
        if delegate == "cpu":
            cpu_kwargs["kernel_mode"] = CpuKernelMode.BUILTIN
        accel = HardwareAccelerator.CPU
        if delegate == "gpu":
            accel = HardwareAccelerator(int(HardwareAccelerator.GPU))
        try:
            self.model = CompiledModel.from_file(
                model, options=Options(hardware_accelerators=accel, cpu_options=CpuOptions(**cpu_kwargs))
            )
        except (ValueError, RuntimeError) as exc:
            if delegate == "gpu":
                raise RunnerFailure(
                    EXIT_DELEGATE, "skipped", f"LiteRT GPU accelerator unavailable here: {_first_line(exc)}"
                ) from exc
            raise RunnerFailure(EXIT_MODEL, "failed", f"runtime rejected the model: {_first_line(exc)}") from exc
        if delegate == "gpu" and not self.model.is_fully_accelerated():
            raise RunnerFailure(
                EXIT_DELEGATE, "skipped", "LiteRT GPU accelerator did not take the model (not fully accelerated)"
            )
        sigs = list(self.model.get_signature_list().keys())
        self.sig = sigs[0] if sigs else "serving_default"
        self.in_details = self.model.get_input_tensor_details(self.sig)
        self.out_details = self.model.get_output_tensor_details(self.sig)
        self.ins = {n: self.model.create_input_buffer_by_name(self.sig, n) for n in self.in_details}
        self.outs = {n: self.model.create_output_buffer_by_name(self.sig, n) for n in self.out_details}

    def set_inputs(self, rng: object) -> None:
        for name, buf in self.ins.items():
            d = self.in_details[name]
            buf.write(_random_input(rng, list(d["shape"]), d["dtype"]))

    def invoke(self) -> None:
        self.model.run_by_name(self.sig, self.ins, self.outs)

    def outputs(self) -> list[dict]:
        import numpy as np

        result = []
        for name, buf in self.outs.items():
            d = self.out_details[name]
            n = 1
            for dim in d["shape"]:
                n *= int(dim)
            arr = buf.read(n, np.dtype(d["dtype"])).reshape(d["shape"])
            result.append(_fingerprint(name, arr))
        return result


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """The exception text on one line (LiteRT errors span several lines of source trace)."""
    text = " ".join(part.strip(" └") for part in str(exc).splitlines() if part.strip())
    text = text or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run(args: argparse.Namespace) -> dict:
    """Run the benchmark; return the result dict (raises RunnerFailure)."""
    import numpy as np

    if not os.path.isfile(args.model):
        raise RunnerFailure(EXIT_MODEL, "failed", f"model file not found: {args.model}")
    runtime, runtime_version = _runtime()
    rss_before = _rss_mb()
    session_cls = CompiledSession if args.api == "compiled" else InterpreterSession
    t0 = time.perf_counter_ns()
    session = session_cls(args.model, args.delegate, args.threads)
    init_ns = time.perf_counter_ns() - t0
    rss_after = _rss_mb()
    session.set_inputs(np.random.default_rng(args.seed))
    clock = time.perf_counter_ns
    t0 = clock()
    session.invoke()
    first_ns = clock() - t0
    warmup: list[float] = []
    for _ in range(max(0, args.warmup - 1)):
        t0 = clock()
        session.invoke()
        warmup.append((clock() - t0) / 1000.0)
    samples = [0.0] * args.runs
    for i in range(args.runs):
        t0 = clock()
        session.invoke()
        samples[i] = (clock() - t0) / 1000.0
    return {
        "status": "ok",
        "reason": None,
        "api": args.api,
        "delegate": args.delegate,
        "threads": args.threads,
        "runtime": runtime,
        "runtime_version": runtime_version,
        "python": platform.python_version(),
        "init_us": init_ns / 1000.0,
        "first_inference_us": first_ns / 1000.0,
        "warmup_us": warmup,
        "samples_us": samples,
        "rss_before_init_mb": rss_before,
        "rss_after_init_mb": rss_after,
        "peak_rss_mb": _peak_rss_mb(),
        "outputs": session.outputs(),
        "pid": os.getpid(),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--delegate", choices=DELEGATES, default="xnnpack")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=5, help="warm-up invocations, the first one reported apart")
    p.add_argument("--runs", type=int, default=50, help="measured invocations")
    p.add_argument("--api", choices=APIS, default="interpreter")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input tensors")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
        code = EXIT_OK
    except RunnerFailure as exc:
        result = {"status": exc.status, "reason": exc.reason, "delegate": args.delegate, "api": args.api}
        code = exc.code
    except Exception as exc:  # noqa: BLE001 - the parent must always get a result line
        result = {"status": "failed", "reason": f"{type(exc).__name__}: {_first_line(exc)}"}
        code = EXIT_ERROR
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
