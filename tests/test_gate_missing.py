"""The gate does not pass what it did not see: missing and unmeasured baseline cases, bad gate settings."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from harness import gate as g
from harness.cli import main
from harness.errors import SuiteError
from harness.results import CaseInfo, DeviceInfo, Latency, Repetition, Result
from harness.store import open_store
from harness.suite import parse_suite

FAST = g.GateConfig(n_boot=200)
HOST = DeviceInfo("host-1", "host", model="x86_64-box")


def result(model: str, run_id: str, *, status: str = "ok", reason: str | None = None, seed: int = 0,
           delegate: str = "cpu", device: DeviceInfo = HOST, sha: str | None = None,
           gate: dict | None = None) -> Result:
    """A result as the orchestrator writes it; ``sha=""`` and a bare device are a device lost before its facts."""
    rng = np.random.default_rng(seed)
    reps = tuple(Repetition(samples_us=tuple(2000.0 * math.exp(rng.normal(0, 0.01)) * np.exp(rng.normal(0, 0.02, 20))))
                 for _ in range(8)) if status == "ok" else ()
    case = CaseInfo(f"{model}[host-{delegate}-t1]", model, model[0] * 64 if sha is None else sha, delegate, 1,
                    "litert-python", settings={"gate": gate or {}})
    latency = Latency("perf_counter_ns", reps) if reps else None
    return Result(run_id, case, device, status, reason=reason, latency=latency)


def base_run() -> list[Result]:
    return [result(m, "base", seed=i) for i, m in enumerate(("alpha", "beta", "gamma", "delta"))]


def interrupted_run(gate: dict | None = None) -> list[Result]:
    """``alpha`` measured; ``beta`` lost before the device's facts were read (no sha, no model name);
    ``gamma`` lost mid-case; ``delta`` never reached (the run was interrupted)."""
    lost_early = DeviceInfo("host-1", "host")
    return [
        result("alpha", "cand", seed=9, gate=gate),
        result("beta", "cand", status="device_lost", reason="adb: device 'host-1' not found", sha="",
               device=lost_early, gate=gate),
        result("gamma", "cand", status="device_lost", reason="connection reset during repetition 3", gate=gate),
    ]


def test_missing_and_lost_cases_fail_the_gate_naming_each_and_why():
    out = g.gate(base_run(), interrupted_run(), FAST)
    assert out.exit_code == 1
    text = out.render()
    assert "FAIL beta [host-1 cpu x1 interpreter]: failed: not measurable in this run: device_lost: adb: device" in text
    assert "FAIL gamma [host-1 cpu x1 interpreter]: failed: not measurable in this run: device_lost: connection" in text
    assert ("FAIL delta [host-1 cpu x1 interpreter]: missing: not in this run at all "
            "(the run was interrupted, or the suite changed)") in text
    assert "new in this run" not in text  # the early-lost beta is tied to its baseline case, not a stranger
    assert "3 baseline case(s) not measured" in text and "--allow-missing" in text
    assert [v.model for v in out.verdicts if v.verdict == "same"] == ["alpha"]


def test_allow_missing_narrows_the_gate_to_what_ran():
    out = g.gate(base_run(), interrupted_run(), replace(FAST, allow_missing=True))
    assert out.exit_code == 0 and out.failures == ()
    assert sorted(w.split(" [")[0] for w in out.warnings) == ["beta", "delta", "gamma"]
    assert all(w.endswith("(not gated: allow_missing)") for w in out.warnings)
    assert "3 baseline case(s) not measured and not gated" in out.render()


def test_a_run_lost_from_the_start_fails_with_reasons_even_when_narrowed():
    """Every case lost before the device's facts were read: no key in common, still each case and why."""
    lost = DeviceInfo("host-1", "host")
    cand = [result(m, "cand", status="device_lost", reason="adb: device 'host-1' not found", sha="", device=lost)
            for m in ("alpha", "beta", "gamma", "delta")]
    out = g.gate(base_run(), cand, FAST)
    assert out.exit_code == 1 and len(out.failures) == 4
    assert all("device_lost: adb: device 'host-1' not found" in f for f in out.failures)
    narrowed = g.gate(base_run(), cand, replace(FAST, allow_missing=True))
    assert narrowed.exit_code == 1 and narrowed.failures[0].startswith("nothing compared")


@pytest.mark.parametrize("status", ["failed", "timeout"])
def test_allow_missing_does_not_excuse_a_candidate_that_ran_and_broke(status):
    cand = [result("alpha", "cand", seed=9),
            result("beta", "cand", status=status, reason="delegate crashed (SIGSEGV)")]
    out = g.gate(base_run()[:2], cand, replace(FAST, allow_missing=True))
    assert out.exit_code == 1
    assert out.failures == (f"beta [host-1 cpu x1 interpreter]: failed: not measurable in this run: "
                            f"{status}: delegate crashed (SIGSEGV)",)


def test_a_baseline_case_that_was_not_ok_is_said_not_blamed():
    base = base_run()[:2] + [result("gamma", "base", status="timeout", reason="120 s"),
                             result("delta", "base", status="failed", reason="bad model")]
    cand = [result("alpha", "cand", seed=9), result("beta", "cand", seed=8), result("gamma", "cand", seed=7)]
    out = g.gate(base, cand, FAST)
    assert out.exit_code == 0, out.render()
    notes = [w for w in out.warnings if "the baseline's own result" in w]
    assert any(w.startswith("gamma [") and "timeout: 120 s" in w for w in notes)
    assert any(w.startswith("delta [") and "failed: bad model" in w for w in notes)


# -- the command line ------------------------------------------------------------------------
@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


def _store(store_dir: Path, baseline: list[Result], candidate: list[Result]) -> None:
    store = open_store(store_dir)
    for run_id, results in (("base", baseline), ("cand", candidate)):
        writer = store.begin_run(run_id, "s")
        for r in results:
            writer.append(r)
        writer.close()
        store.finish_run(run_id)
    store.set_baseline("main", "base")


def _gate(store_dir: Path, *extra: str, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(["gate", "--baseline", "main", "--run", "cand", "--store", str(store_dir), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_gate_fails_on_an_interrupted_run_and_allow_missing_passes(store_dir, capsys):
    _store(store_dir, base_run(), interrupted_run())
    code, out, _ = _gate(store_dir, "--noisy", "warn", capsys=capsys)
    assert code == 1, out
    fails = [line for line in out.splitlines() if line.startswith("FAIL ")]
    why = {line.split(" [")[0].removeprefix("FAIL "): line for line in fails}
    assert sorted(why) == ["beta", "delta", "gamma"]
    assert "device_lost: adb: device 'host-1' not found" in why["beta"]
    assert "device_lost: connection reset" in why["gamma"] and "not in this run at all" in why["delta"]
    assert "hint:" in out and "gate FAILED" in out

    code, out, _ = _gate(store_dir, "--noisy", "warn", "--allow-missing", capsys=capsys)
    assert code == 0, out
    assert "gate PASSED" in out and out.count("WARN ") == 3 and "FAIL" not in out


def test_suite_allow_missing_passes_and_the_option_cannot_be_misspelt(store_dir, capsys):
    _store(store_dir, base_run(), interrupted_run(gate={"allow_missing": True, "noisy": "warn"}))
    code, out, _ = _gate(store_dir, capsys=capsys)
    assert code == 0 and "gate PASSED" in out and "not in this run at all" in out


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--alpha", "x", "error: --alpha: 'x' is not a number"),
    ("--alpha", "0.7", "error: --alpha: '0.7' must be in (0, 0.5)"),
    ("--max-regression", "abc", "error: --max-regression: 'abc' is not a percentage"),
    ("--noisy", "maybe", "error: --noisy: 'maybe' is not one of fail, warn"),
    ("--min-repetitions", "2.5", "error: --min-repetitions: '2.5' is not an integer"),
])
def test_bad_gate_options_are_one_line_and_exit_2(store_dir, capsys, option, value, message):
    _store(store_dir, base_run(), base_run())
    code, out, err = _gate(store_dir, option, value, capsys=capsys)
    assert code == 2 and out == ""
    assert err.startswith(message) and err.count("\n") == 1 and "(hint: " in err


# -- the suite's [gate] table: refused when the suite is loaded ------------------------------
SUITE = """[suite]
name = "s"

[gate]
max_regression = "5%"
{line}

[[models]]
zoo = "face_landmark"
"""


@pytest.mark.parametrize(("line", "key", "reason"), [
    ('alpha = "x"', "alpha", "'x' is not a number"),
    ("alpha = true", "alpha", "expected a number, got bool True"),
    ("alpha = 0.9", "alpha", "0.9 must be in (0, 0.5)"),
    ('max_cv = "abc"', "max_cv", "'abc' is not a percentage"),
    ('noisy = "maybe"', "noisy", "'maybe' is not one of fail, warn"),
    ("min_repetitions = 2.5", "min_repetitions", "expected an integer, got float 2.5"),
    ('allow_missing = "yes"', "allow_missing", "expected true or false, got str 'yes'"),
])
def test_bad_gate_table_is_refused_at_load_with_its_line(line, key, reason):
    with pytest.raises(SuiteError) as err:
        parse_suite(SUITE.format(line=line), "suite.toml")
    assert str(err.value).startswith(f"suite.toml:6 [gate.{key}]: {reason} (hint: ")


def test_good_gate_table_loads():
    assert parse_suite(SUITE.format(line="allow_missing = true"), "s.toml").gate.allow_missing is True


def test_harness_run_refuses_a_bad_gate_table_before_running(tmp_path, capsys):
    suite = tmp_path / "bad.toml"
    suite.write_text(SUITE.format(line='alpha = "x"'), encoding="utf-8")
    code = main(["run", str(suite), "--out", str(tmp_path / "out"), "--no-report"])
    out, err = capsys.readouterr()
    assert code != 0 and out == ""
    assert err == f"error: {suite}:6 [gate.alpha]: 'x' is not a number (hint: e.g. 0.01)\n"
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.jsonl"))
