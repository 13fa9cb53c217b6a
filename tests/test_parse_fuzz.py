"""Property tests: random or mangled captures never make a parser raise, and every number a parser
returns is printed in the text (as is, or as ms turned into us, or a delegated+remaining sum)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.runners.parsers import benchmark_model, litert_benchmark, tflite_tools, xcode_console
from harness.runners.parsers.parse import _parse, detect_tool, parse_text
from harness.runners.parsers.textnum import NUM

CORPUS = Path(__file__).parent / "data" / "corpus"
SAMPLES = sorted(
    p.read_text(encoding="utf-8").split("# ---\n", 1)[1]
    for p in CORPUS.glob("*.txt")
    if not p.name.startswith(
        ("android_", "linux_power", "linux_thermal", "ios_gidevice", "ios_id", "ios_py", "ios_tid")
    )
)
PARSERS = (
    benchmark_model.parse,
    litert_benchmark.parse,
    xcode_console.parse,
    tflite_tools.parse,
)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _key(value: float) -> float:
    return float(f"{value:.9g}")


def text_numbers(text: str) -> set[float]:
    out = set()
    for token in re.findall(NUM, text):
        try:
            out.add(_key(float(token)))
        except (ValueError, OverflowError):
            continue
    return out


def produced_numbers(runs) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for run in runs:
        data = dataclasses.asdict(run)
        data.pop("params")
        stack: list[tuple[str, object]] = [("", data)]
        while stack:
            path, obj = stack.pop()
            if isinstance(obj, dict):
                stack.extend((f"{path}.{k}", v) for k, v in obj.items())
            elif isinstance(obj, (list, tuple)):
                stack.extend((f"{path}[]", v) for v in obj)
            elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
                out.append((path, float(obj)))
    return out


def assert_numbers_from_text(text: str, runs) -> None:
    nums = text_numbers(text)
    ints = sorted(int(n) for n in nums if n.is_integer() and 0 <= n < 10**7)
    for path, value in produced_numbers(runs):
        if _key(value) in nums or _key(value / 1000.0) in nums:
            continue
        if path.endswith("nodes_total") and any(value - a in nums for a in ints):
            continue  # "N operations will run on the GPU, and the remaining M ..." -> N + M
        raise AssertionError(f"{path}={value!r} is not in the text")


@st.composite
def mangled(draw):
    """A real capture with lines dropped, duplicated, swapped, cut, and characters flipped."""
    lines = draw(st.sampled_from(SAMPLES)).split("\n")
    for _ in range(draw(st.integers(0, 6))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["drop", "dup", "swap", "cut", "flip", "insert", "prefix"]))
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "cut":
            lines[i] = lines[i][: draw(st.integers(0, max(0, len(lines[i]))))]
        elif op == "flip" and lines[i]:
            k = draw(st.integers(0, len(lines[i]) - 1))
            lines[i] = lines[i][:k] + draw(st.characters()) + lines[i][k + 1 :]
        elif op == "insert":
            lines.insert(i, draw(st.text(max_size=40)))
        elif op == "prefix":
            lines[i] = (
                draw(st.sampled_from(["> ", "INFO: ", "ERROR: ", "\t", "01-11 23:28:59.026  1  2 I tflite  : "]))
                + lines[i]
            )
    text = "\n".join(lines)
    if draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]
    return text


@SETTINGS
@given(st.text(max_size=400))
def test_random_text_never_raises(text):
    for parser in PARSERS:
        runs = parser(text)
        assert_numbers_from_text(text, runs)
    runs = _parse(text, "")
    assert runs and all(r.status in ("ok", "failed", "incomplete") for r in runs)
    assert parse_text(text)


@SETTINGS
@given(mangled())
def test_mangled_captures_never_raise_or_invent_numbers(text):
    runs = _parse(text, "capture.txt")  # the un-guarded path: a bug would raise here
    assert runs
    assert_numbers_from_text(text, runs)
    assert detect_tool(text) in {r.tool for r in runs} | {"unknown"}


@SETTINGS
@given(
    st.lists(
        st.sampled_from(
            [
                "STARTING!",
                "count=",
                "Inference timings in us:",
                "Init: 5,",
                "avg=1e+400",
                "min=-3 max=2",
                "BENCHMARK RESULTS",
                "Inference (avg): nan ms",
                "Replacing 3 out of",
                "node(s) with delegate (X) node, yielding 0 partitions",
                "[node type]\t[avg ms]",
                "==== Run Order ====",
                "count=2 first=1 curr=1 min=1 max=1 avg=1 std=0",
                "Peak memory footprint (MB): init=1 overall=2",
                "\t",
                " ",
                "\n",
                "ERROR: x",
            ]
        ),
        max_size=30,
    )
)
def test_keyword_soup(parts):
    text = "".join(parts)
    runs = _parse(text, "")
    assert runs
    assert_numbers_from_text(text, runs)
