"""Endpoint devices against a real LiteRT model server on KServe (loopback), side by side with the host.

The server is started by the test (``harness.serving.launch``: KServe's Python model server in its own venv,
v2 REST and, with ``grpc_port``, v2 gRPC); without that venv the module is skipped with the reason
(``make install`` builds it; CI has it).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import statistics
import textwrap
from pathlib import Path

import psutil
import pytest

from harness import api, hybrid
from harness.devices.endpoint import netns
from harness.devices.endpoint.network import PROFILES
from harness.gate import Budget, check_budgets

pytestmark = pytest.mark.slow
pytest_plugins = ["tests.model_server"]
METHOD_HERE = "tcp-proxy" if netns.problem() else "netns"


@pytest.fixture(scope="module")
def server(kserve_server):
    return kserve_server


def _suite(tmp_path, network: str, runs: int = 8, reps: int = 2, budget: str = "") -> str:
    path = tmp_path / "hybrid.toml"
    path.write_text(textwrap.dedent(f"""
        [suite]
        name = "hybrid"
        delegates = ["cpu"]
        warmup_runs = 2
        measured_runs = {runs}
        repetitions = {reps}
        timeout_s = 300
        [suite.network]
        {network}
        [[models]]
        zoo = "face_landmark"
        {budget}
    """))
    return str(path)


def _floor_ms(profile, request_bytes: int, response_bytes: int) -> float:
    """The least time the profile lets a request take on the wire: delay each way less jitter, plus the bytes at
    each direction's rate."""
    up = profile.up_rate_kbit or profile.rate_kbit
    wire = (request_bytes * 8 / up if up else 0.0) + (response_bytes * 8 / profile.rate_kbit if profile.rate_kbit
                                                       else 0.0)
    return 2 * (profile.delay_ms - profile.jitter_ms) + wire


def _listening(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket the process listens on, read from /proc/net/tcp and tcp6 (the kernel's
    table: what psutil reads too) for the socket inodes among /proc/PID/fd."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: TCP_LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            # each 32-bit word of the address is in host (little-endian) order
            raw = b"".join(bytes.fromhex(hex_ip[i:i + 8])[::-1] for i in range(0, len(hex_ip), 8))
            out.append((str(ipaddress.ip_address(raw)), int(hex_port, 16)))
    return out


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback  # gRPC binds 127.0.0.1 as ::ffff:127.0.0.1


def test_server_listens_on_loopback_only(server):
    """REST and gRPC both listen, on loopback only (KServe alone would bind 0.0.0.0 and [::])."""
    listening = _listening(server.process.pid)
    assert {port for _, port in listening} == {server.port, server.grpc_port}, listening
    assert all(_is_loopback(ip) for ip, _ in listening), listening
    same = [c for c in psutil.Process(server.process.pid).net_connections(kind="inet") if c.status == "LISTEN"]
    assert {(ipaddress.ip_address(c.laddr.ip), c.laddr.port) for c in same} == {
        (ipaddress.ip_address(ip), port) for ip, port in listening}
    # and from outside loopback nothing answers: this host's other addresses are refused on both ports
    others = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
              if a.family == socket.AF_INET and not ipaddress.ip_address(a.address).is_loopback]
    for address in others:
        for port in (server.port, server.grpc_port):
            with pytest.raises(OSError), socket.create_connection((address, port), timeout=2):
                pass


def test_hybrid_run_wifi_and_4g(server, tmp_path):
    """The issue's done-when: latency rises with the profile's delay, drift ~0, the decision table in the report."""
    out = tmp_path / "out"
    summary = api.run(_suite(tmp_path, 'profiles = ["wifi", "4g"]', budget="[models.budget]\np90_ms = 400"),
                      devices=["host", server.device_id], out_dir=out)
    by = {(r.device.id, r.endpoint.network if r.endpoint else r.case.delegate): r for r in summary.results}
    assert {r.status for r in summary.results} == {"ok"}, [(r.case.case_id, r.reason) for r in summary.results]
    wifi, g4 = by[(server.device_id, "wifi")], by[(server.device_id, "4g")]
    p50 = {}
    for res in (wifi, g4):
        e = res.endpoint
        profile = PROFILES[e.network]
        assert len(e.server_compute_us) == 8 * 2 and all(v is not None and v > 0 for v in e.server_compute_us)
        assert min(e.request_bytes) > 192 * 192 * 3 * 4  # the float32 input tensor, plus HTTP and v2 framing
        floor = _floor_ms(profile, min(e.request_bytes), min(e.response_bytes))
        assert min(e.network_us) / 1000 >= floor - 1, (e.network, min(e.network_us), floor)
        samples = [v / 1000 for rep in res.latency.repetitions for v in rep.samples_us]
        p50[e.network] = statistics.median(samples)
        # auto: the namespace method where this process may make one (root here), else the loopback proxy
        assert e.network_method.startswith(METHOD_HERE), e.network_method
        assert e.counts["retries"] == 0 and e.counts["failed"] == 0
        assert res.energy is not None and res.energy.per_inference_mj is None and "not measured" in res.energy.reason
    # 4g's floor is 319 ms above wifi's (150 ms more delay each way less jitter, 442 KB at 9 instead of 15 Mbit/s).
    # The gap must show in the medians; it is not asserted whole: devices run in parallel, so the endpoint's
    # cases share this machine's CPU with the host's (the server's compute and the client's serialisation grow).
    expected_gap = _floor_ms(PROFILES["4g"], 442_780, 26_532) - _floor_ms(PROFILES["wifi"], 442_780, 26_532)
    assert p50["4g"] - p50["wifi"] >= expected_gap * 0.5, (p50, expected_gap)
    # the first request after the server started was this run's first endpoint request: reported apart
    colds = [r.endpoint.cold_request_us for r in (wifi, g4) if r.endpoint.cold_request_us is not None]
    assert len(colds) == 1 and colds[0] > 0
    drifts = hybrid.endpoint_drift(summary.results)
    assert len(drifts) == 2 and all(d.value("max_abs") == 0.0 for _, _, d in drifts)
    [decision] = hybrid.decisions(summary.results)
    assert {row["network"] for row in decision.rows} == {"wifi", "4g"}
    page = (out / "hybrid.html").read_text()
    assert 'id="decision-face_landmark"' in page and "Crossover" in page and "not measured for endpoints" in page
    # budgets work on endpoint cases: a p90 budget of 1 ms is breached by both profiles, 100 s by none
    assert {b.device for b in check_budgets([wifi, g4], {"face_landmark": Budget(p90_ms=1)})} == {server.device_id}
    assert not check_budgets([wifi, g4], {"face_landmark": Budget(p90_ms=100_000)})


def test_resets_retries_cache_and_netem(server, tmp_path):
    network = textwrap.dedent("""
        profiles = ["flaky", "packets"]
        retries = 8
        backoff_ms = 5
        cache = false
        [suite.network.profile.flaky]
        delay_ms = 2
        reset_pct = 30
        stall_pct = 50
        stall_ms = 50
        [suite.network.profile.packets]
        delay_ms = 2
        method = "netem"
    """)
    # chances sized so the test cannot fail by luck: a stall is drawn per chunk the server sends (>= 12 here, one
    # per answer: P(no stall) <= 0.5**12 = 0.02%), and a request fails only when 9 attempts in a row are reset
    # (0.3**9 = 2e-5 per request)
    summary = api.run(_suite(tmp_path, network, runs=10, reps=1), devices=[server.device_id],
                      out_dir=tmp_path / "out", report=False)
    flaky, packets = sorted(summary.results, key=lambda r: r.case.case_id)
    assert flaky.status == "ok", flaky.reason
    counts = flaky.endpoint.counts
    assert counts["resets"] >= 1 and counts["retries"] == counts["errors"] + counts["timeouts"] >= counts["resets"]
    assert counts["stalls"] >= 1 and counts["failed"] == 0
    assert packets.status == "skipped" and "netem" in packets.reason


def test_cache_and_tfserving_protocol(server, tmp_path):
    tf_id = f"tfserving+http://{server.host}:{server.port}/{server.name}"
    summary = api.run(_suite(tmp_path, 'profiles = ["direct"]\ncache = true', runs=5, reps=2),
                      devices=["host", server.device_id, tf_id], out_dir=tmp_path / "out", report=False)
    assert {r.status for r in summary.results} == {"ok"}, [(r.case.case_id, r.reason) for r in summary.results]
    v2 = next(r for r in summary.results if r.device.id == server.device_id)
    assert v2.endpoint.counts["cache_hits"] == 2 * (2 + 5 - 1)  # every request after each repetition's first
    drifts = {res.device.id: d for _, res, d in hybrid.endpoint_drift(summary.results)}
    assert drifts[tf_id].value("max_abs") == 0.0 and "TF Serving" in next(
        r for r in summary.results if r.device.id == tf_id).endpoint.protocol


def test_grpc_and_http_of_one_server_agree(server, tmp_path):
    """kserve+grpc:// runs the same suite as kserve+http:// against the same server: ok, the same outputs, no drift
    against the host, the server's compute time (int64 ns over gRPC), message and wire bytes, one long-lived
    HTTP/2 connection per repetition through the shaping proxy (direct and wifi)."""
    summary = api.run(_suite(tmp_path, 'profiles = ["direct", "wifi"]', runs=6, reps=2),
                      devices=["host", server.device_id, server.grpc_device_id], out_dir=tmp_path / "out", report=False)
    assert {r.status for r in summary.results} == {"ok"}, [(r.case.case_id, r.reason) for r in summary.results]
    by = {(r.device.id, r.endpoint.network): r for r in summary.results if r.endpoint}
    for network in ("direct", "wifi"):
        http, grpc = by[(server.device_id, network)], by[(server.grpc_device_id, network)]
        assert http.outputs == grpc.outputs  # the same fingerprints over both protocols
        e = grpc.endpoint
        assert "gRPC" in e.protocol and e.url == server.grpc_device_id
        # under netns gRPC enters the namespace through the relay (its C core connects from threads of its own)
        assert e.network_method.startswith(METHOD_HERE) and ("relay" in e.network_method) == (METHOD_HERE == "netns")
        assert "relay" not in http.endpoint.network_method
        assert len(e.server_compute_us) == 12 and all(v is not None and v > 0 for v in e.server_compute_us)
        assert all(v is not None and v >= 0 for v in e.network_us)
        # the serialized ModelInferRequest holds the float32 input tensor; on the wire it is framed (HTTP/2
        # DATA and HEADERS frames, the 5-byte gRPC message prefix), so the wire count is a little larger
        assert min(e.request_message_bytes) > 192 * 192 * 3 * 4 and min(e.response_message_bytes) > 1405 * 4
        assert all(0 < w - m < 4096 for w, m in zip(e.request_bytes, e.request_message_bytes))
        assert all(0 < w - m < 4096 for w, m in zip(e.response_bytes, e.response_message_bytes))
        assert not http.endpoint.request_message_bytes  # REST has no messages: the series stays empty
        # tritonclient asks for each output in binary (the v2 binary extension, per output): the REST answer is the
        # raw float32 tensors (1404 + 1 floats) plus a small JSON header, not 26 KB of JSON numbers
        assert max(http.endpoint.response_bytes) < 1405 * 4 + 2048, http.endpoint.response_bytes
        assert e.counts["connections"] == 2 and e.counts["attempts"] == 2 * (2 + 6) and e.counts["failed"] == 0
        if network == "wifi":
            floor = _floor_ms(PROFILES["wifi"], min(e.request_bytes), min(e.response_bytes))
            assert min(e.network_us) / 1000 >= floor - 1, (min(e.network_us), floor)
    drifts = {res.device.id: d for _, res, d in hybrid.endpoint_drift(summary.results)}
    assert drifts[server.grpc_device_id].value("max_abs") == 0.0


def test_grpc_retries_resets_and_counts_deadlines(server, tmp_path):
    """The http client's policy holds over gRPC: a reset connection is retried on a new connection (one reset draw
    per request, not per HTTP/2 control frame); a passed deadline (the per-attempt timeout) is retried, and a case
    whose every request times out fails with why."""
    flaky = textwrap.dedent("""
        profiles = ["flaky"]
        retries = 8
        backoff_ms = 5
        [suite.network.profile.flaky]
        delay_ms = 2
        reset_pct = 30
    """)
    [res] = api.run(_suite(tmp_path, flaky, runs=8, reps=1), devices=[server.grpc_device_id],
                    out_dir=tmp_path / "out", report=False).results
    assert res.status == "ok", res.reason
    counts = res.endpoint.counts
    assert 1 <= counts["resets"] <= counts["retries"] and counts["failed"] == 0, counts
    assert counts["connections"] == counts["resets"] + 1, counts
    stuck = textwrap.dedent("""
        profiles = ["stuck"]
        retries = 1
        timeout_s = 1
        [suite.network.profile.stuck]
        stall_pct = 100
        stall_ms = 3000
    """)
    [res] = api.run(_suite(tmp_path, stuck, runs=1, reps=1), devices=[server.grpc_device_id],
                    out_dir=tmp_path / "out2", report=False).results
    assert res.status == "failed" and "DEADLINE_EXCEEDED" in res.reason, res.reason
