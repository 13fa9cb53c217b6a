"""The LiteRT model server on KServe as several test modules use it (a pytest plugin: list ``"tests.model_server"``
in a module's ``pytest_plugins``).

``kserve_server``: face_landmark served on loopback, v2 REST and v2 gRPC, started once per module by
``harness.serving.launch`` (KServe's Python model server in its own venv); without that venv the module's tests
are skipped with the reason (``make install`` builds it; CI has it).
"""

from __future__ import annotations

import os

import pytest

from harness.errors import ServerError
from harness.serving import launch
from harness.testing.postgres import _free_port


@pytest.fixture(scope="module")
def kserve_server(tmp_path_factory):
    python = launch.find_server_python(os.environ.get(launch.ENV_PYTHON))
    if python is None:
        pytest.skip(f"no Python with kserve for the model server ({launch.INSTALL_HINT})")
    log = tmp_path_factory.mktemp("server") / "server.log"
    try:
        srv = launch.start("face_landmark", _free_port(), python=python, log=log, grpc_port=_free_port())
    except ServerError as exc:
        pytest.fail(f"{exc}\n{log.read_text(errors='replace')[-3000:]}")
    yield srv
    srv.stop()
