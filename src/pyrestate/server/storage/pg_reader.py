"""Reads of the PostgreSQL backend: the read-through cache behind the state machine's reads, and the
snapshot behind the admin `/query`.

The state machine reads synchronously on the event loop; a PostgreSQL round trip costs ~40 µs on loopback
against ~5 µs for SQLite, and a command makes several reads. Reads therefore go through a cache that is
updated with each committed write log. That is sound because the lease holder is the only writer of the
rows it processes: the cache is dropped whenever leases are (re)acquired or a commit fails in an unknown
state. Schema documents (deployments, services) and whole-table scans bypass the cache.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyrestate.server.storage.api import TABLES, Key, WriteOp

if TYPE_CHECKING:
    import psycopg

# Tables never cached: written by any node (admin), read rarely.
_UNCACHED = frozenset({"deployments", "services", "limit_rules", "limit_slots", "limit_queue"})


def key_filter(table: str, n: int) -> str:
    return " AND ".join(f"{c} = %s" for c, _ in TABLES[table][:n]) or "TRUE"


def key_names(table: str) -> str:
    return ", ".join(c for c, _ in TABLES[table])


def _get_sql(table: str) -> str:
    return f"SELECT v FROM {table} WHERE {key_filter(table, len(TABLES[table]))}"


def _scan_sql(table: str, n: int) -> str:
    names = key_names(table)
    return f"SELECT {names}, v FROM {table} WHERE {key_filter(table, n)} ORDER BY {names}"


def _between_sql(table: str) -> str:
    names = key_names(table)
    first = TABLES[table][0][0]
    return f"SELECT {names}, v FROM {table} WHERE {first} > %s AND {first} <= %s ORDER BY {names} LIMIT %s"


def _row_key(row: tuple[Any, ...]) -> Key:
    return tuple(bytes(x) if isinstance(x, memoryview) else x for x in row[:-1])


@dataclass
class _Group:
    """Cached rows sharing a key prefix (an invocation's journal, an object's state…). `complete`: every
    committed row of the prefix is here; otherwise only the listed keys are known (None: absent)."""

    rows: dict[Key, bytes | None]
    complete: bool = False


def _group_len(table: str) -> int:
    return max(1, len(TABLES[table]) - 1)


class PostgresReader:
    """`KVReader` over a synchronous autocommit connection, behind the read-through cache. The lock is held
    across a miss's query and its fill, so a fill can never overwrite a newer committed value."""

    def __init__(
        self, conninfo: str, conn: psycopg.Connection[Any], *, cache: bool, max_entries: int
    ) -> None:
        self._conninfo = conninfo
        self._conn = conn
        self._lock = threading.Lock()
        self._cache_enabled = cache
        self._max_entries = max_entries
        self._groups: dict[str, dict[Key, _Group]] = {t: {} for t in TABLES}
        self._entries = 0
        self.round_trips = 0

    def _query(self, sql: str, params: Key) -> list[tuple[Any, ...]]:
        import psycopg

        self.round_trips += 1
        try:
            return self._conn.execute(sql, params).fetchall()
        except psycopg.OperationalError:
            if not (self._conn.broken or self._conn.closed):
                raise
        # The server restarted or failed over: a read is safe to send again on a new connection.
        self._conn = psycopg.Connection.connect(self._conninfo, autocommit=True)
        return self._conn.execute(sql, params).fetchall()

    def _cacheable(self, table: str) -> bool:
        return self._cache_enabled and table not in _UNCACHED

    def get(self, table: str, key: Key) -> bytes | None:
        with self._lock:
            if not self._cacheable(table):
                rows = self._query(_get_sql(table), key)
                return bytes(rows[0][0]) if rows else None
            g = key[: _group_len(table)]
            group = self._groups[table].get(g)
            if group is not None:
                if key in group.rows:
                    return group.rows[key]
                if group.complete:
                    return None
            rows = self._query(_get_sql(table), key)
            value = bytes(rows[0][0]) if rows else None
            self._groups[table].setdefault(g, _Group({})).rows[key] = value
            self._count(1)
            return value

    def scan_between(self, table: str, after: int, until: int, limit: int) -> list[tuple[Key, bytes]]:
        # Straight to the database: the cache keeps groups by prefix, not ranges (and every commit of this
        # node is in the database before it is acknowledged).
        with self._lock:
            rows = self._query(_between_sql(table), (after, until, limit))
        return [(_row_key(r), bytes(r[-1])) for r in rows]

    def scan(self, table: str, prefix: Key) -> list[tuple[Key, bytes]]:
        with self._lock:
            glen = _group_len(table)
            if not self._cacheable(table) or len(prefix) < glen:
                rows = self._query(_scan_sql(table, len(prefix)), prefix)
                return [(_row_key(r), bytes(r[-1])) for r in rows]
            g = prefix[:glen]
            group = self._groups[table].get(g)
            if group is None or not group.complete:
                rows = self._query(_scan_sql(table, glen), g)
                group = _Group({_row_key(r): bytes(r[-1]) for r in rows}, complete=True)
                self._groups[table][g] = group
                self._count(len(group.rows) + 1)
            n = len(prefix)
            return sorted((k, v) for k, v in group.rows.items() if v is not None and k[:n] == prefix)

    def _count(self, n: int) -> None:
        self._entries += n
        if self._entries > self._max_entries:
            self._clear_locked()

    def _clear_locked(self) -> None:
        for t in self._groups:
            self._groups[t] = {}
        self._entries = 0

    def clear(self) -> None:
        with self._lock:
            self._clear_locked()

    def apply(self, ops: Iterable[WriteOp]) -> None:
        """Committed writes, in commit order."""
        if not self._cache_enabled:
            return
        with self._lock:
            for op, table, key, value in ops:
                if table in _UNCACHED:
                    continue
                glen = _group_len(table)
                groups = self._groups[table]
                if op == "put" or op == "del":
                    groups.setdefault(key[:glen], _Group({})).rows[key] = value
                    self._entries += 1
                elif len(key) == glen:
                    groups[key] = _Group({}, complete=True)  # the whole prefix is now known empty
                elif len(key) > glen:
                    group = groups.get(key[:glen])
                    if group is not None:
                        n = len(key)
                        for k in [k for k in group.rows if k[:n] == key]:
                            group.rows[k] = None
                else:
                    n = len(key)
                    for g in [g for g in groups if g[:n] == key]:
                        del groups[g]
            if self._entries > self._max_entries:
                self._clear_locked()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresSnapshot:
    """`core_api.QuerySnapshot`: one REPEATABLE READ read-only transaction on its own connection, so every
    scan sees the same committed state. Connects lazily (the scans run on a worker thread)."""

    def __init__(self, conninfo: str, *, in_flight: frozenset[str] | None = None, now_ms: int | None = None):
        self._conninfo = conninfo
        self.in_flight = in_flight
        self.now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def scan(self, table: str) -> list[tuple[Key, bytes]]:
        import psycopg

        with self._lock:
            if self._conn is None:
                self._conn = psycopg.Connection.connect(self._conninfo, autocommit=True)
                self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            rows = self._conn.execute(_scan_sql(table, 0)).fetchall()
        return [(_row_key(r), bytes(r[-1])) for r in rows]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


__all__ = ["PostgresReader", "PostgresSnapshot", "key_filter", "key_names"]
