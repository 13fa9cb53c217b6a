"""Soak runs in the folder report and the Run context section in both report forms, from real records.

A real soak on the host (BlazeFace, built-in kernels, 3 s in 1 s windows) gives the soak record; its
copies go to other devices, one with a soak whose windows were made by the soak recorder from
repetitions and thermal snapshots that throttle (the host has no thermal probe). Every figure checked
is read from the records here, never typed in; hostile strings go into contexts, evidence and reasons.
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
from pathlib import Path

import pytest

from harness import api
from harness import gate as g
from harness.report import folder
from harness.report.html import render_report
from harness.report.runctx import VALUE_CHARS
from harness.results import Result
from harness.store import load_results
from tests.helpers import throttled_soak_record

SUITE = """
[suite]
name = "soakhost"
delegates = ["cpu"]
threads = [1]
warmup_runs = 1
measured_runs = 20
soak = {{ duration_s = 3, window_s = 1 }}
[[models]]
path = "{model}"
name = "blazeface"
"""
HOSTILE = "<script>alert(1)</script>\x1b[2J\u202e&\"'"


@pytest.fixture(scope="module")
def soaked(tmp_path_factory: pytest.TempPathFactory, zoo_models: dict[str, Path]) -> dict:
    """The record of a real 3 s soak on the host."""
    root = tmp_path_factory.mktemp("soak_real")
    suite = root / "soak.toml"
    suite.write_text(SUITE.format(model=zoo_models["face_detection_front"]), encoding="utf-8")
    summary = api.run(suite, out_dir=root / "store", report=False)
    assert [r.status for r in summary.results] == ["ok"] and summary.results[0].soak is not None
    lines = Path(summary.results_path).read_text(encoding="utf-8").splitlines()
    return json.loads(lines[0])


def _copy(record: dict, device: str, **context: str) -> dict:
    r = json.loads(json.dumps(record))
    r["device"]["id"] = device
    r["context"] = {**r["context"], **context}
    return r


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _section(page: str, anchor: str) -> str:
    start = page.index(f'<section id="{anchor}">')
    return page[start:page.index("</section>", start)]


@pytest.fixture(scope="module")
def fleet(soaked: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """Three devices: the real soak, a throttling soak with hostile evidence, and one whose governor differs."""
    root = tmp_path_factory.mktemp("soak_fleet")
    hot = _copy(soaked, "dev-hot", governor="schedutil")
    hot["soak"] = dataclasses.asdict(throttled_soak_record())
    hot["soak"]["throttle_evidence"] = HOSTILE
    hot["soak"]["windows"][0]["energy_reason"] = HOSTILE
    odd = _copy(soaked, "dev-odd", governor=HOSTILE + "x" * 300)
    records = [_copy(soaked, "dev-real", governor="schedutil"), hot, odd]
    index = folder.render_folder([_write(root / "fleet.jsonl", records)], root / "fleet.html")
    return index, records


def _device_page(index: Path, device: str) -> str:
    for page in sorted(index.parent.glob("device-*.html")):
        text = page.read_text(encoding="utf-8")
        if f"({device})" in text[:3000]:
            return text
    raise AssertionError(device)


# ---------------------------------------------------------------- soak in the folder form


def test_device_page_shows_the_real_soak_curve_and_its_figures(fleet):
    index, records = fleet
    soak = Result.from_dict(records[0]).soak
    page = _device_page(index, "dev-real")
    section = _section(page, "soak")
    assert section.count('class="soak-block"') == 1
    ratio = f"<strong>Sustained / peak throughput:</strong> {soak.sustained_peak_ratio:.2f}"
    assert ratio in section and f"{soak.sustained_ips:.1f} vs {soak.peak_ips:.1f} inferences/s" in section
    assert f"in {len(soak.windows)} windows of {soak.window_s:g} s" in section
    assert "<strong>Time to first throttle:</strong> none seen" in section  # the host has no thermal probe
    # the curve: one point per window with a p50, the p50 line through them, the window table row by row
    timed = [w for w in soak.windows if w.p50_us is not None]
    svg = re.search(r'<svg class="plot soak".*?</svg>', section, re.S).group()
    assert svg.count("<circle") == len(timed) and svg.count("<polyline") >= 3
    p50_line = re.findall(r'<polyline points="([^"]+)" fill="none" stroke="#1864ab"', svg)[0]  # before the legend's
    assert len(p50_line.split()) == len(timed)
    rows = re.findall(r"<tr(?: class=\"throttled\")?><td class=\"num\">(\d+)</td>", section)
    assert [int(r) for r in rows] == list(range(1, len(soak.windows) + 1))
    from harness.report.text import fmt_ms

    for w in timed:
        assert f"<td class=\"num\">{w.iterations}</td><td class=\"num\">{fmt_ms(w.p50_us)}</td>" in section
    # the cases table links the soak, with its ratio; the nav offers the section
    assert f'soak {soak.sustained_peak_ratio:.2f}</a>' in _section(page, "results")
    assert '<a href="#soak">Soak runs</a>' in page


def test_a_throttling_soak_shows_onset_shading_and_leads_the_index(fleet):
    index, records = fleet
    soak = Result.from_dict(records[1]).soak
    section = _section(_device_page(index, "dev-hot"), "soak")
    throttled = [w for w in soak.windows if w.throttled]
    assert throttled and section.count('<tr class="throttled">') == len(throttled)
    assert section.count('fill="#ffe8cc"') == len(throttled)  # shaded bands
    assert f"first throttle {soak.time_to_throttle_s:.1f} s" in section
    assert f"<strong>Time to first throttle:</strong> {soak.time_to_throttle_s:.1f} s (" in section
    summary = _section(index.read_text(encoding="utf-8"), "soak")
    rows = re.findall(r"<tr><td><a href=\"(device-\d+\.html)\">[^<]*\((dev-\w+)\)</a>.*?<strong>([\d.]+)</strong>",
                      summary, re.S)
    ratios = {dev: float(r) for _, dev, r in rows}
    real = Result.from_dict(records[0]).soak.sustained_peak_ratio
    assert ratios["dev-hot"] == pytest.approx(soak.sustained_peak_ratio, abs=0.005)
    assert ratios["dev-real"] == pytest.approx(real, abs=0.005)
    assert [float(r) for _, _, r in rows] == sorted(float(r) for _, _, r in rows)  # least sustained first
    assert re.search(r'href="device-\d+\.html#soak-\d+">curve</a>', summary)


def test_hostile_soak_and_context_strings_are_escaped(fleet):
    index, _ = fleet
    for page in index.parent.glob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert "<script" not in text and "\x1b" not in text and "\u202e" not in text, page.name
    hot = _section(_device_page(index, "dev-hot"), "soak")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\x1b[2J\\u202e&amp;&#34;&#39;" in hot
    ctx = _section(index.read_text(encoding="utf-8"), "context")
    cell = re.search(r'<td class="ctx-odd">([^<]*)</td>', ctx).group(1)
    assert cell.startswith("&lt;script&gt;") and cell.endswith("…")
    assert len(html.unescape(cell)) <= VALUE_CHARS + len("\\x1b\\u202e")  # cut, then the escapes shown


def test_no_soak_no_section(soaked, tmp_path):
    plain = _copy(soaked, "dev-plain")
    plain["soak"] = None
    index = folder.render_folder([_write(tmp_path / "p.jsonl", [plain])], tmp_path / "p.html")
    for page in index.parent.glob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert '<section id="soak">' not in text and 'href="#soak"' not in text


def test_a_soak_with_bad_windows_still_renders_what_it_can(soaked, tmp_path, caplog):
    bad = _copy(soaked, "dev-bad")
    windows = bad["soak"]["windows"]
    windows[0]["p50_us"] = "fast"  # not a number: shown as —, left out of the curve
    windows.append("not a window")
    bad["soak"]["sustained_peak_ratio"] = True  # a bool is not a ratio
    index = folder.render_folder([_write(tmp_path / "b.jsonl", [bad])], tmp_path / "b.html")
    section = _section(_device_page(index, "dev-bad"), "soak")
    timed = [w for w in windows[:-1] if isinstance(w["p50_us"], float)]
    assert section.count("<circle") == len(timed)
    assert "<strong>Sustained / peak throughput:</strong> —" in section


# ---------------------------------------------------------------- run context


def test_folder_context_says_the_common_fields_once_and_marks_the_odd_device(fleet):
    index, records = fleet
    ctx = _section(index.read_text(encoding="utf-8"), "context")
    same = re.search(r'<p class="ctx-same".*?</p>', ctx, re.S).group()
    common = {k: v for k, v in records[0]["context"].items() if k != "governor"}
    assert common
    for key, value in common.items():
        assert f"<code>{key}</code> {value}" in same
    header = re.search(r"<thead>.*?</thead>", ctx, re.S).group()
    assert re.findall(r'<th title="[^"]*">(\w+)</th>', header) == ["governor"]
    assert ctx.count('class="ctx-odd"') == 1 and 'class="ctx-runs' not in ctx  # one run per device
    # a device page lists every field of its own context
    page = _section(_device_page(index, "dev-real"), "context")
    fields = re.findall(r'<th title="[^"]*">(\w+)</th>', page)
    assert set(fields) == set(records[0]["context"]) and "ctx-odd" not in page


def test_two_runs_of_a_device_that_differ_are_marked(soaked, tmp_path):
    first = _copy(soaked, "dev-a", thermal_status="0")
    second = _copy(soaked, "dev-a", thermal_status="2")
    second["run_id"] = "run-two"
    index = folder.render_folder([_write(tmp_path / "r.jsonl", [first, second])], tmp_path / "r.html")
    ctx = _section(index.read_text(encoding="utf-8"), "context")
    assert 'id="context-runs-differ"' in ctx and "<code>thermal_status</code>" in ctx
    assert ctx.count('class="ctx-runs') == 2 and ctx.count("<tr><td>") == 2


def test_single_file_context_with_a_gate_baseline_and_the_tolerated_change(soaked, tmp_path):
    base_rec = _copy(soaked, "dev-g")
    cand_rec = _copy(soaked, "dev-g", harness_version=HOSTILE)
    cand_rec["run_id"] = "candidate-run"
    base, cand = (load_results(_write(tmp_path / f"{n}.jsonl", [r])) for n, r in (("b", base_rec), ("c", cand_rec)))
    with pytest.raises(g.ContextMismatch):
        g.gate(base, cand, g.GateConfig(n_boot=200))
    outcome = g.gate(base, cand, g.GateConfig(n_boot=200, tolerate=("harness_version",)))
    assert outcome.verdicts[0].context_changed
    page = render_report(cand, tmp_path / "gate.html", gate=outcome, baseline=base).read_text(encoding="utf-8")
    assert "<script" not in page
    ctx = _section(page, "context")
    assert "\x1b" not in ctx and "\u202e" not in ctx
    rows = re.findall(r"<tr><td>[^<]*</td>\s*<td>([^<]*)(?: <small class=\"ctx-side\">(\w+)</small>)?</td>", ctx)
    assert rows == [(base_rec["run_id"], "baseline"), ("candidate-run", "")]
    header = re.findall(r'<th title="[^"]*">(\w+)</th>', ctx)
    assert header == ["harness_version"] and ctx.count('class="ctx-runs') == 2
    assert 'id="context-runs-differ"' in ctx
    gate = _section(page, "gate")
    changed = re.search(r'<table id="gate-context-changed">.*?</table>', gate, re.S).group()
    old = base_rec["context"]["harness_version"]
    assert f"<code>harness_version {old} -&gt; &lt;script&gt;" in changed and "\\x1b[2J" in changed
    assert "context changed</small>" in _section(page, "gate")
    md = g.github_summary_markdown(outcome.verdicts)
    assert "**Run context changed (tolerated)**" in md and f"harness_version {old} -&gt; &lt;script&gt;" in md
    assert "<script" not in md and "\x1b" not in md


def test_single_file_without_contexts_has_no_section(soaked, tmp_path):
    rec = _copy(soaked, "dev-old")
    rec["context"] = {}
    page = render_report(load_results(_write(tmp_path / "o.jsonl", [rec])), tmp_path / "o.html").read_text()
    assert '<section id="context">' not in page and '<section id="soak">' in page


def test_the_folder_and_the_single_file_state_the_same_soak_figures(soaked, tmp_path):
    src = _write(tmp_path / "s.jsonl", [_copy(soaked, "dev-s")])
    one = render_report(load_results(src), tmp_path / "one.html").read_text(encoding="utf-8")
    index = folder.render_folder([src], tmp_path / "many.html")
    many = _section(_device_page(index, "dev-s"), "soak")
    pattern = r"<strong>Sustained / peak throughput:</strong> ([\d.]+ \([\d.]+ vs [\d.]+ inferences/s)"
    assert re.search(pattern, _section(one, "soak")).group(1) == re.search(pattern, many).group(1)
