"""History of each case across the stored runs: when, and on which device, a model got slower.

Per case (model, delegate, threads, API, device) and per stored run: the median and its 95%
interval (the hierarchical bootstrap of :mod:`harness.stats`, stored in the results index as each
result is written), the baselines that name the run, the gate's recorded verdicts on it, and a
flag where the case changed by more than its own noise: the interval of a run does not overlap
the previous measured run's, or the gate (its rule: ratio test plus allowed regression) said
slower or faster. Read from the index only, so it works on a team store whose JSONL files are on
other hosts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.gate import GateOutcome
from harness.store import GateMark, HistoryRow, Store, now_iso

CaseId = tuple[str, str, int, str, str]  # model, delegate, threads, api, device id


@dataclass(frozen=True)
class TrendPoint:
    """One run of one case."""

    run_id: str
    seq: int
    started_at: str
    status: str
    median_us: float | None
    ci_low_us: float | None
    ci_high_us: float | None
    n: int
    imported: bool = False
    baselines: tuple[str, ...] = ()  #: baseline names that point at this run
    gate: tuple[str, ...] = ()  #: the gate's verdicts on this case in this run ("slower vs main: ...")
    change: str | None = None  #: "slower" or "faster" when beyond the case's noise, else None
    why: str = ""

    @property
    def measured(self) -> bool:
        return self.status == "ok" and self.median_us is not None


@dataclass
class CaseTrend:
    model: str
    delegate: str
    threads: int
    api: str
    device_id: str
    device_model: str
    points: list[TrendPoint] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.model} [{self.device_id} {self.delegate} x{self.threads} {self.api}]"

    @property
    def changes(self) -> list[TrendPoint]:
        return [p for p in self.points if p.change]


def _matches(row: HistoryRow, selector: str | None) -> bool:
    if not selector:
        return True
    return selector in (row.suite, row.case_id, row.model, row.device_id) or row.case_id.startswith(selector)


def case_trends(store: Store, selector: str | None = None, last: int | None = None) -> list[CaseTrend]:
    """The history of every case matching ``selector`` (a suite, case id or prefix, model or device id; None:
    all) over the ``last`` runs (of that suite when it names one; all when None), oldest run first."""
    suites = {r.suite for r in store.runs()}
    in_suite = selector if selector in suites else None  # --last then counts that suite's runs
    rows = [r for r in store.history(last, in_suite) if _matches(r, selector)]
    names: dict[str, list[str]] = {}
    for name, run_id, _created in store.baselines():
        names.setdefault(run_id, []).append(name)
    marks: dict[tuple[str, str, str, int, str], list[GateMark]] = {}
    for m in store.gate_marks():
        marks.setdefault((m.run_id, m.model, m.delegate, m.threads, m.device_id), []).append(m)
    cases: dict[CaseId, CaseTrend] = {}
    for r in rows:
        key = (r.model, r.delegate, r.threads, r.api, r.device_id)
        trend = cases.setdefault(key, CaseTrend(r.model, r.delegate, r.threads, r.api, r.device_id, r.device_model))
        gate = marks.get((r.run_id, r.model, r.delegate, r.threads, r.device_id), [])
        trend.points.append(TrendPoint(
            r.run_id, r.seq, r.started_at, r.status, r.median_us, r.ci_low_us, r.ci_high_us, r.n, r.imported,
            tuple(names.get(r.run_id, ())), tuple(f"{m.verdict} vs {m.baseline}" for m in gate)))
        _flag(trend, gate)
    return list(cases.values())


def _flag(trend: CaseTrend, gate: Sequence[GateMark]) -> None:
    """Flag the newest point when it moved beyond the noise since the previous measured run (or the gate said so)."""
    point = trend.points[-1]
    verdict = next((m for m in gate if m.verdict in ("slower", "faster")), None)
    change, why = (verdict.verdict, f"gate vs {verdict.baseline}: {verdict.why}") if verdict else (None, "")
    previous = next((p for p in reversed(trend.points[:-1]) if p.measured), None)
    if point.measured and previous is not None and None not in (
            point.ci_low_us, point.ci_high_us, previous.ci_low_us, previous.ci_high_us):
        ratio = point.median_us / previous.median_us if previous.median_us else float("nan")
        if point.ci_low_us > previous.ci_high_us:  # type: ignore[operator]
            change = change or "slower"
            why = why or f"{ratio:.2f}x run {previous.run_id}: the 95% intervals do not overlap"
        elif point.ci_high_us < previous.ci_low_us:  # type: ignore[operator]
            change = change or "faster"
            why = why or f"{ratio:.2f}x run {previous.run_id}: the 95% intervals do not overlap"
    if change:
        trend.points[-1] = TrendPoint(**{**point.__dict__, "change": change, "why": why})


def gate_marks(run_id: str, baseline: str, baseline_run_id: str | None, outcome: GateOutcome) -> list[GateMark]:
    """What :meth:`Store.record_gate` keeps of a gate's outcome: each case's verdict and reason."""
    when = now_iso()
    return [GateMark(run_id, baseline, baseline_run_id, v.label, v.model, v.delegate, v.threads, v.device, v.verdict,
                     v.why, when) for v in outcome.verdicts]


def _ms(us: float | None) -> str:
    return "—" if us is None else f"{us / 1000:.3f}"


def render_trends(trends: Sequence[CaseTrend]) -> str:
    """A terminal table per case: run, when, median and 95% interval (ms), n, marks. Stored strings unescaped:
    the caller prints through :func:`harness.textsafe.escape_lines`."""
    if not trends:
        return "no stored results match"
    lines: list[str] = []
    for t in trends:
        lines.append(f"{t.label}  ({len(t.points)} run(s), {len(t.changes)} change(s) beyond noise)")
        lines.append(f"  {'run':<26} {'started':<20} {'median ms':>10} {'95% interval ms':>19} {'n':>6}  marks")
        for p in t.points:
            interval = (f"{_ms(p.ci_low_us)}–{_ms(p.ci_high_us)}" if p.ci_low_us is not None else "—")
            marks = [f"baseline {n}" for n in p.baselines] + (["imported"] if p.imported else [])
            marks += [f"gate: {g}" for g in p.gate]
            if p.status != "ok":
                marks.append(p.status)
            if p.change:
                marks.append(f"{'▲ SLOWER' if p.change == 'slower' else '▼ FASTER'} ({p.why})")
            lines.append(f"  {p.run_id:<26} {p.started_at[:19]:<20} {_ms(p.median_us):>10} {interval:>19} "
                         f"{p.n:>6}  {'; '.join(marks)}".rstrip())
        lines.append("")
    return "\n".join(lines).rstrip()
