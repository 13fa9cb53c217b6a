"""Blame by operator: which op types and operators grew most between a baseline and a slower candidate.

Reads the op profiles both results carry (``Result.ops``: the native tools' ``--enable_op_profiling``
tables, or the host's per-op split, see ``harness/runners/pyrunner.py``), per inference, in ms. An op
type's time is its ``summary`` row (its nodes summed) or, without one, the sum of its nodes. Growth is
candidate minus baseline; a node found on one side only counts as 0 ms on the other (an operator added
or removed). The share of an op type is its growth over the net growth of every op type: how much of
what the profiles explain it explains. Profiles taken by different methods are not compared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from harness.results import Result

TOP = 3  # op types and operators named per slower case


@dataclass(frozen=True)
class OpGrowth:
    """One op type (``node`` None) or one operator: its ms per inference in each run and the growth."""

    node_type: str
    base_ms: float
    cand_ms: float
    share: float | None = None  # of the profiles' net growth; None when they show no net growth
    node: str | None = None  # the operator's name (its output tensor), ``#index`` when it has none
    change: str = ""  # "added" / "removed": the operator is in one run only

    @property
    def delta_ms(self) -> float:
        return self.cand_ms - self.base_ms

    @property
    def text(self) -> str:
        """``DEPTHWISE_CONV_2D +1.712 ms (92%)``."""
        what = self.node_type if self.node is None else f"{self.node_type} {self.node}"
        share = f" ({self.share:.0%})" if self.share is not None else ""
        change = f" [{self.change}]" if self.change else ""
        return f"{what} {self.delta_ms:+.3f} ms{share}{change}"


@dataclass(frozen=True)
class Blame:
    """What the op profiles say about one slower case; ``problem`` says why they cannot be compared."""

    types: tuple[OpGrowth, ...] = ()
    nodes: tuple[OpGrowth, ...] = ()
    profiled_base_ms: float | None = None
    profiled_cand_ms: float | None = None
    method: str = ""
    problem: str | None = None
    tentative: bool = False  # above the margin but not shown slower (noisy, not significant): a lead, not a finding

    @property
    def line(self) -> str:
        """One line for the gate's output: the op types and operators that grew most."""
        if self.problem:
            return f"blame by operator: {self.problem}"
        if not self.types:
            return (f"blame by operator: no op type grew (profiled {self.profiled_base_ms:.3f} -> "
                    f"{self.profiled_cand_ms:.3f} ms per inference)")
        nodes = f"; operators: {', '.join(n.text for n in self.nodes)}" if self.nodes else ""
        return (f"{'if the slowdown is real, ' if self.tentative else ''}"
                f"grew most (ms per inference, share of the profiled growth): "
                f"{', '.join(t.text for t in self.types)}{nodes}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: each growth with its ``delta_ms``."""
        data = asdict(self)
        for key in ("types", "nodes"):
            data[key] = [{**asdict(g), "delta_ms": g.delta_ms} for g in getattr(self, key)]
        return data


def _method(r: Result) -> str:
    """The profile's method without its per-run notes (how many operators could not be timed)."""
    return r.ops_method.split(";")[0].strip()


def _timed(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in rows if isinstance(r.get("avg_ms"), int | float) and isinstance(r.get("node_type"), str)]


def op_types(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """ms per inference by op type: the summary rows, else the nodes (run order) summed by type."""
    timed = _timed(rows)
    summary = [r for r in timed if r.get("table") == "summary"]
    out: dict[str, float] = {}
    for r in summary or [r for r in timed if r.get("table") in ("run_order", None)]:
        out[r["node_type"]] = out.get(r["node_type"], 0.0) + float(r["avg_ms"])
    return out


def op_nodes(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], float]:
    """ms per inference by operator (type, name); a name seen twice gets ``#2``, a missing one its index."""
    out: dict[tuple[str, str], float] = {}
    for r in _timed(rows):
        if r.get("table") != "run_order":
            continue
        name = r.get("name") or (f"#{r['index']}" if r.get("index") is not None else "#?")
        key, n = (r["node_type"], name), 1
        while key in out:
            n += 1
            key = (r["node_type"], f"{name}#{n}")
        out[key] = float(r["avg_ms"])
    return out


def _mean(maps: Sequence[Mapping[Any, float]]) -> dict[Any, float]:
    """Each key's mean over the results (a key missing from one counts as 0 there: it did not run)."""
    keys = {k for m in maps for k in m}
    return {k: sum(m.get(k, 0.0) for m in maps) / len(maps) for k in keys}


def blame(baseline: Sequence[Result], candidate: Sequence[Result], top: int = TOP,
          tentative: bool = False) -> Blame | None:
    """The op types and operators whose time grew most from ``baseline`` to ``candidate`` (one case's results).

    None when neither run carries an op profile (nothing was asked for); a ``problem`` when one run lacks
    it or the two were taken differently. ``tentative``: the gate could not show the case slower (``noisy``
    or not significant, above the margin); the line says so.
    """
    base = [r for r in baseline if _timed(r.ops)]
    cand = [r for r in candidate if _timed(r.ops)]
    if not base and not cand:
        return None
    if not base or not cand:
        return Blame(problem=f"no op profile in the {'baseline' if not base else 'candidate'} "
                             "(record both runs with `[gate] profile_ops = true`)")
    methods = {_method(r) for r in base} | {_method(r) for r in cand}
    if len(methods) > 1:
        return Blame(problem="the runs' op profiles were taken by different methods: "
                             + " | ".join(sorted(m[:60] for m in methods)))
    b_types, c_types = _mean([op_types(r.ops) for r in base]), _mean([op_types(r.ops) for r in cand])
    net = sum(c_types.get(k, 0.0) - b_types.get(k, 0.0) for k in set(b_types) | set(c_types))

    def growth(kind: str, b: float, c: float, node: str | None = None, change: str = "") -> OpGrowth:
        return OpGrowth(kind, b, c, (c - b) / net if net > 0 else None, node, change)

    types = sorted((growth(k, b_types.get(k, 0.0), c_types.get(k, 0.0)) for k in set(b_types) | set(c_types)),
                   key=lambda g: (-g.delta_ms, g.node_type))
    b_nodes, c_nodes = _mean([op_nodes(r.ops) for r in base]), _mean([op_nodes(r.ops) for r in cand])
    nodes = sorted((growth(k[0], b_nodes.get(k, 0.0), c_nodes.get(k, 0.0), k[1],
                           "added" if k not in b_nodes else "removed" if k not in c_nodes else "")
                    for k in set(b_nodes) | set(c_nodes)), key=lambda g: (-g.delta_ms, g.node_type, g.node or ""))
    return Blame(types=tuple(g for g in types[:top] if g.delta_ms > 0),
                 nodes=tuple(g for g in nodes[:top] if g.delta_ms > 0),
                 profiled_base_ms=sum(b_types.values()), profiled_cand_ms=sum(c_types.values()),
                 method=cand[0].ops_method, tentative=tentative)
