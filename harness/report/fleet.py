"""The views of a fleet report, computed from case summaries: matrix, speedups, per-device and per-model groups.

Everything here reads :class:`harness.report.scan.Case` objects (summaries, no samples), so
it is linear in the number of cases. Speedup is the ratio of pooled medians over the
``cpu`` case of the same run, device, model and thread count, as in :mod:`harness.report.frames`;
at fleet size there is no bootstrap interval per case (2,000 resamples per case cost more
than the whole report), so each speedup says instead whether the two cases' per-repetition
medians overlap: *clear* when every repetition of one is faster than every repetition of
the other, *within spread* otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.report.scan import Case
from harness.report.text import BASELINE_DELEGATE
from harness.results import STATUSES

#: Background tints for the matrix, one per delegate (cpu is the neutral grey); legend on the page.
PALETTE = ("#d0ebff", "#d3f9d8", "#ffe8cc", "#e5dbff", "#fff3bf", "#ffdeeb", "#c5f6fa", "#e9ecef")
#: Stroke/fill colours of the same delegates in the charts (darker, readable on white).
INK = ("#1971c2", "#2f9e44", "#e8590c", "#7048e8", "#f08c00", "#d6336c", "#0c8599", "#495057")
_WORST_FIRST = ("failed", "timeout", "device_lost", "skipped")


@dataclass
class Speedup:
    """A non-cpu case against its cpu case: ratio of medians (x, >1 is faster) and how clear it is."""

    case: Case
    baseline: Case | None
    value: float | None
    clarity: str  # "faster", "slower", "within spread", "1 repetition" or why there is no number

    @property
    def known(self) -> bool:
        return self.value is not None


@dataclass
class Cell:
    """One device x model square of the matrix: the fastest ok case and its speedup over cpu."""

    device_id: str
    model: str
    best: Case | None
    speedup: Speedup | None
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def problem(self) -> str:
        """The worst status among the cell's cases when none finished ok."""
        return next((s for s in _WORST_FIRST if self.statuses.get(s)), "")


@dataclass
class Group:
    """The cases of one device (or one model), with the page it gets."""

    key: str
    label: str
    page: str
    cases: list[Case] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return status_counts(self.cases)


def status_counts(cases: Sequence[Case]) -> dict[str, int]:
    """Cases per status, in the record's status order, zeros included."""
    counts = dict.fromkeys(STATUSES, 0)
    for c in cases:
        counts[c.status] += 1
    return counts


def clarity(baseline: Case, candidate: Case) -> str:
    """Whether the per-repetition medians of the two cases overlap (see the module's docstring)."""
    b, c = baseline.rep_medians_us, candidate.rep_medians_us
    if len(b) < 2 or len(c) < 2:
        return "1 repetition"
    if max(c) < min(b):
        return "faster"
    if min(c) > max(b):
        return "slower"
    return "within spread"


def speedups(cases: Sequence[Case], baseline: str = BASELINE_DELEGATE) -> dict[int, Speedup]:
    """Speedup of every ok case over ``baseline`` (same run, device, model and threads), by case index.

    A baseline case maps to itself (1x); a case without a usable baseline gets no number and why.
    """
    bases: dict[tuple, list[Case]] = {}
    for c in cases:
        if c.delegate == baseline:
            bases.setdefault((c.run_id, c.device_id, c.model_key, c.threads), []).append(c)
    out: dict[int, Speedup] = {}
    for c in cases:
        if not c.ok:
            continue
        if c.delegate == baseline:
            out[c.index] = Speedup(c, c, 1.0, "baseline")
            continue
        candidates = bases.get((c.run_id, c.device_id, c.model_key, c.threads), [])
        ok = [b for b in candidates if b.ok]
        if not ok:
            why = (f"{baseline} {candidates[0].status}" if candidates
                   else f"no {baseline} case")
            out[c.index] = Speedup(c, None, None, why)
            continue
        ref = next((b for b in ok if b.api == c.api), ok[0])
        out[c.index] = Speedup(c, ref, ref.median_us / c.median_us, clarity(ref, c))
    return out


def groups(cases: Sequence[Case], key: str, label: str, prefix: str) -> list[Group]:
    """Cases grouped by attribute ``key``, sorted by ``label``; page names are numbered, never from the data."""
    found: dict[str, Group] = {}
    for c in cases:
        k = getattr(c, key)
        if k not in found:
            found[k] = Group(k, getattr(c, label), "")
        found[k].cases.append(c)
    ordered = sorted(found.values(), key=lambda g: (g.label, g.key))
    width = max(4, len(str(len(ordered))))
    for i, g in enumerate(ordered, 1):
        g.page = f"{prefix}-{i:0{width}d}.html"
        g.cases.sort(key=lambda c: (c.model, c.delegate != BASELINE_DELEGATE, c.delegate, c.threads, c.run_id))
    return ordered


def delegate_colours(cases: Sequence[Case], baseline: str = BASELINE_DELEGATE) -> dict[str, tuple[str, str]]:
    """``delegate -> (tint, ink)``: the baseline grey, the others in sorted order (past 7 they share the last)."""
    names = sorted({c.delegate for c in cases} - {baseline})
    colours = {baseline: (PALETTE[-1], INK[-1])}
    for i, name in enumerate(names):
        j = min(i, len(PALETTE) - 2)
        colours[name] = (PALETTE[j], INK[j])
    return colours


def matrix(devices: Sequence[Group], models: Sequence[Group], speed: dict[int, Speedup]) -> list[list[Cell]]:
    """Rows of cells, one row per device and one column per model (in the groups' order)."""
    column = {m.key: j for j, m in enumerate(models)}
    rows = []
    for dev in devices:
        row = [Cell(dev.key, m.key, None, None) for m in models]
        for c in dev.cases:
            cell = row[column[c.model]]
            cell.statuses[c.status] = cell.statuses.get(c.status, 0) + 1
            if c.ok and (cell.best is None or c.median_us < cell.best.median_us):
                cell.best = c
        for cell in row:
            if cell.best is not None:
                cell.speedup = speed.get(cell.best.index)
        rows.append(row)
    return rows


def configs(cases: Sequence[Case], baseline: str = BASELINE_DELEGATE) -> list[tuple[str, int]]:
    """The (delegate, threads) pairs present, baseline first."""
    return sorted({(c.delegate, c.threads) for c in cases}, key=lambda p: (p[0] != baseline, p[0], p[1]))


def spread(values: Sequence[float]) -> dict[str, float] | None:
    """p10, quartiles, median and p90 of values (linear interpolation), or None when empty."""
    from harness.report.scan import quantile

    ordered = sorted(v for v in values if v is not None and not math.isnan(v))
    if not ordered:
        return None
    return {"n": len(ordered), "p10": quantile(ordered, 0.1), "p25": quantile(ordered, 0.25),
            "p50": quantile(ordered, 0.5), "p75": quantile(ordered, 0.75), "p90": quantile(ordered, 0.9),
            "min": ordered[0], "max": ordered[-1]}
