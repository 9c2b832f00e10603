"""The storage backend of the server's `--storage` setting: `sqlite` (default) or a PostgreSQL URL."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

from pyrestate.server.storage.api import Storage

log = logging.getLogger(__name__)

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(spec: str) -> bool:
    return spec.startswith(POSTGRES_SCHEMES)


def check_storage_spec(spec: str) -> str:
    if spec == "sqlite" or is_postgres(spec):
        return spec
    raise ValueError(f"expected 'sqlite' or a postgresql://… URL, got {spec!r}")


def _stop_process(error: Exception) -> None:
    # Another node owns our partitions now: stop serving (a supervisor restarts us as a standby).
    log.critical("%s; stopping this server", error)
    os.kill(os.getpid(), signal.SIGTERM)


def create_storage(
    spec: str,
    *,
    sqlite_path: Path,
    partitions: int,
    node_id: str | None = None,
    accept_data_loss: bool = False,
    lock_note: str = "",
) -> Storage:
    """PostgreSQL storage holds the leases of all `partitions` (it waits while another node holds them);
    SQLite storage locks its data dir (`lock_note` tells a second server who holds it)."""
    check_storage_spec(spec)
    if is_postgres(spec):
        from pyrestate.server.storage.postgres import PostgresStorage

        return PostgresStorage(
            spec, partitions=range(partitions), node_id=node_id, on_lease_lost=_stop_process
        )
    from pyrestate.server.storage.sqlite import SqliteStorage

    return SqliteStorage(sqlite_path, accept_data_loss=accept_data_loss, lock_note=lock_note)
