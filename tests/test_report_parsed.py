"""Real tool captures from ``tests/data/corpus`` through the runner into the report.

Each capture becomes a Result the way the orchestrator makes one from a native tool's
output (``tool_output.outcome`` per repetition, then latency, delegates and ops from the outcome),
is stored and read back as JSON, and the rendered page must show the delegate coverage
and the top operators exactly as the capture prints them. The expected figures below were
read from the captures by eye (see the lines quoted next to them).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.report.html import render_html
from harness.results import CaseInfo, DeviceInfo, Latency, Result
from harness.runners import tool_output

CORPUS = Path(__file__).parent / "data" / "corpus"


@dataclass(frozen=True)
class Sample:
    """What a capture prints: delegate coverage (name, accelerator, applied, delegated, total, partitions), top ops."""

    file: str
    delegate: str
    coverage: tuple[str, str, str, str, str, str] | None
    ops: tuple[tuple[str, str, str], ...] = ()


SAMPLES = (
    # "Applied GPU delegate, and the model graph will be completely executed w/ the delegate."
    # Summary by node type: "TfLiteGpuDelegateV2  1  8.671  100.000% ..."
    Sample("benchmark_model__android_unknown__gpu_op_profiling__tf2.3__01.txt", "gpu",
           ("gpu", "—", "full", "—", "—", "1"), (("TfLiteGpuDelegateV2", "8.671 ms", "100.0 %"),)),
    # "Explicitly applied EXTERNAL delegate, ... partially executed by the delegate w/ 1 delegate kernels."
    # "Vx Delegate 1 152.983 99.026%", "TFLite_Detection_PostProcess 1 1.504 0.974%"
    Sample("benchmark_model__linux_imx8mp__external_vx_delegate_npu_ssd__tf2.x_nxp__01.txt", "npu",
           ("external", "—", "partial", "—", "—", "1"),
           (("Vx Delegate", "152.983 ms", "99.0 %"), ("TFLite_Detection_PostProcess", "1.504 ms", "1.0 %"))),
    # "Explicitly applied XNNPACK delegate, ... partially executed by the delegate w/ 1 delegate kernels."
    Sample("benchmark_model__linux_ti_am62x_evm__xnnpack_partial__tf2.18__01.txt", "xnnpack",
           ("xnnpack", "cpu", "partial", "—", "—", "1")),
    # "Replacing 49 out of 49 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 1 partitions"
    Sample("benchmark_model__android_unknown__xnnpack_default_cpu__tf2.1x__01.txt", "cpu",
           ("xnnpack", "cpu", "full", "49", "49", "1")),
    # "CoreML delegate: 75 nodes delegated out of 77 nodes, with 2 partitions."
    Sample("label_image__macos_m1__coreml_delegate__tf2.5_dev__01.txt", "coreml",
           ("coreml", "—", "partial", "75", "77", "2")),
    # Summary by node type: "CONV_2D 15 143.812 88.285%", "DEPTHWISE_CONV_2D 13 18.910 11.609%", ...
    Sample("benchmark_model__linux_imx8mp__cpu_op_profiling_full__tf2.x_nxp__01.txt", "cpu", None,
           (("CONV_2D", "143.812 ms", "88.3 %"), ("DEPTHWISE_CONV_2D", "18.910 ms", "11.6 %"),
            ("AVERAGE_POOL_2D", "0.148 ms", "0.1 %"), ("SOFTMAX", "0.022 ms", "0.0 %"))),
)


def as_result(sample: Sample, index: int) -> Result:
    """The capture as one repetition's output, assembled like ``CaseRunner._measure`` does."""
    text = (CORPUS / sample.file).read_text(encoding="utf-8", errors="replace")
    out = tool_output.outcome(tool_output.BENCHMARK_MODEL, text, 0)
    assert out.status == "ok", out.reason
    result = Result(
        run_id="corpus",
        case=CaseInfo(case_id=f"c{index}", model=sample.file.split("__")[0] + f"-{index}", model_sha256="",
                      delegate=sample.delegate, threads=1, runner=tool_output.BENCHMARK_MODEL, repetitions=1),
        device=DeviceInfo(id=f"dev{index}", platform="android"),
        status="ok",
        latency=Latency(method=out.latency_method, repetitions=(out.repetition,)),
        delegates=out.delegates,
        ops=out.ops,
        environment=dict(out.environment),
        raw=text,
    )
    return Result.from_dict(json.loads(json.dumps(result.to_dict())))  # as stored and read back


@pytest.fixture(scope="module")
def page() -> str:
    return render_html([as_result(s, i) for i, s in enumerate(SAMPLES)])


def section(page: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S)
    assert match, f"no section {anchor}"
    return match.group(1)


def cells(row: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


@pytest.mark.parametrize("index", [i for i, s in enumerate(SAMPLES) if s.coverage])
def test_coverage_table_shows_nodes_and_partitions(page: str, index: int) -> None:
    name, accel, applied, delegated, total, partitions = SAMPLES[index].coverage
    rows = re.findall(r"<tr>(.*?)</tr>", section(page, "coverage"), re.S)
    mine = [cells(r) for r in rows if f"<td>dev{index}</td>" in r]
    assert len(mine) == 1
    row = mine[0]
    share = f" ({100 * int(delegated) / int(total):.0f}%)" if total != "—" else ""
    assert row[6:11] == [name, accel, applied, f"{delegated} / {total} nodes{share}", partitions]  # after what ran, why


def test_case_without_delegate_lines_has_no_coverage_row(page: str) -> None:
    index = next(i for i, s in enumerate(SAMPLES) if s.coverage is None)
    assert f"<td>dev{index}</td>" not in section(page, "coverage")


@pytest.mark.parametrize("index", [i for i, s in enumerate(SAMPLES) if s.ops])
def test_top_ops_show_names_times_and_shares_slowest_first(page: str, index: int) -> None:
    blocks = re.findall(r'<details class="ops">(.*?)</details>', section(page, "ops"), re.S)
    mine = [b for b in blocks if f"· dev{index}" in b]
    assert len(mine) == 1
    rows = [cells(r) for r in re.findall(r"<tr>(.*?)</tr>", mine[0], re.S) if "<td" in r]
    expected = SAMPLES[index].ops
    assert len(rows) >= len(expected)
    for (node_type, avg, share), row in zip(expected, rows):
        assert row[0] == html.escape(node_type) and avg in row and share in row
    first_type, first_avg, _ = expected[0]
    assert f"slowest:\n    {first_type} {first_avg}" in mine[0]


def test_summary_by_node_type_rows_say_so_and_count_nodes(page: str) -> None:
    index = len(SAMPLES) - 1
    block = next(b for b in re.findall(r'<details class="ops">(.*?)</details>', section(page, "ops"), re.S)
                 if f"· dev{index}" in b)
    assert "Summary by node type" in block
    conv = next(cells(r) for r in re.findall(r"<tr>(.*?)</tr>", block, re.S) if "CONV_2D</td>" in r)
    assert conv[:3] == ["CONV_2D", "—", "15"]  # 15 CONV_2D nodes, as the capture's [count] column says
