#!/usr/bin/env python3
"""A LiteRT model served by KServe's Python model server (Open Inference Protocol v2 REST and gRPC, TF Serving's v1).

Run by ``harness serve-model`` with the server environment's Python (KServe pins pandas < 3, psutil < 6 and
protobuf < 7, which the harness's own environment has newer: the server lives in its own venv, as a served
model does in its own image). It imports only the standard library, numpy, LiteRT and ``kserve``, never
``harness``.

- ``POST /v2/models/{name}/infer`` (KServe v2 / Open Inference Protocol, what Triton speaks) and
  ``POST /v1/models/{name}:predict`` (``{"instances": [...]}`` or ``{"inputs": {...}}``, TF Serving's form);
  with ``--grpc-port N`` also the v2 gRPC service (``inference.GRPCInferenceService/ModelInfer``).
- Every response carries the server's own compute time (``interpreter.invoke()`` plus copying tensors in and out,
  ``time.perf_counter_ns``) and how many requests it has answered since it started (1: the cold one): the
  v2 response parameters / v1 body keys ``server_compute_us`` and ``server_request_index``. KServe's gRPC
  ``InferParameter`` has no floating-point field (bool, int64, string only), so over gRPC the compute time is
  the integer ``server_compute_ns``.
- The interpreter runs LiteRT's built-in CPU kernels (``--delegate cpu``, the harness's reference) or XNNPACK.
- KServe binds ``0.0.0.0`` (REST) and ``[::]`` (gRPC) itself; this script moves both listeners to ``--host``
  (loopback by default). gRPC is off unless ``--grpc-port`` is given.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import types
from typing import Any

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.protocol.grpc import server as grpc_server
from kserve.protocol.rest import server as rest_server

_V2_TYPES = {"float32": "FP32", "float16": "FP16", "float64": "FP64", "int8": "INT8", "uint8": "UINT8",
             "int16": "INT16", "int32": "INT32", "int64": "INT64", "bool": "BOOL"}


class LiteRtModel(Model):
    """One ``.tflite`` model behind KServe: v2 and v1 predict through one LiteRT interpreter."""

    def __init__(self, name: str, path: str, delegate: str, threads: int) -> None:
        super().__init__(name)
        self.path, self.delegate, self.threads = path, delegate, threads
        self.lock = threading.Lock()  # one interpreter: requests take turns
        self.served = 0  # requests answered since the server started (1 = the cold one)
        self.load()

    def load(self) -> bool:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        resolver = (OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if self.delegate == "cpu"
                    else OpResolverType.AUTO)
        self.interp = Interpreter(model_path=self.path, num_threads=self.threads,
                                  experimental_op_resolver_type=resolver)
        self.interp.allocate_tensors()
        self.inputs = self.interp.get_input_details()
        self.outputs = self.interp.get_output_details()
        self.ready = True
        return True

    def get_input_types(self) -> list[dict]:
        return [_meta(d) for d in self.inputs]

    def get_output_types(self) -> list[dict]:
        return [_meta(d) for d in self.outputs]

    def _run(self, arrays: dict[str, np.ndarray]) -> tuple[list[tuple[dict, np.ndarray]], int]:
        """Set the inputs, invoke, read the outputs; (outputs, compute ns)."""
        with self.lock:
            t0 = time.perf_counter_ns()
            for d in self.inputs:
                if d["name"] not in arrays:
                    raise ValueError(f"missing input {d['name']!r}; the model takes "
                                     f"{[i['name'] for i in self.inputs]}")
                data = np.asarray(arrays[d["name"]], dtype=d["dtype"]).reshape(d["shape"])
                self.interp.set_tensor(d["index"], data)
            self.interp.invoke()
            out = [(d, np.array(self.interp.get_tensor(d["index"]))) for d in self.outputs]
            self.served += 1
            return out, time.perf_counter_ns() - t0

    async def predict(self, payload: Any, headers: dict | None = None,
                      response_headers: dict | None = None) -> Any:
        if isinstance(payload, InferRequest):  # v2
            arrays = {i.name: i.as_numpy() for i in payload.inputs}
            outputs, compute_ns = self._run(arrays)
            binary = bool(payload.use_binary_outputs) if hasattr(payload, "use_binary_outputs") else False
            infer_outputs = []
            for d, arr in outputs:
                out = InferOutput(d["name"], list(arr.shape), _V2_TYPES.get(arr.dtype.name, "BYTES"))
                out.set_data_from_numpy(arr, binary_data=binary)
                infer_outputs.append(out)
            timing = ({"server_compute_ns": compute_ns} if payload.from_grpc  # gRPC parameters carry no float
                      else {"server_compute_us": compute_ns / 1000.0})
            # REST: the binary extension lets each requested output ask for binary data (tritonclient does so per
            # output, not with the request-level flag); KServe applies that only when the response knows the request
            requested = None if payload.from_grpc else (payload.request_outputs or None)
            return InferResponse(payload.id or "", self.name, infer_outputs, use_binary_outputs=binary,
                                 requested_outputs=requested,
                                 parameters={**timing, "server_request_index": self.served})
        # v1 (TF Serving's predict): {"instances": [row]} (one input) or {"inputs": {name: value}}
        if "inputs" in payload and isinstance(payload["inputs"], dict):
            arrays = payload["inputs"]
        elif "instances" in payload and len(self.inputs) == 1:
            arrays = {self.inputs[0]["name"]: payload["instances"]}
        else:
            raise ValueError("expected {\"inputs\": {name: value}} or {\"instances\": [...]} (one-input models)")
        outputs, compute_ns = self._run(arrays)
        return {"outputs": {d["name"]: arr.tolist() for d, arr in outputs}, "server_compute_us": compute_ns / 1000.0,
                "server_request_index": self.served}


def _meta(d: dict) -> dict:
    return {"name": d["name"], "datatype": _V2_TYPES.get(np.dtype(d["dtype"]).name, "BYTES"),
            "shape": [int(x) for x in d["shape"]]}


def _bind_rest_to(host: str) -> None:
    """KServe's REST server hard-codes host 0.0.0.0: set the uvicorn config's host after it is built."""
    original = rest_server.RESTServer.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.config.host = host

    rest_server.RESTServer.__init__ = init


def _bind_grpc_to(host: str) -> None:
    """KServe's ``GRPCServer.start`` builds its server with ``aio.server(...)`` and then calls
    ``add_insecure_port(f"[::]:{port}")`` (every interface). Give that module an ``aio`` whose ``server()`` returns
    grpc's own server with ``add_insecure_port`` rebound to ``host`` (same port); nothing else changes."""
    real_aio = grpc_server.aio
    bracketed = f"[{host}]" if ":" in host else host

    def server(*args: Any, **kwargs: Any) -> Any:
        srv = real_aio.server(*args, **kwargs)
        add_insecure_port = srv.add_insecure_port
        srv.add_insecure_port = lambda address: add_insecure_port(f"{bracketed}:{address.rpartition(':')[2]}")
        return srv

    grpc_server.aio = types.SimpleNamespace(server=server)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-path", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--grpc-port", type=int, default=0, help="also serve v2 gRPC on this port (0: off)")
    p.add_argument("--delegate", choices=("cpu", "xnnpack"), default="cpu")
    p.add_argument("--threads", type=int, default=1)
    args, _ = p.parse_known_args(argv)
    _bind_rest_to(args.host)
    _bind_grpc_to(args.host)
    model = LiteRtModel(args.name, args.model_path, args.delegate, args.threads)
    grpc_note = f" and grpc://{args.host}:{args.grpc_port}" if args.grpc_port else ""
    print(f"serving {args.name} ({args.model_path}) on http://{args.host}:{args.port}{grpc_note}", flush=True)
    ModelServer(http_port=args.port, grpc_port=args.grpc_port or 8081, enable_grpc=bool(args.grpc_port), workers=1,
                enable_latency_logging=False).start([model])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
