"""The ``netns`` network method against the ``tcp-proxy`` one: rate, delay, overhead (needs CAP_NET_ADMIN).

Against a loopback HTTP server in this process (a GET returns N bytes, a POST echoes its body); the client runs
where each method puts it (inside the namespace for ``netns``), on one kept-alive connection per way:

  1. rate: each ``--rate-profiles`` profile's rates alone (delay 0), ``--rate-requests`` transfers per direction
     sized to ~2 s at the rate (down: a GET of that many bytes; up: a POST of them answered empty); payload
     bytes / wall time per transfer, against the profile's rate, through ``tc tbf`` (netns: the rate counts
     whole frames, so payload is ~95 % of it, as on a real link) and the proxy's pacing (tcp-proxy: payload);
  2. delay: each ``--delay-profiles`` profile whole, ``--delay-requests`` small GETs (100 B), p50/p90 against
     the profile's floor 2 x (delay - jitter) and ceiling 2 x (delay + jitter), both methods;
  3. overhead: the ``direct`` profile, per request p50/p90 for a 1 KB and a 442 KB echo (face_landmark's input
     size): ``bare`` (no proxy, no namespace), ``tcp-proxy``, ``netns``, ``netns+relay`` (the client outside the
     namespace through the relay gRPC takes: its cost is ``netns+relay - netns``), in ``--rounds`` interleaved
     rounds;
     then what setting a path up and tearing it down costs (per repetition), ``--setups`` times each method;
  4. with ``--kserve``: the endpoint device's own repetition (``EndpointDevice.run_app``) for face_landmark on
     the KServe server, ``direct`` under each method, over REST and over gRPC (whose ``netns`` path adds the relay
     into the namespace), interleaved rounds; netns - tcp-proxy p50 per protocol.

Every figure is wall time from ``time.perf_counter`` with its sample count. Usage:
  python benchmarks/endpoint_netns.py [--rate-profiles 3g,edge] [--rate-requests 4] [--delay-profiles wifi,4g,3g]
      [--delay-requests 20] [--requests 60] [--rounds 3] [--setups 10] [--kserve 0]
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import time
from dataclasses import replace

import numpy as np

from harness.devices.endpoint import netns
from harness.devices.endpoint.network import PROFILES, ClientPolicy, NetworkProfile
from harness.devices.endpoint.shaping import ShapedPath, open_path
from harness.testing.echo_http import echo_server

METHODS = ("tcp-proxy", "netns")


def timed(address: tuple[str, int] | str, requests: list[tuple[str, int]]) -> list[float]:
    """Seconds per request on one kept-alive connection (the first request, which connects, not counted);
    ``address`` a str: a Unix socket's path (the relay's)."""
    if isinstance(address, str):
        conn = http.client.HTTPConnection("relay", timeout=120)
        conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.sock.connect(address)
    else:
        conn = http.client.HTTPConnection(*address, timeout=120)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # http.client sends headers, body apart
    out = []
    for i, (verb, size) in enumerate([("GET", 10), *requests]):
        body = b"y" * size if verb in ("POST", "SINK") else None
        t0 = time.perf_counter()
        conn.request("GET" if body is None else "POST", {"GET": f"/{size}", "POST": "/", "SINK": "/sink"}[verb], body)
        got = conn.getresponse().read()
        if i:
            out.append(time.perf_counter() - t0)
        assert len(got) == (0 if verb == "SINK" else size)
    conn.close()
    return out


def through(profile: NetworkProfile, upstream: tuple[str, int], requests: list[tuple[str, int]]) -> tuple[list, str]:
    with open_path(profile, upstream) as path:
        return path.run(lambda: timed(path.address, requests)), path.method


def q(values: list[float], p: float) -> float:
    return float(np.percentile(values, p))


def rate_part(upstream: tuple[str, int], names: list[str], n: int) -> None:
    print(f"1. rate: payload bytes / wall time per transfer, {n} transfers per direction and method, delay 0")
    print(f"{'profile':<8}{'dir':<6}{'method':<11}{'bytes':>9}{'target B/s':>12}{'mean B/s':>11}{'min':>9}"
          f"{'max':>9}{'mean/target':>13}")
    for name in names:
        p = PROFILES[name]
        for direction, kbit, verb in (("down", p.rate_kbit, "GET"), ("up", p.up_rate_kbit or p.rate_kbit, "SINK")):
            target = kbit * 1000 / 8
            size = int(target * 2)
            for method in METHODS:
                only = NetworkProfile(f"{name}-rate", rate_kbit=p.rate_kbit, up_rate_kbit=p.up_rate_kbit,
                                      method=method)
                times, _ = through(only, upstream, [(verb, size)] * n)
                rates = [size / t for t in times]
                print(f"{name:<8}{direction:<6}{method:<11}{size:>9}{target:>12.0f}{statistics.mean(rates):>11.0f}"
                      f"{min(rates):>9.0f}{max(rates):>9.0f}{statistics.mean(rates) / target:>13.3f}")


def delay_part(upstream: tuple[str, int], names: list[str], n: int) -> None:
    print(f"\n2. delay: a 100-byte GET per request, {n} requests per profile and method (ms)")
    print(f"{'profile':<8}{'method':<11}{'floor':>8}{'ceiling':>9}{'p50':>9}{'p90':>9}{'min':>9}{'max':>9}")
    for name in names:
        p = PROFILES[name]
        for method in METHODS:
            times, _ = through(replace(p, method=method), upstream, [("GET", 100)] * n)
            ms = [t * 1000 for t in times]
            print(f"{name:<8}{method:<11}{2 * (p.delay_ms - p.jitter_ms):>8.0f}{2 * (p.delay_ms + p.jitter_ms):>9.0f}"
                  f"{q(ms, 50):>9.1f}{q(ms, 90):>9.1f}{min(ms):>9.1f}{max(ms):>9.1f}")


def overhead_part(upstream: tuple[str, int], n: int, rounds: int, setups: int) -> None:
    direct = PROFILES["direct"]
    per = max(1, n // rounds)
    print(f"\n3. overhead, profile direct: per request ms, {per} requests x {rounds} interleaved rounds per way "
          "(netns+relay: the client outside, through the relay a gRPC client takes into the namespace)")
    print(f"{'size':>8}  {'way':<13}{'n':>5}{'p50':>9}{'p90':>9}{'p50 - bare':>12}")
    for size in (1_000, 442_780):
        ways: dict[str, list[float]] = {"bare": [], **{m: [] for m in METHODS}, "netns+relay": []}
        for _ in range(rounds):
            ways["bare"] += timed(upstream, [("POST", size)] * per)
            for method in METHODS:
                ways[method] += through(replace(direct, method=method), upstream, [("POST", size)] * per)[0]
            with open_path(replace(direct, method="netns"), upstream, relay=True) as path:
                ways["netns+relay"] += timed(path.unix_path, [("POST", size)] * per)
        bare = statistics.median(ways["bare"]) * 1000
        for way, t in ways.items():
            ms = [v * 1000 for v in t]
            print(f"{size:>8}  {way:<13}{len(ms):>5}{q(ms, 50):>9.3f}{q(ms, 90):>9.3f}{q(ms, 50) - bare:>+12.3f}")
    print(f"\n   per repetition: set up + tear down a path ({setups} times each; netns: namespace, veth, "
          "addresses, tbf x2, proxy)")
    for way in (*METHODS, "netns+relay"):
        profile = NetworkProfile("r", rate_kbit=9000, method=way.split("+")[0])
        costs = []
        for _ in range(setups):
            t0 = time.perf_counter()
            path: ShapedPath = open_path(profile, upstream, relay=way.endswith("+relay"))
            path.close()
            costs.append((time.perf_counter() - t0) * 1000)
        print(f"   {way:<13}p50 {statistics.median(costs):8.1f} ms   max {max(costs):8.1f} ms   (n={setups})")


def kserve_part(n: int, rounds: int) -> None:
    from harness import zoo
    from harness.devices.endpoint import EndpointDevice
    from harness.runners.endpoint import model_io
    from harness.serving import launch
    from harness.testing.postgres import _free_port

    inputs, outputs = model_io(str(zoo.fetch("face_landmark")))
    server = launch.start("face_landmark", _free_port(), python=os.environ.get(launch.ENV_PYTHON) or None,
                          grpc_port=_free_port())
    try:
        devices = {"rest": EndpointDevice(server.device_id), "grpc": EndpointDevice(server.grpc_device_id)}
        per = max(1, n // rounds)
        ways: dict[tuple[str, str], list[float]] = {(p, m): [] for p in devices for m in METHODS}
        texts = {}
        for _ in range(rounds):
            for (protocol, method), ms in ways.items():
                params = {"inputs": inputs, "outputs": outputs, "warmup": 1, "runs": per,
                          "network": replace(PROFILES["direct"], method=method), "policy": ClientPolicy(), "seed": 1}
                run = devices[protocol].run_app(model=None, params=params, run_tag="bench",  # type: ignore[arg-type]
                                                timeout_s=600)
                assert run.status == "ok", run.reason
                ms += [r["e2e_us"] / 1000 for r in run.result["rows"] if r["measured"]]
                texts[protocol, method] = run.result["network_method"]
        print(f"\n4. KServe face_landmark (442 KB request), EndpointDevice.run_app, profile direct, {per} requests x "
              f"{rounds} interleaved rounds per protocol and method (ms; gRPC under netns goes through the relay)")
        for (protocol, method), ms in ways.items():
            relay = " [relay]" if "relay" in texts[protocol, method] else ""
            print(f"   {protocol:<5}{method:<11}n={len(ms):<4} p50 {q(ms, 50):8.2f}  p90 {q(ms, 90):8.2f}{relay}")
        extra = {p: q(ways[p, "netns"], 50) - q(ways[p, "tcp-proxy"], 50) for p in devices}
        for protocol, d in extra.items():
            print(f"   {protocol}: netns - tcp-proxy p50: {d:+.2f} ms")
    finally:
        server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate-profiles", default="3g,edge")
    ap.add_argument("--rate-requests", type=int, default=4)
    ap.add_argument("--delay-profiles", default="wifi,4g,3g")
    ap.add_argument("--delay-requests", type=int, default=20)
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--setups", type=int, default=10)
    ap.add_argument("--kserve", type=int, default=0, help="requests per method on the KServe server (0: skip)")
    args = ap.parse_args()
    problem = netns.problem()
    if problem:
        print(f"skipped: {problem}")
        return 0
    print(f"netem here: {netns.netem_problem() or 'yes'}; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs\n")
    with echo_server() as upstream:
        if args.rate_requests:
            rate_part(upstream, [p for p in args.rate_profiles.split(",") if p], args.rate_requests)
        if args.delay_requests:
            delay_part(upstream, [p for p in args.delay_profiles.split(",") if p], args.delay_requests)
        if args.requests:
            overhead_part(upstream, args.requests, args.rounds, args.setups)
        if args.kserve:
            kserve_part(args.kserve, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
