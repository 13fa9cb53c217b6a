"""What does the harness add per request to an endpoint, and what does each network profile cost?

Starts the LiteRT model server (``harness serve-model``'s KServe server, loopback, its own venv), then, for
face_landmark's seeded input (float32 1x192x192x3, 442 KB), times ``--requests`` requests per way, interleaved
in rounds (load on the machine drifts: every way sees the same stretch of it):

  - ``bare``: a plain ``tritonclient.http`` loop straight to the server (what a user would write);
  - ``bare+proxy``: the same loop through the shaping proxy with the ``direct`` profile (no shaping);
  - ``harness``: the endpoint device's own repetition (``EndpointDevice.run_app``: the pass-through proxy, the
    client policy, per-request bookkeeping), i.e. what a ``direct`` endpoint case measures.

The harness's per-request overhead is ``harness - bare`` (p50), split into the proxy (``bare+proxy - bare``)
and the rest. Then each ``--profiles`` profile through the harness path: p50/p90, the server's compute p50,
and the floor the profile sets (delay each way less jitter, plus the bytes at each direction's rate).
Last, faults: one link with and without stalls and resets under a timeout/retry/backoff policy, how often each
kicked in and what it did to p50/p90/p99. Every figure is per request in ms (``time.perf_counter_ns``), with its
sample count.

Usage: python benchmarks/endpoint_overhead.py [--requests 40] [--profiles wifi,4g] [--profile-requests 20]
                                             [--fault-requests 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import tritonclient.http as triton

from harness import zoo
from harness.devices.endpoint import EndpointDevice
from harness.devices.endpoint.network import PROFILES, ClientPolicy, NetworkProfile
from harness.devices.endpoint.proxy import ShapingProxy
from harness.runners.endpoint import model_io
from harness.serving import launch
from harness.testing.postgres import _free_port


def bare_loop(host: str, port: int, name: str, inputs: dict, outputs: list[str], n: int) -> list[float]:
    client = triton.InferenceServerClient(f"{host}:{port}")
    times = []
    for _ in range(n):
        sent = []
        for k, v in inputs.items():
            i = triton.InferInput(k, list(v.shape), "FP32")
            i.set_data_from_numpy(v, binary_data=True)
            sent.append(i)
        t0 = time.perf_counter_ns()
        client.infer(name, sent, outputs=[triton.InferRequestedOutput(o, binary_data=True) for o in outputs])
        times.append((time.perf_counter_ns() - t0) / 1e6)
    client.close()
    return times


def harness_loop(device: EndpointDevice, inputs: dict, outputs: list[str], n: int, profile: str | NetworkProfile,
                 policy: ClientPolicy | None = None, counts: dict | None = None) -> tuple[list, list]:
    params = {"inputs": inputs, "outputs": outputs, "warmup": 1, "runs": n,
              "network": PROFILES[profile] if isinstance(profile, str) else profile,
              "policy": policy or ClientPolicy(), "seed": 1}
    run = device.run_app(model=None, params=params, run_tag="bench", timeout_s=600)  # type: ignore[arg-type]
    if counts is not None:
        counts.update({k: v for k, v in {**run.result["counts"], **run.result["proxy"]}.items()
                       if isinstance(v, int) and v})
    rows = [r for r in run.result["rows"] if r["measured"]]
    return [r["e2e_us"] / 1000 for r in rows], [r["server_us"] / 1000 for r in rows if r.get("server_us")]


def q(values: list[float], p: float) -> float:
    return float(np.percentile(values, p))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=40, help="requests per way (overhead part)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--profiles", default="wifi,4g")
    ap.add_argument("--profile-requests", type=int, default=20)
    ap.add_argument("--fault-requests", type=int, default=30, help="requests with and without faults (0: skip)")
    args = ap.parse_args()
    inputs, outputs = model_io(str(zoo.fetch("face_landmark")))
    server = launch.start("face_landmark", _free_port(), python=os.environ.get(launch.ENV_PYTHON) or None)
    try:
        device = EndpointDevice(server.device_id)
        bare_loop(server.host, server.port, server.name, inputs, outputs, 3)  # the cold requests, not counted
        ways: dict[str, list[float]] = {"bare": [], "bare+proxy": [], "harness": []}
        per = max(1, args.requests // args.rounds)
        for _ in range(args.rounds):
            ways["bare"] += bare_loop(server.host, server.port, server.name, inputs, outputs, per)
            with ShapingProxy((server.host, server.port), PROFILES["direct"]) as proxy:
                ways["bare+proxy"] += bare_loop(*proxy.address, server.name, inputs, outputs, per)
            ways["harness"] += harness_loop(device, inputs, outputs, per, "direct")[0]
        print(f"per-request latency, face_landmark on the KServe server (loopback), {per} requests x "
              f"{args.rounds} interleaved rounds per way; load average {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} CPUs")
        print(f"{'way':<14}{'n':>5}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}")
        for way, t in ways.items():
            print(f"{way:<14}{len(t):>5}{q(t, 50):>10.2f}{q(t, 90):>10.2f}{q(t, 99):>10.2f}")
        bare, proxied, full = (statistics.median(ways[k]) for k in ("bare", "bare+proxy", "harness"))
        print(f"harness overhead per request (p50): {full - bare:+.2f} ms = proxy {proxied - bare:+.2f} ms "
              f"+ policy/bookkeeping {full - proxied:+.2f} ms")
        print()
        print(f"{'profile':<10}{'n':>5}{'p50 ms':>10}{'p90 ms':>10}{'server p50':>12}{'floor ms':>10}  profile")
        for name in [p for p in args.profiles.split(",") if p]:
            profile = PROFILES[name]
            e2e, srv = harness_loop(device, inputs, outputs, args.profile_requests, name)
            up = profile.up_rate_kbit or profile.rate_kbit
            floor = 2 * (profile.delay_ms - profile.jitter_ms) + (442_780 * 8 / up if up else 0) + (
                26_532 * 8 / profile.rate_kbit if profile.rate_kbit else 0)
            print(f"{name:<10}{len(e2e):>5}{q(e2e, 50):>10.1f}{q(e2e, 90):>10.1f}"
                  f"{statistics.median(srv) if srv else float('nan'):>12.2f}{floor:>10.1f}  {profile.describe()}")
        if args.fault_requests:
            fault_table(device, inputs, outputs, args.fault_requests)
    finally:
        server.stop()
    return 0


def fault_table(device: EndpointDevice, inputs: dict, outputs: list[str], n: int) -> None:
    """The same link with and without stalls and resets, under the client's timeout/retry/backoff policy."""
    calm = NetworkProfile("calm", delay_ms=20, jitter_ms=2, rate_kbit=20000)
    flaky = NetworkProfile("flaky", delay_ms=20, jitter_ms=2, rate_kbit=20000, stall_pct=5, stall_ms=400,
                           reset_pct=10)
    policy = ClientPolicy(timeout_s=2.0, retries=3, backoff_ms=50)
    print()
    print(f"faults, policy timeout {policy.timeout_s:g} s, {policy.retries} retries, backoff {policy.backoff_ms:g} ms"
          " doubling; per request ms")
    print(f"{'profile':<8}{'n':>5}{'p50':>9}{'p90':>9}{'p99':>9}  what kicked in")
    for profile in (calm, flaky):
        counts: dict = {}
        e2e, _ = harness_loop(device, inputs, outputs, n, profile, policy, counts)
        print(f"{profile.name:<8}{len(e2e):>5}{q(e2e, 50):>9.1f}{q(e2e, 90):>9.1f}{q(e2e, 99):>9.1f}  "
              f"{', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}  ({profile.describe()})")


if __name__ == "__main__":
    raise SystemExit(main())
