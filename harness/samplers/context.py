"""The run context: what must match between two runs for comparing their figures to mean anything.

A result's ``context`` (:attr:`harness.results.Result.context`) holds one text value per field of
:data:`FIELDS` that the device and the runner could give; a field that could not be read is absent
(never guessed). The gate compares the contexts of the paired baseline and candidate results
(:func:`differences`): a field that differs refuses the comparison (exit 2), unless the suite
tolerates it (``[gate] tolerate = ["harness_version"]``), which marks the verdict ``context changed``.

Where the values come from:

- ``harness_version``, ``runtime`` (runtime name and version), ``tool`` (a native tool's kind),
  ``vendor_libs`` (an accelerator's vendor library, e.g. OpenVINO for ``npu``), ``python``: the
  result's environment, i.e. what the runner itself reported from the device;
- ``runner_kind``: ``app`` (an :class:`~harness.devices.base.AppHost`), ``endpoint`` (a server reached over the
  network) or ``shell``;
- ``rooted`` (the device shell's uid is 0), ``governor`` (every CPU's ``scaling_governor``),
  ``device_kernel`` (``uname -r``): one shell command on the device before the case;
- ``freq_caps`` (lowest frequency cap over max, at start) and ``thermal_status`` (dumpsys thermalservice
  at start): the thermal sampler's snapshot before the case;
- ``charging``: the battery sampler's check (charging or externally powered vs on battery), or
  ``no battery`` when the device lists no power supply;
- ``host_kernel``: the kernel of the machine running the harness;
- ``network_method``: for an endpoint, how its network conditions were made (``netns``, ``netem``, ``tcp-proxy``).
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.devices.base import Capabilities, ShellDevice

#: Every context field with what it is and the hint a difference gets.
FIELDS: dict[str, tuple[str, str]] = {
    "harness_version": ("edgeharness version", "re-record the baseline with this harness version"),
    "runtime": ("inference runtime and version", "compare runs of the same runtime version; tolerate it only "
                "when the runtime change is what you measure"),
    "tool": ("native benchmark tool", "use the same benchmark tool (suite [suite.tool]) in both runs"),
    "vendor_libs": ("accelerator vendor library versions", "install the same vendor library (e.g. OpenVINO) "
                    "as the baseline's"),
    "python": ("the device's Python version", "run both with the same Python on the device"),
    "runner_kind": ("app, endpoint or shell runner", "an app and a shell run are not comparable: same runner for both"),
    "rooted": ("whether the device shell runs as root", "run both with or without `adb root`"),
    "governor": ("CPU frequency governor(s) at start", "set the same governor (e.g. `performance` on a rooted "
                 "device) before both runs"),
    "freq_caps": ("lowest CPU frequency cap at start, share of max rounded to 10%", "let the device cool down (suite "
                  "[suite.cooldown]) or require a fit device ([suite] require)"),
    "charging": ("charging state at start", "run both on battery or both on power"),
    "thermal_status": ("thermal status at start (0 none .. 6 shutdown)", "cool the device down first, e.g. "
                       "[suite] require = { thermal_status_max = 0 }"),
    "device_kernel": ("the device's kernel release", "compare runs on the same OS build"),
    "host_kernel": ("the harness host's kernel release", "run the gate's runs on the same runner image"),
    "network_method": ("how an endpoint's network conditions were made (netns, netem, tcp-proxy)",
                       "shape both runs the same way: [suite.network] method = \"netns\" or \"tcp-proxy\""),
}

#: The device-side part, read by :func:`device_part` with one shell command (uid, governors, kernel, supplies).
_SPLIT = "EH-CTX"
_COMMAND = (f"id -u 2>/dev/null; echo {_SPLIT}; cat /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor "
            f"2>/dev/null; echo {_SPLIT}; uname -r 2>/dev/null; echo {_SPLIT}; ls /sys/class/power_supply 2>/dev/null")


@dataclass(frozen=True)
class Difference:
    """One context field that differs between a baseline and a candidate result."""

    field: str
    baseline: str
    candidate: str

    def line(self) -> str:
        """``governor: baseline 'performance', candidate 'schedutil' (hint: ...)``."""
        what, hint = FIELDS.get(self.field, ("", "record a new baseline"))
        return (f"{self.field} ({what}): baseline {self.baseline!r}, candidate {self.candidate!r} "
                f"(hint: {hint}; or tolerate it: [gate] tolerate = [\"{self.field}\"] or --tolerate {self.field})")

    def short(self) -> str:
        return f"{self.field} {self.baseline} -> {self.candidate}"


def caps_text(ratio: float) -> str:
    """The lowest frequency cap over max, rounded to 10% (``"100%"``, ``"60%"``): governors move caps by a
    few steps on their own, which is not a different context; a thermal cap is."""
    return f"{round(ratio * 10) * 10}%"


def device_part(device: ShellDevice) -> dict[str, str]:
    """``rooted``, ``governor``, ``device_kernel`` and whether the device has a power supply, read now."""
    out = device.shell(_COMMAND, timeout_s=30).output
    return parse_device_part(out)


def parse_device_part(text: str) -> dict[str, str]:
    """The output of the device command into context fields (device output: bounded, one line each)."""
    parts = (text.split(_SPLIT) + ["", "", "", ""])[:4]
    out: dict[str, str] = {}
    uid = parts[0].strip()
    if uid.isdigit():
        out["rooted"] = "yes" if uid == "0" else "no"
    governors = sorted({g.strip() for g in parts[1].splitlines() if g.strip()})
    if governors:
        out["governor"] = _bounded(",".join(governors))
    kernel = parts[2].strip().splitlines()
    if kernel and kernel[0].strip():
        out["device_kernel"] = _bounded(kernel[0].strip())
    if not parts[3].strip():
        out["charging"] = "no battery"
    return {k: v for k, v in out.items() if v}


def _bounded(text: str, limit: int = 120) -> str:
    clean = "".join(ch if ch.isprintable() else "?" for ch in text)
    return clean[:limit]


def from_environment(environment: Mapping[str, Any], caps: Capabilities) -> dict[str, str]:
    """The fields a result's environment gives, and the runner kind from the device's capabilities."""
    kind = "endpoint" if caps.endpoint else "app" if caps.app_host else "shell"
    out = {"runner_kind": kind, "host_kernel": platform.release()}
    if environment.get("harness"):
        out["harness_version"] = str(environment["harness"])
    runtime = " ".join(str(environment[k]) for k in ("runtime", "runtime_version") if environment.get(k))
    if runtime:
        out["runtime"] = runtime
    for key in ("tool", "vendor_libs", "python", "network_method"):
        if environment.get(key):
            out[key] = str(environment[key])
    return {k: _bounded(v) for k, v in out.items()}


def differences(baseline: Mapping[str, str], candidate: Mapping[str, str]) -> list[Difference]:
    """Fields both contexts hold with different values (a field one side lacks is not a difference)."""
    return [Difference(name, str(baseline[name]), str(candidate[name])) for name in FIELDS
            if name in baseline and name in candidate and str(baseline[name]) != str(candidate[name])]
