"""Delegate outcomes from every wording TFLite/LiteRT tools have used (2019 GPU v1 to LiteRT 2.x).

Each line may say a delegate was requested, created, applied fully/partially/not at all,
or failed, with node counts and partitions. A stronger statement outranks a weaker one
(a failure sticks; an explicit summary beats a node-count line; a "created" line only
says the delegate exists).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.runners.measurement import DelegateOutcome

_RANK_CREATED = 0
_RANK_COUNT = 2
_RANK_SUMMARY = 3
_RANK_FAILED = 9


def canonical(name: str) -> str:
    """``TfLiteGpuDelegateV2``, ``GPU``, ``Metal``, ``Delegate_Provider_COREML`` ... -> gpu, coreml, ..."""
    s = name.strip().lower()
    checks = (
        ("xnnpack", ("xnn",)),
        ("nnapi", ("nnapi", "nn api", "neuralnetworks")),
        ("hexagon", ("hexagon",)),
        ("coreml", ("coreml", "core ml")),
        ("flex", ("flex",)),
        ("external", ("external", "vx ", "vx_", "vxdelegate")),
        ("gpu", ("gpu", "metal", "opencl", "opengl", "webgpu")),
        ("npu", ("npu",)),
    )
    for canon, needles in checks:
        if any(n in s or s == n.strip() for n in needles):
            return canon
    return re.sub(r"\s+", "_", s) or "unknown"


@dataclass
class _State:
    name: str
    accelerator: str | None = None
    applied: str | None = None
    applied_rank: int = -1
    delegated: int | None = None
    total: int | None = None
    partitions: int | None = None
    partitions_rank: int = -1
    created: bool = False


_D = r"(?P<name>[A-Za-z][\w ]*?)"
_SUMMARY = (
    (re.compile(rf"Explicitly applied {_D} delegate, and the model graph will be completely"), "full"),
    (
        re.compile(rf"Explicitly applied {_D} delegate, and the model graph will be partially executed"),
        "partial",
    ),
    (re.compile(rf"Though {_D} delegate is explicitly applied"), "none"),
    (re.compile(rf"(?:^|\s)Applied {_D} delegate, and the model graph will be completely"), "full"),
    (re.compile(rf"(?:^|\s)Applied {_D} delegate, and the model graph will be pa\w*ally"), "partial"),
    (re.compile(rf"(?:^|\s)Though {_D} delegate is applied"), "none"),
)
_KERNELS = re.compile(r"w/ (?P<k>\d+) delegate kernels")
_FAILED_NAMED = re.compile(rf"Failed to apply {_D} delegate")
_FAILED_ANON = re.compile(r"Failed to apply delegate")
_REPLACING_OF = re.compile(
    r"Replacing (?P<a>\d+) out of (?P<b>\d+) node\(s\) with delegate \((?P<k>[^)]+)\) node, "
    r"yielding (?P<p>\d+) partitions(?: for subgraph (?P<sg>\d+))?"
)
_REPLACING = re.compile(
    r"Replacing (?P<a>\d+) node\(s\) with delegate \((?P<k>[^)]+)\) node, yielding (?P<p>\d+) partitions"
)
_OUT_OF = re.compile(
    r"(?P<k>[\w ]+?) delegate: (?P<a>\d+) nodes delegated out of (?P<b>\d+) nodes,? with (?P<p>\d+) partitions"
)
_CREATED_FOR = re.compile(r"Created TensorFlow Lite (?:(?P<name>\w+) )?delegate for (?P<acc>[\w ]+?)\.?$")
_CREATED = re.compile(rf"^{_D} delegate created")
_GPU_KERNELS = re.compile(r"Created (?P<k>\d+) GPU delegate kernels")
_GPU_API = re.compile(r"Initialized (?P<api>OpenCL|OpenGL)-based API")
_UNSUPPORTED = re.compile(r"Following operations are not supported by (?P<name>\w+) delegate")
_OPS_SPLIT = re.compile(
    r"(?P<a>\d+) operations will run on(?: the (?P<dev>\w+), and the remaining (?P<r>\d+) operations will run on)?"
)
_GPU_V1 = re.compile(r"Only the first (?P<a>\d+) ops will run on the GPU, and the remaining (?P<r>\d+) on the CPU")
_NODE_FAILED = re.compile(r"Node number \d+ \((?P<k>[^)]+)\) failed to (?:prepare|invoke)")
_RESTORED = re.compile(r"Restored original execution plan after delegate application failure")
_GPU_UNSUPPORTED = re.compile(r"GPU acceleration is unsupported on this platform")
_NEEDLES = (
    "elegate",
    "Failed to",
    "operations will run",
    "ops will run",
    "-based API",
    "Falling back",
    "hexagon",
    "acceleration",
)
_GPU_FAIL = re.compile(
    r"Failed to (?:initialize|create|get or create delegate) (?:\w+ )?(?:WebGPU|OpenCL|OpenGL|Metal)"
)
_HEXAGON_FAIL = re.compile(r"hexagon_nn_config failed|Hexagon delegate is not supported|Failed to create Hexagon")


class DelegateTracker:
    """Accumulates what a run's lines say about its delegates."""

    def __init__(self) -> None:
        self._states: dict[str, _State] = {}
        self._last: str | None = None
        self._unsupported: set[str] = set()

    def _get(self, name: str) -> _State:
        key = canonical(name)
        if key not in self._states:
            self._states[key] = _State(key)
        self._last = key
        return self._states[key]

    def __bool__(self) -> bool:
        return bool(self._states)

    def request(self, name: str) -> None:
        """The run asked for this delegate (flag or printed parameter)."""
        self._get(name)

    def set_accelerator(self, name: str, accelerator: str, *, override: bool = True) -> None:
        state = self._get(name)
        if override or state.accelerator is None:
            state.accelerator = accelerator

    def _apply(self, state: _State, applied: str, rank: int) -> None:
        if state.applied_rank == _RANK_FAILED:
            return
        if rank >= state.applied_rank:
            state.applied, state.applied_rank = applied, rank

    def _partitions(self, state: _State, partitions: int, rank: int) -> None:
        if rank > state.partitions_rank:
            state.partitions, state.partitions_rank = partitions, rank

    def _counts(self, state: _State, delegated: int | None, total: int | None) -> None:
        if state.delegated is None and delegated is not None:
            state.delegated = delegated
        if state.total is None and total is not None:
            state.total = total

    def feed(self, text: str) -> bool:
        """Read one unwrapped line; True when it said something about a delegate."""
        if not any(w in text for w in _NEEDLES):
            return False
        for pattern, applied in _SUMMARY:
            m = pattern.search(text)
            if m:
                state = self._get(m.group("name"))
                self._apply(state, applied, _RANK_SUMMARY)
                k = _KERNELS.search(text)
                if k:
                    self._partitions(state, int(k.group("k")), _RANK_SUMMARY)
                elif applied == "full":
                    self._partitions(state, 1, _RANK_SUMMARY - 1)
                return True
        return self._feed_counts(text) or self._feed_failures(text) or self._feed_created(text)

    def _feed_counts(self, text: str) -> bool:
        m = _REPLACING_OF.search(text)
        if m:
            state = self._get(m.group("k"))
            if m.group("sg") not in (None, "0") and state.total is not None:
                return True  # keep the main graph's (subgraph 0) coverage
            a, b, p = int(m.group("a")), int(m.group("b")), int(m.group("p"))
            self._counts(state, a, b)
            self._apply(state, "full" if a == b and a > 0 else ("none" if a == 0 else "partial"), _RANK_COUNT)
            self._partitions(state, p, _RANK_COUNT)
            return True
        m = _REPLACING.search(text)
        if m:
            state = self._get(m.group("k"))
            a, p = int(m.group("a")), int(m.group("p"))
            whole = a > 0 and p == 1
            self._counts(state, a, a if whole else None)
            self._apply(state, "full" if whole else ("none" if a == 0 else "partial"), _RANK_COUNT)
            self._partitions(state, p, _RANK_COUNT)
            return True
        m = _OUT_OF.search(text)
        if m:
            state = self._get(m.group("k"))
            a, b = int(m.group("a")), int(m.group("b"))
            state.delegated, state.total = a, b
            self._apply(state, "full" if a == b and a > 0 else ("none" if a == 0 else "partial"), _RANK_SUMMARY)
            self._partitions(state, int(m.group("p")), _RANK_SUMMARY)
            return True
        m = _GPU_V1.search(text)
        if m:
            state = self._get("gpu")
            a, r = int(m.group("a")), int(m.group("r"))
            self._counts(state, a, a + r)
            self._apply(state, "partial" if a > 0 else "none", _RANK_COUNT)
            # this line is also glued to the failure text in the Java exception
            self._feed_failures(text)
            return True
        m = _UNSUPPORTED.search(text)
        if m:
            self._unsupported.add(canonical(m.group("name")))
            self._get(m.group("name"))
            return True
        m = _OPS_SPLIT.search(text)
        if m and (self._unsupported or m.group("dev")):
            state = self._get(m.group("dev") or next(iter(self._unsupported)))
            a = int(m.group("a"))
            r = int(m.group("r")) if m.group("r") else None
            self._counts(state, a, a + r if r is not None else None)
            self._apply(state, "partial" if a > 0 else "none", _RANK_COUNT)
            return True
        return False

    def _feed_failures(self, text: str) -> bool:
        m = _FAILED_NAMED.search(text)
        if m:
            self._apply(self._get(m.group("name")), "failed", _RANK_FAILED)
            self._states[canonical(m.group("name"))].applied_rank = _RANK_FAILED
            return True
        m = _NODE_FAILED.search(text)
        if m and "elegate" in m.group("k"):
            state = self._get(m.group("k"))
            state.applied, state.applied_rank = "failed", _RANK_FAILED
            return True
        if _FAILED_ANON.search(text) or _RESTORED.search(text):
            name = self._guess_failed(text)
            if name:
                state = self._get(name)
                state.applied, state.applied_rank = "failed", _RANK_FAILED
                if "OpenCL" in text:
                    state.accelerator = state.accelerator or "opencl"
            return True
        if _GPU_UNSUPPORTED.search(text) or _GPU_FAIL.search(text):
            state = self._get("gpu")
            state.applied, state.applied_rank = "failed", _RANK_FAILED
            return True
        if _HEXAGON_FAIL.search(text):
            state = self._get("hexagon")
            state.applied, state.applied_rank = "failed", _RANK_FAILED
            return True
        return False

    def _guess_failed(self, text: str) -> str | None:
        low = text.lower()
        words = (("opencl", "gpu"), ("opengl", "gpu"), ("gpu", "gpu"), ("nnapi", "nnapi"), ("nn api", "nnapi"))
        for word, name in words:
            if word in low:
                return name
        for word in ("hexagon", "xnnpack", "coreml", "flex"):
            if word in low:
                return word
        return self._last

    def _feed_created(self, text: str) -> bool:
        m = _CREATED_FOR.search(text)
        if m:
            acc = m.group("acc").strip()
            name = m.group("name") or acc
            state = self._get(name)
            state.created = True
            if acc.lower() in ("metal", "cpu"):
                state.accelerator = state.accelerator or acc.lower()
            return True
        m = _GPU_KERNELS.search(text)
        if m:
            state = self._get("gpu")
            state.created = True
            self._partitions(state, int(m.group("k")), _RANK_COUNT)
            return True
        m = _GPU_API.search(text)
        if m:
            self._get("gpu").accelerator = m.group("api").lower()
            return True
        if "Falling back to OpenGL" in text:
            self._get("gpu").accelerator = "opengl"
            return True
        m = _CREATED.search(text)
        if m:
            self._get(m.group("name")).created = True
            return True
        return False

    def mark_pending_failed(self) -> None:
        """The run failed during initialisation: a created delegate with no outcome is the one that failed."""
        for state in self._states.values():
            if state.applied is None and state.created:
                state.applied, state.applied_rank = "failed", _RANK_FAILED

    def outcomes(self) -> tuple[DelegateOutcome, ...]:
        return tuple(
            DelegateOutcome(
                name=s.name,
                accelerator=s.accelerator,
                applied=s.applied,
                nodes_delegated=s.delegated,
                nodes_total=s.total,
                partitions=s.partitions,
            )
            for s in self._states.values()
        )
