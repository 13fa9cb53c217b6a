"""Adaptive repetitions: the gate re-runs its undecided cases on the real host device, alpha spent over looks."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import api, stats
from harness.errors import UsageError
from harness.gate import GateConfig
from harness.remeasure import Remeasured
from harness.store import load_results, open_store

SUITE = """
[suite]
name = "adapt"
delegates = ["xnnpack"]
threads = [1]
warmup_runs = 3
measured_runs = 10
repetitions = 3
[[models]]
path = "{model}"
name = "blazeface"
"""


def test_alpha_spending_reaches_alpha_at_the_last_look_and_never_more():
    for kind in stats.SPENDING:
        looks = [stats.alpha_spent(n / 30, 0.01, kind) for n in (10, 20, 30)]
        assert looks == sorted(looks) and looks[-1] == pytest.approx(0.01) and looks[0] > 0
        assert stats.alpha_spent(0, 0.01, kind) == 0 and stats.alpha_spent(2.0, 0.01, kind) == pytest.approx(0.01)
    assert stats.alpha_spent(1 / 3, 0.01, "pocock") > 100 * stats.alpha_spent(1 / 3, 0.01, "obf")  # spends early
    with pytest.raises(ValueError, match="spending"):
        stats.alpha_spent(0.5, 0.01, "bonferroni")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, zoo_models: dict[str, Path]) -> tuple[Path, Path, str]:
    """A 6-repetition baseline and a 3-repetition candidate of the same code: too few to decide."""
    root = tmp_path_factory.mktemp("adapt")
    suite = root / "adapt.toml"
    suite.write_text(SUITE.format(model=zoo_models["face_detection_front"]))
    out = root / "out"
    base = api.run(suite, out_dir=out, report=False, repetitions=6)
    store = open_store(out)
    store.set_baseline("main", base.run_id)
    cand = api.run(suite, out_dir=out, report=False)
    return suite, out, cand.run_id


def test_a_case_with_too_few_repetitions_is_remeasured_until_decided_or_out_of_budget(runs):
    suite, out, cand = runs
    store = open_store(out)
    fixed = api.gate_run(store, "main", cand)
    assert fixed.verdicts[0].verdict == "noisy" and "too few repetitions" in fixed.verdicts[0].why
    done: list[Remeasured] = []
    outcome = api.gate_run(store, "main", cand, {"remeasure": True, "max_repetitions": "9"}, suite=suite,
                           remeasured=done)
    (r,) = done
    (v,) = outcome.verdicts
    assert r.added and all(len(x.latency.repetitions) == 3 for x in r.added)  # batches of the suite's repetitions
    assert v.comparison.candidate.n_repetitions == 3 + 3 * len(r.added) <= 9  # the budget holds
    on_disk = load_results(r.results_path)  # every added result is on disk, in a run of its own
    assert [x.case.case_id for x in on_disk] == [x.case.case_id for x in r.added]
    assert store.resolve_run(r.run_id).suite == f"adapt.remeasure-of-{cand}"
    assert "of up to 9 repetitions" in v.why and v.alpha is not None and v.alpha < 0.01
    if v.verdict == "noisy":  # a loaded machine: undecided after the budget, and said so
        assert "undecided" in r.stopped and outcome.exit_code == 1
    else:  # decided, or at the budget with only a slowdown not shown (the fixed gate's "same")
        assert v.verdict in ("same", "faster", "slower") and outcome.exit_code == (v.verdict == "slower")
    assert outcome.remeasure[-1].startswith(f"remeasure: {len(r.added)} result(s) added")
    again = api.gate_run(store, "main", cand, also=[r.run_id])  # the pooled repetitions, judged again later
    assert again.verdicts[0].comparison.candidate.n_repetitions == v.comparison.candidate.n_repetitions


def test_undecidable_after_the_budget_is_noisy_and_the_policy_decides_the_exit(runs):
    suite, out, cand = runs
    store = open_store(out)
    budget = {"remeasure": True, "max_repetitions": "4"}  # 3 + 1 < min_repetitions 5: can never decide
    done: list[Remeasured] = []
    failing = api.gate_run(store, "main", cand, budget, suite=suite, remeasured=done)
    (v,) = failing.verdicts
    assert v.verdict == "noisy" and "too few repetitions" in v.why and "4 of up to 4" in v.why
    assert "still undecided at max_repetitions = 4" in done[0].stopped and failing.exit_code == 1
    warned = api.gate_run(store, "main", cand, {**budget, "noisy": "warn"}, suite=suite)
    assert warned.exit_code == 0 and warned.verdicts[0].verdict == "noisy"


def test_remeasure_needs_the_suite_and_a_baseline(runs, tmp_path):
    suite, out, cand = runs
    store = open_store(out)
    with pytest.raises(UsageError, match="needs a baseline and the suite"):
        api.gate_run(store, "main", cand, {"remeasure": True})
    other = tmp_path / "other.toml"
    other.write_text(suite.read_text().replace('name = "blazeface"', 'name = "renamed"'))
    with pytest.raises(UsageError, match="no such case"):
        api.gate_run(store, "main", cand, {"remeasure": True}, suite=other)
    assert GateConfig.from_mapping({"remeasure": True, "max_seconds": 60, "spending": "obf"}).spending == "obf"


def test_latest_stays_the_candidate_after_a_remeasure(runs):
    suite, out, cand = runs
    store = open_store(out)
    api.gate_run(store, "main", cand, {"remeasure": True, "max_repetitions": "6"}, suite=suite)
    assert store.resolve_run("latest").run_id == cand
