"""On-device, server or hybrid: per model, the on-device options and the endpoint under each network profile.

From the results of one or more runs: each option's p50/p90 over every measured request or invocation
(samples of all repetitions pooled), the endpoint's own split (server compute, network + serialisation), the
drift of the served outputs against the host's ``cpu`` reference (:func:`harness.numerics.drift`, on the same
seeded inputs), and the decision, stated with the numbers: where each option wins on p50 and on p90, where the
crossover lies (an on-device option slower than the endpoint's p50 under a profile loses to it there), and the
hybrid reading against a real-time budget (the model's ``p90_ms`` budget when the suite sets one, else one
frame at 30 fps, 33.3 ms; an endpoint under a profile with its own ``[models.budget.PROFILE]`` is held to that).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from harness.numerics import Drift, drift
from harness.results import Result

FRAME_MS = 1000.0 / 30.0


@dataclass(frozen=True)
class Option:
    """One way to run a model: on a device with a delegate, or on an endpoint under a network profile."""

    model: str
    label: str
    remote: bool
    p50_ms: float
    p90_ms: float
    p99_ms: float
    n: int
    network: str = ""
    server_p50_ms: float | None = None
    network_p50_ms: float | None = None
    request_kb: float | None = None
    response_kb: float | None = None
    counts: dict = field(default_factory=dict)
    method: str = ""
    cold_ms: float | None = None


@dataclass(frozen=True)
class Decision:
    """One model's options and the sentences that say what they mean."""

    model: str
    options: tuple[Option, ...]
    budget_ms: float
    budget_source: str
    statements: tuple[str, ...]
    rows: tuple[dict, ...]


def samples_ms(result: Result) -> np.ndarray:
    """Every measured sample of a result (ms), repetitions pooled."""
    if result.latency is None:
        return np.zeros(0)
    values = [v for rep in result.latency.repetitions for v in rep.samples_us]
    return np.asarray(values, dtype=float) / 1000.0


def option_of(result: Result) -> Option | None:
    """An ok result with per-sample latency as an option; None otherwise."""
    ms = samples_ms(result)
    if result.status != "ok" or not ms.size:
        return None
    p50, p90, p99 = (float(np.percentile(ms, q)) for q in (50, 90, 99))
    e = result.endpoint
    if e is None:
        label = f"{result.device.id} · {result.case.delegate} · {result.case.threads} thr"
        return Option(result.case.model, label, False, p50, p90, p99, int(ms.size))
    server = [v for v in e.server_compute_us if v is not None]
    net = [v for v in e.network_us if v is not None]
    return Option(
        result.case.model, f"{result.device.id} · {e.network}", True, p50, p90, p99, int(ms.size), e.network,
        float(np.median(server)) / 1000 if server else None, float(np.median(net)) / 1000 if net else None,
        float(np.median(e.request_bytes)) / 1024 if e.request_bytes else None,
        float(np.median(e.response_bytes)) / 1024 if e.response_bytes else None,
        dict(e.counts), e.network_method, e.cold_request_us / 1000 if e.cold_request_us is not None else None)


def endpoint_drift(results: Iterable[Result]) -> list[tuple[Result, Result, Drift]]:
    """(host reference, endpoint result, drift) for every ok endpoint result with an ok on-device ``cpu`` result of
    the same model file (one thread preferred)."""
    ok = [r for r in results if r.status == "ok"]
    refs = [r for r in ok if r.endpoint is None and r.case.delegate == "cpu"]
    out = []
    for res in (r for r in ok if r.endpoint is not None):
        same = [r for r in refs if r.case.model_sha256 == res.case.model_sha256]
        same.sort(key=lambda r: (r.device.platform != "host", r.case.threads != 1))
        if same:
            out.append((same[0], res, drift(same[0].outputs, res.outputs)))
    return out


def decisions(results: Sequence[Result]) -> list[Decision]:
    """One decision per model that has both on-device and endpoint options."""
    by_model: dict[str, list[tuple[Result, Option]]] = {}
    for res in results:
        opt = option_of(res)
        if opt is not None:
            by_model.setdefault(opt.model, []).append((res, opt))
    out = []
    for model, pairs in by_model.items():
        local = [o for _, o in pairs if not o.remote]
        remote = [o for _, o in pairs if o.remote]
        if not local or not remote:
            continue
        table = next((r.case.settings.get("budget") for r, _ in pairs
                      if isinstance(r.case.settings.get("budget"), dict)), None) or {}
        budget = table.get("p90_ms")
        budget_ms, source = ((float(budget), "the model's p90_ms budget") if _number(budget)
                             else (FRAME_MS, "one frame at 30 fps"))
        per_profile = {name: float(sub["p90_ms"]) for name, sub in table.items()
                       if isinstance(sub, dict) and _number(sub.get("p90_ms"))}
        out.append(_decide(model, local, remote, budget_ms, source, per_profile))
    return out


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _decide(model: str, local: list[Option], remote: list[Option], budget_ms: float, source: str,
            per_profile: dict[str, float]) -> Decision:
    best50 = min(local, key=lambda o: o.p50_ms)
    best90 = min(local, key=lambda o: o.p90_ms)
    slowest = max(local, key=lambda o: o.p50_ms)
    statements, rows = [], []
    for ep in sorted(remote, key=lambda o: o.p50_ms):
        win50 = "server" if ep.p50_ms < best50.p50_ms else "on-device"
        win90 = "server" if ep.p90_ms < best90.p90_ms else "on-device"
        beaten = [o for o in local if o.p50_ms > ep.p50_ms]
        rows.append({"network": ep.network, "endpoint_p50_ms": ep.p50_ms, "endpoint_p90_ms": ep.p90_ms,
                     "best_local": best50.label, "local_p50_ms": best50.p50_ms, "local_p90_ms": best90.p90_ms,
                     "p50_winner": win50, "p90_winner": win90, "crossover_ms": ep.p50_ms,
                     "server_beats": [o.label for o in beaten],
                     "budget_ms": per_profile.get(ep.network, budget_ms),
                     "within_budget": ep.p90_ms <= per_profile.get(ep.network, budget_ms)})
        split = (f" (server compute {ep.server_p50_ms:.1f} ms, network + serialisation {ep.network_p50_ms:.1f} ms)"
                 if ep.server_p50_ms is not None and ep.network_p50_ms is not None else "")
        statements.append(
            f"{model} on {ep.network}: the server's p50 is {ep.p50_ms:.1f} ms{split}, p90 {ep.p90_ms:.1f} ms; "
            f"best on-device {best50.label} p50 {best50.p50_ms:.1f} ms, p90 {best90.p90_ms:.1f} ms: "
            f"{win50} wins on p50, {win90} on p90. Crossover: the server wins on {ep.network} against any on-device "
            f"option slower than {ep.p50_ms:.1f} ms at p50"
            + (f" (here: {', '.join(o.label for o in beaten)})." if beaten
               else f"; none here is (slowest: {slowest.label}, {slowest.p50_ms:.1f} ms)."))
    local_ok = best90.p90_ms <= budget_ms
    remote_ok = [f"{ep.network} ({ep.p90_ms:.1f} <= {per_profile.get(ep.network, budget_ms):.1f} ms)"
                 for ep in remote if ep.p90_ms <= per_profile.get(ep.network, budget_ms)]
    statements.append(
        f"Hybrid reading against {budget_ms:.1f} ms at p90 ({source}): on-device {best90.label} "
        f"{'meets' if local_ok else 'misses'} it ({best90.p90_ms:.1f} ms)"
        + (f"; the server meets its budget on {', '.join(remote_ok)}" if remote_ok
           else "; the server meets its budget on no profile")
        + (". Keep the real-time path on the device; send what can wait (bigger models, batch work) to the server."
           if local_ok and len(remote_ok) < len(remote) else "."))
    return Decision(model, tuple(local + remote), budget_ms, source, tuple(statements), tuple(rows))
