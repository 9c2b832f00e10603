"""A PostgreSQL server for the storage tests, started once per session (skipped when not installed)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pyrestate.testing.postgres import PostgresServer, find_postgres_bin


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    if find_postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql; PYRESTATE_PG_BIN)")
    server = PostgresServer()  # fsync on: commit latencies are the real ones
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """A fresh, empty schema of its own for each test."""
    return pg_server.create_schema()
