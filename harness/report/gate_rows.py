"""Rows of the report's gate section: the gate's decision as per-case verdicts, budget checks, the headline.

Reads a :class:`harness.gate.GateOutcome` only; nothing is recomputed here, so the page
says what the gate decided, with the gate's own numbers. A verdict row is *failing* when
the gate listed it among its failures (the outcome's own rule, ``CaseVerdict.fails``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.gate import VERDICTS, Budget, CaseVerdict, GateOutcome, budget_checks, verdict_line
from harness.results import Result
from harness.textsafe import clip

_ORDER = {"failed": 0, "slower": 1, "noisy": 2, "faster": 3, "same": 4}


def verdict_row(v: CaseVerdict, outcome: GateOutcome) -> dict[str, Any]:
    """One case: identity, verdict, whether it fails the gate, medians (us), ratio and interval, why."""
    line = verdict_line(v)
    c = v.comparison
    row: dict[str, Any] = {
        "label": v.label, "model": v.model, "device": v.device, "delegate": v.delegate, "threads": v.threads,
        "api": v.api, "verdict": v.verdict, "why": v.why, "statement": v.statement,
        "fails": line in outcome.failures, "warns": line in outcome.warnings,
        "base_median_us": None, "cand_median_us": None, "ratio": None, "ci_low": None, "ci_high": None,
        "level": None, "base_reps": None, "cand_reps": None, "base_rep_us": (), "cand_rep_us": (),
        "blame": v.blame.as_dict() if v.blame is not None else None,
        "context_changed": [clip(d, 160) for d in v.context_changed],
    }
    if c is not None:
        row.update(base_median_us=c.baseline.median_us, cand_median_us=c.candidate.median_us, ratio=c.ratio,
                   base_reps=c.baseline.n_repetitions, cand_reps=c.candidate.n_repetitions,
                   base_rep_us=c.baseline.rep_medians_us, cand_rep_us=c.candidate.rep_medians_us)
        if c.ratio_ci is not None:
            row.update(ci_low=c.ratio_ci.low, ci_high=c.ratio_ci.high, level=c.ratio_ci.level)
    return row


def verdict_rows(outcome: GateOutcome) -> list[dict[str, Any]]:
    """Every compared case, those that fail the gate first, then warnings, then by verdict and label."""
    rows = [verdict_row(v, outcome) for v in outcome.verdicts]
    return sorted(rows, key=lambda r: (not r["fails"], not r["warns"], _ORDER.get(r["verdict"], 9), r["label"]))


def budget_rows(outcome: GateOutcome, results: Sequence[Result],
                budgets: Mapping[str, Budget] | None) -> list[dict[str, Any]]:
    """Budgets used: value vs limit per case and metric, breaches first.

    With ``budgets`` every budgeted metric of every case is listed (within budget or not);
    without them only the outcome's breaches are known (and not which delegate broke them).
    """
    if budgets:
        checks = [(res.case.delegate, res.case.threads, b) for res in results for b in budget_checks([res], budgets)]
    else:
        checks = [(None, None, b) for b in outcome.breaches]
    rows = [
        {"model": b.model, "device": b.device, "delegate": delegate, "threads": threads, "metric": b.metric,
         "value": b.value, "limit": b.limit, "breached": b.breached, "measured": b.measured,
         "used": (b.value / b.limit) if b.value is not None and b.limit else None}
        for delegate, threads, b in checks
    ]
    return sorted(rows, key=lambda r: (not (r["breached"] and r["measured"]), not r["breached"], r["model"],
                                       r["device"], str(r["delegate"]), r["metric"]))


def headline(outcome: GateOutcome) -> dict[str, Any]:
    """PASSED/FAILED, counts by verdict, breaches, and the lines that failed or warned (the "why")."""
    counts = {v: sum(1 for c in outcome.verdicts if c.verdict == v) for v in VERDICTS}
    return {
        "passed": outcome.passed,
        "state": "PASSED" if outcome.passed else "FAILED",
        "exit_code": outcome.exit_code,
        "counts": {k: n for k, n in counts.items() if n},
        "compared": len(outcome.verdicts),
        "breaches": sum(1 for b in outcome.breaches if b.measured),
        "failures": list(outcome.failures),
        "warnings": list(outcome.warnings),
    }
