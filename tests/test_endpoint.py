"""Endpoint devices without a model server: ids, suites, the plan, the shaping proxy, the record."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from harness import plan
from harness.devices import discovery
from harness.devices.endpoint import EndpointDevice, netns, parse_endpoint_id
from harness.devices.endpoint.network import PROFILES, NetworkProfile
from harness.devices.endpoint.proxy import H2_PREFACE, RequestStarts, ShapingProxy
from harness.errors import DeviceNotFound, SuiteError
from harness.results import Endpoint, Result
from harness.suite import parse_suite
from tests.loopback import HostileGrpc, face_landmark_outputs, serve_each

EP = "kserve+http://127.0.0.1:8500/face_landmark"


def test_endpoint_ids_parse_and_open():
    a = parse_endpoint_id(EP)
    assert (a.scheme, a.host, a.port, a.model) == ("kserve+http", "127.0.0.1", 8500, "face_landmark")
    assert parse_endpoint_id("tfserving+http://[::1]:9000/m1").host == "::1"
    g = parse_endpoint_id("kserve+grpc://127.0.0.1:8501/face_landmark")
    assert (g.scheme, g.port, g.model) == ("kserve+grpc", 8501, "face_landmark")
    assert "gRPC" in discovery.open_device("kserve+grpc://127.0.0.1:8501/face_landmark").info().extra["protocol"]
    device = discovery.open_device(EP)
    assert isinstance(device, EndpointDevice)
    caps = device.capabilities()
    assert caps.endpoint and caps.app_host and not caps.shell and not caps.probes
    assert device.info().platform == "endpoint" and device.info().profile == "endpoint"


@pytest.mark.parametrize("bad", ["kserve+http://127.0.0.1/face", "kserve+http://127.0.0.1:99999/m",
                                 "kserve+http://127.0.0.1:80/", "kserve+http://127.0.0.1:80/a/b",
                                 "kserve+http://u@h:80/m", "kserve+ftp://h:80/m", "kserve+http://h:80/m?x=1",
                                 "kserve+grpc://127.0.0.1/m", "kserve+grpc://h:0/m", "kserve+grpc://h:80/a/b",
                                 "kserve+grpc://h:80/m#f", "grpc://h:80/m", "kserve+grpcs://h:80/m"])
def test_bad_endpoint_ids_are_refused_with_the_form(bad):
    assert discovery.id_problem(bad)
    with pytest.raises(DeviceNotFound):
        discovery.open_device(bad)


SUITE = """
[suite]
name = "s"
delegates = ["cpu", "xnnpack"]
[suite.network]
profiles = ["wifi", "slow"]
retries = 3
cache = true
[suite.network.profile.slow]
delay_ms = 200
jitter_ms = 10
rate_kbit = 1000
loss_pct = 1
[[models]]
zoo = "face_landmark"
"""


def test_network_table_gives_endpoint_cases_only_to_endpoints():
    suite = parse_suite(SUITE, "s.toml")
    net = suite.models[0].network
    assert net.profiles == ("wifi", "slow") and net.client.retries == 3 and net.client.cache
    assert net.profile("slow").delay_ms == 200 and net.profile("wifi") == PROFILES["wifi"]
    entries = plan.expand(suite.cases() + suite.endpoint_cases(), ["host", EP])
    host = [e.case_id for e in entries if e.device_id == "host"]
    remote = [e.case for e in entries if e.device_id == EP]
    assert len(host) == 2 and all("-wifi" not in c for c in host)
    assert [c.network for c in remote] == ["wifi", "slow"]
    assert remote[0].case_id("ep").endswith("-cpu-t1-wifi]")


def test_without_profiles_an_endpoint_runs_direct():
    suite = parse_suite('[suite]\nname="s"\n[[models]]\nzoo = "face_landmark"\n', "s.toml")
    assert [e.case.network for e in plan.expand(suite.cases() + suite.endpoint_cases(), [EP])] == ["direct"]


@pytest.mark.parametrize("bad,key", [
    ('profiles = ["5g"]', "profiles"),
    ("retries = -1", "retries"),
    ('cache = "yes"', "cache"),
    ("bogus = 1", "bogus"),
    ("[suite.network.profile.x]\ndelay_ms = -5", "delay_ms"),
    ("[suite.network.profile.x]\nloss_pct = 150", "loss_pct"),
    ('[suite.network.profile.x]\nmethod = "wire"', "method"),
])
def test_bad_network_tables_fail_with_file_line_and_key(bad, key):
    text = f'[suite]\nname = "s"\n[suite.network]\n{bad}\n[[models]]\nzoo = "face_landmark"\n'
    with pytest.raises(SuiteError) as err:
        parse_suite(text, "s.toml")
    assert key in str(err.value) and "s.toml:" in str(err.value)


def test_netem_is_refused_with_a_reason_here():
    # This kernel has no sch_netem (and an unprivileged run may not make a namespace): the reason is said
    if netns.problem() is None and netns.netem_problem() is None:
        pytest.skip("this kernel has sch_netem and this process may use it")
    assert netns.netem_problem()


class _Echo:
    """A loopback server answering each request (one line) with ``reply_bytes`` bytes."""

    def __init__(self, reply_bytes: int) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.reply = b"x" * (reply_bytes - 1) + b"\n"
        serve_each(self.sock, self._one)

    def _one(self, conn: socket.socket) -> None:
        try:
            with conn, conn.makefile("rb") as f:
                for _ in f:
                    conn.sendall(self.reply)
        except OSError:  # the proxy reset the connection (the reset test)
            pass


def _round_trips(address, n: int, request: bytes = b"ping\n", reply: int = 10) -> list[float]:
    out = []
    with socket.create_connection(address, timeout=10) as s, s.makefile("rb") as f:
        for _ in range(n):
            t0 = time.perf_counter()
            s.sendall(request)
            got = f.readline()
            assert len(got) == reply
            out.append((time.perf_counter() - t0) * 1000)
    return out


def test_proxy_adds_delay_each_way_and_counts_bytes():
    echo = _Echo(10)
    profile = NetworkProfile("t", delay_ms=30, jitter_ms=5)
    with ShapingProxy(("127.0.0.1", echo.port), profile) as proxy:
        times = _round_trips(proxy.address, 5)
        counters = proxy.snapshot()
    assert min(times) >= 2 * (30 - 5) - 1  # the floor the profile allows (timer slack: 1 ms)
    assert counters.bytes_up == 5 * 5 and counters.bytes_down == 5 * 10 and counters.connections == 1


def test_proxy_paces_at_the_rate():
    echo = _Echo(100_000)
    with ShapingProxy(("127.0.0.1", echo.port), NetworkProfile("t", rate_kbit=4000)) as proxy:
        times = _round_trips(proxy.address, 2, reply=100_000)
    assert min(times) >= 100_000 * 8 / 4_000_000 * 1000 * 0.95  # 200 ms for 100 kB at 4 Mbit/s


def test_proxy_resets_and_stalls_as_drawn():
    echo = _Echo(10)
    with ShapingProxy(("127.0.0.1", echo.port), NetworkProfile("t", reset_pct=100)) as proxy:
        with pytest.raises(OSError):
            _round_trips(proxy.address, 1)
        assert proxy.snapshot().resets == 1
    with ShapingProxy(("127.0.0.1", echo.port), NetworkProfile("t", stall_pct=100, stall_ms=80)) as proxy:
        times = _round_trips(proxy.address, 2)
        assert proxy.snapshot().stalls == 2 and min(times) >= 79


def test_loss_is_modelled_as_retransmission_delay():
    p = NetworkProfile("t", delay_ms=85, loss_pct=2)
    assert p.retransmit_delay_ms() == 200  # max(TCP_RTO_MIN, RTT 170 ms)
    assert p.loss_chance(1448) == pytest.approx(0.02) and p.loss_chance(100 * 1448) == pytest.approx(1 - 0.98 ** 100)
    assert "retransmission" in p.describe()


def _frame(kind: int, payload: bytes, stream: int = 0) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, 0]) + stream.to_bytes(4, "big") + payload


def test_request_starts_over_http1_and_http2():
    """HTTP/1.x: a request starts at the client's first chunk after the server spoke. HTTP/2: at each HEADERS
    frame, wherever the chunk boundaries fall; SETTINGS, WINDOW_UPDATE, PING and DATA start nothing."""
    h1 = RequestStarts()
    assert [h1.chunk(b"POST / HTTP/1.1\r\n"), h1.chunk(b"body")] == [True, False]
    h1.server_spoke()
    assert h1.chunk(b"POST / HTTP/1.1\r\n") is True
    stream = (H2_PREFACE + _frame(0x4, b"\0" * 12) + _frame(0x1, b"h" * 40, 1) + _frame(0x0, b"d" * 70000, 1)
              + _frame(0x8, b"\0\0\1\0") + _frame(0x6, b"p" * 8) + _frame(0x1, b"h" * 30, 3) + _frame(0x0, b"d", 3))
    for size in (1, 5, 9, 24, 4096, len(stream)):
        starts = RequestStarts()
        chunks = [stream[i:i + size] for i in range(0, len(stream), size)]
        flags = [starts.chunk(c) for c in chunks]
        starts.server_spoke()  # the server's frames between requests change nothing over HTTP/2
        expected = 1 if size == len(stream) else 2
        assert sum(flags) == expected, (size, sum(flags))


def test_grpc_resets_are_drawn_once_per_request_through_the_proxy(tmp_path):
    """Over one long-lived HTTP/2 connection a reset is drawn per request (HEADERS frame), not per control frame:
    resets never outnumber the attempts, and every request still gets through on retries."""
    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nname = "s"\nwarmup_runs = 2\nmeasured_runs = 20\nrepetitions = 1\n'
                     '[suite.network]\nprofiles = ["flaky"]\nretries = 10\nbackoff_ms = 1\ntimeout_s = 5\n'
                     '[suite.network.profile.flaky]\nreset_pct = 40\n[[models]]\nzoo = "face_landmark"\n')
    result = _run_against(face_landmark_outputs, suite, tmp_path / "o")  # a well-formed answer
    assert result.status == "ok", result.reason
    c = result.endpoint.counts
    assert 1 <= c["resets"] <= c["attempts"] - 22 and c["failed"] == 0, c
    assert c["connections"] == c["resets"] + 1, c  # each reset cost one new connection, nothing else did


def _resetting_server() -> socket.socket:
    """A loopback server that reads a little of each connection, then resets it (RST: SO_LINGER 0)."""
    import struct

    listener = socket.create_server(("127.0.0.1", 0))

    def handle(conn: socket.socket) -> None:
        conn.recv(100)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    serve_each(listener, handle)
    return listener


@pytest.mark.parametrize("unix", [False, True])
def test_a_reset_on_one_side_reaches_the_other_at_once(tmp_path, unix):
    """A server's reset is passed on to the client without waiting for the client's next write (else a gRPC RPC
    through the relay hung until its deadline); on a Unix socket, which has no RST, as the end of the stream."""
    listener = _resetting_server()
    listen = f"unix:{tmp_path / 's'}" if unix else "127.0.0.1"
    try:
        with ShapingProxy(listener.getsockname(), PROFILES["direct"], listen=listen) as proxy:
            client = socket.socket(socket.AF_UNIX if unix else socket.AF_INET, socket.SOCK_STREAM)
            client.settimeout(10)  # the proxy used to hold the other side up to 30 s
            client.connect(str(tmp_path / "s") if unix else proxy.address)
            client.sendall(b"hello")
            try:
                got = client.recv(10)
            except ConnectionResetError:
                got = None
            client.close()
    finally:
        listener.close()
    assert got in ((b"",) if unix else (None,)), got


def test_grpc_dials_a_unix_socket_the_proxy_listens_on(tmp_path):
    """The pieces of the netns relay without a namespace: a gRPC client given ``unix_path`` dials ``unix:PATH``
    and a proxy listening there carries its requests (the relay's thread entering the namespace is tested in
    test_endpoint_netns.py)."""
    import numpy as np

    from harness.devices.endpoint.client import CLIENTS, KServeV2GrpcClient

    assert KServeV2GrpcClient.own_threads and not any(c.own_threads for k, c in CLIENTS.items() if "grpc" not in k)
    server = HostileGrpc(face_landmark_outputs)
    sock = tmp_path / "g"
    try:
        with ShapingProxy(("127.0.0.1", server.port), PROFILES["direct"], listen=f"unix:{sock}") as proxy:
            assert proxy.address == (f"unix:{sock}", 0)
            client = KServeV2GrpcClient("unused.invalid", 1, "face_landmark", 10.0, str(sock))
            client.connect()
            reply = client.infer({"input_1": np.zeros((1, 8), np.float32)}, ["conv2d_20"])
            client.close()
            counted = proxy.snapshot()
    finally:
        server.close()
    assert reply.outputs["conv2d_20"].shape == (1, 1, 1, 1404)
    assert counted.connections == 1 and counted.bytes_down >= reply.response_message_bytes


def test_result_with_an_endpoint_record_round_trips():
    from harness.results import CaseInfo, DeviceInfo

    e = Endpoint("v2", EP, "4g", "tcp-proxy", {"delay_ms": 85.0}, {"retries": 2}, {"retries": 1},
                 (1000.0, None), (5000.0, None), (442780,), (26532,), 9000.0, "cold", "not measured")
    r = Result("run", CaseInfo("c", "m", "", "cpu", 1, "endpoint"), DeviceInfo(EP, "endpoint"), "ok", endpoint=e)
    assert Result.from_dict(r.to_dict()).endpoint == e
    old = r.to_dict()
    del old["endpoint"]
    assert Result.from_dict(old).endpoint is None


class _Junk:
    """An HTTP server on loopback answering every request with ``body`` (status ``status``)."""

    def __init__(self, status: int, body: bytes) -> None:
        import http.server

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the stdlib's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST  # noqa: N815

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("scheme,status,body", [
    ("tfserving+http", 200, b"not json at all"),
    ("tfserving+http", 200, b'{"outputs": {"conv2d_20": "x"}, "server_compute_us": NaN}'),
    ("tfserving+http", 500, b"boom"),
    ("kserve+http", 200, b'{"outputs": [], "parameters": {"server_compute_us": 1e400}}'),
    ("kserve+http", 200, b'{"model_name": "face_landmark", "outputs": []}'),
    ("kserve+http", 200, b'{"outputs": [{"name": "conv2d_20", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}'),
    ("kserve+grpc", 200, b"an HTTP/1.1 server, not gRPC"),
])
def test_a_hostile_server_fails_its_case_alone_with_a_reason(tmp_path, scheme, status, body):
    from harness import api

    junk = _Junk(status, body)
    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nname = "s"\nwarmup_runs = 1\nmeasured_runs = 2\nrepetitions = 1\n'
                     '[suite.network]\nretries = 1\nbackoff_ms = 1\ntimeout_s = 5\n[[models]]\nzoo = "face_landmark"\n')
    try:
        summary = api.run(suite, devices=[f"{scheme}://127.0.0.1:{junk.port}/face_landmark"], out_dir=tmp_path / "o",
                          report=False)
    finally:
        junk.close()
    [result] = summary.results
    assert result.status == "failed" and result.reason and "failed" in result.reason
    assert (tmp_path / "o").is_dir() and list((tmp_path / "o").glob("s-*.jsonl"))  # stored like any result


def _grpc_suite(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nname = "s"\nwarmup_runs = 1\nmeasured_runs = 2\nrepetitions = 1\n'
                     '[suite.network]\nretries = 1\nbackoff_ms = 1\ntimeout_s = 5\n[[models]]\nzoo = "face_landmark"\n')
    return suite


def _run_against(answer, suite, out):
    """One run of ``suite`` against a real gRPC server answering with ``answer``; its one result."""
    from harness import api

    server = HostileGrpc(answer)
    try:
        summary = api.run(suite, devices=[f"kserve+grpc://127.0.0.1:{server.port}/face_landmark"], out_dir=out,
                          report=False)
    finally:
        server.close()
    [result] = summary.results
    return result


def _abort(response):
    raise RuntimeError("the server broke")


@pytest.mark.parametrize("answer,why", [
    (lambda r: None, "lacks output"),
    (lambda r: face_landmark_outputs(r, datatype="BYTES"), "not numeric"),
    (lambda r: face_landmark_outputs(r, raw=b"abc"), "buffer size"),
    (_abort, "the server broke"),
])
def test_a_hostile_grpc_server_fails_its_case_alone_with_a_reason(tmp_path, answer, why):
    result = _run_against(answer, _grpc_suite(tmp_path), tmp_path / "o")
    assert result.status == "failed" and why in result.reason, result.reason
    assert "\n" not in result.reason and list((tmp_path / "o").glob("s-*.jsonl"))


def test_grpc_compute_time_is_kept_only_when_it_can_be_true(tmp_path, monkeypatch):
    """A well-formed answer with a negative or a string compute time is ok, its compute time unknown; a message
    over the client's bound is refused."""
    from tritonclient.grpc import service_pb2

    from harness.devices.endpoint import client

    for bad in (service_pb2.InferParameter(int64_param=-5), service_pb2.InferParameter(string_param="12")):
        result = _run_against(lambda r, bad=bad: face_landmark_outputs(r, compute_ns=bad), _grpc_suite(tmp_path),
                              tmp_path / "o")
        assert result.status == "ok", result.reason
        assert result.endpoint.server_compute_us == (None, None) and len(result.endpoint.response_message_bytes) == 2
    monkeypatch.setattr(client, "MAX_RESPONSE_BYTES", 1000)  # face_landmark's answer is 5.6 KB
    result = _run_against(face_landmark_outputs, _grpc_suite(tmp_path), tmp_path / "o2")
    assert result.status == "failed" and "RESOURCE_EXHAUSTED" in result.reason, result.reason


def test_a_budget_under_a_network_profile_applies_to_that_profile_only():
    from harness.gate import Budget, check_budgets
    from harness.results import CaseInfo, DeviceInfo, Latency, Repetition

    def result(network: str, ms: float) -> Result:
        e = Endpoint("v2", EP, network, "tcp-proxy")
        rep = Repetition(samples_us=tuple([ms * 1000.0] * 10))
        return Result("run", CaseInfo(f"c-{network}", "m", "", "cpu", 1, "endpoint"),
                      DeviceInfo(EP, "endpoint", device_class="server"), "ok",
                      latency=Latency(method="e2e", repetitions=(rep,)), endpoint=e)

    budget = Budget.from_mapping({"p90_ms": 100, "4g": {"p90_ms": 900}})
    breaches = check_budgets([result("wifi", 500), result("4g", 500), result("3g", 1000)], {"m": budget})
    assert sorted((b.metric, b.limit, b.value) for b in breaches) == [("p90_ms", 100.0, 500.0),
                                                                     ("p90_ms", 100.0, 1000.0)]
