"""Device facts from libimobiledevice ``ideviceinfo`` (``Key: value``) and pymobiledevice3
``lockdown info|get`` (JSON, possibly after warning lines)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.samplers.parsers._common import json_after_preamble, text_lines


@dataclass(frozen=True)
class IosDeviceFacts:
    values: dict[str, object] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        value = self.values.get(key)
        return None if value is None or value == "" else str(value)

    @property
    def product_type(self) -> str | None:
        return self.get("ProductType")

    @property
    def product_version(self) -> str | None:
        return self.get("ProductVersion")

    @property
    def device_class(self) -> str | None:
        return self.get("DeviceClass")

    @property
    def hardware_model(self) -> str | None:
        return self.get("HardwareModel")

    @property
    def cpu_architecture(self) -> str | None:
        return self.get("CPUArchitecture")


def parse_ideviceinfo(text: str) -> IosDeviceFacts:
    """Top-level ``Key: value`` lines (nested dict lines are indented and skipped)."""
    values: dict[str, object] = {}
    for line in text_lines(text):
        m = re.match(r"^([A-Za-z][\w]*):\s?(.*)$", line)
        if m:
            values.setdefault(m.group(1), m.group(2).strip())
    return IosDeviceFacts(values)


def parse_lockdown_json(text: str) -> IosDeviceFacts:
    doc = json_after_preamble(text)
    return IosDeviceFacts(dict(doc) if isinstance(doc, dict) else {})
