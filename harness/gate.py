"""Regression gate and budgets: baseline vs candidate results -> per-case verdicts with reasons.

A case is matched across runs by ``CaseInfo.key`` (model sha256, delegate, threads, api)
plus the device identity (id and model): never by a pytest node id, and never across two
different devices. Two suite entries with the same bytes under different names (the zoo's
``face_detection_front`` and ``face_detection_short_range``) stay apart by name; a model
renamed between the runs still matches its baseline when the pairing is unambiguous. Verdicts:

- ``slower``: the candidate/baseline ratio of medians is above ``1 + max_regression``
  *and* the one-sided test (repetition = unit of replication) says slower at ``alpha``;
- ``faster``: the mirror image (ratio below ``1 / (1 + max_regression)``);
- ``same``: neither could be shown;
- ``noisy``: the data cannot support a decision, with the reason: too few repetitions,
  between-repetition CV above ``max_cv``, or throttling flagged for a run;
- ``failed``: the case was ok in the baseline but is not measurable in the candidate
  (``device_lost``, ``timeout``, ``failed``, ``skipped``, with the reason).

With op profiles in both runs (``[gate] profile_ops``), a ``slower`` case also names the op types and
operators whose time grew most (:mod:`harness.blame`); a case above the margin that the gate could not
show slower gets the same, as a lead.

The gate fails (exit 1) on ``slower``, ``failed``, a broken budget, ``noisy`` when
``noisy="fail"``, and on a baseline case the candidate lacks entirely (the gate does not pass
what it did not see). ``allow_missing`` narrows the gate to what ran: absent, ``device_lost``
and ``skipped`` cases then warn. Errors that make the gate impossible to evaluate exit 2.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from harness import stats
from harness.blame import Blame, blame
from harness.errors import (  # noqa: F401 - the gate's errors, importable from here as before
    ContextMismatch,
    DeviceMismatch,
    EmptyBaseline,
    EmulatedComparison,
    GateConfigError,
    GateError,
    NoCommonCases,
    UsageError,
)
from harness.results import DeviceInfo, Result
from harness.samplers import context as runcontext
from harness.textsafe import clip

VERDICTS = ("faster", "slower", "same", "noisy", "failed")
NOISY_POLICIES = ("fail", "warn")
RECOMMENDED_REPETITIONS = 10

CaseKey = tuple[str, str, int, str, str, str]
METRICS = ("p50_ms", "p90_ms", "p99_ms", "init_ms", "peak_memory_mb", "energy_mj")
#: Budgets an emulated device's figures are never held against: they time the emulator, not hardware.
EMULATED_METRICS = ("p50_ms", "p90_ms", "p99_ms", "init_ms", "energy_mj")
EMULATED_NOTE = "the device is emulated (its latencies time qemu's translation, not hardware)"
MAX_BUDGET = 1e12  # ms, MB or mJ: anything larger is no limit at all


def parse_percent(text: str | float, option: str = "--max-regression") -> float:
    """``"5%"`` or ``"0.05"`` -> ``0.05``. Bare numbers >= 1 are refused as ambiguous."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not a percentage", hint="write it as 5% or 0.05") from None
    if not raw.endswith("%") and value >= 1.0:
        raise UsageError(f"{option}: {text!r} is ambiguous", hint=f"write {raw}% or {value / 100:g}")
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{option}: {text!r} must be a finite percentage >= 0", hint="e.g. 5%")
    return value


def _number(key: str, label: str, value: Any, kind: type = float) -> Any:
    """An int/float setting; numeric text (a command-line value) is read, anything else refused."""
    example = {"alpha": "0.01", "level": "0.95", "min_repetitions": "5"}.get(key, "5")
    if isinstance(value, str):
        try:
            value = kind(value.strip())
        except ValueError:
            raise GateConfigError(key, label, f"{value!r} is not {'an integer' if kind is int else 'a number'}",
                                  hint=f"e.g. {example}") from None
    if isinstance(value, bool) or not isinstance(value, (int,) if kind is int else (int, float)):
        raise GateConfigError(key, label, f"expected {'an integer' if kind is int else 'a number'}, "
                                   f"got {type(value).__name__} {value!r}", hint=f"e.g. {example}")
    if not math.isfinite(value):
        raise GateConfigError(key, label, f"must be a finite number, got {value}", hint=f"e.g. {example}")
    return kind(value)


def _percent(key: str, label: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise GateConfigError(key, label, f"expected a percentage, got {type(value).__name__} {value!r}",
                              hint='write it as "5%" or 0.05')
    try:
        return parse_percent(value, label)
    except UsageError as exc:
        raise GateConfigError(key, label, exc.message.removeprefix(f"{label}: "), hint=exc.hint) from None


def _choice(key: str, label: str, value: Any) -> str:
    if value not in NOISY_POLICIES:
        raise GateConfigError(key, label, f"{value!r} is not one of {', '.join(NOISY_POLICIES)}",
                              hint="fail or warn")
    return value


def _spending(key: str, label: str, value: Any) -> str:
    if value not in stats.SPENDING:
        raise GateConfigError(key, label, f"{value!r} is not one of {', '.join(stats.SPENDING)}",
                              hint='spending = "pocock" (stops early on clear changes) or "obf" (O\'Brien-Fleming)')
    return value


def _flag(key: str, label: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise GateConfigError(key, label, f"expected true or false, got {type(value).__name__} {value!r}",
                              hint=f"{key} = true")
    return value


ACCELERATOR_RULES = ("full", "partial", "any")
DRIFT_KEYS = ("cosine_min", "max_abs", "rel_l2_max", "psnr_min", "top1")


def accelerator_rule(key: str, label: str, value: Any) -> str | None:
    """``accelerator = "full" | "partial" | "any"`` (or None: no rule), checked; the suite reads a model's with it."""
    if value is not None and value not in ACCELERATOR_RULES:
        raise GateConfigError(key, label, f"{value!r} is not one of {', '.join(ACCELERATOR_RULES)}",
                              hint='accelerator = "full" (every op on the accelerator) or "partial" (some)')
    return value


def _drift_rules(key: str, label: str, value: Any, nested: bool = True) -> dict:
    """``max_drift = { cosine_min = 0.999, max_abs = 1e-3, npu = { cosine_min = 0.99 } }``: limits, per delegate."""
    if not isinstance(value, Mapping):
        raise GateConfigError(key, label, f"expected a table, got {type(value).__name__} {value!r}",
                              hint="max_drift = { cosine_min = 0.999, max_abs = 1e-3 }")
    out: dict[str, Any] = {}
    for sub, limit in value.items():
        where = f"{label}.{sub}"
        if isinstance(limit, Mapping) and nested:
            out[sub] = _drift_rules(key, where, limit, nested=False)
        elif sub == "top1":
            out[sub] = _flag(key, where, limit)
        elif sub in DRIFT_KEYS:
            out[sub] = _number(key, where, limit)
            if out[sub] < 0 or sub == "cosine_min" and out[sub] > 1:
                raise GateConfigError(key, where, f"{limit!r} is out of range",
                                      hint="cosine_min in [0, 1]; max_abs, rel_l2_max, psnr_min >= 0")
        else:
            raise GateConfigError(key, where, f"unknown drift limit {sub!r}",
                                  hint=f"known: {', '.join(DRIFT_KEYS)}, or a table per delegate (npu = {{...}})")
    return out


def _tolerate(key: str, label: str, value: Any) -> tuple[str, ...]:
    """``tolerate = ["harness_version"]`` (or ``--tolerate harness_version,governor``): run-context fields
    whose difference marks a verdict ``context changed`` instead of refusing the comparison."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
        raise GateConfigError(key, label, f"expected a list of run-context fields, got {value!r}",
                              hint='tolerate = ["harness_version"]')
    names = tuple(dict.fromkeys(v.strip() for v in items if v.strip()))
    unknown = [n for n in names if n not in runcontext.FIELDS]
    if unknown:
        raise GateConfigError(key, label, f"unknown run-context field {unknown[0]!r}",
                              hint=f"known: {', '.join(runcontext.FIELDS)}")
    return names


# How each setting is read (from a suite's [gate] table or a command-line option) ...
_READ: dict[str, Any] = {
    "accelerator": accelerator_rule, "max_drift": _drift_rules, "tolerate": _tolerate,
    "max_regression": _percent, "max_cv": _percent, "noisy": _choice, "allow_missing": _flag, "profile_ops": _flag,
    "alpha": _number, "level": _number,
    "min_repetitions": lambda k, lbl, v: _number(k, lbl, v, int),
    "n_boot": lambda k, lbl, v: _number(k, lbl, v, int),
    "seed": lambda k, lbl, v: _number(k, lbl, v, int),
    "remeasure": _flag, "spending": _spending,
    "max_repetitions": lambda k, lbl, v: _number(k, lbl, v, int),
    "max_seconds": _number,
}
# ... and the range it must be in: (check, what, hint).
_RANGE: dict[str, tuple[Any, str, str]] = {
    "alpha": (lambda v: 0.0 < v < 0.5, "must be in (0, 0.5)", "e.g. 0.01"),
    "max_regression": (lambda v: 0.0 <= v < 10.0, "must be a fraction >= 0", "e.g. 5%"),
    "min_repetitions": (lambda v: v >= 2, "must be >= 2",
                        "the test needs two repetitions per run; 10 is recommended"),
    "max_cv": (lambda v: v > 0, "must be > 0", "e.g. 25%"),
    "level": (lambda v: 0.5 <= v < 1.0, "must be in [0.5, 1)", "e.g. 0.95"),
    "n_boot": (lambda v: v >= 0, "must be >= 0", "e.g. 2000"),
    "max_repetitions": (lambda v: 2 <= v <= 10_000, "must be from 2 to 10000",
                        "the candidate's repetitions per case, first run included; e.g. 30"),
    "max_seconds": (lambda v: 0 <= v <= 7 * 86400, "must be from 0 to 604800 seconds", "e.g. 600"),
}


@dataclass(frozen=True)
class GateConfig:
    """Thresholds of the gate; ``max_regression`` and ``max_cv`` are fractions (0.05 = 5%).

    ``allow_missing`` narrows the gate to what ran: baseline cases the candidate lacks (not run,
    device lost, skipped) warn instead of failing.
    """

    max_regression: float = 0.05
    alpha: float = 0.01
    noisy: str = "fail"
    min_repetitions: int = 5
    max_cv: float = 0.25
    level: float = 0.95
    n_boot: int = stats.DEFAULT_BOOT
    seed: int = stats.DEFAULT_SEED
    allow_missing: bool = False
    accelerator: str | None = None  # full | partial | any: what an accelerator delegate must have run
    max_drift: dict[str, Any] = field(default_factory=dict)  # numerics limits against cpu (see _drift_rules)
    tolerate: tuple[str, ...] = ()  # run-context fields allowed to differ (verdict marked "context changed")
    # adaptive repetitions (harness.remeasure): undecided cases re-run in batches, alpha spent over the looks
    remeasure: bool = False
    max_repetitions: int = 30  # the candidate's repetitions per case, first run included
    max_seconds: float = 600.0  # wall time of all re-measuring, per gate
    spending: str = "pocock"  # pocock | obf: how alpha is spent over the looks (stats.alpha_spent)
    profile_ops: bool = False  # runs of this suite carry op profiles, so a slower case names the ops that grew

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("accelerator", "max_drift", "spending", "tolerate"):
                _READ[f.name](f.name, f"gate {f.name}", value)
                continue
            flags = ("noisy", "allow_missing", "remeasure", "profile_ops")
            if f.name in flags or isinstance(value, bool) or not isinstance(value, int | float):
                _READ[f.name](f.name, f"gate {f.name}", value)  # refuses wrong types with the reason
            check = _RANGE.get(f.name)
            if check is not None and not check[0](value):
                raise GateConfigError(f.name, f"gate {f.name}={value}", check[1], hint=check[2])

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], *, source: str = "[gate]",
                     overrides: Mapping[str, Any] | None = None) -> GateConfig:
        """Build from a suite's ``[gate]`` table (percentages as ``"5%"`` or fractions), with
        command-line ``overrides`` (``{"alpha": "0.05"}``, named ``--alpha`` in errors) on top.

        The one place gate settings are validated: suites call it at load time.
        """
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for where, given in ((source, table), ("--", overrides or {})):
            unknown = sorted(set(given) - known)
            if unknown:
                raise GateConfigError(unknown[0], where, f"unknown key(s) {unknown}",
                                      hint=f"known keys: {sorted(known)}")
            for key, raw in given.items():
                label = f"--{key.replace('_', '-')}" if where == "--" else f"{source} {key}"
                value = _READ[key](key, label, raw)
                check = _RANGE.get(key)
                if check is not None and not check[0](value):
                    raise GateConfigError(key, label, f"{raw!r} {check[1]}", hint=check[2])
                values[key] = value
        return cls(**values)

    def as_table(self) -> dict[str, Any]:
        """The settings that differ from the defaults (what a result's settings keep; read by :meth:`from_mapping`)."""
        default = GateConfig()
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != getattr(default, f.name)}


@dataclass(frozen=True)
class Budget:
    """Absolute limits for one model; ``None`` means no limit. Values at the limit pass."""

    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    init_ms: float | None = None
    peak_memory_mb: float | None = None
    energy_mj: float | None = None
    by_device_class: Mapping[str, Budget] = field(default_factory=dict)

    def for_device_class(self, device_class: str) -> Budget:
        """This budget with the device class's own limits laid over it."""
        override = self.by_device_class.get(device_class)
        if override is None:
            return self
        merged = {m: getattr(override, m) if getattr(override, m) is not None else getattr(self, m) for m in METRICS}
        return Budget(**merged)

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], *, source: str = "budget") -> Budget:
        """Parse a suite ``budget`` table; sub-tables are per device class (``[budget.flagship]``).

        The one place budgets are validated: suites call it at load time, the gate on stored results.
        """
        values: dict[str, float] = {}
        classes: dict[str, Budget] = {}
        for key, value in table.items():
            if isinstance(value, Mapping):
                classes[key] = cls.from_mapping(value, source=f"{source}.{key}")
            elif key in METRICS:
                if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_BUDGET:
                    raise GateConfigError(key, f"{source}.{key}", f"budget must be a positive number up to "
                                          f"{MAX_BUDGET:g}, got {value!r}", hint=f"e.g. {key} = 12.5")
                values[key] = float(value)
            else:
                raise GateConfigError(key, source, f"unknown budget {key!r}", hint=f"allowed: {', '.join(METRICS)}")
        return cls(**values, by_device_class=classes)

    def as_table(self) -> dict[str, Any]:
        """The limits that are set, as a suite writes them (what a result's settings keep)."""
        table: dict[str, Any] = {m: getattr(self, m) for m in METRICS if getattr(self, m) is not None}
        return {**table, **{name: b.as_table() for name, b in self.by_device_class.items()}}


def stored_settings(settings: Mapping[str, Any], model: str) -> tuple[Budget, dict[str, Any]]:
    """A result's ``budget`` (checked) and ``[gate]`` table, as its case carried them.

    The one reader of the settings a result keeps, so a stored run is gateable without its suite file;
    the gate table is checked when the gate builds its :class:`GateConfig` from it.
    """
    budget = Budget.from_mapping(settings.get("budget") or {}, source=f"{model}.budget")
    gate_table = settings.get("gate") or {}
    if not isinstance(gate_table, Mapping):
        raise GateConfigError("gate", f"{model}: gate", f"expected a table, got {gate_table!r}")
    return budget, dict(gate_table)


@dataclass(frozen=True)
class BudgetBreach:
    """A candidate value above its budget (or a budgeted value that was not measured)."""

    model: str
    device: str
    metric: str
    value: float | None
    limit: float
    delegate: str = ""
    threads: int = 0
    not_checked: str = ""  # why a measured value is not held against the budget (an emulated device's latency)

    @property
    def where(self) -> str:
        """``model [device delegate xN]``, the same label as a verdict's (two delegates never look alike)."""
        extra = f" {self.delegate} x{self.threads}" if self.delegate else ""
        return f"{self.model} [{self.device}{extra}]"

    @property
    def measured(self) -> bool:
        return self.value is not None

    @property
    def breached(self) -> bool:
        """Above the limit, or budgeted but not measured (a warning)."""
        return self.value is None or self.value > self.limit

    @property
    def line(self) -> str:
        if self.not_checked:
            return f"{self.where}: {self.metric} budget {self.limit:g} not checked: {self.not_checked}"
        if self.value is None:
            return f"{self.where}: {self.metric} budget {self.limit:g} not measured on this device"
        return f"{self.where}: {self.metric} {self.value:.3f} > budget {self.limit:g}"


@dataclass(frozen=True)
class CaseVerdict:
    """One case's comparison: figures, verdict and the reason behind it."""

    key: CaseKey
    model: str
    device: str
    delegate: str
    threads: int
    api: str
    verdict: str
    why: str
    noisy_reasons: tuple[str, ...] = ()
    comparison: stats.Comparison | None = None
    unmeasured: tuple[str, ...] = ()  # a ``failed`` verdict: the candidate's statuses (device_lost, ...)
    context_changed: tuple[str, ...] = ()  # tolerated run-context differences (``harness_version 0.1 -> 0.2``)
    undecided: bool = False  # more candidate repetitions could decide it (adaptive mode re-measures it)
    alpha: float | None = None  # the test level of this look (adaptive mode: the alpha spent at it)
    blame: Blame | None = None  # slower (or above the margin, as a lead): the ops that grew most (harness.blame)

    @property
    def label(self) -> str:
        return f"{self.model} [{self.device} {self.delegate} x{self.threads} {self.api}]"

    @property
    def ratio(self) -> float | None:
        return self.comparison.ratio if self.comparison else None

    @property
    def statement(self) -> str:
        return self.comparison.statement if self.comparison else ""

    def fails(self, config: GateConfig) -> bool:
        return self.verdict in ("slower", "failed") or (self.verdict == "noisy" and config.noisy == "fail")


@dataclass(frozen=True)
class GateOutcome:
    """What the gate decided: exit code, per-case verdicts, budget breaches, lines to print."""

    exit_code: int
    verdicts: tuple[CaseVerdict, ...]
    breaches: tuple[BudgetBreach, ...]
    failures: tuple[str, ...]
    warnings: tuple[str, ...]
    missing: int = 0  # baseline cases the candidate did not measure that failed the gate
    not_gated: int = 0  # ... and those allow_missing turned into warnings
    remeasure: tuple[str, ...] = ()  # what adaptive mode re-measured (harness.remeasure), printed first

    @property
    def passed(self) -> bool:
        return self.exit_code == 0

    def render(self) -> str:
        """One line per failing case with the numbers, then warnings, then a one-line total."""
        lines = [*self.remeasure, *(f"FAIL {f}" for f in self.failures), *(f"WARN {w}" for w in self.warnings)]
        counts = {v: sum(1 for c in self.verdicts if c.verdict == v) for v in VERDICTS}
        total = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
        state = "PASSED" if self.passed else "FAILED"
        lines.append(
            f"gate {state}: {len(self.verdicts)} case(s) compared ({total or 'none'}), "
            f"{sum(b.measured for b in self.breaches)} budget breach(es)"
            + (f", {self.missing} baseline case(s) not measured" if self.missing else "")
            + (f", {self.not_gated} baseline case(s) not measured and not gated (allow_missing)"
               if self.not_gated else "")
        )
        if self.missing:
            lines.append(f"hint: {MISSING_HINT}")
        return "\n".join(lines)


def device_identity(device: DeviceInfo) -> tuple[str, str]:
    """What makes two results the same device: its id and its model name."""
    return (device.id, device.model)


def case_key(result: Result) -> CaseKey:
    """Match key across runs: the case's content key plus the device identity."""
    return (*result.case.key, *device_identity(result.device))


def _reps_of(result: Result) -> list[tuple[float, ...]]:
    """Per-repetition samples; aggregate-only repetitions give their one center value."""
    if result.latency is None:
        return []
    out = []
    for rep in result.latency.repetitions:
        if rep.samples_us:
            out.append(tuple(rep.samples_us))
        elif rep.center_us is not None:
            out.append((float(rep.center_us),))
    return out


def _index(results: Iterable[Result]) -> dict[CaseKey, dict[str, list[Result]]]:
    """Results by content key, then by the model's name in the suite."""
    index: dict[CaseKey, dict[str, list[Result]]] = {}
    for r in results:
        index.setdefault(case_key(r), {}).setdefault(r.case.model, []).append(r)
    return index


@dataclass(frozen=True)
class _Matching:
    """Baseline and candidate results paired case by case, and the cases found on one side only (labels)."""

    pairs: list[tuple[CaseKey, list[Result], list[Result]]]
    only_baseline: list[tuple[str, list[Result]]]
    only_candidate: list[tuple[str, list[Result]]]


def _label(key: CaseKey, name: str) -> str:
    return f"{name} [{key[4]} {key[1]} x{key[2]} {key[3]}]"


def _match(base: dict[CaseKey, dict[str, list[Result]]], cand: dict[CaseKey, dict[str, list[Result]]]) -> _Matching:
    """Pair results of the same case: same content key, then same name.

    Names left over on both sides of a key pair up only when there is exactly one on each side
    (a renamed model); otherwise they are not matched rather than guessed.
    """
    pairs, only_base, only_cand = [], [], []
    for key in sorted(set(base) | set(cand)):
        b_names, c_names = base.get(key, {}), cand.get(key, {})
        matched = [(n, n) for n in sorted(set(b_names) & set(c_names))]
        rest_b, rest_c = sorted(set(b_names) - set(c_names)), sorted(set(c_names) - set(b_names))
        if len(rest_b) == 1 and len(rest_c) == 1:
            matched.append((rest_b.pop(), rest_c.pop()))
        pairs += [(key, b_names[b], c_names[c]) for b, c in matched]
        only_base += [(_label(key, n), b_names[n]) for n in rest_b]
        only_cand += [(_label(key, n), c_names[n]) for n in rest_c]
    return _Matching(pairs, only_base, only_cand)


def _usable(results: list[Result]) -> list[Result]:
    return [r for r in results if r.status == "ok" and _reps_of(r)]


class Reason(str):
    """Why a comparison may not be trusted. ``soft``: noise the test itself accounts for (the verdict stands
    when the test decides anyway); ``fixable``: more candidate repetitions remove it (adaptive mode)."""

    soft: bool
    fixable: bool

    def __new__(cls, text: str, *, soft: bool = False, fixable: bool = False) -> Reason:
        reason = super().__new__(cls, text)
        reason.soft, reason.fixable = soft, fixable
        return reason


DRIFT_LABELS = {"thermal": "thermal throttling", "contention": "contention", "unknown": "cause unknown"}


def _legacy_drift(r: Result) -> bool:
    """A record from before drift attribution: throttled on the latency drift alone (cause not known)."""
    t = r.thermal
    return (t is not None and t.throttled and t.drift_cause is None and bool(t.throttle_reasons)
            and all(x.startswith("latency drifted") for x in t.throttle_reasons))


def _throttled(results: list[Result]) -> bool:
    """Thermal throttling with evidence (a record throttled on latency drift alone is a drift of unknown cause)."""
    return any(r.thermal is not None and r.thermal.throttled and not _legacy_drift(r) for r in results)


def drift_of(r: Result) -> tuple[str, str] | None:
    """``(cause label, why)`` of a result's latency drift that is not thermal throttling, or None."""
    t = r.thermal
    if t is None:
        return None
    if _legacy_drift(r):
        return DRIFT_LABELS["unknown"], f"{t.throttle_reasons[0]} (recorded before drift attribution)"
    if t.drift_cause in ("contention", "unknown"):
        return DRIFT_LABELS[t.drift_cause], t.drift_why
    return None


def _drifts(results: list[Result]) -> list[tuple[str, str]]:
    return [d for d in (drift_of(r) for r in results) if d is not None]


def noisiness(cmp: stats.Comparison, config: GateConfig, base_throttled: bool, cand_throttled: bool,
              drifts: Mapping[str, Sequence[tuple[str, str]]] | None = None) -> list[Reason]:
    """Why a comparison cannot be trusted, in words (empty when it can).

    Hard reasons (too few repetitions, thermal throttling with evidence) make the case ``noisy``; soft ones
    (between-repetition CV, latency drift from contention or of unknown cause: ``drifts`` per side) let it be
    decided when the test can (see :func:`decision`).
    """
    reasons = []
    n_b, n_c = cmp.baseline.n_repetitions, cmp.candidate.n_repetitions
    if min(n_b, n_c) < config.min_repetitions:
        reasons.append(Reason(
            f"too few repetitions (baseline {n_b}, candidate {n_c}; need {config.min_repetitions}: "
            f"record both with `repetitions = {RECOMMENDED_REPETITIONS}` or --repetitions {RECOMMENDED_REPETITIONS})",
            fixable=n_b >= config.min_repetitions))
    for side, summary in (("baseline", cmp.baseline), ("candidate", cmp.candidate)):
        cv = summary.rep_robust_cv
        if cv is not None and cv > config.max_cv:
            reasons.append(Reason(f"{side} between-repetition CV {cv:.0%} (MAD-based) above {config.max_cv:.0%}",
                                  soft=True))
    for side, flag in (("baseline", base_throttled), ("candidate", cand_throttled)):
        if flag:
            reasons.append(Reason(f"thermal throttling flagged in the {side} run"))
    for side in ("baseline", "candidate"):
        for label, why in (drifts or {}).get(side, ())[:1]:
            reasons.append(Reason(f"latency drift in the {side} run ({label}: {why})", soft=True))
    return reasons


def decision(cmp: stats.Comparison, config: GateConfig, reasons: Sequence[str] = (), *,
             alpha: float | None = None, final: bool = True) -> tuple[str, str, bool]:
    """Verdict, why, and whether it is settled (False: more candidate repetitions could decide it).

    ``alpha``: this look's test level (adaptive mode spends ``config.alpha`` over looks; default
    ``config.alpha``). ``final``: no more repetitions will come, so an unsettled case gets its last verdict:
    ``noisy`` with its reasons, or ``same`` (not shown slower) as the fixed gate says.
    Soft reasons (see :func:`noisiness`) do not stop a decision the test can make: ``slower``/``faster``
    when significant, ``same`` when a slowdown beyond ``max_regression`` is excluded at ``1 - level``.
    """
    a = config.alpha if alpha is None else alpha
    limit = 1.0 + config.max_regression
    ratio, p_slow, p_fast = cmp.ratio, cmp.p_slower, cmp.p_faster
    slower = ratio > limit and p_slow < a
    faster = ratio < 1.0 / limit and p_fast < a
    hard = [r for r in reasons if not getattr(r, "soft", False)]
    soft = [r for r in reasons if getattr(r, "soft", False)]
    if hard:
        return "noisy", "; ".join(reasons), final or not all(getattr(r, "fixable", False) for r in hard)
    note = f" despite {'; '.join(soft)}" if soft else ""
    if slower:
        return "slower", f"ratio {ratio:.3f} > {limit:.3f} and p={p_slow:.2g} < {a:g}{note}", True
    if faster:
        return "faster", f"ratio {ratio:.3f} < {1 / limit:.3f} and p={p_fast:.2g} < {a:g}{note}", True
    p_in = stats.p_within(cmp.baseline.rep_medians_us, cmp.candidate.rep_medians_us, limit)
    shown = p_in < 1.0 - config.level
    if soft:
        if not shown:
            return "noisy", (f"{'; '.join(soft)}; a slowdown beyond {config.max_regression:.0%} is neither shown "
                             f"nor excluded (p={p_in:.2g})"), final
        return "same", (f"ratio {ratio:.3f}: a slowdown beyond {config.max_regression:.0%} is excluded "
                        f"(p={p_in:.2g} < {1.0 - config.level:.2g}){note}"), True
    settled = final or shown
    if ratio > limit:
        return "same", f"ratio {ratio:.3f} above {limit:.3f} but not significant (p={p_slow:.2g} >= {a:g})", settled
    if ratio < 1.0 / limit:
        return "same", f"ratio {ratio:.3f} below {1 / limit:.3f} but not significant (p={p_fast:.2g})", settled
    return "same", f"ratio {ratio:.3f} within +/-{config.max_regression:.0%}", settled


def decide(cmp: stats.Comparison, config: GateConfig, reasons: Sequence[str] = ()) -> tuple[str, str]:
    """Verdict and why, from a comparison and its noisiness reasons (pure; simulations call it)."""
    return decision(cmp, config, reasons)[:2]


@dataclass(frozen=True)
class Look:
    """One look of adaptive mode at a case: the alpha it may spend, and whether more repetitions can follow."""

    alpha: float
    final: bool
    note: str = ""  # appended to the why (e.g. "look 3 of up to 30 repetitions; budget spent")


def _check_comparable(
    base: dict[CaseKey, dict[str, list[Result]]], cand: dict[CaseKey, dict[str, list[Result]]]
) -> None:
    if not base:
        raise EmptyBaseline("the baseline holds no results", hint="record one with `harness baseline set NAME`")
    if not cand:
        raise NoCommonCases("the candidate run holds no results", hint="did the run select any case?")
    if set(base) & set(cand):
        return
    base_devices = sorted({k[4:] for k in base})
    cand_devices = sorted({k[4:] for k in cand})
    emulated = sorted({r.device.id for side in (base, cand) for named in side.values() for rs in named.values()
                       for r in rs if r.device.emulated})
    if emulated and {k[:4] for k in base} & {k[:4] for k in cand}:
        raise EmulatedComparison(
            f"refused: the baseline ran on {_fmt_devices(base_devices)}, the candidate on "
            f"{_fmt_devices(cand_devices)}, and {', '.join(emulated)} is emulated: its latencies time the "
            "emulator, never compared with another device's",
            hint="gate an emulated device only against a baseline from the same emulated device; compare its "
                 "outputs across ISAs with `harness drift RUN --across-devices`",
        )
    if {k[:4] for k in base} & {k[:4] for k in cand} and base_devices != cand_devices:
        raise DeviceMismatch(
            f"the baseline was measured on {_fmt_devices(base_devices)}, the candidate on {_fmt_devices(cand_devices)}",
            hint="record a baseline on this device (`harness baseline set`); devices are never compared to each other",
        )
    raise NoCommonCases(
        f"baseline and candidate share no case ({len(base)} vs {len(cand)} cases; "
        "cases match on model sha256, delegate, threads, api and device)",
        hint="did the model file, delegate or threads change? record a new baseline",
    )


def _fmt_devices(devices: Sequence[tuple[str, ...]]) -> str:
    return ", ".join("/".join(p for p in d if p) for d in devices)


def compare(
    baseline: Sequence[Result], candidate: Sequence[Result], config: GateConfig | None = None
) -> list[CaseVerdict]:
    """Verdict per case present in both runs (see module doc). Raises :class:`GateError` children."""
    config = config or GateConfig()
    matching = _matching(baseline, candidate)
    changed, _ = check_context(matching, config)
    return mark_context(_verdicts(matching, config), changed)


CONTEXT_CHANGED = "context changed"
NO_CONTEXT_NOTE = ("the {side} has no run context (recorded before edgeharness kept one): runtime, governor, "
                   "charging and the other context fields were not compared")


def check_context(matching: _Matching, config: GateConfig) -> tuple[dict[CaseKey, list[runcontext.Difference]],
                                                                   list[str]]:
    """The run-context differences of each paired case the suite tolerates, and notes (old records without one).

    Raises :class:`ContextMismatch` (exit 2) naming every difference it does not tolerate, one line each.
    """
    changed: dict[CaseKey, list[runcontext.Difference]] = {}
    refused: dict[tuple[str, str, str], list[str]] = {}
    lacking: set[str] = set()
    for key, b_all, c_all in matching.pairs:
        b_ok, c_ok = _usable(b_all), _usable(c_all)
        if not b_ok or not c_ok:
            continue
        if bool(b_ok[0].context) != bool(c_ok[0].context):  # one side recorded before contexts existed
            lacking.add("baseline" if not b_ok[0].context else "candidate")
        for diff in runcontext.differences(b_ok[0].context, c_ok[0].context):
            if diff.field in config.tolerate:
                changed.setdefault(key, []).append(diff)
            else:
                refused.setdefault((diff.field, diff.baseline, diff.candidate), []).append(
                    _label(key, b_ok[0].case.model))
    if refused:
        lines = [f"  {runcontext.Difference(*k).line()} [{len(v)} case(s), e.g. {v[0]}]" for k, v in refused.items()]
        raise ContextMismatch(f"the baseline and the candidate were measured in different run contexts "
                              f"({len(refused)} difference(s)); the comparison would not mean anything:\n"
                              + "\n".join(lines))
    notes = [NO_CONTEXT_NOTE.format(side=side) for side in sorted(lacking)]
    seen: dict[str, int] = {}
    for diffs in changed.values():
        for d in diffs:
            seen[d.short()] = seen.get(d.short(), 0) + 1
    notes += [f"{CONTEXT_CHANGED} (tolerated): {what} in {n} case(s)" for what, n in seen.items()]
    return changed, notes


def mark_context(verdicts: list[CaseVerdict], changed: Mapping[CaseKey, list[runcontext.Difference]]
                 ) -> list[CaseVerdict]:
    """Verdicts of cases whose context changed (tolerated) marked ``context changed`` with the fields."""
    out = []
    for v in verdicts:
        diffs = changed.get(v.key)
        if diffs:
            what = "; ".join(d.short() for d in diffs)
            v = replace(v, context_changed=tuple(d.short() for d in diffs), why=f"{v.why}; {CONTEXT_CHANGED}: {what}")
        out.append(v)
    return out


def _matching(baseline: Sequence[Result], candidate: Sequence[Result]) -> _Matching:
    """The runs' cases paired up, after the checks that make a comparison meaningful."""
    base, cand = _index(baseline), _index(candidate)
    # a candidate whose cases were all lost before the device's facts were read shares no key with the
    # baseline, yet says what happened to its cases: those are failures with reasons, not "no common case"
    lost = bool(baseline) and any(
        r.status != "ok" and _loose_key(r) in {_loose_key(b) for b in baseline} for r in candidate)
    if not lost:
        _check_comparable(base, cand)
    if not any(_usable(v) for named in base.values() for v in named.values()):
        raise EmptyBaseline(
            "the baseline has no successful result with latency samples", hint="record a baseline from a passing run"
        )
    matching = _match(base, cand)
    if not matching.pairs and not lost:
        raise NoCommonCases(
            "baseline and candidate share model bytes but no case pairs up by name",
            hint="several models share these bytes under other names: keep names stable or record a new baseline",
        )
    return matching


def _not_measured(results: Sequence[Result]) -> str:
    """Why results give no latency: ``device_lost: adb vanished`` (each distinct status and reason once)."""
    return "; ".join(sorted({f"{r.status}: {r.reason or 'no latency'}" for r in results}))


def _verdicts(matching: _Matching, config: GateConfig, looks: Mapping[CaseKey, Look] | None = None
              ) -> list[CaseVerdict]:
    verdicts = []
    for key, b_all, c_all in matching.pairs:
        b_ok, c_ok = _usable(b_all), _usable(c_all)
        if not b_ok:
            continue  # the gate's lines say so (see _coverage)
        first = c_all[0]
        common = dict(
            key=key,
            model=first.case.model,
            device=first.device.id,
            delegate=first.case.delegate,
            threads=first.case.threads,
            api=first.case.api,
        )
        if not c_ok:
            verdicts.append(CaseVerdict(**common, verdict="failed", why=f"{_UNMEASURED}{_not_measured(c_all)}",
                                        unmeasured=tuple(sorted({r.status for r in c_all}))))
            continue
        b_reps = [rep for r in b_ok for rep in _reps_of(r)]
        c_reps = [rep for r in c_ok for rep in _reps_of(r)]
        try:
            cmp = stats.compare(b_reps, c_reps, n_boot=config.n_boot, seed=config.seed, level=config.level)
        except ValueError as exc:
            label = f"{first.case.model} [{first.device.id}]"
            raise GateError(f"{label}: {exc}", hint="the stored run is corrupt; re-run it") from None

        drifts = {"baseline": _drifts(b_ok), "candidate": _drifts(c_ok)}
        reasons = noisiness(cmp, config, _throttled(b_ok), _throttled(c_ok), drifts)
        look = (looks or {}).get(key)
        verdict, why, settled = decision(cmp, config, reasons, alpha=look.alpha if look else None,
                                         final=look.final if look else True)
        if look is not None and look.note:
            why += f" [{look.note}]"
        # slower: the op types that grew; above the margin but not shown slower (noisy, or not significant):
        # the same, said as a lead (not a finding)
        above = verdict in ("noisy", "same") and cmp.ratio > 1.0 + config.max_regression
        blamed = blame(b_ok, c_ok, tentative=above) if verdict == "slower" or above else None
        verdicts.append(CaseVerdict(**common, verdict=verdict, why=why, noisy_reasons=tuple(reasons), comparison=cmp,
                                    undecided=not settled, alpha=look.alpha if look else None, blame=blamed))
    return verdicts


def _metric_value(result: Result, metric: str) -> float | None:
    if metric in ("p50_ms", "p90_ms", "p99_ms"):
        reps = _reps_of(result)
        if not reps:
            return None
        summary = stats.summarize(reps, n_boot=0)
        return {"p50_ms": summary.median_us, "p90_ms": summary.p90_us, "p99_ms": summary.p99_us}[metric] / 1000.0
    if metric == "init_ms":
        init = result.latency.init_us if result.latency else None
        return None if init is None else init / 1000.0
    if metric == "peak_memory_mb":
        return result.memory.peak_rss_mb if result.memory else None
    return result.energy.per_inference_mj if result.energy else None


def _for_result(budget: Budget, result: Result) -> Budget:
    """The limits for one result: its device class's laid over the model's, then, for an endpoint case, its network
    profile's (``[models.budget.4g]``: a sub-table named like the profile; docs/server.md)."""
    merged = budget.for_device_class(result.device.device_class)
    if result.endpoint is None or result.endpoint.network not in budget.by_device_class:
        return merged
    return replace(merged, by_device_class=budget.by_device_class).for_device_class(result.endpoint.network)


def check_budgets(results: Sequence[Result], budgets: Mapping[str, Budget]) -> list[BudgetBreach]:
    """Breaches of per-model budgets (keyed by ``CaseInfo.model``) by successful results.

    A value equal to its limit passes. A budgeted metric the device did not measure is
    returned with ``value=None`` (a warning, not a failure).
    """
    return [check for check in budget_checks(results, budgets) if check.breached]


def budget_checks(results: Sequence[Result], budgets: Mapping[str, Budget]) -> list[BudgetBreach]:
    """Every budgeted metric of every successful result, value vs limit, breached or not (the report lists them)."""
    checks = []
    for result in results:
        budget = budgets.get(result.case.model)
        if budget is None or result.status != "ok":
            continue
        budget = _for_result(budget, result)
        for metric in METRICS:
            limit = getattr(budget, metric)
            if limit is None:
                continue
            if result.device.emulated and metric in EMULATED_METRICS:
                checks.append(BudgetBreach(result.case.model, result.device.id, metric, None, limit,
                                           result.case.delegate, result.case.threads, EMULATED_NOTE))
                continue
            value = _metric_value(result, metric)
            checks.append(BudgetBreach(result.case.model, result.device.id, metric, value, limit,
                                       result.case.delegate, result.case.threads))
    return checks


def verdict_line(v: CaseVerdict) -> str:
    """The numbers behind one verdict, on one line."""
    if v.comparison is None:
        return f"{v.label}: {v.verdict}: {v.why}"
    c = v.comparison
    ci = f" ({c.ratio_ci.low:.3f}-{c.ratio_ci.high:.3f})" if c.ratio_ci else ""
    blamed = f"; {v.blame.line}" if v.blame is not None else ""
    return (
        f"{v.label}: {v.verdict}: median {c.baseline.median_us / 1000:.3f} ms"
        f" -> {c.candidate.median_us / 1000:.3f} ms, "
        f"ratio {c.ratio:.3f}{ci}, reps {c.baseline.n_repetitions}/{c.candidate.n_repetitions}; {v.why}{blamed}"
    )


def gate(
    baseline: Sequence[Result] | None,
    candidate: Sequence[Result],
    config: GateConfig | None = None,
    budgets: Mapping[str, Budget] | None = None,
    looks: Mapping[CaseKey, Look] | None = None,
) -> GateOutcome:
    """Compare (when a baseline is given) and check budgets; exit code 0 pass, 1 fail.

    ``looks``: adaptive mode's alpha and finality per case (see :mod:`harness.remeasure`); default one
    final look at ``config.alpha`` per case, the fixed gate.
    """
    config = config or GateConfig()
    matching = _matching(baseline, candidate) if baseline is not None else None
    changed, context_notes = check_context(matching, config) if matching is not None else ({}, [])
    verdicts = mark_context(_verdicts(matching, config, looks), changed) if matching is not None else []
    missing, notes = _coverage(matching) if matching is not None else ([], [])
    verdicts += [m.verdict for m in missing if m.verdict is not None]
    breaches = check_budgets(candidate, budgets or {})
    failures, warnings, n_missing, n_excused = [], [], 0, 0
    for v in verdicts:
        excused = config.allow_missing and bool(v.unmeasured) and set(v.unmeasured) <= set(EXCUSABLE)
        n_excused += excused
        if excused or v.verdict == "noisy" and not v.fails(config):
            warnings.append(verdict_line(v) + (f" ({ALLOW_MISSING_NOTE})" if excused else ""))
        elif v.fails(config):
            failures.append(verdict_line(v))
            n_missing += bool(v.unmeasured)
    for m in missing:
        if m.verdict is None and config.allow_missing:
            warnings.append(f"{m.line} ({ALLOW_MISSING_NOTE})")
            n_excused += 1
        elif m.verdict is None:
            failures.append(m.line)
            n_missing += 1
    if matching is not None and config.allow_missing and not any(v.comparison for v in verdicts):
        failures.append("nothing compared: no baseline case was measured in this run "
                        "(allow_missing narrows the gate to what ran; here nothing ran)")
    for b in breaches:
        (failures if b.measured else warnings).append(b.line)
    failures += accelerator_failures(candidate, config)
    failures += drift_failures(candidate, config.max_drift)
    warnings += notes + context_notes
    return GateOutcome(
        exit_code=1 if failures else 0,
        verdicts=tuple(verdicts),
        breaches=tuple(breaches),
        failures=tuple(failures),
        warnings=tuple(warnings),
        missing=n_missing,
        not_gated=n_excused,
    )


# Delegates whose verdict the harness reads (xnnpack is a CPU library: it has no "fell back to CPU").
ACCELERATOR_GATED = ("gpu", "nnapi", "hexagon", "coreml", "npu")


def accelerator_failures(results: Sequence[Result], config: GateConfig) -> list[str]:
    """Cases whose accelerator ran less than the rule asks (a model's own ``accelerator`` wins over [gate]).

    ``full``: every op on the accelerator; ``partial``: at least one; ``any``: no rule. A case
    without a verdict (the tool said nothing) fails a ``full``/``partial`` rule: not shown to run there.
    """
    out = []
    for r in results:
        rule = r.case.settings.get("accelerator") or config.accelerator
        if rule in (None, "any") or r.case.delegate not in ACCELERATOR_GATED or r.status not in ("ok", "failed"):
            continue
        acc = r.accelerator
        if acc is None:
            out.append(f"{r.case.case_id}: accelerator = {rule!r}, but nothing says what ran "
                       "(the runtime or tool printed no delegate/partition line)")
        elif acc.verdict not in (("full",) if rule == "full" else ("full", "partial")):
            out.append(f"{r.case.case_id}: accelerator = {rule!r}, but it ran {acc.summary()}"
                       + (f": {acc.reason}" if acc.reason else ""))
    return out


def drift_failures(results: Sequence[Result], rules: Mapping[str, Any]) -> list[str]:
    """Delegates whose outputs drift from ``cpu``'s beyond ``max_drift`` (per-delegate tables override)."""
    from harness.numerics import against, fmt

    if not rules:
        return []
    out = []
    compared = {(ref.case.case_id, res.case.case_id) for ref, res, _ in against(results)}
    for r in results:
        if r.status == "ok" and r.case.delegate != "cpu" and not any(c == r.case.case_id for _, c in compared):
            out.append(f"{r.case.case_id}: max_drift set, but the run has no ok cpu result of this case to compare")
    for _ref, res, d in against(results):
        limits = {k: v for k, v in rules.items() if not isinstance(v, Mapping)}
        limits.update(rules.get(res.case.delegate) or {})
        if d.problem:
            out.append(f"{res.case.case_id}: drift not computable: {d.problem}")
            continue
        checks = (("cosine_min", "cosine", lambda v, lim: v >= lim), ("max_abs", "max_abs", lambda v, lim: v <= lim),
                  ("rel_l2_max", "rel_l2", lambda v, lim: v <= lim), ("psnr_min", "psnr_db", lambda v, lim: v >= lim),
                  ("top1", "top1", lambda v, lim: v or not lim))
        for key, metric, ok in checks:
            if key not in limits:
                continue
            value = d.value(metric)
            if value is None and metric == "top1":
                continue
            if value is None or not ok(value, limits[key]):
                out.append(f"{res.case.case_id}: drift from cpu {metric} {fmt(metric, value)} breaks "
                           f"{key} = {limits[key]}")
    return out


ALLOW_MISSING_NOTE = "not gated: allow_missing"
MISSING_HINT = ("re-run the missing cases, or gate only what ran with `harness gate --allow-missing` "
                "or `[gate] allow_missing = true` (device_lost/skipped/not run only; failed and timeout still fail)")
# Statuses that say nothing about the candidate's code (the device or the run went away, or the
# case could not run here): --allow-missing excuses them. ``failed`` and ``timeout`` ran the
# candidate and it did not finish: those stay failures.
EXCUSABLE = ("device_lost", "skipped")


@dataclass(frozen=True)
class MissingCase:
    """A baseline case the candidate did not measure: absent (``verdict`` None) or present but not ok."""

    label: str
    line: str
    verdict: CaseVerdict | None = None


_UNMEASURED = "not measurable in this run: "


def _loose_key(r: Result) -> tuple[str, str, int, str, str]:
    """A case by its suite name, delegate, threads, api and device id: how an unmeasured candidate
    result is tied to its baseline case when it lacks the model hash or device facts (lost early)."""
    return (r.case.model, r.case.delegate, r.case.threads, r.case.api, r.device.id)


def _coverage(matching: _Matching) -> tuple[list[MissingCase], list[str]]:
    """Baseline cases the candidate did not measure, and warnings for cases that cannot be gated.

    A baseline case is *missing* when the candidate lacks it entirely (not run: the run was
    interrupted or the suite changed) or holds it unmeasured (device lost, timeout, failed, skipped,
    possibly under another key when the device vanished before its facts were read). A baseline case
    that was not ok itself is the baseline's fault: a warning.
    """
    unmeasured: dict[tuple, list[Result]] = {}
    extra: dict[str, list[Result]] = {}
    for label, results in matching.only_candidate:
        if _usable(results):
            extra[label] = results
        else:
            for r in results:
                unmeasured.setdefault(_loose_key(r), []).append(r)
    missing, notes = [], []
    for key, b_all, _ in matching.pairs:
        if not _usable(b_all):
            notes.append(_baseline_not_ok(_label(key, b_all[0].case.model), b_all))
    for label, b_all in matching.only_baseline:
        if not _usable(b_all):
            notes.append(_baseline_not_ok(label, b_all))
            continue
        c_all = unmeasured.pop(_loose_key(b_all[0]), None)
        if c_all is None:
            missing.append(MissingCase(label, f"{label}: missing: not in this run at all "
                                              "(the run was interrupted, or the suite changed)"))
            continue
        b = b_all[0]
        verdict = CaseVerdict(key=case_key(b), model=b.case.model, device=b.device.id, delegate=b.case.delegate,
                              threads=b.case.threads, api=b.case.api, verdict="failed",
                              why=f"{_UNMEASURED}{_not_measured(c_all)}",
                              unmeasured=tuple(sorted({r.status for r in c_all})))
        missing.append(MissingCase(label, verdict_line(verdict), verdict))
    leftover = {_label(case_key(rs[0]), rs[0].case.model): rs for rs in unmeasured.values()}
    for label, results in sorted({**extra, **leftover}.items()):
        what = "new in this run" if _usable(results) else f"new in this run and not measured ({_not_measured(results)})"
        notes.append(f"{label}: {what}, no baseline to compare with (not gated)")
    return missing, notes


def unmeasured_lines(baseline: Sequence[Result], candidate: Sequence[Result]) -> list[str]:
    """One line per ok baseline case the candidate did not measure (absent, or present but not ok), with why.

    For a front that gates a selection item by item (the pytest plugin): never raises, compares nothing.
    """
    matching = _match(_index(baseline), _index(candidate))
    lines = [m.line for m in _coverage(matching)[0]]
    lines += [f"{_label(key, c_all[0].case.model)}: {_UNMEASURED}{_not_measured(c_all)}"
              for key, b_all, c_all in matching.pairs if _usable(b_all) and not _usable(c_all)]
    return sorted(lines)


def _baseline_not_ok(label: str, results: Sequence[Result]) -> str:
    return (f"{label}: not gated: the baseline's own result is {_not_measured(results)} "
            "(not the candidate's fault; record a baseline where it passed)")


def _row(v: CaseVerdict) -> list[str]:
    c = v.comparison
    if c is None:
        return [v.label, "", "", "", "", v.verdict, v.why]
    ci = f"{c.ratio_ci.low:.3f}-{c.ratio_ci.high:.3f}" if c.ratio_ci else ""
    return [
        v.label,
        f"{c.baseline.median_us / 1000:.3f}",
        f"{c.candidate.median_us / 1000:.3f}",
        f"{c.ratio:.3f}",
        ci,
        v.verdict,
        v.why,
    ]


_HEADER = ["case", "base ms", "cand ms", "ratio", "95% CI", "verdict", "why"]


def render_compare_table(verdicts: Sequence[CaseVerdict]) -> str:
    """Plain-text table for the terminal: medians, ratio, interval, verdict, why."""
    rows = [_HEADER] + [_row(v) for v in verdicts]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEADER) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows).rstrip()


def _md(text: str, limit: int = 200) -> str:
    """Untrusted text for a Markdown list item: cut, control characters escaped, no HTML, no table break."""
    return html.escape(clip(text, limit), quote=False).replace("|", "\\|")


def github_summary_markdown(verdicts: Sequence[CaseVerdict], breaches: Sequence[BudgetBreach] = (),
                            missing: Sequence[str] = ()) -> str:
    """Markdown for ``$GITHUB_STEP_SUMMARY``: a table of verdicts, budget breaches, baseline cases not measured."""
    icon = {
        "faster": ":rocket:",
        "slower": ":x:",
        "same": ":white_check_mark:",
        "noisy": ":warning:",
        "failed": ":boom:",
    }
    lines = ["### edgeharness gate", "", "| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
    for v in verdicts:
        cells = _row(v)
        cells[5] = f"{icon.get(v.verdict, '')} {v.verdict}"
        lines.append("| " + " | ".join(_md(c, 1000) for c in cells) + " |")
    changed = [f"- {_md(v.label)}: {_md('; '.join(v.context_changed))}" for v in verdicts if v.context_changed]
    if changed:
        lines += ["", "**Run context changed (tolerated)**", ""] + changed
    blamed = [f"- {v.label}: {v.blame.line}" for v in verdicts if v.blame is not None]
    if blamed:
        lines += ["", "**Blame by operator**", ""] + blamed
    if breaches:
        lines += ["", "**Budgets**", ""] + [f"- {b.line}" for b in breaches]
    if missing:
        lines += ["", f"**Baseline cases not measured in this run** ({len(missing)})", ""]
        lines += [f"- {line}" for line in missing]
    return "\n".join(lines) + "\n"


def junit_properties(verdict: CaseVerdict) -> list[tuple[str, str]]:
    """``(name, value)`` pairs for ``record_property`` / junit XML."""
    props = [("gate_verdict", verdict.verdict), ("gate_why", verdict.why)]
    c = verdict.comparison
    if c is not None:
        props += [
            ("baseline_median_us", f"{c.baseline.median_us:.1f}"),
            ("candidate_median_us", f"{c.candidate.median_us:.1f}"),
            ("ratio", f"{c.ratio:.4f}"),
            ("p_slower", f"{c.p_slower:.3g}"),
            ("baseline_repetitions", str(c.baseline.n_repetitions)),
            ("candidate_repetitions", str(c.candidate.n_repetitions)),
        ]
        if c.ratio_ci:
            props += [("ratio_ci_low", f"{c.ratio_ci.low:.4f}"), ("ratio_ci_high", f"{c.ratio_ci.high:.4f}")]
    if verdict.blame is not None:
        props.append(("blame", verdict.blame.line))
    return props
