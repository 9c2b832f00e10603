"""Consistent read-only views of committed storage for SQL introspection (`core_api.QuerySnapshot`)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pyarrow as pa

from pyrestate.server.query.fastpath import count_statuses
from pyrestate.server.storage.api import TABLES, Key, KVReader

Rows = list[tuple[Key, bytes]]


def _now_ms() -> int:
    return int(time.time() * 1000)


class SqliteSnapshot:
    """One read transaction on its own read-only connection: every scan sees the same committed state
    (SQLite WAL snapshot isolation), whatever the writer commits meanwhile. Opened lazily by the first
    scan, so creating it on the event loop costs nothing."""

    def __init__(
        self, path: Path | str, *, in_flight: frozenset[str] | None = None, now_ms: int | None = None
    ) -> None:
        self._path = Path(path)
        self.in_flight = in_flight
        self.now_ms = now_ms if now_ms is not None else _now_ms()
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(
                f"{self._path.resolve().as_uri()}?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("BEGIN")
            self._conn = conn
        return self._conn

    def scan(self, table: str) -> Rows:
        names = [c for c, _ in TABLES[table]]
        sql = f"SELECT {', '.join(names)}, v FROM {table} ORDER BY {', '.join(names)}"
        with self._lock:
            rows = self._connection().execute(sql).fetchall()
        return [
            (tuple(bytes(x) if isinstance(x, memoryview) else x for x in r[:-1]), bytes(r[-1])) for r in rows
        ]

    def count_invocation_statuses(
        self, completed: bool, column: str, limit: int | None = None
    ) -> pa.Table | None:
        """The status count of `fastpath`, None when it cannot answer (closes nothing: the caller closes the
        snapshot)."""
        with self._lock:
            return count_statuses(self._connection(), completed, column, limit)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class ReaderSnapshot:
    """Over any storage `KVReader`. Consistent only when nothing commits while it is read (the in-memory
    backend applies commits on the event loop, so a snapshot taken there is one)."""

    def __init__(
        self, reader: KVReader, *, in_flight: frozenset[str] | None = None, now_ms: int | None = None
    ) -> None:
        self._reader = reader
        self.in_flight = in_flight
        self.now_ms = now_ms if now_ms is not None else _now_ms()

    def scan(self, table: str) -> Rows:
        return list(self._reader.scan(table, ()))

    def close(self) -> None:
        return None
