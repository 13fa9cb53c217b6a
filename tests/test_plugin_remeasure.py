"""Adaptive repetitions from the pytest plugin: real pytest runs (pytester subprocesses) on the host device."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.store import load_results, open_store

pytestmark = [pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"), pytest.mark.slow]

SUITE = """
[suite]
name = "adapt"
delegates = ["xnnpack"]
threads = [1]
repetitions = 3
measured_runs = 10
warmup_runs = 2
[gate]
max_repetitions = {max_repetitions}
{extra}
[[models]]
path = "{model}"
name = "blazeface"
"""


def _props(path: Path) -> tuple[dict[str, str], list[str]]:
    props = list(ET.parse(path).iter("property"))
    return ({p.get("name"): p.get("value") for p in props},
            [p.get("value") for p in props if p.get("name") == "gate_remeasure"])


@pytest.fixture
def baseline(pytester: pytest.Pytester, small_model: Path) -> Path:
    """A 6-repetition baseline run named ``main``; the suite's own 3 repetitions are too few to decide."""
    pytester.mkdir("suites")
    (pytester.path / "suites" / "adapt.toml").write_text(SUITE.format(model=small_model, max_repetitions=9, extra=""))
    out = pytester.path / "out"
    pytester.runpytest_subprocess("suites/", "--harness-out", str(out), "--harness-repetitions", "6"
                                  ).assert_outcomes(passed=1)
    subprocess.run([sys.executable, "-m", "harness.cli", "baseline", "set", "main", "--store", str(out)], check=True,
                   capture_output=True)
    return out


def test_an_item_the_fixed_gate_leaves_undecided_is_remeasured_and_decided(pytester: pytest.Pytester,
                                                                          baseline: Path) -> None:
    args = ("suites/", "--harness-out", str(baseline), "--harness-baseline", "main")
    fixed = pytester.runpytest_subprocess(*args, "--junitxml", "fixed.xml")
    assert fixed.ret == 1  # noisy = "fail" (the default): the fixed gate cannot decide on 3 repetitions
    props, lines = _props(pytester.path / "fixed.xml")
    assert props["gate_verdict"] == "noisy" and "too few repetitions" in props["gate_why"] and not lines

    adaptive = pytester.runpytest_subprocess(*args, "--harness-remeasure", "--junitxml", "adaptive.xml")
    props, lines = _props(pytester.path / "adaptive.xml")
    n = int(props["candidate_repetitions"])
    assert 6 <= n <= 9 and n % 3 == 0  # batches of the suite's 3 repetitions, within max_repetitions
    assert "of up to 9 repetitions" in props["gate_why"]
    assert lines[0].startswith("look 2: re-measured 1 undecided case(s)") and "remeasure:" in lines[-1]
    store = open_store(baseline)
    (extra,) = [r for r in store.runs() if ".remeasure-of-" in r.suite]
    added = load_results(extra.results_path)  # the added repetitions are on disk, in a run of their own
    assert len(added) == (n - 3) // 3 and all(len(r.latency.repetitions) == 3 for r in added)
    assert f"{len(added)} result(s) added (run {extra.run_id})" in lines[-1]
    candidate = store.resolve_run("latest")  # the session's own run, as it was measured
    assert extra.suite == f"pytest.remeasure-of-{candidate.run_id}"
    assert len(load_results(candidate.results_path)[0].latency.repetitions) == 3
    if props["gate_verdict"] == "noisy":  # a loaded machine: still undecided at the budget, and it says so
        assert "undecided" in lines[-1] and adaptive.ret == 1
    else:  # decided: the exit code is the verdict's (a same-code rerun is "slower" only by a false alarm)
        assert props["gate_verdict"] in ("same", "faster", "slower")
        assert adaptive.ret == (1 if props["gate_verdict"] == "slower" else 0)
    adaptive.stdout.fnmatch_lines([f"edgeharness: remeasure added {len(added)} result(s) of 1 undecided case(s): *"])


def test_the_suite_setting_turns_it_on_and_the_noisy_policy_decides_an_undecidable_case(
        pytester: pytest.Pytester, baseline: Path, small_model: Path) -> None:
    (pytester.path / "suites" / "adapt.toml").write_text(  # 3 + 1 < min_repetitions 5: can never decide
        SUITE.format(model=small_model, max_repetitions=4, extra="remeasure = true"))
    args = ("suites/", "--harness-out", str(baseline), "--harness-baseline", "main")
    failing = pytester.runpytest_subprocess(*args, "--junitxml", "f.xml")
    props, lines = _props(pytester.path / "f.xml")
    assert failing.ret == 1 and props["gate_verdict"] == "noisy" and "4 of up to 4" in props["gate_why"]
    assert "still undecided at max_repetitions = 4" in lines[-1]
    failing.stdout.fnmatch_lines(["*gate: *noisy*remeasure: 1 result(s) added*"])
    warned = pytester.runpytest_subprocess(*args, "--harness-noisy", "warn", "--junitxml", "w.xml")
    assert warned.ret == 0 and _props(pytester.path / "w.xml")[0]["gate_verdict"] == "noisy"


def test_remeasure_without_a_baseline_is_a_usage_error(pytester: pytest.Pytester, small_model: Path) -> None:
    pytester.mkdir("suites")
    (pytester.path / "suites" / "adapt.toml").write_text(SUITE.format(model=small_model, max_repetitions=9, extra=""))
    result = pytester.runpytest_subprocess("suites/", "--harness-out", str(pytester.path / "o"), "--harness-remeasure")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*remeasure needs a baseline*hint: add --harness-baseline NAME*"])
    assert "Traceback" not in result.stderr.str()


def test_under_xdist_the_controllers_summary_pools_the_workers_added_repetitions(
        pytester: pytest.Pytester, baseline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("xdist")
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = pytester.runpytest_subprocess("suites/", "-n", "2", "--harness-out", str(baseline),
                                           "--harness-baseline", "main", "--harness-remeasure", "--junitxml", "x.xml")
    props, lines = _props(pytester.path / "x.xml")  # the worker's adaptive verdict
    assert int(props["candidate_repetitions"]) >= 6 and "remeasure:" in lines[-1]
    assert result.ret == (1 if props["gate_verdict"] in ("slower", "noisy") else 0)
    (row,) = [x for x in summary.read_text().splitlines() if x.startswith("| blazeface")]
    # the controller judged the 3 repetitions of its run together with the worker's added ones (as --also):
    # never "too few repetitions" on the run's own 3, which the fixed gate alone would say
    assert "too few repetitions" not in row and "candidate 3" not in row, row
