"""Start and stop the LiteRT model server (:mod:`harness.serving.litert_kserve`) as a child process.

KServe pins pandas < 3, psutil < 6 and protobuf < 7, older than the harness's own environment has, so the server
runs with its own Python: ``server_python`` (``HARNESS_SERVER_PYTHON``, read by the front), else the ``.venv-server``
beside the harness's venv (what ``make install`` builds), else this Python when it has ``kserve``. It listens on
loopback unless told otherwise, gRPC too when given a ``grpc_port``; ``wait_ready`` polls the v2 readiness route
(and the gRPC port's listener).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from harness import zoo
from harness.errors import ServerError
from harness.models import load_model

SCRIPT = Path(__file__).with_name("litert_kserve.py")
ENV_PYTHON = "HARNESS_SERVER_PYTHON"
INSTALL_HINT = ("make install builds .venv-server (python -m venv .venv-server && .venv-server/bin/pip install "
                "'kserve>=0.21' 'ai-edge-litert>=2.0'); or set HARNESS_SERVER_PYTHON to a Python that has kserve")


def find_server_python(configured: str | None = None) -> str | None:
    """The Python that runs the server (see the module doc), or None when there is none."""
    if configured:
        return configured
    sibling = Path(sys.prefix).parent / ".venv-server" / "bin" / "python"
    if sibling.exists():
        return str(sibling)
    return sys.executable if importlib.util.find_spec("kserve") is not None else None


def resolve_model(model: str) -> tuple[str, Path]:
    """(served name, file) for a zoo name or a ``.tflite`` path, checked as the harness checks models."""
    path = zoo.fetch(model) if model in zoo.MODELS else Path(model)
    artifact = load_model(path)  # raises ModelError with the reason
    name = model if model in zoo.MODELS else artifact.path.stem
    return name, artifact.path


@dataclass
class ModelServer:
    """A running server: its process, the served name and where it listens."""

    process: subprocess.Popen
    name: str
    host: str
    port: int
    grpc_port: int | None = None

    @property
    def device_id(self) -> str:
        return f"kserve+http://{self.host}:{self.port}/{self.name}"

    @property
    def grpc_device_id(self) -> str | None:
        """The ``kserve+grpc://`` id, when the server serves gRPC."""
        return f"kserve+grpc://{self.host}:{self.grpc_port}/{self.name}" if self.grpc_port else None

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 10 s); safe to call twice."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def __enter__(self) -> ModelServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def command(python: str, model_path: Path, name: str, port: int, host: str = "127.0.0.1", delegate: str = "cpu",
            threads: int = 1, grpc_port: int | None = None) -> list[str]:
    """The server's command line."""
    return [python, str(SCRIPT), "--model-path", str(model_path), "--name", name, "--port", str(port),
            "--host", host, "--delegate", delegate, "--threads", str(threads), "--grpc-port", str(grpc_port or 0)]


def start(model: str, port: int, *, host: str = "127.0.0.1", delegate: str = "cpu", threads: int = 1,
          python: str | None = None, log: Path | None = None, ready_timeout_s: float = 90.0,
          grpc_port: int | None = None) -> ModelServer:
    """Start the server for ``model`` (zoo name or path) and wait until it answers ready (v2 gRPC on
    ``grpc_port`` too when given; off otherwise)."""
    if grpc_port is not None and (not 0 < grpc_port < 65536 or grpc_port == port):
        raise ServerError(f"gRPC port {grpc_port} must be a port number in 1..65535 other than the HTTP port {port}",
                          hint="give --grpc-port another port than --port, or leave it out (gRPC off)")
    server_python = find_server_python(python)
    if server_python is None:
        raise ServerError("no Python with kserve to run the model server", hint=INSTALL_HINT)
    name, path = resolve_model(model)
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command(server_python, path, name, port, host, delegate, threads, grpc_port),
                            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = ModelServer(proc, name, host, port, grpc_port or None)
    try:
        wait_ready(server, ready_timeout_s)
    except BaseException:
        server.stop()
        raise
    return server


def wait_ready(server: ModelServer, timeout_s: float) -> None:
    """Poll ``GET /v2/models/NAME/ready`` until 200, then (with gRPC) until the gRPC port accepts a connection;
    ServerError when the process exits or time runs out."""
    url = f"http://{server.host}:{server.port}/v2/models/{server.name}/ready"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code = server.process.poll()
        if code is not None:
            raise ServerError(f"the model server exited with code {code} before it was ready",
                              hint="run `harness serve-model` in a terminal to see its log; is the port free?")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - our own loopback server
                if resp.status == 200 and (not server.grpc_port or _accepts(server.host, server.grpc_port)):
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    grpc = f" (and gRPC on port {server.grpc_port})" if server.grpc_port else ""
    raise ServerError(f"the model server did not answer {url}{grpc} within {timeout_s:g} s")


def _accepts(host: str, port: int) -> bool:
    """Whether something accepts a TCP connection on ``host:port`` (the gRPC listener: KServe starts it beside
    the REST one)."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False
