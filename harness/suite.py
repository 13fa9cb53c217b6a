"""Suite files (TOML): load, validate and expand into cases (model x delegate x threads).

A suite is a ``[suite]`` table of defaults and one ``[[models]]`` table per model. Every
key is checked: an unknown key or a bad value is a :class:`SuiteError` naming the file,
the line, the key and what is allowed. See the README for the format.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from harness import tomlfile
from harness.config import ProjectConfig
from harness.devices.endpoint import network as net_profiles
from harness.devices.endpoint.network import ClientPolicy, NetworkSettings, custom_profile
from harness.errors import ConfigError, ModelError, SuiteError, UsageError
from harness.gate import Budget, GateConfig, GateConfigError, accelerator_rule, parse_percent
from harness.names import RULE, problem, sanitise
from harness.runners.base import NPU_COMPILE, NpuSettings, RunSettings, ToolConfig
from harness.samplers import fitness
from harness.samplers.fitness import Requirements
from harness.soak import HINT as SOAK_HINT
from harness.soak import SoakSettingError, SoakSettings

DELEGATES = ("cpu", "xnnpack", "gpu", "nnapi", "hexagon", "coreml", "npu")
NPU_KEYS = {"compile": NPU_COMPILE, "cpu_fallback": (True, False)}  # the `npu = {...}` setting
APIS = ("interpreter", "compiled")
RUNNERS = ("auto", "litert-python", "benchmark_model", "litert-benchmark")
TOOL_KEYS = ("benchmark_model", "ios_app", "options")
GATE_KEYS = ("max_regression", "alpha", "noisy", "min_repetitions", "max_cv", "allow_missing", "accelerator",
             "max_drift", "profile_ops", "tolerate")
GATE_KEYS += ("remeasure", "max_repetitions", "max_seconds", "spending")  # adaptive repetitions (harness.remeasure)
COOLDOWN_MODES = ("off", "threshold", "pause")

# Per-case settings: allowed in [suite] as defaults and in [[models]] as overrides.
_SETTINGS: dict[str, type | tuple[type, ...]] = {
    "delegates": list,
    "threads": (list, int),
    "warmup_runs": int,
    "measured_runs": int,
    "repetitions": int,
    "timeout_s": (int, float),
    "api": str,
    "runner": str,
    "npu": dict,
    "soak": dict,
    "min_duration_s": (int, float),
}
_SUITE_ONLY = {"name": str, "description": str, "cooldown": dict, "tool": dict, "require": dict, "network": dict}
NETWORK_KEYS = ("profiles", "timeout_s", "retries", "backoff_ms", "cache", "profile", "method")
_MODEL_ONLY = {"zoo": str, "path": str, "name": str, "budget": dict, "accelerator": str}

# Inclusive bounds of the numeric settings: a figure outside is a typo or a unit mistake (and a
# timeout beyond a week overflows the OS's wait calls), never a plan.
MAX_WAIT_S = 7 * 24 * 3600.0
SETTING_RANGES: dict[str, tuple[float, float]] = {
    "threads": (1, 1024),
    "warmup_runs": (1, 1_000_000),
    "measured_runs": (1, 1_000_000),
    "repetitions": (1, 10_000),
    "timeout_s": (0.0, MAX_WAIT_S),  # the low end is excluded: a timeout must be > 0
    "min_duration_s": (0.0, 3600.0),  # 0: no minimum
}
_SECONDS = ("timeout_s", "min_duration_s")
_SETTING_WHY = {"warmup_runs": " (the first run is reported as first inference)"}

DEFAULTS: dict[str, Any] = {"delegates": ["cpu", "xnnpack"], "threads": [1], **asdict(RunSettings())}


@dataclass(frozen=True)
class ModelSpec:
    """One ``[[models]]`` entry, with the suite defaults applied; every setting typed and checked at load.

    ``cooldown`` holds only the ``[suite.cooldown]`` keys the suite set: the device profile fills the rest
    (see :class:`harness.samplers.cooldown.CooldownConfig`).
    """

    name: str
    zoo: str | None
    path: Path | None
    delegates: tuple[str, ...]
    threads: tuple[int, ...]
    run: RunSettings = field(default_factory=RunSettings)
    budget: Budget = field(default_factory=Budget)
    tool: ToolConfig = field(default_factory=ToolConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    cooldown: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: This model's own gate rule (full | partial | any), over ``[gate] accelerator``; None: the suite's.
    accelerator: str | None = None
    #: ``[suite] require``: what a device must be (battery, thermal status, idle CPUs) before its cases run.
    require: Requirements = field(default_factory=Requirements)
    #: ``[suite.network]``: the network profiles endpoint devices run this model under, and the client policy.
    network: NetworkSettings = field(default_factory=NetworkSettings)
    #: Run each case of this model as a soak (:mod:`harness.soak`); None: a fixed number of repetitions.
    soak: SoakSettings | None = None

    def settings_record(self) -> dict[str, Any]:
        """The settings a result keeps of this model (read back by :func:`harness.gate.stored_settings`;
        ``accelerator`` by :func:`harness.gate.accelerator_failures`)."""
        return {"timeout_s": self.run.timeout_s, "zoo": self.zoo, "budget": self.budget.as_table(),
                "gate": self.gate.as_table(), **({"accelerator": self.accelerator} if self.accelerator else {}),
                **({"soak": self.soak.as_table()} if self.soak else {})}


@dataclass(frozen=True)
class Case:
    """One unit of work: a model with one delegate and one thread count (a device is chosen at run time).

    ``network`` names the network profile of a case meant for an endpoint device (``""``: an on-device case).
    """

    model: ModelSpec
    delegate: str
    threads: int
    network: str = ""

    def case_id(self, device_label: str) -> str:
        """``face_landmark[host-xnnpack-t1]``: the pytest item id and the report's row label
        (``face_landmark[kserve-...-cpu-t1-4g]`` for an endpoint case under ``4g``)."""
        suffix = f"-{self.network}" if self.network else ""
        return f"{self.model.name}[{device_label}-{self.delegate}-t{self.threads}{suffix}]"


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path | None
    description: str
    models: tuple[ModelSpec, ...]
    gate: GateConfig = field(default_factory=GateConfig)
    cooldown: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    tool: ToolConfig = field(default_factory=ToolConfig)
    require: Requirements = field(default_factory=Requirements)
    network: NetworkSettings = field(default_factory=NetworkSettings)

    def cases(self) -> list[Case]:
        return [Case(m, d, t) for m in self.models for d in m.delegates for t in m.threads]

    def endpoint_cases(self) -> list[Case]:
        """One case per model and network profile (``direct`` when the suite names none), for endpoint devices
        (:func:`harness.plan.expand` gives them only to those). The server runs its own delegate, recorded as
        ``cpu``: the reference ``harness serve-model`` runs by default."""
        return [Case(m, "cpu", 1, n) for m in self.models for n in (m.network.profiles or ("direct",))]


class _Ctx(tomlfile.Source):
    """Where we are in the suite file, to put the line number into errors."""

    def __init__(self, path: Path, text: str) -> None:
        super().__init__(path, text, SuiteError, arrays=("models",))


def check_setting(key: str, value: object) -> str | None:
    """Why ``value`` is not allowed for the numeric setting ``key`` (see ``SETTING_RANGES``), or None.

    The one check of these values, whether they come from a suite, the command line or the API:
    ``true`` (an int to Python), NaN, infinities, zero and negatives are refused.
    """
    low, high = SETTING_RANGES[key]
    whole = key not in _SECONDS
    if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
        return f"expected {'an integer' if whole else 'a number'}, got {type(value).__name__} {value!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value}"
    if whole and value < low:
        return f"must be >= {low:g}{_SETTING_WHY.get(key, '')}, got {value}"
    if not whole and (value <= low if key == "timeout_s" else value < low):
        return f"must be {'>' if key == 'timeout_s' else '>='} {low:g} seconds, got {value}"
    if value > high:
        return f"must be at most {high:g}, got {value}"
    return None


def setting_hint(key: str) -> str:
    """What ``key`` takes, for the hint of a refused value."""
    low, high = SETTING_RANGES[key]
    if key == "timeout_s":
        return f"seconds, more than {low:g} and at most {high:g}"
    if key == "min_duration_s":
        return f"seconds, from {low:g} (no minimum) to {high:g}"
    return f"a whole number from {low:g} to {high:g}"


def _check_type(ctx: _Ctx, key: str, value: Any, expected: type | tuple[type, ...], table: str, index: int) -> None:
    types = expected if isinstance(expected, tuple) else (expected,)
    # bool is an int in Python, but `threads = true` is a mistake.
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        names = " or ".join(t.__name__ for t in types)
        raise ctx.error(f"expected {names}, got {type(value).__name__} {value!r}", key, table, index)


def _validate_settings(ctx: _Ctx, values: dict[str, Any], table: str, index: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in _SETTINGS:
            continue
        _check_type(ctx, key, value, _SETTINGS[key], table, index)
        if key == "delegates":
            if not value:
                raise ctx.error("needs at least one delegate", key, table, index)
            for d in value:
                if d not in DELEGATES:
                    raise ctx.error(f"unknown delegate {d!r}", key, table, index,
                                    hint=f"allowed: {', '.join(DELEGATES)}")
            value = list(dict.fromkeys(value))
        elif key == "threads":
            value = [value] if isinstance(value, int) else value
            problem = "needs at least one thread count" if not value else next(
                (p for p in (check_setting(key, t) for t in value) if p), None)
            if problem:
                raise ctx.error(f"threads must be positive integers: {problem}", key, table, index,
                                hint=f"each one {setting_hint(key)}")
        elif key in SETTING_RANGES and (problem := check_setting(key, value)):
            raise ctx.error(problem, key, table, index, hint=setting_hint(key))
        elif key == "api" and value not in APIS:
            raise ctx.error(f"unknown api {value!r}", key, table, index, hint=f"allowed: {', '.join(APIS)}")
        elif key == "runner" and value not in RUNNERS:
            raise ctx.error(f"unknown runner {value!r}", key, table, index, hint=f"allowed: {', '.join(RUNNERS)}")
        elif key == "npu":
            for sub, sub_value in value.items():
                allowed = NPU_KEYS.get(sub)
                if allowed is None or sub_value not in allowed or type(sub_value) is not type(allowed[0]):
                    raise ctx.error(f"npu: bad {sub} = {sub_value!r}", key, table, index,
                                    hint='npu = { compile = "jit" | "aot", cpu_fallback = true | false }')
        elif key == "soak":
            try:
                value = SoakSettings.from_mapping(value)
            except SoakSettingError as exc:
                raise ctx.error(f"soak: {exc.reason}", key, table, index, hint=SOAK_HINT) from None
        out[key] = value
    return out


def _reject_unknown(ctx: _Ctx, values: dict[str, Any], allowed: set[str], table: str, index: int = 0) -> None:
    for key in values:
        if key not in allowed:
            raise ctx.error(f"unknown key {key!r}", key, table, index,
                            hint=f"allowed keys: {', '.join(sorted(allowed))}")


def _parse_budget(ctx: _Ctx, budget: dict[str, Any], index: int) -> Budget:
    """``[models.budget]``, checked by the gate's own rules now (not first when gating)."""
    try:
        return Budget.from_mapping(budget)
    except GateConfigError as exc:
        raise ctx.error(exc.reason, exc.key, "models", index, hint=exc.hint) from None


def _model_name(ctx: _Ctx, raw: dict[str, Any], index: int) -> str:
    if "name" in raw:
        name = raw["name"]
    elif "zoo" in raw:
        name = raw["zoo"]
    else:
        name = Path(raw["path"]).stem
    reason = problem(name)
    if reason is not None:
        raise ctx.error(f"model name {reason}", "name", "models", index,
                        hint=f"use {RULE}; set `name = \"...\"` for a model whose file name has other characters")
    return name


def _suite_name(ctx: _Ctx, head: dict[str, Any], path: Path) -> str:
    """``[suite] name``, refused when unfit for a file name; else the file's stem made fit (or ``suite``)."""
    if "name" not in head:
        return sanitise(path.stem, "suite") if path.name and path.suffix else "suite"
    reason = problem(head["name"])
    if reason is not None:
        raise ctx.error(f"suite name {reason}", "name", "suite",
                        hint=f"the name becomes the run's file names in --out: use {RULE}")
    return head["name"]


def _parse_model(ctx: _Ctx, raw: Any, defaults: dict[str, Any], index: int, shared: dict[str, Any]) -> ModelSpec:
    """One ``[[models]]`` entry; ``shared`` holds the suite-level tables each case carries (tool, gate, cooldown)."""
    if not isinstance(raw, dict):
        raise ctx.error("each [[models]] entry must be a table", "models", None)
    _reject_unknown(ctx, raw, set(_SETTINGS) | set(_MODEL_ONLY), "models", index)
    for key in _MODEL_ONLY:
        if key in raw:
            _check_type(ctx, key, raw[key], _MODEL_ONLY[key], "models", index)
    if ("zoo" in raw) == ("path" in raw):
        raise ctx.error("give exactly one of `zoo = NAME` or `path = PATH`", "zoo", "models", index)
    if "zoo" in raw:
        from harness import zoo  # local: suite parsing must not need the zoo unless used

        if raw["zoo"] not in zoo.MODELS:
            raise ctx.error(f"unknown zoo model {raw['zoo']!r}", "zoo", "models", index,
                            hint=f"known: {', '.join(sorted(zoo.MODELS))}")
    settings = {**defaults, **_validate_settings(ctx, raw, "models", index)}
    path = None
    if "path" in raw:
        path = Path(raw["path"])
        relative = not path.is_absolute() and bool(ctx.path.name)
        path = ctx.path.parent / path if relative else path
        _check_model_path(ctx, path, index)  # before resolve(): a symlink loop makes resolve() raise
        path = path.resolve() if relative else path
    return ModelSpec(
        name=_model_name(ctx, raw, index),
        zoo=raw.get("zoo"),
        path=path,
        delegates=tuple(settings["delegates"]),
        threads=tuple(settings["threads"]),
        run=RunSettings(**{**{f.name: settings[f.name] for f in fields(RunSettings)},
                           "timeout_s": float(settings["timeout_s"]), "npu": NpuSettings(**settings["npu"]),
                           "min_duration_s": _float_or_none(settings["min_duration_s"])}),
        budget=_parse_budget(ctx, raw.get("budget", {}), index),
        accelerator=_accelerator_rule(ctx, raw, index),
        soak=settings.get("soak"),
        **shared,
    )


def _float_or_none(value: float | None) -> float | None:
    return None if value is None else float(value)


def _accelerator_rule(ctx: _Ctx, raw: dict[str, Any], index: int) -> str | None:
    """``accelerator = "full" | "partial" | "any"`` of one model, checked by the gate's own reader."""
    try:
        return accelerator_rule("accelerator", "accelerator", raw.get("accelerator"))
    except GateConfigError as exc:
        raise ctx.error(exc.reason, "accelerator", "models", index, hint=exc.hint) from None


def _check_model_path(ctx: _Ctx, path: Path, index: int) -> None:
    """A model path that exists but cannot be a model (directory, FIFO, symlink loop, unreadable) fails the load.

    A missing file is left to its case (it fails alone with "file not found" and the run goes on).
    """
    from harness.models import NOT_FOUND, check_file  # local: suite parsing must not need the model reader

    try:
        check_file(path)
    except ModelError as exc:
        if not exc.reason.startswith(NOT_FOUND):
            raise ctx.error(f"model {path}: {exc.reason}", "path", "models", index, hint=exc.hint) from None


def _parse_gate(ctx: _Ctx, gate: Any) -> GateConfig:
    """The ``[gate]`` table, each value checked now by the gate's own rules (not first when gating)."""
    if not isinstance(gate, dict):
        raise ctx.error("[gate] must be a table", "gate")
    _reject_unknown(ctx, gate, set(GATE_KEYS), "gate")
    try:  # the gate's own parser: a bad value fails here, when the suite is loaded, not at gate time
        return GateConfig.from_mapping(gate)
    except GateConfigError as exc:
        raise ctx.error(exc.reason, exc.key, "gate", hint=exc.hint) from None


# [suite.cooldown] numbers: (lowest, highest) allowed.
_COOLDOWN_RANGES = {"threshold_c": (-273.15, 200.0), "pause_s": (0.0, MAX_WAIT_S), "timeout_s": (0.0, MAX_WAIT_S)}


def _parse_cooldown(ctx: _Ctx, cooldown: dict[str, Any]) -> Mapping[str, Any]:
    _reject_unknown(ctx, cooldown, {"mode", *_COOLDOWN_RANGES}, "suite.cooldown")
    mode = cooldown.get("mode", "off")
    if mode not in COOLDOWN_MODES:
        raise ctx.error(f"unknown cooldown mode {mode!r}", "mode", "suite.cooldown",
                        hint=f"allowed: {', '.join(COOLDOWN_MODES)}")
    for key, (low, high) in _COOLDOWN_RANGES.items():
        value = cooldown.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not low <= value <= high):
            raise ctx.error(f"must be a number from {low:g} to {high:g}, got {value!r}", key, "suite.cooldown",
                            hint="threshold_c in deg C; pause_s and timeout_s in seconds")
    return MappingProxyType(dict(cooldown))


# require = {...}: (lowest, highest) of each number; other_cpu_max is a percentage.
_REQUIRE_RANGES = {"battery_min": (0.0, 100.0), "thermal_status_max": (0, 6), "wait_s": (0.0, MAX_WAIT_S),
                   "poll_s": (0.1, 3600.0)}


def _parse_require(ctx: _Ctx, require: dict[str, Any]) -> Requirements:
    """``[suite] require = { battery_min = 30, thermal_status_max = 0, other_cpu_max = "25%", wait_s = 60 }``."""
    for key, value in require.items():
        if key not in fitness.KEYS:
            raise ctx.error(f"unknown key {key!r}", "require", "suite",
                            hint="known: " + "; ".join(f"{k}: {what}" for k, what in fitness.KEYS.items()))
        if key == "other_cpu_max":
            try:
                share = parse_percent(value, "require other_cpu_max") if not isinstance(value, bool) else -1.0
            except UsageError as exc:
                raise ctx.error(exc.message.removeprefix("require "), "require", "suite",
                                hint='a share of the CPUs, e.g. "25%" or 0.25') from None
            if not 0.0 <= share <= 1.0:
                raise ctx.error(f"other_cpu_max must be from 0% to 100%, got {value!r}", "require", "suite",
                                hint='e.g. other_cpu_max = "25%"')
            continue
        low, high = _REQUIRE_RANGES[key]
        whole = key == "thermal_status_max"
        if isinstance(value, bool) or not isinstance(value, int if whole else int | float) \
                or not math.isfinite(value) or not low <= value <= high:
            raise ctx.error(f"{key} must be {'a whole number' if whole else 'a number'} from {low:g} "
                            f"to {high:g}, got {value!r}", "require", "suite", hint=fitness.KEYS[key])
    values = dict(require)
    if "other_cpu_max" in values:
        values["other_cpu_max"] = parse_percent(values["other_cpu_max"])
    return Requirements(**{k: float(v) if k != "thermal_status_max" else v for k, v in values.items()})
_PCT_KEYS = ("loss_pct", "stall_pct", "reset_pct")


def _parse_network(ctx: _Ctx, net: dict[str, Any]) -> NetworkSettings:
    """``[suite.network]``: profiles (named or ``[suite.network.profile.NAME]``) and the client policy."""
    table = "suite.network"
    _reject_unknown(ctx, net, set(NETWORK_KEYS), table)
    custom = {}
    method = net.get("method", "auto")
    if method not in net_profiles.METHODS:
        raise ctx.error(f"unknown method {method!r}", "method", table,
                        hint=f"allowed: {', '.join(net_profiles.METHODS)}")
    own = net.get("profile", {})
    if not isinstance(own, dict):
        raise ctx.error("profile must be a table of [suite.network.profile.NAME] tables", "profile", table)
    for name, values in own.items():
        where = f"{table}.profile"
        if problem(name) is not None or not isinstance(values, dict):
            raise ctx.error(f"profile {name!r} must be a table with a plain name ({RULE})", name, where)
        _reject_unknown(ctx, values, set(net_profiles.PROFILE_KEYS), f"{where}.{name}")
        for key, value in values.items():
            if key == "method":
                if value not in net_profiles.METHODS:
                    raise ctx.error(f"unknown method {value!r}", key, f"{where}.{name}",
                                    hint=f"allowed: {', '.join(net_profiles.METHODS)}")
                continue
            high = 100.0 if key in _PCT_KEYS else 600_000.0 if key.endswith("_ms") else 10_000_000.0
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= high:
                raise ctx.error(f"must be a number from 0 to {high:g}, got {value!r}", key, f"{where}.{name}",
                                hint="delays in ms, rates in kbit/s (0 = unlimited), loss/stall/reset in %")
        custom[name] = custom_profile(name, {"method": method, **values})
    profiles = net.get("profiles", [])
    known = {**net_profiles.PROFILES, **custom}
    if not isinstance(profiles, list) or not all(isinstance(p, str) for p in profiles):
        raise ctx.error("profiles must be a list of profile names", "profiles", table)
    for name in profiles:
        if name not in known:
            raise ctx.error(f"unknown network profile {name!r}", "profiles", table,
                            hint=f"known: {', '.join(known)}; or define [suite.network.profile.{name}]")
    if len(set(profiles)) != len(profiles):
        raise ctx.error("a network profile is listed twice", "profiles", table)
    policy = ClientPolicy()
    checks = {"timeout_s": (0.001, 3600.0), "retries": (0, 10), "backoff_ms": (0.0, 60_000.0)}
    values: dict[str, Any] = {}
    for key, (low, high) in checks.items():
        if key in net:
            v = net[key]
            whole = key == "retries"
            if (isinstance(v, bool) or not isinstance(v, int if whole else int | float)
                    or not low <= v <= high):
                raise ctx.error(f"must be {'a whole number' if whole else 'a number'} from {low:g} to {high:g}, "
                                f"got {v!r}", key, table)
            values[key] = v if whole else float(v)
    if "cache" in net:
        if not isinstance(net["cache"], bool):
            raise ctx.error(f"must be true or false, got {net['cache']!r}", "cache", table)
        values["cache"] = net["cache"]
    return NetworkSettings(tuple(profiles), MappingProxyType(custom), replace(policy, **values), method)


def _resolve(base: Path, value: str) -> str:
    return value if Path(value).is_absolute() else str((base / value).resolve())


def _parse_tool(ctx: _Ctx, tool: dict[str, Any], table: str = "suite.tool") -> ToolConfig:
    """A tool table: the native binary (one path, or one per ABI), the iOS app, and extra tool flags."""
    _reject_unknown(ctx, tool, set(TOOL_KEYS), table)
    base = ctx.path.parent if ctx.path.name else Path(".")
    binaries: dict[str, str] = {}
    binary = tool.get("benchmark_model")
    if binary is not None:
        paths = {"*": binary} if isinstance(binary, str) else binary
        if not isinstance(paths, dict) or not all(isinstance(v, str) for v in paths.values()):
            raise ctx.error("benchmark_model must be a path or a table of ABI = path", "benchmark_model", table)
        binaries = {abi: _resolve(base, p) for abi, p in paths.items()}
    app = None
    if "ios_app" in tool:
        if not isinstance(tool["ios_app"], str):
            raise ctx.error("ios_app must be the path of an .ipa or .app", "ios_app", table)
        app = _resolve(base, tool["ios_app"])
    options = tool.get("options", {})
    if not isinstance(options, dict):
        raise ctx.error("options must be a table of benchmark flags", "options", table)
    return ToolConfig(benchmark_model=MappingProxyType(binaries), ios_app=app, options=MappingProxyType(options))


def project_tool_defaults(config: ProjectConfig | None) -> ToolConfig:
    """``[tool]`` of ``harness.toml`` (see :mod:`harness.config`), validated like a suite's."""
    if config is None or config.path is None or "tool" not in config.data:
        return ToolConfig()
    ctx = _Ctx(config.path, config.text)
    ctx.error_type = ConfigError  # harness.toml is a settings file, not a suite
    return _parse_tool(ctx, config.data["tool"], "tool")


def parse_suite(text: str, path: str | Path = "<string>", tool_defaults: ToolConfig | None = None) -> Suite:
    """Parse suite TOML text; ``path`` names the file in errors and anchors relative model paths.

    ``tool_defaults`` (from ``harness.toml``) fill the ``[suite.tool]`` keys the suite leaves out.
    """
    path = Path(path)
    ctx = _Ctx(path, text)
    data = tomlfile.parse(text, path)
    _reject_unknown(ctx, data, {"suite", "models", "gate"}, None)
    head = data.get("suite", {})
    if not isinstance(head, dict):
        raise ctx.error("[suite] must be a table", "suite")
    _reject_unknown(ctx, head, set(_SETTINGS) | set(_SUITE_ONLY), "suite")
    for key in _SUITE_ONLY:
        if key in head:
            _check_type(ctx, key, head[key], _SUITE_ONLY[key], "suite", 0)
    defaults = {**DEFAULTS, **_validate_settings(ctx, head, "suite")}
    models_raw = data.get("models")
    if not models_raw:
        raise ctx.error("a suite needs at least one [[models]] table", "models", None,
                        hint='add a [[models]] table with zoo = "face_landmark" or path = "model.tflite"')
    if not isinstance(models_raw, list):
        raise ctx.error("use [[models]] (an array of tables), not [models]", "models", None)
    shared = {
        "tool": _parse_tool(ctx, head.get("tool", {})).merged_over(tool_defaults or ToolConfig()),
        "gate": _parse_gate(ctx, data.get("gate", {})),
        "cooldown": _parse_cooldown(ctx, head.get("cooldown", {})),
        "require": _parse_require(ctx, head.get("require", {})),
        "network": _parse_network(ctx, head.get("network", {})),
    }
    models = tuple(_parse_model(ctx, raw, defaults, i, shared) for i, raw in enumerate(models_raw))
    names = [m.name for m in models]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ctx.error(f"model names must be unique; repeated: {', '.join(dupes)}", "name", "models",
                        names.index(dupes[0]), hint="set `name = \"...\"` to tell them apart")
    return Suite(
        name=_suite_name(ctx, head, path),
        path=path if path.name and path.suffix else None,
        description=head.get("description", ""),
        models=models,
        **shared,
    )


def load_suite(path: str | Path, config: ProjectConfig | None = None) -> Suite:
    """Read and validate a suite file; ``config`` (``harness.toml``, read by the front) gives tool defaults.

    Nothing else is read: not the working directory, not the environment.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise SuiteError(path, "suite file not found")
    return parse_suite(tomlfile.read_text(path, what="suite"), path, project_tool_defaults(config))


def checked_overrides(**overrides: Any) -> dict[str, Any]:
    """The given (not None) setting overrides, each held to the suite's own rule; a bad one is a UsageError."""
    given = {k: v for k, v in overrides.items() if v is not None}
    for key, value in given.items():
        problem = check_setting(key, value) if key in SETTING_RANGES else None
        if problem:
            raise UsageError(f"{key} = {value!r}: {problem}", hint=f"{setting_hint(key)}; or leave it out for the "
                                                                   "suite's own value")
    return given


def with_overrides(suite: Suite, **overrides: Any) -> Suite:
    """A copy of ``suite`` with settings forced on every model (e.g. fewer runs for a quick check)."""
    given = checked_overrides(**overrides)
    if not given:
        return suite
    return replace(suite, models=tuple(replace(m, run=replace(m.run, **given)) for m in suite.models))


def option_type(key: str) -> Callable[[str], Any]:
    """argparse ``type=`` for a numeric suite setting (``--repetitions``...): the suite's own rule,
    argparse's one-line error and exit code 2 for ``0``, ``-3`` or ``many``."""
    kind = float if key in _SECONDS else int

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'a number' if kind is float else 'an integer'}, "
                                             f"got {text!r}") from None
        wrong = check_setting(key, value)
        if wrong:
            raise argparse.ArgumentTypeError(wrong)
        return value

    convert.__name__ = key  # what argparse names in its own messages
    return convert
