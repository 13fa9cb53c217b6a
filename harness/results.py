"""The versioned result record: the contract between runner, store, analysis and report.

One :class:`Result` per case (model x device x delegate x threads) per run. Every
number carries its unit in its name (``_us``, ``_mb``, ``_mj``) and every reading
carries the method that produced it and its sample count.

The unit of replication is the *repetition* (one process or app launch). Each
repetition keeps its per-iteration samples when the tool gives them, otherwise only
the tool's aggregates (``count``/``avg_us``/``std_us``...).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import types
import typing
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1

STATUSES = ("ok", "failed", "skipped", "timeout", "device_lost")
RAW_LIMIT_BYTES = 256 * 1024
RAW_TRUNCATION_MARKER = "\n[... truncated by edgeharness: {n} bytes omitted ...]\n"


def truncate_raw(text: str, limit: int = RAW_LIMIT_BYTES) -> str:
    """Keep head and tail of a tool's output, with a marker saying how much was cut."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    half = limit // 2
    head = data[:half].decode("utf-8", "ignore")
    tail = data[-half:].decode("utf-8", "ignore")
    return head + RAW_TRUNCATION_MARKER.format(n=len(data) - 2 * half) + tail


@dataclass(frozen=True)
class Repetition:
    """One process/launch of the benchmark: its samples or the tool's aggregates (microseconds)."""

    samples_us: tuple[float, ...] = ()
    init_us: float | None = None
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None
    compile_us: float | None = None  # the accelerator's compile step (JIT: inside init; AOT: before it)
    count: int | None = None
    avg_us: float | None = None
    std_us: float | None = None
    min_us: float | None = None
    max_us: float | None = None
    median_us: float | None = None

    @property
    def n(self) -> int:
        return len(self.samples_us) if self.samples_us else (self.count or 0)

    @property
    def center_us(self) -> float | None:
        """The repetition's own median (or the tool's median/average when no samples)."""
        if self.samples_us:
            return float(statistics.median(self.samples_us))
        return self.median_us if self.median_us is not None else self.avg_us


@dataclass(frozen=True)
class Latency:
    """Latency readings of one case, microseconds."""

    method: str
    repetitions: tuple[Repetition, ...] = ()
    unit: str = "us"

    @property
    def samples_us(self) -> list[float]:
        """All per-iteration samples, pooled over repetitions (for display, not for inference)."""
        return [s for r in self.repetitions for s in r.samples_us]

    @property
    def n_iterations(self) -> int:
        return sum(r.n for r in self.repetitions)

    @property
    def init_us(self) -> float | None:
        vals = [r.init_us for r in self.repetitions if r.init_us is not None]
        return float(statistics.median(vals)) if vals else None

    @property
    def first_inference_us(self) -> float | None:
        vals = [r.first_inference_us for r in self.repetitions if r.first_inference_us is not None]
        return float(statistics.median(vals)) if vals else None

    @property
    def compile_us(self) -> float | None:
        vals = [r.compile_us for r in self.repetitions if r.compile_us is not None]
        return float(statistics.median(vals)) if vals else None


@dataclass(frozen=True)
class Memory:
    """Memory readings in MB (10^6 bytes is *not* used: MB = 2^20 bytes, as the TFLite tools print)."""

    method: str
    peak_rss_mb: float | None = None
    rss_before_init_mb: float | None = None
    rss_after_init_mb: float | None = None
    footprint_init_mb: float | None = None
    footprint_overall_mb: float | None = None
    steady_rss_mb: float | None = None
    samples: int = 0
    notes: str | None = None


@dataclass(frozen=True)
class Energy:
    """Energy per inference, millijoules; absent readings are ``None`` with a reason."""

    method: str
    per_inference_mj: float | None = None
    gross_per_inference_mj: float | None = None
    idle_power_mw: float | None = None
    uncertainty_mj: float | None = None
    samples: int = 0
    simulated: bool = False
    estimated: bool = False
    reason: str | None = None


@dataclass(frozen=True)
class Thermal:
    """Temperatures (deg C) before/after, cooldown wait, throttling verdict, and other work on the host's CPUs."""

    method: str
    before_c: dict[str, float] = field(default_factory=dict)
    after_c: dict[str, float] = field(default_factory=dict)
    cooldown_s: float | None = None
    throttled: bool = False
    throttle_reasons: tuple[str, ...] = ()
    status_before: int | None = None
    status_after: int | None = None
    freq_ratio_before: float | None = None
    freq_ratio_after: float | None = None
    other_cpu_fraction: float | None = None  # share of all host (or device) CPUs other work used (samplers.contention)
    other_cpu_max: float | None = None  # ... in the repetition where it was largest
    drift: float | None = None  # latency drift, last third of iterations over the first third, minus 1
    drift_cause: str | None = None  # thermal | contention | unknown (samplers.throttle); None: no drift over the limit
    drift_why: str = ""  # the drift and the evidence for its cause, in words


@dataclass(frozen=True)
class SoakWindow:
    """One window of a soak run (see :mod:`harness.soak`): latency of the iterations that ended in it, the
    device's thermal state at its last snapshot, energy of the repetitions that ended in it."""

    index: int
    start_s: float
    end_s: float
    iterations: int = 0
    repetitions: int = 0
    p50_us: float | None = None
    p90_us: float | None = None
    mean_us: float | None = None
    throughput_ips: float | None = None  # 1e6 / mean_us: inferences per second of inference time
    snapshots: int = 0
    temps_c: dict[str, float] = field(default_factory=dict)
    thermal_status: int | None = None  # highest in the window
    freq_ratio: float | None = None  # lowest cap / max in the window
    throttled: bool = False
    energy_per_inference_mj: float | None = None
    energy_samples: int = 0
    energy_reason: str | None = None


@dataclass(frozen=True)
class Soak:
    """A soak run: the case run back to back for ``duration_s``, recorded per ``window_s`` window.

    ``time_to_throttle_s``: seconds from the start to the first thermal snapshot with thermal or frequency
    evidence of throttling (None: none seen; ``throttle_evidence`` says what was seen). ``peak_ips``: the
    fastest window's throughput; ``sustained_ips``: the median throughput of the last third of the windows;
    ``sustained_peak_ratio`` = sustained / peak. Methods and counts in ``method``.
    """

    method: str
    duration_s: float
    window_s: float
    elapsed_s: float
    windows: tuple[SoakWindow, ...] = ()
    snapshots: int = 0
    time_to_throttle_s: float | None = None
    throttle_evidence: str | None = None
    peak_ips: float | None = None
    sustained_ips: float | None = None
    sustained_windows: int = 0
    sustained_peak_ratio: float | None = None
    energy_method: str | None = None
    energy_simulated: bool = False


VERDICTS = ("full", "partial", "fallback", "failed")


@dataclass(frozen=True)
class Accelerator:
    """What actually executed for an accelerator delegate (see ``docs/accelerators.md``).

    ``verdict``: ``full`` (the accelerator took every op), ``partial`` (``ops_accelerated`` of
    ``ops_total`` ops in ``partitions`` partitions, the rest on CPU), ``fallback`` (it took nothing:
    the figures are CPU figures), ``failed`` (the model did not run; ``reason`` is the runtime's
    first error line). ``evidence`` holds the log or tool lines the verdict was read from.
    """

    requested: str
    verdict: str
    ops_accelerated: int | None = None
    ops_total: int | None = None
    partitions: int | None = None
    reason: str | None = None
    backend: str | None = None  # where the vendor plugin compiled to (host npu: CPU, GPU or NPU)
    compile: str | None = None  # jit | aot
    method: str = ""
    evidence: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"accelerator verdict {self.verdict!r} not one of {VERDICTS}")

    def summary(self) -> str:
        """``partial (26/57 ops, 11 partitions)``: the verdict with its figures, one line."""
        parts = []
        if self.ops_total is not None:
            parts.append(f"{self.ops_accelerated if self.ops_accelerated is not None else '?'}/{self.ops_total} ops")
        if self.partitions is not None:
            parts.append(f"{self.partitions} partition{'s' if self.partitions != 1 else ''}")
        return f"{self.verdict} ({', '.join(parts)})" if parts else self.verdict


@dataclass(frozen=True)
class Endpoint:
    """A case run against an inference endpoint: what went over the network, per measured request in order
    (every repetition's requests one after another; the latency samples are the end-to-end times).

    ``server_compute_us``: the server's own compute time where it reports it (None where it does not);
    ``network_us``: end-to-end minus server compute (network, (de)serialisation, client and server framework);
    bytes as they crossed the shaping proxy, HTTP headers and retries included (``request_message_bytes`` /
    ``response_message_bytes``: the serialized protobuf messages where the protocol has them, gRPC; None
    elsewhere, empty in older records). ``cold_request_us``: the first
    request after the server started, when this case sent it (``cold_note`` says why not otherwise).
    ``client``: the policy; ``counts``: how often it kicked in (retries, timeouts, errors, cache hits, failed
    requests) and the faults the proxy injected (stalls, resets, retransmissions).
    """

    protocol: str
    url: str
    network: str
    network_method: str
    network_profile: dict[str, Any] = field(default_factory=dict)
    client: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    server_compute_us: tuple[float | None, ...] = ()
    network_us: tuple[float | None, ...] = ()
    request_bytes: tuple[int, ...] = ()
    response_bytes: tuple[int, ...] = ()
    cold_request_us: float | None = None
    cold_note: str = ""
    energy_note: str = ""
    request_message_bytes: tuple[int | None, ...] = ()
    response_message_bytes: tuple[int | None, ...] = ()


#: The per-request series of an :class:`Endpoint` (tuples, one entry per measured request).
ENDPOINT_SERIES = ("server_compute_us", "network_us", "request_bytes", "response_bytes", "request_message_bytes",
                   "response_message_bytes")


@dataclass(frozen=True)
class DeviceInfo:
    """What we know of the device a result was measured on."""

    id: str
    platform: str
    model: str = ""
    soc: str = ""
    os: str = ""
    abi: str = ""
    profile: str = ""
    cpu: str = ""
    cores: int | None = None
    device_class: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    #: What translates the device's code when it is emulated (``qemu-aarch64: qemu-aarch64-static 7.2.22 ...``);
    #: empty for native hardware. An emulated device's latencies are labelled ``emulated`` and never gated
    #: against another device's; its outputs are real (cross-ISA drift).
    emulated: str = ""


@dataclass(frozen=True)
class CaseInfo:
    """The case: what was run, keyed on content (sha256), not on a test id."""

    case_id: str
    model: str
    model_sha256: str
    delegate: str
    threads: int
    runner: str
    model_path: str = ""
    api: str = "interpreter"
    warmup_runs: int = 0
    measured_runs: int = 0
    repetitions: int = 1
    settings: dict[str, Any] = field(default_factory=dict)
    #: The minimum measured time per repetition (s) the runs were extended to reach; None: no minimum.
    min_duration_s: float | None = None
    #: Measured runs per repetition actually run, when extended past ``measured_runs`` (the planned count).
    actual_runs: int | None = None

    @property
    def key(self) -> tuple[str, str, int, str]:
        """Identity used to match a case across runs (never the pytest node id)."""
        return (self.model_sha256, self.delegate, self.threads, self.api)


@dataclass(frozen=True)
class Result:
    """One case's outcome in one run."""

    run_id: str
    case: CaseInfo
    device: DeviceInfo
    status: str
    reason: str | None = None
    latency: Latency | None = None
    memory: Memory | None = None
    energy: Energy | None = None
    thermal: Thermal | None = None
    delegates: tuple[dict[str, Any], ...] = ()
    ops: tuple[dict[str, Any], ...] = ()
    outputs: tuple[dict[str, Any], ...] = ()
    ops_method: str = ""  # how ``ops`` were timed (the tool's profiler, or the host's per-op split)
    environment: dict[str, Any] = field(default_factory=dict)
    raw: str = ""
    accelerator: Accelerator | None = None
    #: The run context (``harness.samplers.context.FIELDS``): what must match for a comparison to mean anything.
    context: dict[str, str] = field(default_factory=dict)
    started_at: str = ""
    finished_at: str = ""
    schema: int = SCHEMA_VERSION
    endpoint: Endpoint | None = None  # set for a case run against an inference endpoint (docs/server.md)
    soak: Soak | None = None  # a soak run's windows and derived figures (absent in records written before)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} not one of {STATUSES}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        """A record read back from JSON; ValueError (naming the field) for anything malformed.

        Stored and imported records are untrusted: besides the shape, every field's type is
        checked against its annotation and every number must be finite (see :func:`check_types`).
        """
        try:
            result = cls._from_dict(data)
        except (KeyError, TypeError, AttributeError, OverflowError) as exc:
            what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ValueError(what) from None
        check_types(result)
        return result

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> Result:
        if not isinstance(data, dict):
            raise TypeError(f"a result record is a JSON object, not {type(data).__name__}")
        data = migrate(dict(data))
        lat = data.get("latency")
        latency = None
        if lat is not None:
            reps = tuple(
                Repetition(**{**r, "samples_us": tuple(r.get("samples_us") or ())})
                for r in lat.get("repetitions", ())
            )
            latency = Latency(method=lat["method"], repetitions=reps, unit=lat.get("unit", "us"))
        thermal = data.get("thermal")
        if thermal is not None:
            thermal = Thermal(**{**thermal, "throttle_reasons": tuple(thermal.get("throttle_reasons") or ())})
        return cls(
            run_id=data["run_id"],
            case=CaseInfo(**data["case"]),
            device=DeviceInfo(**data["device"]),
            status=data["status"],
            reason=data.get("reason"),
            latency=latency,
            memory=Memory(**data["memory"]) if data.get("memory") else None,
            energy=Energy(**data["energy"]) if data.get("energy") else None,
            thermal=thermal,
            delegates=tuple(data.get("delegates") or ()),
            ops=tuple(data.get("ops") or ()),
            ops_method=data.get("ops_method") or "",
            outputs=tuple(data.get("outputs") or ()),
            environment=dict(data.get("environment") or {}),
            raw=data.get("raw", ""),
            accelerator=_accelerator(data.get("accelerator")),
            context=dict(data.get("context") or {}),
            started_at=data.get("started_at", ""),
            finished_at=data.get("finished_at", ""),
            schema=SCHEMA_VERSION,
            endpoint=_endpoint(data.get("endpoint")),
            soak=_soak(data.get("soak")),
        )


def _accelerator(data: Any) -> Accelerator | None:
    """The optional ``accelerator`` entry (absent in records written before it existed)."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise TypeError(f"accelerator: expected an object, got {type(data).__name__}")
    return Accelerator(**{**data, "evidence": tuple(data.get("evidence") or ())})


def _endpoint(data: Any) -> Endpoint | None:
    """The optional ``endpoint`` entry (absent for on-device cases and in older records)."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise TypeError(f"endpoint: expected an object, got {type(data).__name__}")
    return Endpoint(**{**data, **{k: tuple(data.get(k) or ()) for k in ENDPOINT_SERIES}})


def _soak(data: Any) -> Soak | None:
    """The optional ``soak`` entry (absent in records written before soak runs existed)."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise TypeError(f"soak: expected an object, got {type(data).__name__}")
    windows = data.get("windows") or ()
    if not isinstance(windows, list | tuple) or not all(isinstance(w, dict) for w in windows):
        raise TypeError("soak.windows: expected a list of objects")
    return Soak(**{**data, "windows": tuple(SoakWindow(**w) for w in windows)})


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring a stored record up to :data:`SCHEMA_VERSION` (one step per version bump)."""
    version = int(data.get("schema", 1))
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"result schema {version} is newer than this harness understands ({SCHEMA_VERSION}); upgrade edgeharness"
        )
    data["schema"] = SCHEMA_VERSION
    return data


def check_types(obj: object, where: str = "") -> None:
    """Raise ValueError when a field of a result dataclass does not match its annotation.

    Numbers must be finite (NaN/inf are refused: they break statistics and strict JSON),
    ``bool`` is not taken for a number, and free-form ``Any`` values must be plain JSON.
    """
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        _check_value(getattr(obj, f.name), hints[f.name], f"{where}{f.name}")


def _check_value(value: Any, hint: Any, where: str) -> None:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        check_types(value, f"{where}.")
    elif origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        _check_value(value, next(a for a in args if a is not type(None)), where)
    elif hint is Any:
        _check_json(value, where)
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{where}: expected a finite number, got {value!r:.60}")
    elif hint in (int, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ValueError(f"{where}: expected {hint.__name__}, got {value!r:.60}")
    elif origin is tuple:
        if not isinstance(value, tuple | list):
            raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
        for i, item in enumerate(value):
            _check_value(item, args[0], f"{where}[{i}]")
    elif origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object, got {type(value).__name__}")
        for key, item in value.items():
            _check_value(key, args[0], f"{where} key")
            _check_value(item, args[1], f"{where}[{key!r:.40}]")
    else:  # a type this checker does not know: refuse rather than let it through unchecked
        raise ValueError(f"{where}: cannot check type {hint!r}")


def _check_json(value: Any, where: str) -> None:
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: expected a finite number, got {value!r}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: object keys must be strings, got {key!r:.40}")
            _check_json(item, f"{where}[{key!r:.40}]")
    else:
        raise ValueError(f"{where}: not a JSON value ({type(value).__name__})")
