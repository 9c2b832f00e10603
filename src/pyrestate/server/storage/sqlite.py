"""SQLite backend: WAL, synchronous=FULL, versioned migrations, group commit.

Every table of `api.TABLES` is a real SQL table (key columns + value column `v`), so it can be inspected
with any SQLite tool. Commits from many concurrent callers are grouped: everything queued while the previous
group is being made durable goes into one SQLite transaction, and one fsync (on a writer thread, outside the
event loop) acknowledges the whole group.
Reads use a separate connection and see only committed data.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyrestate.server.storage.api import TABLES, Key, StorageUnavailable, Transaction, WriteOp
from pyrestate.server.storage.txn import BufferedTransaction, StatusCache


def _create_table_sql(name: str) -> str:
    cols = TABLES[name]
    col_defs = ", ".join(f"{c} {t} NOT NULL" for c, t in cols)
    pk = ", ".join(c for c, _ in cols)
    return f"CREATE TABLE {name} ({col_defs}, v BLOB NOT NULL, PRIMARY KEY ({pk})) WITHOUT ROWID"


# Migration i brings the schema from user_version i to i + 1. Append, never edit.
MIGRATIONS: list[list[str]] = [
    [_create_table_sql(name) for name in TABLES],
]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass
class CommitStats:
    commits: int = 0  # physical SQLite transactions
    transactions: int = 0  # logical transactions committed
    max_batch: int = 0
    total_seconds: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)

    @property
    def mean_batch(self) -> float:
        return self.transactions / self.commits if self.commits else 0.0

    @property
    def mean_commit_ms(self) -> float:
        return 1000 * self.total_seconds / self.commits if self.commits else 0.0


WRITER_CACHE_KIB = 65536


def _connect(path: Path) -> sqlite3.Connection:
    fresh = not path.exists() or path.stat().st_size == 0
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    if fresh:
        # Must precede WAL and the first table; lets pages freed by deletions be truncated away.
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=OFF")
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Apply pending migrations; refuses a database written by a newer version."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"database schema version {version} is newer than this server ({SCHEMA_VERSION})")
    for i in range(version, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in MIGRATIONS[i]:
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {i + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION


def _names(table: str) -> list[str]:
    return [c for c, _ in TABLES[table]]


def _marks(table: str) -> str:
    return ", ".join("?" * (len(TABLES[table]) + 1))


# SQL text per table (and key prefix length), built once: sqlite3 caches prepared statements by text.
_GET_SQL = {t: f"SELECT v FROM {t} WHERE {' AND '.join(f'{c} = ?' for c in _names(t))}" for t in TABLES}
_PUT_SQL = {t: f"INSERT OR REPLACE INTO {t} ({', '.join(_names(t))}, v) VALUES ({_marks(t)})" for t in TABLES}


def _where(table: str, n: int) -> str:
    return " AND ".join(f"{c} = ?" for c in _names(table)[:n]) or "1"


_SCAN_SQL = {
    (t, n): f"SELECT {', '.join(_names(t))}, v FROM {t} WHERE {_where(t, n)} ORDER BY {', '.join(_names(t))}"
    for t in TABLES
    for n in range(len(TABLES[t]) + 1)
}
_BETWEEN_SQL = {
    t: f"SELECT {', '.join(_names(t))}, v FROM {t} WHERE {_names(t)[0]} > ? AND {_names(t)[0]} <= ?"
    f" ORDER BY {', '.join(_names(t))} LIMIT ?"
    for t in TABLES
}
_DEL_SQL = {
    (t, n): f"DELETE FROM {t} WHERE {_where(t, n)}" for t in TABLES for n in range(len(TABLES[t]) + 1)
}


class _SqliteReader:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def get(self, table: str, key: Key) -> bytes | None:
        with self._lock:
            row = self._conn.execute(_GET_SQL[table], key).fetchone()
        return None if row is None else bytes(row[0])

    def scan(self, table: str, prefix: Key) -> list[tuple[Key, bytes]]:
        with self._lock:
            rows = self._conn.execute(_SCAN_SQL[table, len(prefix)], prefix).fetchall()
        return _rows(rows)

    def scan_between(self, table: str, after: int, until: int, limit: int) -> list[tuple[Key, bytes]]:
        with self._lock:
            rows = self._conn.execute(_BETWEEN_SQL[table], (after, until, limit)).fetchall()
        return _rows(rows)


def _rows(rows: list[tuple[Any, ...]]) -> list[tuple[Key, bytes]]:
    return [(tuple(bytes(x) if isinstance(x, memoryview) else x for x in r[:-1]), bytes(r[-1])) for r in rows]


def _apply_ops(conn: sqlite3.Connection, ops: list[WriteOp]) -> None:
    execute = conn.execute
    for op, table, key, value in ops:
        if op == "put":
            execute(_PUT_SQL[table], (*key, value))
        else:
            execute(_DEL_SQL[table, len(key)], key)


_STOP = object()
# A group this small is committed right on the event loop: the fsync (~0.3 ms here) costs less than the
# hand-over to the writer thread and back (at one request at a time it halved the /send latency). Bigger
# groups, and groups that delete (they may reclaim pages), go to the writer thread.
INLINE_COMMIT_OPS = 64
# Checkpoints (copying the WAL back into the database file, then an fsync) in two steps, after about every
# CHECKPOINT_EVERY_OPS written rows. The bulk runs on a connection and thread of its own, as a PASSIVE
# checkpoint that never blocks the writer; done on the writer thread right after a COMMIT it held every
# commit behind it for 70-160 ms. But only a checkpoint that catches up with the end of the WAL lets the
# next transaction start the WAL over, and the writer keeps appending meanwhile: so the next group goes to
# the writer thread, which checkpoints the frames added since (a stall about half as long). Without that
# last step the WAL grows without end, and every read gets slower with it (10-15% fewer requests/s).
CHECKPOINT_EVERY_OPS = 10000


class SqliteStorage:
    def __init__(self, path: Path | str, *, max_batch: int = 1024, reclaim_pages: int = 1024) -> None:
        self.path = Path(path)
        self._max_batch = max_batch
        # Free pages beyond this many (left by expired invocations and journals) are given back to the
        # file system after a commit that deleted rows.
        self._reclaim_pages = reclaim_pages
        self._reader_conn: sqlite3.Connection | None = None
        self._reader: _SqliteReader | None = None
        self._writer: sqlite3.Connection | None = None
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pending: list[tuple[list[WriteOp], asyncio.Future[None]]] = []
        # A group is with the writer thread, which owns the connection until it answers.
        self._committing = False
        self._holding = False  # a group was committed inline in this turn of the loop
        self._ops_since_checkpoint = 0
        self._checkpointer: threading.Thread | None = None
        self._checkpoint_wanted = threading.Event()
        self._checkpoint_stop = False
        self._finish_checkpoint = False  # the checkpointer did the bulk: the writer thread catches up
        self.stats = CommitStats()
        self.status_cache = StatusCache()

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            writer = _connect(self.path)
            # Inserts land at random places of big B-trees (ids are random): the writer keeps their interior
            # pages in memory. Not the reader: its cache is dropped whenever another connection committed,
            # and dropping a big one costs more than it saves.
            writer.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
            migrate(writer)
            writer.execute("PRAGMA wal_autocheckpoint=0")
            self._reader_conn = _connect(self.path)
            checkpoint_conn = _connect(self.path)
        except (sqlite3.Error, OSError) as e:  # read-only or full data dir: say so, not a traceback
            raise StorageUnavailable(
                f"cannot open the database {self.path}: {e} (the data directory must be writable)"
            ) from None
        self._writer = writer
        self._reader = _SqliteReader(self._reader_conn)
        self._thread = threading.Thread(
            target=self._committer_loop, args=(writer,), name="sqlite-writer", daemon=True
        )
        self._thread.start()
        self._checkpoint_stop = False
        self._checkpointer = threading.Thread(
            target=self._checkpointer_loop, args=(checkpoint_conn,), name="sqlite-checkpoint", daemon=True
        )
        self._checkpointer.start()

    async def close(self) -> None:
        for _ in range(500):  # let the group with the writer thread finish (its callers are waiting)
            if not self._committing and not self._holding:
                break
            await asyncio.sleep(0.01)
        if self._thread is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        if self._checkpointer is not None:
            self._checkpoint_stop = True
            self._checkpoint_wanted.set()
            await asyncio.to_thread(self._checkpointer.join)
            self._checkpointer = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._reader_conn is not None:
            self._reader_conn.close()
            self._reader_conn = None

    def _require_reader(self) -> _SqliteReader:
        if self._reader is None:
            raise RuntimeError("storage is not open")
        return self._reader

    def begin(self) -> Transaction:
        return BufferedTransaction(self._require_reader(), self.status_cache)

    def reader(self) -> Transaction:
        return BufferedTransaction(self._require_reader(), self.status_cache)

    async def commit(self, txn: Transaction) -> None:
        ops = list(txn.writes)
        if not ops:
            return
        if self._thread is None:
            raise RuntimeError("storage is not open")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((ops, fut))
        if not self._committing and not self._holding:
            self._start_group()
        try:
            await fut
        except BaseException:
            # The commit failed, or its outcome is unknown to us (cancelled): drop what the cache knows.
            self.status_cache.clear()
            raise
        changes = getattr(txn, "status_changes", None)
        if changes:
            self.status_cache.committed(changes)

    def _start_group(self) -> None:
        """Group commit: everything queued while the previous group was being made durable goes into one
        SQLite transaction. The statements run right here, on the event loop's thread; COMMIT (the fsync)
        too for a small group, else on the writer thread, which answers through `_group_done`. Executing
        the statements on that thread cost one GIL hand-over per statement, each waiting for the busy
        loop to yield it."""
        conn = self._writer
        assert conn is not None
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            started = time.perf_counter()
            try:
                conn.execute("BEGIN IMMEDIATE")
                for ops, _ in batch:
                    _apply_ops(conn, ops)
            except BaseException as e:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                error = (
                    StorageUnavailable(f"storage cannot write, the request was not stored: {e}")
                    if isinstance(e, sqlite3.Error)  # full disk, read-only file system, I/O error
                    else e
                )
                for _, fut in batch:
                    _resolve(fut, error)
                continue
            deletes = any(op != "put" for ops, _ in batch for op, *_ in ops)
            n_ops = sum(len(ops) for ops, _ in batch)
            self._ops_since_checkpoint += n_ops
            if self._ops_since_checkpoint >= CHECKPOINT_EVERY_OPS:
                self._ops_since_checkpoint = 0
                self._checkpoint_wanted.set()
            checkpoint, self._finish_checkpoint = self._finish_checkpoint, False
            if not checkpoint and not deletes and n_ops <= INLINE_COMMIT_OPS:
                # Commits asked for during the rest of this turn of the loop are grouped, on the next.
                self._holding = True
                asyncio.get_running_loop().call_soon(self._release_held)
                self._group_done(batch, started, _commit(conn), resume=False)
                return
            self._committing = True
            self._queue.put((batch, started, deletes, checkpoint, asyncio.get_running_loop()))
            return

    def _release_held(self) -> None:
        self._holding = False
        if self._pending and not self._committing and self._writer is not None:
            self._start_group()

    def _group_done(
        self,
        batch: list[tuple[list[WriteOp], asyncio.Future[None]]],
        started: float,
        error: BaseException | None,
        resume: bool = True,
    ) -> None:
        self._committing = False
        if error is None:
            self.stats.commits += 1
            self.stats.transactions += len(batch)
            self.stats.max_batch = max(self.stats.max_batch, len(batch))
            self.stats.total_seconds += time.perf_counter() - started
            if len(self.stats.batch_sizes) < 10_000:
                self.stats.batch_sizes.append(len(batch))
        for _, fut in batch:
            _resolve(fut, error)
        if resume and self._pending and not self._holding and self._writer is not None:
            self._start_group()

    def _committer_loop(self, conn: sqlite3.Connection) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch: list[tuple[list[WriteOp], asyncio.Future[None]]]
            started: float
            deletes: bool
            checkpoint: bool
            loop: asyncio.AbstractEventLoop
            batch, started, deletes, checkpoint, loop = item  # type: ignore[misc]
            error = _commit(conn)
            if error is None and checkpoint:
                with contextlib.suppress(sqlite3.Error):  # busy: the next round catches up
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            if error is None and deletes:
                self._reclaim(conn)
            with contextlib.suppress(RuntimeError):  # loop closed
                loop.call_soon_threadsafe(self._group_done, batch, started, error)

    def _checkpointer_loop(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                self._checkpoint_wanted.wait()
                self._checkpoint_wanted.clear()
                if self._checkpoint_stop:
                    return
                with contextlib.suppress(sqlite3.Error):  # busy: the next one catches up
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self._finish_checkpoint = True
        finally:
            conn.close()

    def _reclaim(self, conn: sqlite3.Connection) -> None:
        with contextlib.suppress(sqlite3.Error):
            (free,) = conn.execute("PRAGMA freelist_count").fetchone()
            if free > self._reclaim_pages:
                conn.executescript("PRAGMA incremental_vacuum;")  # runs it to completion


def _commit(conn: sqlite3.Connection) -> BaseException | None:
    try:
        conn.execute("COMMIT")
    except BaseException as e:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        if isinstance(e, sqlite3.Error):
            return StorageUnavailable(f"storage cannot write, the request was not stored: {e}")
        return e
    return None


def _resolve(fut: asyncio.Future[None], error: BaseException | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)
