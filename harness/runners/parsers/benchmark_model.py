"""Parse TFLite ``benchmark_model`` output of every era (TF 1.12 to LiteRT) into :class:`Measurement` s.

Reads the raw CLI (adb shell, Termux, boards, Windows, macOS) and the Android APK's logcat
through :mod:`harness.runners.parsers.unwrap`. One capture can hold several runs: a new run starts
at ``STARTING!`` or at a new command line once the current run has content, or when a
result/memory line repeats. ``ok`` needs the final timings line; ``failed`` means the tool
reported an error (first error line kept); otherwise ``incomplete``.

The run scanner here is also the core the LiteRT, iOS and other-tool parsers build on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from harness.runners.measurement import InferenceStats, Measurement, MemoryFootprint
from harness.runners.parsers.delegates import DelegateTracker
from harness.runners.parsers.op_profile import OpTableReader
from harness.runners.parsers.textnum import NUM, key_values, ms_to_us, to_float, to_int
from harness.runners.parsers.unwrap import Line, unwrap

_PARAM = re.compile(r"^(?P<key>[A-Za-z#][^\[\]=:]{0,80}?)\s*:\s*\[(?P<val>.*)\]$")
_RESULT_NEW = re.compile(r"Inference timings in us:\s*(?P<body>.*)$")
_RESULT_OLD = re.compile(r"Average inference timings in us:\s*(?P<body>.*)$")
_SESSION = re.compile(rf"^Initialized session in (?P<ms>{NUM})\s*ms")
_RUNNING = re.compile(r"^Running benchmark for (?:at least )?\d+ iterations")
_STATS = re.compile(r"^count=\d+")
_MEM_OLD = re.compile(rf"^Peak memory footprint \(MB\):\s*init=(?P<init>{NUM})\s+overall=(?P<overall>{NUM})")
_MEM_NEW = re.compile(
    rf"Memory footprint delta from the start of the tool \(MB\):\s*init=(?P<init>{NUM})\s+overall=(?P<overall>{NUM})"
)
_MEM_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring:\s*(?P<peak>{NUM})")
_MEM_STATUS = re.compile(rf"^[-+]\s*(?P<key>Vm\w+|Rss[\w +]*?)\s*:\s*(?P<val>{NUM})\s*(?P<unit>[KMG]B)")
_MODEL_SIZE = re.compile(rf"^The input model file size \(MB\):\s*(?P<mb>{NUM})")
_APK_ARGS = re.compile(r"Running TensorFlow Lite benchmark with args:\s*(?P<args>.*)$")
_FLAG_USE = re.compile(r"--use_(?P<d>gpu|nnapi|xnnpack|hexagon|coreml|npu)(?:=(?P<v>\S+))?(?=\s|$|\")")
_FLAG_VAL = re.compile(r"--(?P<k>external_delegate_path|nnapi_accelerator_name|gpu_backend)=(?P<v>[^\s\"']+)")
_RESULT_KEYS = {
    "init": "init",
    "first inference": "first",
    "warmup (avg)": "warmup",
    "warmup": "warmup",
    "inference (avg)": "inference",
    "inference": "inference",
    "no stats": "inference",
}
_EXIT_PROMPT = re.compile(r"^(?P<code>[1-9]\d*)\|\S*[:/]\S*\s*[#$]")

# Lines that look like errors but are warnings the tools print on healthy runs.
_BENIGN = re.compile(
    r"Following operations are not supported|Operation is not supported|operations will run on|"
    r"nnapi error: unable to open library|Unconsumed cmdline flags|no version information available|"
    r"unused DT entry|is not supported by the GPU delegate",
    re.IGNORECASE,
)
_FATAL = re.compile(
    r"^Benchmarking failed|^Failed to (?:apply|allocate|invoke|initiali[sz]e|create|load|mmap|read|construct|build|"
    r"set|prepare|resize|open|run|compile)|failed to (?:prepare|invoke)\.?$|Segmentation fault|^Aborted\b|"
    r"Fatal signal \d+|Check failed|^terminate called|^(?:[\w$]+\.)*\w*(?:Exception|Error): |"
    r"Disallowed CPU fallback|Delegate kernel was not initialized|Please specify the name of your TF Lite input|"
    r"^Could not (?:open|load|find|create)|^Unable to |Restored original execution plan after delegate|"
    r"NN API returned error|hexagon_nn_config failed|^No inference runs were performed",
)
_NOT_A_REASON = re.compile(r"^FATAL EXCEPTION|^Process: |^Traceback \(most recent call last\)")

ExtraHandler = Callable[["RunBuilder", Line], bool]


def is_error_line(line: Line) -> bool:
    """Whether a line reports an error (never for INFO/WARNING-level text or known benign warnings)."""
    text = line.text
    if not text or _BENIGN.search(text):
        return False
    if line.text_level in ("INFO", "WARNING", "VERBOSE", "DEBUG"):
        return False
    if line.level in ("ERROR", "FATAL"):
        return True
    return bool(_FATAL.search(text))


def _close(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def stats_from_line(text: str) -> InferenceStats | None:
    """One ``count=...`` line as stats (us), or None when it is cut off or self-contradictory."""
    kv = key_values(text)
    count = to_int(kv.get("count"))
    if count is None or count < 0:
        return None
    f = {k: to_float(kv.get(k)) for k in ("first", "curr", "min", "max", "avg", "std", "p5", "median", "p95")}
    if count > 1 and any(f[k] is None for k in ("min", "max", "avg", "std")):
        return None
    if count <= 1 and f["curr"] is None and f["avg"] is None:
        return None
    if ("p5" in kv or "median" in kv) and f["p95"] is None:
        return None
    lo, hi = f["min"], f["max"]
    if lo is not None and hi is not None:
        inside = [f[k] for k in ("avg", "curr", "first", "p5", "median", "p95") if f[k] is not None]
        if lo > hi or any(v < lo - 1e-6 or v > hi + 1e-6 for v in inside):
            return None
    if f["std"] is not None and f["std"] < 0:
        return None
    return InferenceStats(
        count=count,
        min_us=f["min"],
        max_us=f["max"],
        avg_us=f["avg"],
        std_us=f["std"],
        p5_us=f["p5"],
        median_us=f["median"],
        p95_us=f["p95"],
        first_us=f["first"],
        curr_us=f["curr"],
    )


def memory_values(text: str) -> dict[str, float] | None:
    """MB figures of one memory line; ``{"unavailable": 1}`` for the ``init=0 overall=0`` of a failed /proc probe."""
    m = _MEM_OLD.search(text) or _MEM_NEW.search(text)
    if m:
        init, overall = to_float(m.group("init")), to_float(m.group("overall"))
        if init == 0 and overall == 0:
            return {"unavailable": 1.0}
        return {k: v for k, v in (("init", init), ("overall", overall)) if v is not None}
    m = _MEM_PEAK.search(text)
    if m:
        peak = to_float(m.group("peak"))
        return {"peak": peak} if peak is not None else {}
    return None


def _result_values(body: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in body.split(","):
        key, _, val = part.partition(":")
        name = _RESULT_KEYS.get(key.strip().lower())
        num = to_float(val.strip().split(" ")[0]) if val.strip() else None
        if name and num is not None:
            out.setdefault(name, num)
    return out


class RunBuilder:
    """Everything one run's lines said, turned into a :class:`Measurement` by :meth:`build`."""

    def __init__(self, tool: str) -> None:
        self.tool = tool
        self.params: dict[str, str] = {}
        self.started = False
        self.invoked = False
        self.result: dict[str, float] = {}
        self.session_init_us: float | None = None
        self.phase = 0
        self.pending_phase: str | None = None
        self.stats: list[tuple[str | None, InferenceStats]] = []
        self.memory: dict[str, float] = {}
        self.delegates = DelegateTracker()
        self.ops = OpTableReader()
        self.errors: list[str] = []
        self.exit_code: int | None = None
        #: results read from a tool-specific block (LiteRT ms block, label_image, inference_diff), in us
        self.block: dict[str, float] = {}
        self.block_stats: dict[str, float] = {}
        self.final = False

    def has_content(self) -> bool:
        return bool(
            self.started
            or self.params
            or self.result
            or self.stats
            or self.memory
            or self.delegates
            or self.ops.rows
            or self.errors
            or self.block
            or self.session_init_us is not None
        )

    # -- line handlers ---------------------------------------------------------------------------

    def take_params(self, text: str) -> bool:
        m = _PARAM.match(text)
        if not m:
            return False
        key, val = m.group("key").strip(), m.group("val").strip()
        self.params.setdefault(key, val)
        low = key.lower()
        if low.startswith("use ") and val in ("1", "true"):
            name = low[4:].replace("legacy ", "").strip()
            if name in ("gpu", "nnapi", "xnnpack", "hexagon", "coreml", "npu"):
                self.delegates.request(name)
        elif low in ("external delegate path",) and val:
            self.delegates.request("external")
        elif low == "nnapi accelerator name" and val:
            self.delegates.set_accelerator("nnapi", val)
        elif low == "gpu backend" and val:
            self.delegates.set_accelerator("gpu", {"cl": "opencl", "gl": "opengl"}.get(val, val), override=False)
        return True

    def take_flags(self, text: str) -> None:
        """Delegates asked for on a command line echoed in the capture (``--use_gpu=true``)."""
        for m in _FLAG_USE.finditer(text):
            if (m.group("v") or "true").strip("'\"").lower() in ("1", "true"):
                self.delegates.request(m.group("d"))
        for m in _FLAG_VAL.finditer(text):
            key, val = m.group("k"), m.group("v")
            if key == "external_delegate_path":
                self.delegates.request("external")
            elif key == "nnapi_accelerator_name":
                self.delegates.set_accelerator("nnapi", val)
            else:
                self.delegates.set_accelerator("gpu", {"cl": "opencl", "gl": "opengl"}.get(val, val), override=False)

    def take_stats(self, text: str) -> bool:
        if not _STATS.match(text):
            return False
        stats = stats_from_line(text)
        if stats is not None:
            self.stats.append((self.pending_phase, stats))
        self.pending_phase = None
        return True

    def take_memory_status(self, text: str) -> bool:
        """``Memory status at the end of exeution`` lines (VmRSS, RssAnnon...) kept as params."""
        m = _MEM_STATUS.match(text)
        if m:
            self.params[f"end {m.group('key').strip()} ({m.group('unit')})"] = m.group("val")
        return bool(m)

    def error(self, text: str) -> None:
        self.errors.append(text)

    # -- result ------------------------------------------------------------------------------

    def _split_stats(self) -> tuple[InferenceStats | None, InferenceStats | None]:
        warm = next((s for tag, s in self.stats if tag == "warmup"), None)
        regular = next((s for tag, s in reversed(self.stats) if tag == "regular"), None)
        untagged = [s for tag, s in self.stats if tag is None]
        for s in untagged:
            if regular is None and _close(s.avg_us, self.result.get("inference")):
                regular = s
            elif (
                warm is None
                and self.result.get("warmup") is not None
                and _close(s.avg_us if s.avg_us is not None else s.curr_us, self.result.get("warmup"))
            ):
                warm = s
        if not self.result and len(untagged) == 2 and warm is None and regular is None:
            warm, regular = untagged
        return warm, regular

    def build(self) -> Measurement:
        warm, regular = self._split_stats()
        res, blk = self.result, self.block
        first = res.get("first")
        warmup_avg = res.get("warmup")
        if warm is not None:
            if first is None:
                first = warm.first_us if warm.first_us is not None else (warm.curr_us if warm.count == 1 else None)
            if warmup_avg is None:
                warmup_avg = warm.avg_us if warm.avg_us is not None else (warm.curr_us if warm.count == 1 else None)
        inference_avg = res.get("inference")
        if inference_avg is None and regular is not None:
            inference_avg = regular.avg_us
        init = res.get("init", self.session_init_us)

        stats = regular
        if blk:
            init = init if init is not None else blk.get("init")
            first = first if first is not None else blk.get("first")
            warmup_avg = warmup_avg if warmup_avg is not None else blk.get("warmup")
            inference_avg = inference_avg if inference_avg is not None else blk.get("inference")
            if stats is None and self.block_stats:
                bs = self.block_stats
                stats = InferenceStats(
                    count=int(bs["count"]) if "count" in bs else None,
                    min_us=bs.get("min"),
                    max_us=bs.get("max"),
                    avg_us=bs.get("avg"),
                    std_us=bs.get("std"),
                    p5_us=bs.get("p5"),
                    median_us=bs.get("median"),
                    p95_us=bs.get("p95"),
                )

        ok = bool(res) and "inference" in res or self.final
        status = "ok" if ok else ("failed" if self.errors or self.exit_code else "incomplete")
        error = None
        if status == "failed":
            reasons = [e for e in self.errors if not _NOT_A_REASON.search(e)]
            error = reasons[0] if reasons else (self.errors[0] if self.errors else f"exit status {self.exit_code}")
            if self.session_init_us is None:
                self.delegates.mark_pending_failed()

        mem = self.memory
        memory = None
        if any(k in mem for k in ("init", "overall", "peak")):
            memory = MemoryFootprint(init_mb=mem.get("init"), overall_mb=mem.get("overall"), peak_mb=mem.get("peak"))
        return Measurement(
            tool=self.tool,
            status=status,
            error=error,
            init_us=init,
            first_inference_us=first,
            warmup_avg_us=warmup_avg,
            inference_avg_us=inference_avg,
            inference=stats,
            memory=memory,
            delegates=self.delegates.outcomes(),
            ops=tuple(self.ops.rows),
            params=dict(self.params),
        )


def is_invocation(text: str) -> bool:
    """A command line that starts a benchmark (echoed prompt, ``bash -x`` trace, APK args line)."""
    if _APK_ARGS.search(text):
        return True
    return bool(re.search(r"(?:^|\s)--(?:graph|model)[=\s]", text)) and not _PARAM.match(text)


class RunScanner:
    """Splits a capture into runs and feeds each line to the right handler."""

    def __init__(self, tool: str, extra: ExtraHandler | None = None) -> None:
        self.tool = tool
        self.extra_handler = extra
        self.runs: list[RunBuilder] = []
        self.current = RunBuilder(tool)

    def new_run(self) -> RunBuilder:
        if self.current.has_content() or self.current.invoked:
            self.runs.append(self.current)
        self.current = RunBuilder(self.tool)
        return self.current

    def feed(self, line: Line) -> None:
        text = line.text
        run = self.current
        if is_invocation(text):
            if run.has_content():
                run = self.new_run()
            run.invoked = True
            m = _APK_ARGS.search(text)
            if m:
                run.params.setdefault("args", m.group("args").strip())
            run.take_flags(text)
            return
        if text.lstrip("+ ").startswith("--"):  # a continuation line of a multi-line command
            run.take_flags(text)
            return
        if text == "STARTING!":
            if run.started or (run.has_content() and not run.invoked):
                run = self.new_run()
            run.started = True
            return
        if self.extra_handler is not None and self.extra_handler(run, line):
            return
        if run.ops.feed(text):
            return
        if self._feed_result(run, text):
            return
        if run.take_params(text):
            return
        if _RUNNING.match(text):
            run.phase += 1
            run.pending_phase = "warmup" if run.phase == 1 else "regular"
            return
        if run.take_stats(text):
            return
        m = _SESSION.match(text)
        if m:
            run.session_init_us = ms_to_us(to_float(m.group("ms")))
            return
        m = _MODEL_SIZE.match(text)
        if m:
            run.params.setdefault("model_size_mb", m.group("mb"))
            return
        if self._feed_memory(run, text):
            return
        m = _EXIT_PROMPT.match(text)
        if m:
            run.exit_code = int(m.group("code"))
            return
        delegate_line = run.delegates.feed(text)
        if is_error_line(line):
            run.error(text)
        elif not delegate_line and not text:
            return

    def _feed_result(self, run: RunBuilder, text: str) -> bool:
        m = _RESULT_NEW.search(text) or _RESULT_OLD.search(text)
        if not m:
            return False
        values = _result_values(m.group("body"))
        if not values:
            return True
        if run.result:
            run = self.new_run()
        run.result = values
        return True

    def _feed_memory(self, run: RunBuilder, text: str) -> bool:
        values = memory_values(text)
        if values is None:
            return run.take_memory_status(text)
        if any(k in run.memory for k in values):
            run = self.new_run()  # the same kind of memory line again: a new run's
        run.memory.update(values)
        return True

    def finish(self) -> list[Measurement]:
        if self.current.has_content() or self.current.invoked:
            self.runs.append(self.current)
        return [r.build() for r in self.runs]


def scan(lines: Iterable[Line], tool: str, extra: ExtraHandler | None = None) -> list[Measurement]:
    """Runs found in already-unwrapped lines (empty list when nothing is recognised)."""
    scanner = RunScanner(tool, extra)
    for line in lines:
        scanner.feed(line)
    return scanner.finish()


def parse(text: str, tool: str = "benchmark_model") -> list[Measurement]:
    """Every ``benchmark_model`` run in ``text`` (raw CLI or APK logcat), in order."""
    return scan(unwrap(text), tool)
