"""``adb shell getprop``: ``[key]: [value]`` lines (values may span lines; indentation from tools
like ``flutter -v`` ignored), plus the facts device profiles match on."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.samplers.parsers._common import integer, text_lines

_START = re.compile(r"^\[(?P<key>[^\]]+)\]:\s*\[(?P<rest>.*)$")


@dataclass(frozen=True)
class Props:
    props: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        value = self.props.get(key)
        return value if value else None

    @property
    def model(self) -> str | None:
        return self.get("ro.product.model")

    @property
    def manufacturer(self) -> str | None:
        return self.get("ro.product.manufacturer")

    @property
    def device(self) -> str | None:
        return self.get("ro.product.device") or self.get("ro.build.product")

    @property
    def sdk(self) -> int | None:
        return integer(self.get("ro.build.version.sdk"))

    @property
    def release(self) -> str | None:
        return self.get("ro.build.version.release")

    @property
    def soc(self) -> str | None:
        """``ro.soc.model`` (Android 12+), else the board platform / boot hardware."""
        return self.get("ro.soc.model") or self.get("ro.board.platform") or self.get("ro.boot.hardware")

    @property
    def abi(self) -> str | None:
        return self.get("ro.product.cpu.abi")


def parse_getprop(text: str) -> Props:
    """A value left open at the end of the text (a cut-off capture) is dropped, not guessed."""
    props: dict[str, str] = {}
    key: str | None = None
    parts: list[str] = []
    for line in text_lines(text):
        s = line.strip() if key is None else line
        if key is None:
            m = _START.match(s)
            if not m:
                continue
            key, rest = m.group("key"), m.group("rest")
            parts = [rest]
        else:
            parts.append(s)
        joined = "\n".join(parts).rstrip()
        if joined.endswith("]"):
            props[key] = joined[:-1]
            key, parts = None, []
    return Props(props)
