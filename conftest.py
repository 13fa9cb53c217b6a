"""Project-wide test fixtures: real models from the pinned zoo, isolated caches and stores."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.testing.postgres import PostgresServer

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def zoo_models() -> dict[str, Path]:
    """The zoo models the tests use, fetched (once per machine) and verified."""
    from harness import zoo

    return {name: zoo.fetch(name) for name in ("face_detection_front", "face_landmark", "iris_landmark")}


@pytest.fixture
def small_model(zoo_models: dict[str, Path]) -> Path:
    """The smallest real model (BlazeFace short-range, 229 KB)."""
    return zoo_models["face_detection_front"]


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HARNESS_CACHE seeded with the already-downloaded wheel, so tests stay offline."""
    from harness import zoo

    real_wheels = zoo.cache_dir() / "wheels"
    cache = tmp_path / "cache"
    (cache / "wheels").mkdir(parents=True)
    for wheel in real_wheels.glob("*.whl"):
        shutil.copy(wheel, cache / "wheels" / wheel.name)
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    return cache


def write_suite(directory: Path, body: str, name: str = "suite.toml") -> Path:
    path = directory / name
    path.write_text(body, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server the tests start (Debian's postgresql package) on 127.0.0.1, stopped at the end."""
    import os

    from harness.testing.postgres import binaries

    if binaries() is None:
        if os.environ.get("CI"):  # CI installs postgresql: missing binaries there are a failure, not a skip
            pytest.fail("PostgreSQL server binaries not found (Debian package postgresql)")
        pytest.skip("PostgreSQL server binaries not found (install the Debian package postgresql)")
    pytest.importorskip("psycopg", reason="the team extra: pip install 'edgeharness[team]'")
    with PostgresServer() as server:
        yield server


@pytest.fixture
def pg_dsn(postgres_server: PostgresServer) -> str:
    """A fresh empty database on the session's PostgreSQL server."""
    return postgres_server.new_database()
