"""Strip what wraps a tool's lines (logcat, Android Studio, NSLog, absl, Python logging, ``> `` quotes,
indentation, ``INFO:`` levels, LiteRT ``[file.h:NN]`` tags) so every parser sees the bare message.

One place for this, shared by every runner parser: the same benchmark text arrives through
adb shell, the APK's logcat, Android Studio's pane, the Xcode console or a pasted issue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LEVELS = {
    "V": "VERBOSE",
    "D": "DEBUG",
    "I": "INFO",
    "W": "WARNING",
    "E": "ERROR",
    "F": "FATAL",
    "A": "FATAL",
    "S": None,
    "VERBOSE": "VERBOSE",
    "DEBUG": "DEBUG",
    "INFO": "INFO",
    "WARN": "WARNING",
    "WARNING": "WARNING",
    "ERROR": "ERROR",
    "FATAL": "FATAL",
    "CRITICAL": "FATAL",
}

_QUOTE = re.compile(r"^[ \t]*(?:>[ \t]?)+")
_TS = r"\d\d:\d\d:\d\d(?:[.,]\d+)?"
_WRAPPERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # logcat -v threadtime: "01-11 23:28:59.026  7651  7651 I tflite  : msg"
    (
        "logcat",
        re.compile(
            rf"^(?:\d{{4}}-)?\d\d-\d\d\s+{_TS}\s+\d+\s+\d+\s+(?P<lvl>[VDIWEFAS])\s+"
            r"(?P<tag>[^:]*?)\s*: ?(?P<msg>.*)$"
        ),
    ),
    # Android Studio (2023+): "2023-06-14 10:55:21.084 18088-18088 tflite   org.pkg   I  msg"
    (
        "android_studio",
        re.compile(rf"^\d{{4}}-\d\d-\d\d\s+{_TS}\s+\d+-\d+\s+(?P<tag>\S+)\s+\S+\s+(?P<lvl>[VDIWEFA])\s+(?P<msg>.*)$"),
    ),
    # Android Studio (older): "2019-01-23 19:59:54.482 5685-5775/pkg E/AndroidRuntime: msg"
    (
        "android_studio",
        re.compile(rf"^\d{{4}}-\d\d-\d\d\s+{_TS}\s+\d+-\d+/\S+\s+(?P<lvl>[VDIWEFA])/(?P<tag>[^:]+?):\s?(?P<msg>.*)$"),
    ),
    # logcat -v brief / time: "E/tflite  (20060): msg"
    (
        "logcat",
        re.compile(rf"^(?:\d\d-\d\d\s+{_TS}\s+)?(?P<lvl>[VDIWEFA])/(?P<tag>[^(]+?)\s*\(\s*\d+\):\s?(?P<msg>.*)$"),
    ),
    # NSLog / Xcode: "2022-09-06 13:15:37.049363-0700 TFLiteBenchmark[54612:4020499] msg"
    (
        "nslog",
        re.compile(
            rf"^\d{{4}}-\d\d-\d\d\s+{_TS}(?:[+-]\d{{4}})?\s+"
            r"(?P<tag>[\w.\- ]+?)\[\d+:[0-9a-fA-Fx]+\]\s?(?P<msg>.*)$"
        ),
    ),
    # absl / glog: "I0000 00:00:1658183303.208241    8218 file.cc:78] msg"
    ("absl", re.compile(rf"^(?P<lvl>[IWEF])\d{{4}}\s+{_TS}\s+\d+\s+(?P<tag>[\w./\\-]+:\d+)\]\s?(?P<msg>.*)$")),
    # Python logging: "2026-11-25 10:26:39 INFO benchmark_litert_model: msg"
    (
        "pylog",
        re.compile(
            rf"^\d{{4}}-\d\d-\d\d[ T]{_TS}\s+(?P<lvl>DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+"
            r"(?P<tag>[\w.]+):\s?(?P<msg>.*)$"
        ),
    ),
)
_LEVEL_PREFIX = re.compile(r"^(?P<lvl>INFO|VERBOSE|WARNING|WARN|ERROR|DEBUG|FATAL):[ \t]?")
_FILE_TAG = re.compile(r"^\[[^\]\s]*:\d+\][ \t]?")


@dataclass(frozen=True)
class Line:
    """One output line with its wrapper removed.

    ``level`` is VERBOSE/DEBUG/INFO/WARNING/ERROR/FATAL when the line said so;
    ``text_level`` is the level written *in* the message (``INFO:``), ``wrapper`` the
    transport's (logcat, nslog, ...). ``text`` is stripped of surrounding whitespace.
    """

    text: str
    raw: str
    level: str | None = None
    text_level: str | None = None
    wrapper: str | None = None
    tag: str | None = None


def strip_corpus_header(text: str) -> str:
    """Drop a leading ``# source:`` ... ``# ---`` provenance header (the shared corpus format)."""
    if not text.startswith("# source:"):
        return text
    lines = text.split("\n")
    for i, line in enumerate(lines[:40]):
        if line.strip() == "# ---":
            return "\n".join(lines[i + 1 :])
    return text


def split_lines(text: str) -> list[str]:
    """Lines with CRLF and lone CR (progress rewrites) normalised, NULs dropped."""
    return text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n").split("\n")


def unwrap_line(raw: str) -> Line:
    """Peel quote marks, transport prefix, ``LEVEL:`` and ``[file:line]`` off one line."""
    s = _QUOTE.sub("", raw).strip()
    level = text_level = wrapper = tag = None
    for name, pattern in _WRAPPERS:
        m = pattern.match(s)
        if m:
            wrapper = name
            groups = m.groupdict()
            level = _LEVELS.get(groups.get("lvl") or "")
            tag = (groups.get("tag") or "").strip() or None
            s = m.group("msg").strip()
            break
    m = _LEVEL_PREFIX.match(s)
    if m:
        text_level = _LEVELS[m.group("lvl")]
        s = s[m.end() :]
        level = text_level
    s = _FILE_TAG.sub("", s, count=1).strip()
    return Line(text=s, raw=raw, level=level, text_level=text_level, wrapper=wrapper, tag=tag)


def unwrap(text: str) -> list[Line]:
    """Every line of ``text`` unwrapped (corpus header removed first)."""
    return [unwrap_line(raw) for raw in split_lines(strip_corpus_header(text))]


def collapse_console_duplicates(lines: list[Line]) -> list[Line]:
    """Xcode prints each message twice (NSLog-prefixed and plain ``INFO:``): keep one of each pair."""
    out: list[Line] = []
    for line in lines:
        prev = out[-1] if out else None
        if (
            prev is not None
            and line.text
            and line.text == prev.text
            and (line.wrapper == "nslog") != (prev.wrapper == "nslog")
        ):
            continue
        out.append(line)
    return out
