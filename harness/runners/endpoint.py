"""Runner ``endpoint``: the model's seeded inputs sent to an inference endpoint, its answers fingerprinted.

The inputs are made exactly as the on-device runner makes them (``pyrunner``: one ``numpy`` generator seeded 0,
inputs in the interpreter's order), read from the local copy of the model, so the server's outputs compare with
the host's ``cpu`` reference (a server serving another model version shows up as drift). The endpoint device
(:mod:`harness.devices.endpoint`) sends them; this module turns its per-request rows into a repetition:
``samples_us`` are the end-to-end times of the measured requests (a request that failed after every retry counts
with the time until the client gave up), the first warm-up request is ``first_inference_us``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.devices.endpoint.backend import ENERGY_NOTE
from harness.devices.endpoint.client import PROTOCOLS
from harness.devices.endpoint.network import ClientPolicy, NetworkProfile
from harness.errors import one_line
from harness.results import Endpoint, Energy
from harness.runners import litert_python, pyrunner
from harness.runners.base import AppInvocation, RawOutput, Staged, Task
from harness.runners.outcome import MAX_TEXT, RunnerOutcome

NAME = "endpoint"
METHOD = ("end to end per request (time.perf_counter_ns around the client call: serialisation, network through "
          "the profile's method, server, deserialisation; retries and backoff included)")
MEMORY_METHOD = "not measured for endpoints (the client is the harness; the server's memory is not read)"
_IO: dict[str, tuple[dict[str, Any], list[str]]] = {}
_IO_LOCK = threading.Lock()


def model_io(model: str) -> tuple[dict[str, Any], list[str]]:
    """(seeded inputs by name, output names in order) of a local model, as the on-device runner makes them."""
    with _IO_LOCK:
        if model not in _IO:
            import numpy as np
            from ai_edge_litert.interpreter import Interpreter

            interp = Interpreter(model_path=model)
            rng = np.random.default_rng(0)  # pyrunner's --seed 0, inputs drawn in the same order
            inputs = {d["name"]: pyrunner._random_input(rng, list(d["shape"]), d["dtype"])
                      for d in interp.get_input_details()}
            _IO[model] = (inputs, [d["name"] for d in interp.get_output_details()])
        return _IO[model]


class EndpointRunner:
    """The :class:`~harness.runners.base.Runner` for endpoint devices (nothing to stage)."""

    name = NAME

    def files(self, task: Task) -> Mapping[str, Path]:
        return {}

    def invocation(self, task: Task, staged: Staged) -> AppInvocation:
        s = task.settings
        inputs, outputs = model_io(staged.model)
        params = {"inputs": inputs, "outputs": outputs, "warmup": s.warmup_runs, "runs": s.measured_runs,
                  "network": task.network or NetworkProfile("direct"), "policy": task.client or ClientPolicy(),
                  "seed": sum(map(ord, task.tag))}
        return AppInvocation(params, s.timeout_s)

    def parse(self, raw: RawOutput, task: Task) -> RunnerOutcome:
        doc = raw.payload if isinstance(raw.payload, dict) else {}
        if raw.status != "ok":
            status = raw.status if raw.status in ("skipped", "timeout") else "failed"
            return RunnerOutcome(status, one_line(raw.reason or "the endpoint gave no result", MAX_TEXT))
        s = task.settings
        rows = [r for r in doc.get("rows", ()) if isinstance(r, dict)]
        warm = [r for r in rows if not r.get("measured")]
        measured = [r for r in rows if r.get("measured")]
        payload = {
            "status": "ok", "runtime": "remote", "api": "remote",
            "first_inference_us": warm[0]["e2e_us"] if warm else None,
            "warmup_us": [r["e2e_us"] for r in warm[1:]],
            "samples_us": [r["e2e_us"] for r in measured],
            "outputs": [pyrunner._fingerprint(n, a) for n, a in (doc.get("outputs") or {}).items()],
        }
        outcome = litert_python.from_payload(payload, runs=s.measured_runs, timeout_s=s.timeout_s)
        if outcome.status != "ok":
            return outcome
        network = task.network or NetworkProfile("direct")
        ok = [r for r in measured if "failed" not in r]
        server = [_server_us(r) for r in measured]
        first_index = next((r["server_index"] for r in rows if isinstance(r.get("server_index"), int)
                            and r["server_index"] > 0), None)
        cold_note = ("this case sent the server's first request" if first_index == 1 else
                     f"the server had answered {first_index - 1} request(s) before this repetition"
                     if first_index else "the server reports no request index")
        counts = {k: v for k, v in (doc.get("counts") or {}).items() if k != "reasons"}
        counts.update({k: v for k, v in (doc.get("proxy") or {}).items() if k in ("stalls", "resets", "retransmits",
                                                                               "connections", "refused")})
        endpoint = Endpoint(
            protocol=PROTOCOLS.get(str(doc.get("scheme", "")), ""), url=str(doc.get("url", "")),
            network=network.name,
            network_method=one_line(doc.get("network_method") or network.method, 600),
            network_profile=network.record(),
            client=vars(task.client or ClientPolicy()).copy(),
            counts=counts,
            server_compute_us=tuple(server),
            network_us=tuple(None if sv is None or "failed" in r else r["e2e_us"] - sv
                             for r, sv in zip(measured, server)),
            request_bytes=tuple(int(r.get("request_bytes") or 0) for r in ok),
            response_bytes=tuple(int(r.get("response_bytes") or 0) for r in ok),
            request_message_bytes=_message_bytes(ok, "request_message_bytes"),
            response_message_bytes=_message_bytes(ok, "response_message_bytes"),
            cold_request_us=warm[0]["e2e_us"] if warm and first_index == 1 else None,
            cold_note=cold_note,
            energy_note=ENERGY_NOTE,
        )
        # the method's kind (netns, netem, tcp-proxy) is part of the run context: the gate never silently
        # compares a run shaped by the kernel with one shaped by the proxy
        kind = endpoint.network_method.split(":", 1)[0].strip()
        return replace(outcome, endpoint=endpoint, latency_method=METHOD, memory_method=MEMORY_METHOD,
                       energy=Energy(method="none", reason=ENERGY_NOTE),
                       environment={**outcome.environment, **({"network_method": kind} if kind else {})})


def _message_bytes(rows: list[dict[str, Any]], key: str) -> tuple[int | None, ...]:
    """A per-request message size series; empty when no request reported one (REST protocols)."""
    values = tuple(v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None
                   for v in (r.get(key) for r in rows))
    return values if any(v is not None for v in values) else ()


def _server_us(row: Mapping[str, Any]) -> float | None:
    """The server's reported compute time, kept only when it can be true (a server's response is untrusted):
    a finite number from 0 to the request's own end-to-end time."""
    value, e2e = row.get("server_us"), row.get("e2e_us")
    if "failed" in row or not isinstance(value, float | int) or isinstance(value, bool) or not math.isfinite(value):
        return None
    return float(value) if isinstance(e2e, float | int) and 0 <= value <= e2e else None
