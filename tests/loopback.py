"""Throwaway servers for tests, on loopback: accept on a socket until it closes, each connection in a thread of its
own; a gRPC server speaking the KServe v2 inference service."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


def serve_each(sock: socket.socket, handle: Callable[[socket.socket], None]) -> None:
    """Start a daemon thread accepting on ``sock`` (until it is closed); ``handle`` runs per connection."""

    def accept() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


class HostileGrpc:
    """A real gRPC server on loopback (grpcio, the v2 service's messages) answering every ModelInfer with
    ``answer(response)`` filled in, or aborting when ``answer`` raises."""

    def __init__(self, answer) -> None:
        from concurrent import futures

        import grpc
        from tritonclient.grpc import service_pb2

        def infer(request, context):
            response = service_pb2.ModelInferResponse(model_name=request.model_name)
            try:
                answer(response)
            except RuntimeError as exc:
                context.abort(grpc.StatusCode.INTERNAL, str(exc))
            return response

        handler = grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {
            "ModelInfer": grpc.unary_unary_rpc_method_handler(
                infer, request_deserializer=service_pb2.ModelInferRequest.FromString,
                response_serializer=service_pb2.ModelInferResponse.SerializeToString)})
        self.server = grpc.server(futures.ThreadPoolExecutor(2))
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def close(self) -> None:
        self.server.stop(0)


def face_landmark_outputs(response, datatype="FP32", raw=None, compute_ns=None) -> None:
    """face_landmark's two outputs (zeros) as raw contents; ``raw`` replaces the first one's bytes."""
    for name, size in (("conv2d_20", 1404), ("conv2d_30", 1)):
        response.outputs.add(name=name, datatype=datatype, shape=[1, 1, 1, size])
        response.raw_output_contents.append(bytes(4 * size))
    if raw is not None:
        response.raw_output_contents[0] = raw
    if compute_ns is not None:
        response.parameters["server_compute_ns"].CopyFrom(compute_ns)
