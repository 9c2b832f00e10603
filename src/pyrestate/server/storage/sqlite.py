"""SQLite backend: WAL, synchronous=FULL, versioned migrations, group commit.

The data dir is locked while open, and every group commit is numbered so that commits lost with the WAL
are noticed at the next start (see `datadir`).

Every table of `api.TABLES` is a real SQL table (key columns + value column `v`), so it can be inspected
with any SQLite tool. Commits from many concurrent callers are grouped: everything queued while the previous
group is being made durable goes into one SQLite transaction, and one fsync (on a writer thread, outside the
event loop) acknowledges the whole group.
Reads use a separate connection and see only committed data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyrestate.server.storage.api import TABLES, Key, StorageUnavailable, Transaction, WriteOp
from pyrestate.server.storage.datadir import (
    CommitMark,
    DataDirError,
    DataDirLock,
    DataLoss,
    Mark,
    check_access,
)
from pyrestate.server.storage.txn import BufferedTransaction, StatusCache

log = logging.getLogger(__name__)


def _create_table_sql(name: str) -> str:
    cols = TABLES[name]
    col_defs = ", ".join(f"{c} {t} NOT NULL" for c, t in cols)
    pk = ", ".join(c for c, _ in cols)
    return f"CREATE TABLE {name} ({col_defs}, v BLOB NOT NULL, PRIMARY KEY ({pk})) WITHOUT ROWID"


# Migration i brings the schema from user_version i to i + 1. Append, never edit.
MIGRATIONS: list[list[str]] = [
    [_create_table_sql(name) for name in TABLES],
    [
        # The number of the last group commit (and of the logical transactions so far): see `datadir`.
        "CREATE TABLE pyrestate_meta (id INTEGER PRIMARY KEY CHECK (id = 0),"
        " commits INTEGER NOT NULL, transactions INTEGER NOT NULL)",
        "INSERT INTO pyrestate_meta VALUES (0, 0, 0)",
    ],
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


_META_SQL = "UPDATE pyrestate_meta SET commits = ?, transactions = ? WHERE id = 0"


def migrate(conn: sqlite3.Connection, path: Path | str = "the database") -> int:
    """Apply pending migrations; refuses a database written by a newer version, or by something else."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION or version < 0:
        raise DataDirError(
            f"{path} has schema version {version}, newer than this pyrestate knows ({SCHEMA_VERSION}): "
            "run the pyrestate that wrote it, or restore a backup made by this one"
        )
    if version == 0 and _tables(conn):
        raise DataDirError(
            f"{path} is an SQLite database but not pyrestate's (tables: {', '.join(_tables(conn)[:5])}); "
            "point --data-dir at a pyrestate data dir"
        )
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
    missing = sorted(set(TABLES) - set(_tables(conn)))
    if missing:
        raise DataDirError(f"{path} lacks the tables {', '.join(missing)} of its schema version {version}")
    return SCHEMA_VERSION


def _tables(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")]


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
    """Reads committed rows; a damaged page surfaces as `DataDirError` (503, or one line at start-up)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._path = path

    def _fetch(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        try:
            with self._lock:
                return self._conn.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as e:
            if _damaged(e):
                raise _damage_error(self._path, e) from None
            raise

    def get(self, table: str, key: Key) -> bytes | None:
        rows = self._fetch(_GET_SQL[table], key)
        return bytes(rows[0][0]) if rows else None

    def scan(self, table: str, prefix: Key) -> list[tuple[Key, bytes]]:
        return _rows(self._fetch(_SCAN_SQL[table, len(prefix)], prefix))

    def scan_between(self, table: str, after: int, until: int, limit: int) -> list[tuple[Key, bytes]]:
        return _rows(self._fetch(_BETWEEN_SQL[table], (after, until, limit)))


# SQLite's result codes for a file that is not a database / a damaged one.
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


def _damaged(e: sqlite3.DatabaseError) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def _damage_error(path: Path, e: sqlite3.DatabaseError) -> DataDirError:
    if getattr(e, "sqlite_errorcode", 0) & 0xFF == _SQLITE_NOTADB:
        what = f"{path} is not an SQLite database (its header is damaged, or it is another kind of file)"
    else:
        what = f"{path} is damaged (SQLite: {e})"
    return DataDirError(f"{what}; restore the data dir from a backup (see `pyrestate backup --help`)")


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
# The commit mark is fsynced at most this often (an OS crash may lose that much of it: see `datadir`).
MARK_SYNC_SECONDS = 1.0


class SqliteStorage:
    def __init__(
        self,
        path: Path | str,
        *,
        max_batch: int = 1024,
        reclaim_pages: int = 1024,
        accept_data_loss: bool = False,
        lock_note: str = "",
    ) -> None:
        self.path = Path(path)
        self._accept_data_loss = accept_data_loss
        self._lock = DataDirLock(self.path.parent, lock_note)
        self._mark = CommitMark(self.path)
        self._commits = 0  # number of the last group commit, also in pyrestate_meta
        self._transactions = 0
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
            self._lock.acquire()
        except OSError as e:  # read-only or full data dir: say so, not a traceback
            raise StorageUnavailable(
                f"cannot open the database {self.path}: {e} (the data directory must be writable)"
            ) from None
        try:
            self._open_locked()
        except BaseException:
            self._mark.close()
            self._lock.release()
            raise

    def _open_locked(self) -> None:
        mark = self._mark.read()
        wal = self.path.with_name(self.path.name + "-wal")
        # Looked at before SQLite opens the database, which creates both files when missing.
        if mark is not None and not self.path.exists():
            cause = "the database file was deleted"
        elif mark is not None and not mark.clean and not wal.exists():
            cause = "its write-ahead log was deleted after an unclean stop"
        else:
            cause = ""
        check_access(self.path)
        conns: list[sqlite3.Connection] = []
        try:
            writer = _connect(self.path)
            conns.append(writer)
            # Inserts land at random places of big B-trees (ids are random): the writer keeps their interior
            # pages in memory. Not the reader: its cache is dropped whenever another connection committed,
            # and dropping a big one costs more than it saves.
            writer.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
            migrate(writer, self.path)
            writer.execute("PRAGMA wal_autocheckpoint=0")
            self._commits, self._transactions = writer.execute(
                "SELECT commits, transactions FROM pyrestate_meta"
            ).fetchone()
            reader_conn = _connect(self.path)
            conns.append(reader_conn)
            checkpoint_conn = _connect(self.path)
            conns.append(checkpoint_conn)
            self._check_mark(mark, cause)
            self._mark.open()
            self._write_mark(clean=False)
            self._mark.sync()
        except BaseException as e:
            for conn in conns:
                conn.close()
            if isinstance(e, sqlite3.DatabaseError) and _damaged(e):
                raise _damage_error(self.path, e) from None
            if isinstance(e, (sqlite3.Error, OSError)):  # read-only or full data dir: say so
                raise StorageUnavailable(
                    f"cannot open the database {self.path}: {e} (the data directory must be writable)"
                ) from None
            raise
        self._reader_conn = reader_conn
        self._writer = writer
        self._reader = _SqliteReader(self._reader_conn, self.path)
        self._thread = threading.Thread(
            target=self._committer_loop, args=(writer,), name="sqlite-writer", daemon=True
        )
        self._thread.start()
        self._checkpoint_stop = False
        self._checkpointer = threading.Thread(
            target=self._checkpointer_loop, args=(checkpoint_conn,), name="sqlite-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _check_mark(self, mark: Mark | None, cause: str) -> None:
        """Refuse (or, told to accept the loss, warn about) commits the mark saw that the database lacks."""
        if mark is None:
            return  # a new data dir, or one restored from a backup (which has no mark)
        missing = mark.commits - self._commits
        if not cause and missing <= 0:
            return
        if missing > 0:
            lost = (
                f"{missing} acknowledged commits ({mark.transactions - self._transactions} transactions) "
                f"are missing from {self.path} (it holds commit {self._commits}, commit {mark.commits} "
                "had been acknowledged)"
            )
        else:
            lost = f"the commits since the last checkpoint of {self.path} are lost (how many is not known)"
        cause = cause or "its write-ahead log was lost or damaged, or the file was replaced by an older copy"
        if self._accept_data_loss:
            log.warning("accepting data loss: %s: %s", lost, cause)
            return
        raise DataLoss(
            f"data loss: {lost}: {cause}; restore the data dir from a backup, or start with "
            "--accept-data-loss to go on with what is left"
        )

    def _write_mark(self, *, clean: bool) -> None:
        self._mark.write(Mark(clean, self._commits, self._transactions))

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
        if self._reader_conn is not None:
            self._reader_conn.close()
            self._reader_conn = None
        if self._writer is not None:
            # Everything into the main file, then `clean`: from here on the WAL may go (SQLite deletes it
            # on close). Busy (a query still reading): not clean, the next start recovers from the WAL.
            with contextlib.suppress(sqlite3.Error):
                (busy, *_) = self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if not busy:
                    self._write_mark(clean=True)
            self._mark.close()
            self._writer.close()
            self._writer = None
        self._lock.release()

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
                numbers = (self._commits + 1, self._transactions + len(batch))
                conn.execute(_META_SQL, numbers)
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
                self._group_done(batch, started, self._commit_numbered(conn, numbers), resume=False)
                return
            self._committing = True
            self._queue.put((batch, started, deletes, checkpoint, numbers, asyncio.get_running_loop()))
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
            numbers: tuple[int, int]
            loop: asyncio.AbstractEventLoop
            batch, started, deletes, checkpoint, numbers, loop = item  # type: ignore[misc]
            error = self._commit_numbered(conn, numbers)
            if error is None and checkpoint:
                with contextlib.suppress(sqlite3.Error):  # busy: the next round catches up
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            if error is None and deletes:
                self._reclaim(conn)
            with contextlib.suppress(RuntimeError):  # loop closed
                loop.call_soon_threadsafe(self._group_done, batch, started, error)

    def _commit_numbered(self, conn: sqlite3.Connection, numbers: tuple[int, int]) -> BaseException | None:
        """COMMIT, then the mark (before any caller hears of the commit, so the mark never lags a crash)."""
        error = _commit(conn)
        if error is None:
            self._commits, self._transactions = numbers
            self._write_mark(clean=False)
        return error

    def _checkpointer_loop(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                wanted = self._checkpoint_wanted.wait(MARK_SYNC_SECONDS)
                self._mark.sync()
                if not wanted:
                    continue
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
