"""Fixtures shared by the team-store and lease tests: one real PostgreSQL server per session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from harness.testing.postgres import PostgresServer, binaries


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server the tests start (Debian's postgresql package), on 127.0.0.1, stopped at the end."""
    if binaries() is None:
        if os.environ.get("CI"):  # CI installs postgresql: missing binaries there are a failure, not a skip
            pytest.fail("PostgreSQL server binaries not found (Debian package postgresql)")
        pytest.skip("PostgreSQL server binaries not found (install the Debian package postgresql)")
    pytest.importorskip("psycopg", reason="the team extra: pip install 'edgeharness[team]'")
    with PostgresServer() as server:
        yield server


@pytest.fixture
def pg_dsn(postgres_server: PostgresServer) -> str:
    """A fresh empty database on the session's server."""
    return postgres_server.new_database()
