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
  init, and ``peak_rss_mb`` from ``VmHWM`` (the kernel's high-water mark of this address space;
  ``getrusage(RUSAGE_SELF).ru_maxrss`` where ``/proc`` is absent).

Inputs are filled once from a seeded generator, so two delegates see the same inputs and
their outputs can be compared: ``outputs`` holds, per output tensor, a fingerprint and up to
``--keep-values`` values (every value of a small tensor, an evenly strided sample of a large one,
with the stride) plus the full tensor's argmax, from which the host computes numerics drift.

Delegate ``npu`` runs LiteRT's NPU path (compiler plugin -> Dispatch API) through the Intel
OpenVINO vendor plugin shipped in the ``ai-edge-litert`` wheel, compiling for the OpenVINO
device ``--npu-backend`` (CPU, GPU or NPU), just in time (``--npu-compile jit``) or ahead of
time through ``ai_edge_litert.aot`` (``aot``). While the model is created, file descriptor 2
is read by a small reader process that stamps each line the C++ runtime prints on arrival, so
the result carries the runtime's own words (partitions, compile errors) and the compile time.

With ``--profile-ops N`` the result also carries per-operator times (``ops``), taken after the timed
runs so they do not disturb them: see :func:`profile_ops`.

Output: one stdout line ``EDGEHARNESS_RESULT {json}``. Exit codes: 0 ok, 1 error,
2 model rejected by the runtime, 3 delegate unavailable on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

RESULT_PREFIX = "EDGEHARNESS_RESULT "
EXIT_OK, EXIT_ERROR, EXIT_MODEL, EXIT_DELEGATE = 0, 1, 2, 3
DELEGATES = ("cpu", "xnnpack", "gpu", "npu")
APIS = ("interpreter", "compiled")
NPU_BACKENDS = ("CPU", "GPU", "NPU")
NPU_COMPILE = ("jit", "aot")
KEEP_VALUES = 4096  # values kept per output tensor for numerics (the rest is strided out)
LOG_LINES = 400  # distinct runtime log lines returned (first ones; repeats are counted, not kept)
LOG_CHARS = 400
# Set by the host's zygote (zygote.py) in a forked child after resetting VmHWM: the inherited
# ru_maxrss would be the zygote's, so the peak is read from /proc/self/status VmHWM instead.
HWM_RESET = False
FORKED_MEMORY_METHOD = ("forked from a preloaded zygote: VmHWM reset at fork (/proc/self/clear_refs 5) and read "
                        "from /proc/self/status at the end (peak); VmRSS before/after init")
# Reads fd 0 (the runtime's stderr) and writes "monotonic_ns<TAB>line" for each line as it arrives;
# says it is ready on the fd given as argv[1] first (lines must not queue while Python starts).
_READER = (
    "import os, sys, time\n"
    "os.write(int(sys.argv[1]), b'1'); os.close(int(sys.argv[1]))\n"
    "out = sys.stdout.buffer\n"
    "for raw in sys.stdin.buffer:\n"
    "    out.write(b'%d\\t' % time.monotonic_ns() + raw)\n"
    "out.flush()\n"
)


class RunnerFailure(Exception):
    """A failure with the exit code and status the parent should record."""

    def __init__(self, code: int, status: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.status = status
        self.reason = reason
        self.extra: dict = {}  # what the parent should still see (the runtime's log of an npu case)


class StderrLog:
    """Capture fd 2 (where LiteRT's C++ logs go) while the model is created, each line stamped on arrival.

    A reader *process*, not a thread: LiteRT holds the GIL while it compiles, so a thread would
    only wake afterwards. The lines are copied back to the real stderr afterwards (the parent
    keeps the child's output), and returned as ``[µs since start, text]`` pairs.
    """

    def __init__(self) -> None:
        self.lines: list[list] = []
        self.text = ""

    def __enter__(self) -> StderrLog:
        sys.stderr.flush()
        self._out = tempfile.TemporaryFile()
        read_end, write_end = os.pipe()
        ready_r, ready_w = os.pipe()
        try:
            self._proc: subprocess.Popen | None = subprocess.Popen(
                [sys.executable, "-c", _READER, str(ready_w)], stdin=read_end, stdout=self._out, pass_fds=(ready_w,))
        except OSError:  # no interpreter to start: capture into the file, without stamps
            self._proc = None
            os.close(write_end)
            write_end = os.dup(self._out.fileno())
        os.close(read_end)
        os.close(ready_w)
        if self._proc is not None:
            os.read(ready_r, 1)  # b"" if the reader died: the capture still works, only the stamps are late
        os.close(ready_r)
        self._saved = os.dup(2)
        self.start_ns = time.monotonic_ns()
        os.dup2(write_end, 2)
        os.close(write_end)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stderr.flush()
        os.dup2(self._saved, 2)  # closes the last write end: the reader sees EOF
        os.close(self._saved)
        if self._proc is not None:
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._out.seek(0)
        data = self._out.read()
        self._out.close()
        seen: dict[str, int] = {}
        kept: list[str] = []
        for raw in data.splitlines():
            stamp, tab, body = raw.partition(b"\t") if self._proc is not None else (b"", b"", raw)
            text = body.decode("utf-8", "replace").rstrip()
            kept.append(text)
            if not text.strip() or text in seen:
                seen[text] = seen.get(text, 0) + 1
                continue
            seen[text] = 1
            if len(self.lines) < LOG_LINES:
                try:
                    at_us = (int(stamp) - self.start_ns) / 1000.0
                except ValueError:
                    at_us = None
                self.lines.append([at_us, text[:LOG_CHARS]])
        self.text = "\n".join(kept)
        sys.stderr.write(self.text + ("\n" if kept else ""))
        sys.stderr.flush()


def _rss_mb() -> float | None:
    return _status_mb("VmRSS:")


def _status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _peak_rss_mb() -> float | None:
    # VmHWM is this address space's high-water mark; ru_maxrss is not reset by exec, so a runner started
    # through vfork()+exec (or a shell that execs its last command) would report its parent's peak.
    peak_mb = _status_mb("VmHWM:")
    if peak_mb is not None or HWM_RESET:
        return peak_mb
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


def _vendor_libs(delegate: str) -> str | None:
    """The accelerator vendor library a delegate runs through, with its version (``openvino 2025.1.0``), or None."""
    if delegate != "npu":
        return None
    try:
        from importlib.metadata import PackageNotFoundError, version

        return f"openvino {version('openvino')}"
    except (ImportError, PackageNotFoundError):
        return None


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


def _fingerprint(name: str, array: object, keep: int = KEEP_VALUES) -> dict:
    """Shape, dtype, mean, largest magnitude, the first 16 values, and up to ``keep`` values for numerics.

    ``values`` holds every value when the tensor has at most ``keep`` of them, else every
    ``stride``-th one (the same positions for every delegate); a NaN or infinity is null.
    ``argmax`` is over the whole tensor (top-1 agreement needs no sample).
    """
    import numpy as np

    arr = np.asarray(array)
    flat = arr.astype(np.float64).ravel() if arr.size else np.zeros(0)
    finite = np.isfinite(flat)
    stride = max(1, -(-flat.size // keep)) if keep > 0 else 0
    sample = flat[::stride] if stride else flat[:0]
    return {
        "name": name,
        "shape": list(arr.shape),
        "dtype": str(arr.dtype),
        "mean": float(flat.mean()) if flat.size and finite.all() else None,
        "abs_max": float(np.abs(flat).max()) if flat.size and finite.all() else None,
        "head": [float(x) if np.isfinite(x) else None for x in flat[:16]],
        "values": [float(x) if np.isfinite(x) else None for x in sample],
        "stride": stride,
        "argmax": int(np.argmax(np.where(finite, flat, -np.inf))) if flat.size and finite.any() else None,
        "nonfinite": int(flat.size - int(finite.sum())),
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

    def outputs(self, keep: int = KEEP_VALUES) -> list[dict]:
        return [_fingerprint(d["name"], self.interp.get_tensor(d["index"]), keep)
                for d in self.interp.get_output_details()]


class CompiledSession:
    """LiteRT's ``CompiledModel`` API (what the official ``benchmark_model``/``litert-benchmark`` run)."""

    def __init__(self, model: str, delegate: str, threads: int, args: argparse.Namespace | None = None) -> None:
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
        self.accelerator: dict | None = None
        if delegate == "npu":
            npu_args = args or build_parser().parse_args(["--model", model])
            self.model, self.accelerator = _npu_model(model, CpuOptions(**cpu_kwargs), npu_args)
        else:
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

    def outputs(self, keep: int = KEEP_VALUES) -> list[dict]:
        import numpy as np

        result = []
        for name, buf in self.outs.items():
            d = self.out_details[name]
            n = 1
            for dim in d["shape"]:
                n *= int(dim)
            arr = buf.read(n, np.dtype(d["dtype"])).reshape(d["shape"])
            result.append(_fingerprint(name, arr, keep))
        return result


def _npu_model(model: str, cpu_options: object, args: argparse.Namespace) -> tuple[object, dict]:
    """A ``CompiledModel`` on LiteRT's NPU path, and what the runtime said while making it.

    The accelerator set is NPU + CPU (ops the plugin does not take run on CPU, as apps configure
    it) unless ``--npu-cpu-fallback 0``. The returned dict carries the runtime's log lines, which
    the host reads into the accelerator verdict.
    """
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.options import Options

    try:
        from ai_edge_litert.intel_openvino_options import IntelOpenVinoGraphBackend, IntelOpenVinoOptions
    except ImportError as exc:
        raise RunnerFailure(EXIT_DELEGATE, "skipped",
                            "this LiteRT wheel has no Intel OpenVINO vendor plugin (ai-edge-litert >= 2.3)") from exc
    try:
        import openvino  # noqa: F401 - the vendor plugin links the OpenVINO runtime this wheel ships
    except ImportError as exc:
        raise RunnerFailure(EXIT_DELEGATE, "skipped",
                            "the npu delegate needs the OpenVINO runtime: pip install 'edgeharness[npu]'") from exc
    info: dict = {"requested": "npu", "backend": args.npu_backend, "compile": args.npu_compile,
                  "log": [], "compile_us": None, "fully_accelerated": None}
    tmp = tempfile.mkdtemp(prefix="edgeharness-npu-") if args.npu_compile == "aot" else None
    try:
        source = model
        if tmp is not None:
            try:
                source, info["compile_us"], info["log"] = _aot_compile(model, tmp, args.npu_backend)
            except RunnerFailure as failure:
                failure.extra["accelerator"] = {**info, "log": failure.extra.get("log", [])}
                raise
        accel = HardwareAccelerator.NPU | HardwareAccelerator.CPU if args.npu_cpu_fallback else HardwareAccelerator.NPU
        options = Options(hardware_accelerators=accel, cpu_options=cpu_options,
                          intel_openvino_options=IntelOpenVinoOptions(
                              graph_backend=IntelOpenVinoGraphBackend[args.npu_backend]))
        log = StderrLog()
        try:
            with log:
                compiled = CompiledModel.from_file(source, options=options)
        except (ValueError, RuntimeError) as exc:
            info["log"] = info["log"] + log.lines
            failure = RunnerFailure(EXIT_MODEL, "failed", f"the npu path did not take the model: {_first_line(exc)}")
            failure.extra["accelerator"] = info
            raise failure from exc
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    info["log"] = info["log"] + log.lines
    info["fully_accelerated"] = bool(compiled.is_fully_accelerated())
    return compiled, info


def _aot_compile(model: str, tmp: str, backend: str) -> tuple[str, float, list]:
    """Compile ``model`` ahead of time into ``tmp`` with ``ai_edge_litert.aot`` (Intel OpenVINO target).

    Returns (compiled model path, compile time in µs, the tool's partition lines). The AOT tool's
    own temporary files (error logs) are kept inside ``tmp`` too.
    """
    import re

    try:
        from ai_edge_litert.aot import aot_compile as aot
        from ai_edge_litert.aot.vendors.intel_openvino import target as ov_target
    except ImportError as exc:
        raise RunnerFailure(EXIT_DELEGATE, "skipped", f"this LiteRT wheel has no AOT compiler: {exc}") from exc
    saved, tempfile.tempdir = tempfile.tempdir, tmp
    t0 = time.perf_counter_ns()
    try:
        result = aot.aot_compile(model, output_dir=os.path.join(tmp, "out"),
                                 target=ov_target.Target(ov_target.SocModel.LNL), keep_going=True,
                                 intel_openvino_graph_backends=f"0:{backend.lower()}")
    except Exception as exc:  # noqa: BLE001 - the AOT tool raises what its subprocess gave
        raise RunnerFailure(EXIT_MODEL, "failed", f"AOT compilation failed: {_first_line(exc)}") from exc
    finally:
        tempfile.tempdir = saved
    compile_us = (time.perf_counter_ns() - t0) / 1000.0
    lines: list = []
    for _, why in result.failed_backends:
        named = re.search(r"See (\S+?) for details", str(why))
        path = named.group(1) if named else ""
        if path and os.path.realpath(path).startswith(os.path.realpath(tmp) + os.sep) and os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as fh:
                seen: set[str] = set()
                for text in fh.read().splitlines():
                    if text.strip() and text not in seen and len(lines) < LOG_LINES:
                        seen.add(text)
                        lines.append([None, text[:LOG_CHARS]])
        lines.append([None, f"[aot] {why}"])  # after the tool's own lines: its first error is the reason
    if not result.models_with_backend:
        failure = RunnerFailure(EXIT_MODEL, "failed", "AOT compilation produced no model")
        failure.extra["log"] = lines
        raise failure
    compiled = result.models_with_backend[0][1]
    stats = getattr(compiled, "partition_stats", None)
    for sg in getattr(stats, "subgraph_stats", None) or []:
        lines.append([None, f"[aot] Partitioned subgraph<{sg.subgraph_index}>, selected {sg.num_ops_offloaded} ops, "
                            f"from a total of {sg.num_total_ops} ops. resulted in {sg.num_partitions_offloaded} "
                            "partitions."])
    return str(compiled.path), compile_us, lines


OP_METHOD = ("per-op split: each operator of the main subgraph run alone as a one-op model (same kernel, weights, "
             "resolver, threads) on the tensors the full model made from the seeded inputs; mean of {n} invoke()s "
             "after a warm-up, after the timed runs")
OP_ROWS = 2000  # operators profiled per model (the rest is counted, not timed)


def _op_type(model: object, op: object, fb: object) -> str:
    """The operator's type as benchmark_model names it (``CONV_2D``; a custom op by its custom code)."""
    code = model.operatorCodes[op.opcodeIndex]  # type: ignore[attr-defined]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == fb.BuiltinOperator.CUSTOM:  # type: ignore[attr-defined]
        custom = code.customCode
        return custom.decode("utf-8", "replace") if isinstance(custom, bytes) else str(custom or "CUSTOM")
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}  # type: ignore[attr-defined]
    return names.get(builtin, f"BUILTIN_{builtin}")


def _one_op_models(data: bytes) -> list[tuple[int, str, str, list[int], bytes | None]]:
    """Each operator of subgraph 0 as its own model: (index, type, name, the full model's tensors it reads, bytes).

    The one-op model holds the operator's tensors (constants keep their weights; every other input
    becomes a model input) and nothing else. An operator that calls other subgraphs (control flow,
    stateful variables) cannot stand alone: its bytes are None.
    """
    import copy

    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    model = fb.ModelT.InitFromPackedBuf(data, 0)
    graph = model.subgraphs[0]
    out = []
    for i, op in enumerate(graph.operators):
        kind = _op_type(model, op, fb)
        outputs = list(op.outputs)
        name = (graph.tensors[outputs[0]].name or b"").decode("utf-8", "replace") if outputs else ""
        used = list(dict.fromkeys(t for t in [*op.inputs, *outputs, *(op.intermediates or [])] if t >= 0))
        remap = {t: j for j, t in enumerate(used)}
        buffers, tensors, constant = [fb.BufferT()], [], set()
        for t in used:
            tensor = copy.copy(graph.tensors[t])
            source = model.buffers[tensor.buffer] if 0 <= tensor.buffer < len(model.buffers) else None
            if source is not None and (source.data is not None and len(source.data) or source.offset > 1):
                buffers.append(source)
                tensor.buffer = len(buffers) - 1
                constant.add(t)
            else:
                tensor.buffer = 0
            tensors.append(tensor)
        reads = [t for t in dict.fromkeys(op.inputs) if t >= 0 and t not in constant]
        if kind in _CALLS_SUBGRAPHS or any(b.offset > 1 for b in buffers):
            out.append((i, kind, name, reads, None))
            continue
        single = copy.copy(op)
        single.inputs = [remap[t] if t >= 0 else -1 for t in op.inputs]
        single.outputs = [remap[t] for t in outputs]
        if op.intermediates is not None:
            single.intermediates = [remap[t] for t in op.intermediates]
        sub = fb.SubGraphT()
        sub.tensors, sub.operators, sub.name = tensors, [single], f"op{i}"
        sub.inputs, sub.outputs = [remap[t] for t in reads], [remap[t] for t in outputs]
        one = fb.ModelT()
        one.version, one.operatorCodes, one.subgraphs, one.buffers = model.version, model.operatorCodes, [sub], buffers
        builder = flatbuffers.Builder(1024)
        builder.Finish(one.Pack(builder), file_identifier=b"TFL3")
        out.append((i, kind, name, reads, bytes(builder.Output())))
    return out


_CALLS_SUBGRAPHS = ("WHILE", "IF", "CALL_ONCE", "CALL", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE")


def profile_ops(model: str, delegate: str, threads: int, seed: int, invokes: int) -> dict:
    """Per-operator times of ``model`` on this runtime (see :data:`OP_METHOD`), as benchmark_model's tables.

    Returns ``{"ops": [...], "ops_method": str}``: one ``run_order`` row per operator (``avg_ms`` per
    inference) and one ``summary`` row per op type (its operators' times summed, ``nodes`` of them,
    ``percent`` of the profiled total), or ``{"ops_problem": why}`` when it cannot be done here.
    LiteRT's Python API has no per-op timer (its profiler is reachable from C only), hence the split.
    """
    import warnings

    import numpy as np

    if delegate not in ("cpu", "xnnpack"):
        return {"ops_problem": f"per-op profiling on the host covers the CPU delegates (cpu, xnnpack), not {delegate}"}
    try:  # a profile that cannot be made says why and leaves the benchmark's figures intact
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
        with open(model, "rb") as fh:
            data = fh.read()
        pieces = _one_op_models(data)
    except Exception as exc:  # noqa: BLE001
        return {"ops_problem": f"could not split the model into operators: {_first_line(exc, 200)}"}
    resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if delegate == "cpu" else OpResolverType.AUTO
    try:
        with warnings.catch_warnings():  # "preserve_all_tensors is for debugging": it is, here, for the inputs
            warnings.simplefilter("ignore")
            # the builtin kernels keep every intermediate tensor (a delegate's internal ones are not readable)
            full = Interpreter(model_content=data, num_threads=threads, experimental_preserve_all_tensors=True,
                               experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        full.allocate_tensors()
        rng = np.random.default_rng(seed)
        for d in full.get_input_details():
            full.set_tensor(d["index"], _random_input(rng, list(d["shape"]), d["dtype"]))
        full.invoke()
    except Exception as exc:  # noqa: BLE001
        return {"ops_problem": f"could not run the model keeping its intermediate tensors: {_first_line(exc, 200)}"}
    rows, skipped, clock = [], 0, time.perf_counter_ns
    for i, kind, name, reads, blob in pieces[:OP_ROWS]:
        try:
            if blob is None:
                raise ValueError("calls another subgraph")
            one = Interpreter(model_content=blob, num_threads=threads, experimental_op_resolver_type=resolver)
            one.allocate_tensors()
            for d, t in zip(one.get_input_details(), reads):
                one.set_tensor(d["index"], full.get_tensor(t))
            one.invoke()
            total = 0
            for _ in range(invokes):
                t0 = clock()
                one.invoke()
                total += clock() - t0
        except Exception:  # noqa: BLE001 - an operator that cannot run alone is counted, not timed
            skipped += 1
            continue
        rows.append({"table": "run_order", "node_type": kind, "name": name[:LOG_CHARS],
                     "avg_ms": total / invokes / 1e6, "times_called": 1, "index": i})
    whole = sum(r["avg_ms"] for r in rows) or 1.0
    types: dict[str, list[float]] = {}
    for r in rows:
        r["percent"] = 100.0 * r["avg_ms"] / whole
        types.setdefault(r["node_type"], []).append(r["avg_ms"])
    summary = [{"table": "summary", "node_type": k, "name": None, "avg_ms": sum(v), "nodes": len(v),
                "percent": 100.0 * sum(v) / whole, "times_called": len(v)} for k, v in types.items()]
    method = OP_METHOD.format(n=invokes)
    not_timed = skipped + max(0, len(pieces) - OP_ROWS)
    if not_timed:
        method += f"; {not_timed} of {len(pieces)} operators could not run alone (not timed)"
    return {"ops": sorted(summary, key=lambda r: -r["avg_ms"]) + rows, "ops_method": method}


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
    if args.delegate == "npu":  # LiteRT's NPU path exists in the CompiledModel API only
        args.api = "compiled"
    t0 = time.perf_counter_ns()
    if args.api == "compiled":
        session: CompiledSession | InterpreterSession = CompiledSession(args.model, args.delegate, args.threads, args)
    else:
        session = InterpreterSession(args.model, args.delegate, args.threads)
    init_ns = time.perf_counter_ns() - t0
    accel = getattr(session, "accelerator", None)
    if accel and accel.get("compile") == "aot" and accel.get("compile_us"):
        init_ns -= int(accel["compile_us"] * 1000)  # AOT compiles before loading: reported apart, not in init
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
    outputs, peak_mb = session.outputs(args.keep_values), _peak_rss_mb()  # the peak before the profile's own memory
    profile = {} if not args.profile_ops else profile_ops(args.model, args.delegate, args.threads, args.seed,
                                                          args.profile_ops)
    return {
        **profile,
        "status": "ok",
        "reason": None,
        "api": args.api,
        "delegate": args.delegate,
        "threads": args.threads,
        "runtime": runtime,
        "runtime_version": runtime_version,
        "vendor_libs": _vendor_libs(args.delegate),
        "python": platform.python_version(),
        "init_us": init_ns / 1000.0,
        "first_inference_us": first_ns / 1000.0,
        "warmup_us": warmup,
        "samples_us": samples,
        "rss_before_init_mb": rss_before,
        "rss_after_init_mb": rss_after,
        "peak_rss_mb": peak_mb,
        "outputs": outputs,
        "accelerator": getattr(session, "accelerator", None),
        "pid": os.getpid(),
        "ppid": os.getppid(),
        **({"memory_method": FORKED_MEMORY_METHOD} if HWM_RESET else {}),
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
    p.add_argument("--keep-values", type=int, default=KEEP_VALUES, help="output values kept per tensor for numerics")
    p.add_argument("--profile-ops", type=int, default=0, metavar="N",
                   help="after the timed runs, time each operator alone N times (0: no op profile)")
    p.add_argument("--npu-backend", choices=NPU_BACKENDS, default="CPU",
                   help="OpenVINO device the npu path compiles to")
    p.add_argument("--npu-compile", choices=NPU_COMPILE, default="jit")
    p.add_argument("--npu-cpu-fallback", type=int, choices=(0, 1), default=1,
                   help="1: ops the NPU plugin does not take run on CPU; 0: the model must run whole on the NPU path")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
        code = EXIT_OK
    except RunnerFailure as exc:
        result = {"status": exc.status, "reason": exc.reason, "delegate": args.delegate, "api": args.api, **exc.extra}
        code = exc.code
    except Exception as exc:  # noqa: BLE001 - the parent must always get a result line
        result = {"status": "failed", "reason": f"{type(exc).__name__}: {_first_line(exc)}"}
        code = EXIT_ERROR
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
