"""Protocol clients of an endpoint device, under the mobile client's policy (timeout, retries, cache).

- ``kserve+http``: KServe v2 / Open Inference Protocol REST through NVIDIA's ``tritonclient.http`` (the
  maintained client of that protocol), tensors in its binary extension (``Inference-Header-Content-Length``).
- ``kserve+grpc``: the same protocol over gRPC (``inference.GRPCInferenceService/ModelInfer``) through
  ``tritonclient.grpc``, tensors as raw contents; one HTTP/2 connection per client.
- ``tfserving+http``: TF Serving's ``/v1/models/{name}:predict`` JSON (``{"inputs": {...}}``) with the
  standard library's ``http.client``: TF Serving's own Python client (``tensorflow-serving-api``) needs
  TensorFlow and speaks gRPC only.

The server's own compute time is read where it reports it (the v2 response parameter / v1 body key
``server_compute_us``, which ``harness serve-model`` writes; over gRPC, whose KServe parameters carry no float,
the integer ``server_compute_ns``); else None. ``tritonclient`` is imported here only.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.devices.endpoint.network import ClientPolicy

PROTOCOLS = {"kserve+http": "KServe v2 REST (tritonclient.http, binary tensors)",
             "kserve+grpc": "KServe v2 gRPC (tritonclient.grpc, raw tensor contents)",
             "tfserving+http": "TF Serving v1 REST predict (JSON, http.client)"}


MAX_RESPONSE_BYTES = 256 * 1024 * 1024  # a v1 (JSON) response or a gRPC message larger than this is refused


class RequestFailed(Exception):
    """A request that failed after every retry the policy allows."""


@dataclass
class Reply:
    """One request's answer: outputs by name, the server's compute time and request index when reported, and
    the serialized request/response message sizes where the protocol has messages (gRPC)."""

    outputs: dict[str, np.ndarray]
    server_us: float | None = None
    server_index: int | None = None
    request_message_bytes: int | None = None
    response_message_bytes: int | None = None


@dataclass
class PolicyCounts:
    """How often the client's policy kicked in over a repetition."""

    attempts: int = 0
    retries: int = 0
    timeouts: int = 0
    errors: int = 0
    cache_hits: int = 0
    failed: int = 0
    reasons: list[str] = field(default_factory=list)


class ProtocolClient:
    """Sends one inference; ``connect`` again after a failure (a reset connection is gone).

    ``unix_path``: a Unix socket to dial instead of ``host:port``, given to a client that declares
    :attr:`own_threads` when the network method runs it in a namespace (the relay of :mod:`.shaping`).
    """

    #: The library connects from threads of its own, not the caller's, so running the client in a namespace's
    #: thread does not put its connections there (gRPC's C core: process-wide event-engine threads).
    own_threads = False

    def __init__(self, host: str, port: int, model: str, timeout_s: float, unix_path: str | None = None) -> None:
        self.host, self.port, self.model, self.timeout_s = host, port, model, timeout_s
        self.unix_path = unix_path

    def connect(self) -> None:
        raise NotImplementedError

    def infer(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> Reply:
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - optional
        """Drop the connection."""


class KServeV2Client(ProtocolClient):
    """KServe v2 over REST through ``tritonclient.http``; :class:`KServeV2GrpcClient` changes only the transport
    (the module, how the client is opened, how its parameters are read): one request path for both."""

    def _open(self) -> tuple[Any, Any]:
        """(the tritonclient module, its connected client)."""
        import tritonclient.http as triton

        return triton, triton.InferenceServerClient(f"{self.host}:{self.port}", connection_timeout=self.timeout_s,
                                                    network_timeout=self.timeout_s)

    binary = {"binary_data": True}  # REST: tensors in the binary extension (gRPC's are always raw bytes)

    def _send(self, inputs: list, outputs: list) -> Any:
        return self.client.infer(self.model, inputs, outputs=outputs)

    def _parameters(self, result: Any) -> Mapping[str, Any]:
        return (result.get_response() or {}).get("parameters") or {}

    def _message_bytes(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str],
                       result: Any) -> tuple[int | None, int | None]:
        """(request, response) message sizes where the protocol has messages (gRPC); REST: None."""
        return None, None

    def connect(self) -> None:
        self._triton, self.client = self._open()

    def infer(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> Reply:
        t = self._triton
        sent = []
        for name, arr in inputs.items():
            i = t.InferInput(name, list(arr.shape), _v2_type(arr.dtype))
            i.set_data_from_numpy(arr, **self.binary)
            sent.append(i)
        wanted = [t.InferRequestedOutput(n, **self.binary) for n in outputs]
        result = self._send(sent, wanted)
        params = self._parameters(result)
        got = {n: result.as_numpy(n) for n in outputs}
        missing = [n for n, a in got.items() if a is None]
        if missing:
            raise RuntimeError(f"the v2 response lacks output(s) {missing}")
        server_us = _number(params.get("server_compute_us"))
        if server_us is None and (ns := _int(params.get("server_compute_ns"))) is not None:
            server_us = ns / 1000.0
        return Reply(_numeric(got), server_us, _int(params.get("server_request_index")),
                     *self._message_bytes(inputs, outputs, result))

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()


class KServeV2GrpcClient(KServeV2Client):
    """KServe v2 over gRPC through ``tritonclient.grpc`` (``ModelInfer``, tensors as ``raw_input_contents``).

    The per-attempt timeout is the RPC's deadline (``client_timeout``); a response message over
    :data:`MAX_RESPONSE_BYTES` is refused. gRPC's own retries are only its transparent ones (an RPC that never
    left the client; no retry policy is configured): every retry counted is the policy's.
    """

    binary: dict[str, Any] = {}
    own_threads = True

    def _open(self) -> tuple[Any, Any]:
        import tritonclient.grpc as triton

        # tritonclient hands the url to grpc.insecure_channel as the target: ``unix:/path`` is gRPC's Unix socket
        target = f"unix:{self.unix_path}" if self.unix_path else f"{self.host}:{self.port}"
        # tritonclient's own channel arguments are gRPC's defaults but for the message sizes (2 GiB each way):
        # a server's response is untrusted, so it gets the bound the v1 client has
        return triton, triton.InferenceServerClient(target, channel_args=[
            ("grpc.max_send_message_length", 2**31 - 1), ("grpc.max_receive_message_length", MAX_RESPONSE_BYTES)])

    def _send(self, inputs: list, outputs: list) -> Any:
        return self.client.infer(self.model, inputs, outputs=outputs, client_timeout=self.timeout_s)

    def _parameters(self, result: Any) -> Mapping[str, Any]:
        out = {}
        for key, p in result.get_response().parameters.items():
            kind = p.WhichOneof("parameter_choice")
            out[key] = getattr(p, kind) if kind else None
        return out

    def _message_bytes(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str],
                       result: Any) -> tuple[int | None, int | None]:
        """The serialized ``ModelInferRequest``/``ModelInferResponse`` sizes (no HTTP/2 or gRPC framing). The
        request is rebuilt with the fields tritonclient sets (model name, tensor metadata, raw contents, requested
        outputs) once per set of inputs: the harness sends the same inputs every request."""
        key = (id(inputs), tuple(outputs))
        if getattr(self, "_request_key", None) != key:
            pb = self._triton.service_pb2
            request = pb.ModelInferRequest(model_name=self.model, raw_input_contents=[
                np.ascontiguousarray(a).tobytes() for a in inputs.values()])
            for name, arr in inputs.items():
                request.inputs.add(name=name, datatype=_v2_type(arr.dtype), shape=list(arr.shape))
            for name in outputs:
                request.outputs.add(name=name)
            self._request_key, self._request_bytes = key, request.ByteSize()
        return self._request_bytes, result.get_response().ByteSize()


class TfServingV1Client(ProtocolClient):
    def connect(self) -> None:
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)

    def infer(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> Reply:
        body = json.dumps({"inputs": {k: v.tolist() for k, v in inputs.items()}}).encode()
        self.conn.request("POST", f"/v1/models/{self.model}:predict", body, {"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = resp.read(MAX_RESPONSE_BYTES + 1)
        if len(data) > MAX_RESPONSE_BYTES:
            raise RuntimeError(f"the v1 response is larger than {MAX_RESPONSE_BYTES} bytes")
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {data[:200].decode('utf-8', 'replace')}")
        doc = json.loads(data)
        got = doc.get("outputs") if isinstance(doc, dict) else None
        if not isinstance(got, dict):
            raise RuntimeError("the v1 response has no \"outputs\" object")
        missing = [n for n in outputs if n not in got]
        if missing:
            raise RuntimeError(f"the v1 response lacks output(s) {missing}")
        return Reply(_numeric({n: got[n] for n in outputs}), _number(doc.get("server_compute_us")),
                     _int(doc.get("server_request_index")))

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()


CLIENTS: dict[str, type[ProtocolClient]] = {"kserve+http": KServeV2Client, "kserve+grpc": KServeV2GrpcClient,
                                             "tfserving+http": TfServingV1Client}


class PolicyClient:
    """The mobile client: per-request timeout, retries with exponential backoff, an optional response cache.

    The cache is keyed by the sha256 of the inputs: the harness sends the same seeded inputs every time, so
    with ``cache = true`` every request after the first is a hit (what a cache buys for repeated queries).
    """

    def __init__(self, client: ProtocolClient, policy: ClientPolicy) -> None:
        self.client, self.policy = client, policy
        self.counts = PolicyCounts()
        self._cache: dict[str, Reply] = {}
        self._connected = False

    def infer(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> tuple[Reply, bool]:
        """(reply, cache hit); raises :class:`RequestFailed` after the last retry."""
        key = _key(inputs) if self.policy.cache else ""
        if key and key in self._cache:
            self.counts.cache_hits += 1
            return self._cache[key], True
        last = ""
        for attempt in range(self.policy.retries + 1):
            if attempt:
                self.counts.retries += 1
                time.sleep(self.policy.backoff_s(attempt))
            self.counts.attempts += 1
            try:
                if not self._connected:
                    self.client.connect()
                    self._connected = True
                reply = self.client.infer(inputs, outputs)
            except Exception as exc:  # noqa: BLE001 - every transport fault is a retry; the last one is reported
                if _is_timeout(exc):
                    self.counts.timeouts += 1
                else:
                    self.counts.errors += 1
                last = f"{type(exc).__name__}: {str(exc)[:200]}"
                self.client.close()
                self._connected = False
                continue
            if key:
                self._cache[key] = reply
            return reply, False
        self.counts.failed += 1
        self.counts.reasons.append(last)
        raise RequestFailed(f"request failed after {self.policy.retries + 1} attempt(s): {last}")

    def close(self) -> None:
        self.client.close()


def _numeric(arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Outputs as numeric arrays; a value that is not one (strings, ragged lists, objects) is refused."""
    out = {}
    for name, value in arrays.items():
        try:
            arr = np.asarray(value)
        except ValueError as exc:  # ragged nesting
            raise RuntimeError(f"output {name!r} is not a tensor: {exc}") from None
        if arr.dtype.kind not in "biuf":
            raise RuntimeError(f"output {name!r} is not numeric (dtype {arr.dtype})")
        out[name] = arr
    return out


def _is_timeout(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return (isinstance(exc, socket.timeout | TimeoutError) or "timed out" in text or "timeout" in text
            or "deadline_exceeded" in text)  # gRPC's status for a passed deadline


def _key(inputs: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(inputs):
        h.update(name.encode())
        h.update(np.ascontiguousarray(inputs[name]).tobytes())
    return h.hexdigest()


def _v2_type(dtype: np.dtype) -> str:
    return {"float32": "FP32", "float16": "FP16", "float64": "FP64", "int8": "INT8", "uint8": "UINT8",
            "int16": "INT16", "int32": "INT32", "int64": "INT64", "bool": "BOOL"}.get(np.dtype(dtype).name, "BYTES")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**53 else None
