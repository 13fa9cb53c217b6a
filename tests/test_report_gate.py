"""The report's gate section, from two real host runs of a zoo model gated against each other.

Both runs measure BlazeFace with LiteRT (built-in kernels and XNNPACK) in fresh processes;
the suite sets one budget that cannot hold (``p50_ms = 0.001``) and one that must
(``p90_ms = 100000``), so the gate fails on a budget whatever the latency verdicts are.
Every figure the page is checked for is taken from the gate's own outcome, never typed in.
"""

from __future__ import annotations

import dataclasses
import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import api
from harness.gate import VERDICTS, GateOutcome, gate
from harness.report.html import render_html
from harness.results import Result
from harness.store import open_store

SUITE = """
[suite]
name = "rg"
delegates = ["cpu", "xnnpack"]
repetitions = 3
measured_runs = 12
warmup_runs = 2
[gate]
min_repetitions = 3
[[models]]
path = "{model}"
name = "blazeface"
[models.budget]
p50_ms = 0.001
p90_ms = 100000
"""
WHY = "<b>bold</b> & co"


@dataclasses.dataclass(frozen=True)
class Gated:
    store: Path
    baseline: list[Result]
    candidate: list[Result]
    outcome: GateOutcome


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory, zoo_models: dict[str, Path]) -> Gated:
    """Two real runs into one store; the first named baseline ``main``; the gate's outcome."""
    root = tmp_path_factory.mktemp("report_gate")
    suite = root / "rg.toml"
    suite.write_text(SUITE.format(model=zoo_models["face_detection_front"]), encoding="utf-8")
    store_dir = root / "store"
    base = api.run(suite, out_dir=store_dir, report=False)
    cand = api.run(suite, out_dir=store_dir, report=False)
    assert [r.status for r in base.results + cand.results] == ["ok"] * 4
    open_store(store_dir).set_baseline("main", base.run_id)
    outcome = gate(base.results, cand.results, api.gate_config(cand.results), api.budgets(cand.results))
    return Gated(store_dir, base.results, cand.results, outcome)


def section(page: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S)
    assert match, f"no section {anchor}"
    return match.group(1)


def rows(table_html: str) -> list[str]:
    return re.findall(r"<tr[^>]*>(.*?)</tr>", table_html, re.S)[1:]


def test_gate_section_opens_the_page_with_state_verdicts_and_intervals(gated: Gated, tmp_path: Path) -> None:
    page = api.render(gated.candidate, tmp_path / "r.html", gate=gated.outcome, baseline=gated.baseline).read_text()
    assert page.index('<section id="gate">') < page.index('<section id="summary">')
    gate_html = section(page, "gate")
    assert not gated.outcome.passed and "Gate FAILED" in gate_html and "exit code 1" in gate_html
    assert gated.baseline[0].run_id in gate_html
    for line in gated.outcome.failures:
        assert html.escape(line) in gate_html
    table = re.search(r'<table id="gate-verdicts">(.*?)</table>', gate_html, re.S).group(1)
    assert len(rows(table)) == len(gated.outcome.verdicts) == 2
    for v in gated.outcome.verdicts:
        row = next(r for r in rows(table) if f"{v.model} · {v.delegate} · " in r)
        assert v.verdict in VERDICTS and f'class="verdict v-{v.verdict}">{v.verdict}<' in row
        c = v.comparison
        assert f"{c.ratio:.3f}" in row
        assert f"{c.ratio_ci.low:.3f} – {c.ratio_ci.high:.3f}" in row and "(95%)" in row
        assert f"{c.baseline.n_repetitions} / {c.candidate.n_repetitions}" in row
        assert html.escape(v.why) in row and html.escape(v.statement) in row
    assert '<figure class="chart gate-chart">' in gate_html and "<svg" in gate_html


def test_budget_rows_show_value_vs_limit_and_mark_the_breach(gated: Gated, tmp_path: Path) -> None:
    page = api.render(gated.candidate, tmp_path / "r.html", gate=gated.outcome, baseline=gated.baseline).read_text()
    table = re.search(r'<table id="gate-budgets">(.*?)</table>', section(page, "gate"), re.S).group(1)
    budget_rows = rows(table)
    assert len(budget_rows) == 4  # 2 cases x 2 budgeted metrics
    breached = [r for r in budget_rows if ">breached<" in r]
    assert len(breached) == 2 and all("p50_ms" in r and "0.001" in r for r in breached)
    assert all("p90_ms" in r and ">within<" in r and "100000" in r for r in budget_rows if r not in breached)
    assert {d for d in ("cpu", "xnnpack") for r in breached if f"<td>{d}</td>" in r} == {"cpu", "xnnpack"}
    for b in gated.outcome.breaches:
        assert any(f"{b.value:.3f}" in r and b.device in r for r in breached)
    # without the budgets only the outcome's breaches are known, and the page says so
    bare = render_html(gated.candidate, gate=gated.outcome, baseline=gated.baseline)
    bare_table = re.search(r'<table id="gate-budgets">(.*?)</table>', bare, re.S).group(1)
    assert len(rows(bare_table)) == len(gated.outcome.breaches) == 2
    assert "Only the breaches are listed" in bare_table


def test_why_is_escaped(gated: Gated) -> None:
    verdicts = tuple(dataclasses.replace(v, why=WHY) for v in gated.outcome.verdicts)
    outcome = dataclasses.replace(gated.outcome, verdicts=verdicts, failures=(f"x: {WHY}",))
    gate_html = section(render_html(gated.candidate, gate=outcome, baseline=gated.baseline), "gate")
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in gate_html
    assert "<b>" not in gate_html


def test_no_gate_no_section(gated: Gated) -> None:
    assert '<section id="gate">' not in render_html(gated.candidate)


def harness_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ))


def test_cli_gate_and_report_write_the_gate_section(gated: Gated, tmp_path: Path) -> None:
    out = tmp_path / "gate.html"
    proc = harness_cli("gate", "--baseline", "main", "--store", str(gated.store), "--report", str(out))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "gate FAILED" in proc.stdout and f"report: {out}" in proc.stdout
    gate_html = section(out.read_text(), "gate")
    assert "Gate FAILED" in gate_html and ">breached<" in gate_html
    for v in gated.outcome.verdicts:
        assert f"{v.comparison.ratio:.3f}" in gate_html

    again = tmp_path / "report.html"
    proc = harness_cli("report", "latest", "-o", str(again), "--baseline", "main", "--store", str(gated.store))
    assert proc.returncode == 0, proc.stderr
    assert without_svg(section(again.read_text(), "gate")) == without_svg(gate_html)


def without_svg(text: str) -> str:
    return re.sub(r"<svg.*?</svg>", "", text, flags=re.S)
