"""An inference endpoint as a device: it runs the benchmark contract over the network.

Like an :class:`~harness.devices.base.AppHost` it is handed a model and a repetition's parameters and
gives back one result document; instead of launching an app it sends the seeded inputs (the runner's, the same
as on-device runs) as requests, through the network profile's method, under the client's policy. One
repetition = one fresh client connection: warm-up requests (the first reported apart), then measured ones.

Per measured request: end-to-end latency (``time.perf_counter_ns`` around the client call, retries and
backoff included), the server's compute time where it reports it, request and response bytes as they crossed
the shaping proxy (HTTP headers included), cache hits. Energy is not measured: the device has no energy probe.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.devices.base import AppHost, AppObserver, AppRunOutcome, Capabilities
from harness.devices.endpoint.client import CLIENTS, PROTOCOLS, PolicyClient, RequestFailed
from harness.devices.endpoint.network import ClientPolicy, NetworkProfile
from harness.devices.endpoint.proxy import ShapingProxy
from harness.devices.endpoint.shaping import open_path
from harness.devices.settings import DeviceSettings
from harness.errors import DeviceNotFound, NetworkMethodError
from harness.results import DeviceInfo

SCHEMES = tuple(PROTOCOLS)
ID_HINT = ("write an endpoint as kserve+http://HOST:PORT/MODEL, kserve+grpc://HOST:PORT/MODEL or "
           "tfserving+http://HOST:PORT/MODEL")
ENERGY_NOTE = "not measured for endpoints: the energy is the server's and the radio's, which no probe here reads"


@dataclass(frozen=True)
class EndpointAddress:
    scheme: str
    host: str
    port: int
    model: str


def parse_endpoint_id(device_id: str) -> EndpointAddress:
    """``SCHEME://HOST:PORT/MODEL`` -> its parts; ValueError naming what is wrong."""
    scheme, sep, _ = device_id.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ValueError(f"{device_id!r} is not an endpoint id ({', '.join(s + '://' for s in SCHEMES)})")
    parts = urlsplit(device_id)
    model = parts.path.strip("/")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or not port:  # None (absent or out of range) or 0
        raise ValueError(f"{device_id!r}: HOST:PORT is missing or the port is not a number in 1..65535")
    if not model or "/" in model or not all(c.isalnum() or c in "._-" for c in model):
        raise ValueError(f"{device_id!r}: the model name after HOST:PORT/ must be one name ([A-Za-z0-9._-])")
    if parts.query or parts.fragment or parts.username:
        raise ValueError(f"{device_id!r}: no user, query or fragment in an endpoint id")
    return EndpointAddress(scheme, parts.hostname, port, model)


class EndpointDevice(AppHost):
    """A model server's endpoint; the network profile and client policy come with each repetition's parameters."""

    platform = "endpoint"

    def __init__(self, device_id: str) -> None:
        super().__init__(device_id)
        self.address = parse_endpoint_id(device_id)

    def capabilities(self) -> Capabilities:
        return Capabilities(app_host=True, endpoint=True)

    def info(self) -> DeviceInfo:
        a = self.address
        return DeviceInfo(id=self.id, platform="endpoint", model=a.model, soc="", os="", abi="",
                          profile="endpoint", device_class="server",
                          extra={"protocol": PROTOCOLS[a.scheme], "server": f"{a.host}:{a.port}"})

    def push(self, local: Path, remote: str) -> bool:
        return False  # the server holds its own model; outputs compared with the host's show a different one

    def pull(self, remote: str, local: Path) -> Path:
        raise DeviceNotFound(f"{self.id}: an endpoint has no files to pull", device=self.id)

    def workdir(self) -> str:
        return ""

    def install_app(self, app: Path) -> bool:
        return False

    def run_app(self, model: Path, params: Mapping[str, Any], run_tag: str, timeout_s: float,
                app: Path | None = None, observers: Sequence[AppObserver] = ()) -> AppRunOutcome:
        """One repetition: a fresh client through the profile's method; the result document for the runner."""
        started = time.monotonic()
        profile: NetworkProfile = params["network"]
        a = self.address
        kind = CLIENTS[a.scheme]
        try:
            path = open_path(profile, (a.host, a.port), seed=int(params.get("seed", 0)), relay=kind.own_threads)
        except NetworkMethodError as exc:
            return AppRunOutcome(run_tag, "skipped", str(exc), None, None, 0.0)
        with path:
            host, port = path.address
            policy: ClientPolicy = params["policy"]

            def session() -> dict:  # where the client lives: the namespace's thread for the netns method
                client = PolicyClient(kind(host, port, a.model, policy.timeout_s, path.unix_path), policy)
                try:
                    return _requests(client, path.proxy, params, started + timeout_s)
                finally:
                    client.close()

            doc = path.run(session)
        doc.update(proxy=vars(path.proxy.snapshot()), scheme=a.scheme, url=self.id, network_method=path.method)
        status = doc.pop("status")
        return AppRunOutcome(run_tag, status, doc.get("reason"), doc, None, time.monotonic() - started)


def _requests(client: PolicyClient, proxy: ShapingProxy, params: Mapping[str, Any], deadline: float) -> dict:
    inputs, outputs = params["inputs"], list(params["outputs"])
    warmup, runs = int(params["warmup"]), int(params["runs"])
    clock = time.perf_counter_ns
    rows: list[dict[str, Any]] = []
    last_reply = None
    for i in range(max(1, warmup) + runs):
        if time.monotonic() > deadline:
            return {"status": "timeout", "reason": f"the repetition ran past its timeout after {i} request(s)",
                    "rows": rows, "counts": vars(client.counts)}
        before = proxy.snapshot()
        t0 = clock()
        try:
            reply, hit = client.infer(inputs, outputs)
        except RequestFailed as exc:
            rows.append({"measured": i >= max(1, warmup), "failed": str(exc), "e2e_us": (clock() - t0) / 1000.0})
            continue
        e2e = (clock() - t0) / 1000.0
        after = proxy.snapshot()
        last_reply = reply
        rows.append({"measured": i >= max(1, warmup), "e2e_us": e2e, "server_us": None if hit else reply.server_us,
                     "server_index": None if hit else reply.server_index, "cache_hit": hit,
                     "request_bytes": after.bytes_up - before.bytes_up,
                     "response_bytes": after.bytes_down - before.bytes_down,
                     "request_message_bytes": None if hit else reply.request_message_bytes,
                     "response_message_bytes": None if hit else reply.response_message_bytes})
    counts = vars(client.counts)
    if last_reply is None:
        reasons = counts.get("reasons") or ["no request answered"]
        return {"status": "failed", "reason": f"every request failed: {reasons[-1]}", "rows": rows,
                "counts": counts}
    return {"status": "ok", "reason": None, "rows": rows, "counts": counts, "outputs": last_reply.outputs}


def open_endpoint_device(device_id: str, settings: DeviceSettings | None = None) -> EndpointDevice:
    """Opener for :mod:`harness.devices.discovery` (nothing is contacted until a case runs)."""
    try:
        return EndpointDevice(device_id)
    except ValueError as exc:
        raise DeviceNotFound(str(exc), device=device_id, hint=ID_HINT) from None


def list_endpoint_devices(settings: DeviceSettings) -> list[str]:
    """Endpoints are not discovered: they are named with ``--device`` or in an inventory."""
    return []
