"""PostgreSQL backend: the same tables as SQLite, group commit, a read-through cache, partition leases.

Tables. Every table of `api.TABLES` is a real table (key columns + `v bytea`); TEXT columns use the "C"
collation so that scans come back in byte order, as SQLite's. `schema_version` holds the migration
version (applied under an advisory lock, so nodes starting together migrate once); `partition_leases`
says which node owns which partition, with an epoch bumped at every change of hands.

Writes. `commit` queues the transaction's write log; one writer task takes everything queued and sends it
as one PostgreSQL transaction, then resolves the callers only after COMMIT returned: concurrent commits
share one WAL flush. The batch's net effect goes out as one statement per table and kind (rows passed as
arrays through `unnest`), pipelined, so a batch of a thousand transactions costs a few round trips.
A broken connection fails the batch in flight (its outcome is unknown, nothing was acknowledged) and is
replaced for the next one; reads are retried once on a new connection.

Fencing. A storage opened with partitions acquires their leases (waiting while another live node holds
them: a standby) and renews them in the background. Every commit re-reads the held leases `FOR SHARE`
inside its transaction and aborts unless owner and epoch are still ours; a node that takes a partition
over bumps the epoch under the row lock, so once it has, no commit of the former owner can land. A lost
lease poisons the storage: every later commit raises `LeaseLost`, the node processes nothing more.

Reads. Through a cache kept up to date with each committed write log, and dropped whenever leases are
(re)acquired (`pg_reader`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyrestate.server.storage.api import INITIAL_TABLES, TABLES, Key, StorageUnavailable, Transaction, WriteOp
from pyrestate.server.storage.pg_reader import PostgresReader, PostgresSnapshot, key_filter, key_names
from pyrestate.server.storage.sqlite import CommitStats
from pyrestate.server.storage.txn import BufferedTransaction

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

_PG_TYPES = {"TEXT": 'text COLLATE "C"', "INTEGER": "bigint", "BLOB": "bytea"}
_ARRAY_TYPES = {"TEXT": "text[]", "INTEGER": "bigint[]", "BLOB": "bytea[]"}
_MIGRATION_LOCK = 0x7079_7265_7374  # advisory lock key: one migrating node at a time


def _create_table_sql(name: str) -> str:
    cols = TABLES[name]
    col_defs = ", ".join(f"{c} {_PG_TYPES[t]} NOT NULL" for c, t in cols)
    pk = ", ".join(c for c, _ in cols)
    return f"CREATE TABLE {name} ({col_defs}, v bytea NOT NULL, PRIMARY KEY ({pk}))"


# Migration i brings the schema from version i to i + 1. Append, never edit.
MIGRATIONS: list[list[str]] = [
    [
        *(_create_table_sql(name) for name in INITIAL_TABLES),
        "CREATE TABLE partition_leases (partition integer PRIMARY KEY, owner text NOT NULL,"
        " epoch bigint NOT NULL, expires_at timestamptz NOT NULL)",
    ],
    [_create_table_sql("subscriptions"), _create_table_sql("dedup")],
    [_create_table_sql("kafka_clusters")],
    [_create_table_sql(name) for name in ("limit_rules", "limit_slots", "limit_queue")],
]
SCHEMA_VERSION = len(MIGRATIONS)


def _writer_name(node_id: str) -> str:
    """`application_name` of a node's commit sessions (at most 63 bytes are kept by the server)."""
    return f"pyrestate-writer:{node_id}"[:63]


class LeaseLost(StorageUnavailable):
    """This node no longer owns a partition it processed: another node took it over."""

    def __init__(self, partitions: Iterable[int]) -> None:
        self.partitions = sorted(partitions)
        super().__init__(f"lease of partition(s) {self.partitions} lost to another node")


# ------------------------------------------------------------------------------------------- SQL texts


def _put_sql(table: str) -> str:
    names = key_names(table)
    marks = ", ".join("%s" for _ in range(len(TABLES[table]) + 1))
    return (
        f"INSERT INTO {table} ({names}, v) VALUES ({marks})"
        f" ON CONFLICT ({names}) DO UPDATE SET v = EXCLUDED.v"
    )


def _delete_sql(table: str, n: int) -> str:
    return f"DELETE FROM {table} WHERE {key_filter(table, n)}"


_ACQUIRE_SQL = """
INSERT INTO partition_leases AS l (partition, owner, epoch, expires_at)
VALUES (%(p)s, %(owner)s, 1, now() + %(ttl)s * interval '1 millisecond')
ON CONFLICT (partition) DO UPDATE
   SET owner = EXCLUDED.owner, epoch = l.epoch + 1, expires_at = EXCLUDED.expires_at
 WHERE l.expires_at < now() OR l.owner = EXCLUDED.owner
RETURNING epoch
"""
_RENEW_SQL = """
UPDATE partition_leases SET expires_at = now() + %(ttl)s * interval '1 millisecond'
 WHERE owner = %(owner)s AND partition = ANY(%(parts)s::integer[])
   AND epoch = (%(epochs)s::bigint[])[array_position(%(parts)s::integer[], partition)]
RETURNING partition
"""
_FENCE_SQL = (
    "SELECT partition, owner, epoch FROM partition_leases WHERE partition = ANY(%s::integer[]) FOR SHARE"
)
_RELEASE_SQL = """
UPDATE partition_leases SET expires_at = now() - interval '1 millisecond'
 WHERE owner = %(owner)s AND partition = ANY(%(parts)s::integer[])
   AND epoch = (%(epochs)s::bigint[])[array_position(%(parts)s::integer[], partition)]
"""


def _statements(ops: Iterable[WriteOp]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The net effect of a write log as few statements as possible (one per table and kind): prefix
    deletions in order, then row deletions, then upserts. A row written and later covered by a prefix
    deletion is dropped; one written after it is kept, and lands after the deletion."""
    prefixes: list[tuple[str, Key]] = []
    net: dict[tuple[str, Key], bytes | None] = {}
    for op, table, key, value in ops:
        if op == "delprefix":
            n = len(key)
            for k in [k for k in net if k[0] == table and k[1][:n] == key]:
                del net[k]
            prefixes.append((table, key))
        else:
            net[(table, key)] = value
    out: list[tuple[str, list[tuple[Any, ...]]]] = []
    for table, key in prefixes:
        out.append((_delete_sql(table, len(key)), [key]))
    dels: dict[str, list[tuple[Any, ...]]] = {}
    puts: dict[str, list[tuple[Any, ...]]] = {}
    for (table, key), value in net.items():
        if value is None:
            dels.setdefault(table, []).append(key)
        else:
            puts.setdefault(table, []).append((*key, value))
    out += [(_delete_many_sql(t), [_columns(t, rows, value=False)]) for t, rows in dels.items()]
    out += [(_put_many_sql(t), [_columns(t, rows, value=True)]) for t, rows in puts.items()]
    return out


def _unnest(table: str, *, value: bool) -> str:
    types = [_ARRAY_TYPES[t] for _, t in TABLES[table]] + (["bytea[]"] if value else [])
    return "unnest(" + ", ".join(f"%s::{t}" for t in types) + ")"


def _put_many_sql(table: str) -> str:
    """Upsert of many rows in one statement: one array parameter per column (keys must be distinct)."""
    names = key_names(table)
    return (
        f"INSERT INTO {table} ({names}, v) SELECT * FROM {_unnest(table, value=True)}"
        f" ON CONFLICT ({names}) DO UPDATE SET v = EXCLUDED.v"
    )


def _delete_many_sql(table: str) -> str:
    return f"DELETE FROM {table} WHERE ({key_names(table)}) IN (SELECT * FROM {_unnest(table, value=False)})"


def _columns(table: str, rows: list[tuple[Any, ...]], *, value: bool) -> tuple[list[Any], ...]:
    width = len(TABLES[table]) + (1 if value else 0)
    return tuple([r[i] for r in rows] for i in range(width))


# ------------------------------------------------------------------------------------------- migrations


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Apply pending migrations (each in its own transaction); refuses a schema newer than this code."""
    for _ in range(SCHEMA_VERSION + 1):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            version = 0 if row is None else int(row[0])
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"database schema version {version} is newer than this server ({SCHEMA_VERSION})"
                )
            if version == SCHEMA_VERSION:
                return version
            for stmt in MIGRATIONS[version]:
                conn.execute(stmt.encode())
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version + 1,))
            else:
                conn.execute("UPDATE schema_version SET version = %s", (version + 1,))
    raise AssertionError("unreachable")


# ------------------------------------------------------------------------------------------- storage


@dataclass
class _Pending:
    ops: list[WriteOp]
    fut: asyncio.Future[None]


class PostgresStorage:
    """`Storage` on PostgreSQL. `partitions`: the partitions whose leases this node must hold before
    `open` returns (none: no leases, no fencing — for tools and tests of the table layer)."""

    def __init__(
        self,
        conninfo: str,
        *,
        partitions: Iterable[int] = (),
        node_id: str | None = None,
        lease_ttl_ms: int = 10_000,
        acquire_timeout_s: float | None = None,
        cache: bool = True,
        cache_max_entries: int = 500_000,
        max_batch: int = 1024,
        on_lease_lost: Callable[[LeaseLost], None] | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.partitions = tuple(sorted(set(partitions)))
        self.node_id = node_id or socket.gethostname()
        self.lease_ttl_ms = lease_ttl_ms
        self._acquire_timeout_s = acquire_timeout_s
        self._cache = cache
        self._cache_max = cache_max_entries
        self._max_batch = max_batch
        self._on_lease_lost = on_lease_lost
        self._reader: PostgresReader | None = None
        self._wconn: psycopg.AsyncConnection[Any] | None = None
        self._lconn: psycopg.AsyncConnection[Any] | None = None
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self.epochs: dict[int, int] = {}  # held leases: partition -> epoch
        self.lost: set[int] = set()
        self.stats = CommitStats()

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        import psycopg

        try:
            sync = psycopg.Connection.connect(self.conninfo, autocommit=True)
        except psycopg.OperationalError as e:
            raise StorageUnavailable(f"cannot connect to PostgreSQL: {e}") from None
        try:
            migrate(sync)
            self._wconn = await psycopg.AsyncConnection.connect(self.conninfo, **self._writer_options())
        except BaseException:
            sync.close()
            raise
        self._reader = PostgresReader(self.conninfo, sync, cache=self._cache, max_entries=self._cache_max)
        if self.partitions:
            self._lconn = await psycopg.AsyncConnection.connect(
                self.conninfo, autocommit=True, **self._lease_options()
            )
            await self._acquire_all()
            self._renewer = asyncio.get_running_loop().create_task(self._renew_loop(), name="pg-lease-renew")
        self._writer = asyncio.get_running_loop().create_task(self._writer_loop(), name="pg-writer")

    async def close(self) -> None:
        for task in (self._renewer, self._writer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._renewer = self._writer = None
        while not self._queue.empty():
            p = self._queue.get_nowait()
            if not p.fut.done():
                p.fut.set_exception(RuntimeError("storage closed"))
        if self._lconn is not None:
            with contextlib.suppress(Exception):
                await self.release_leases()
            await self._lconn.close()
            self._lconn = None
        if self._wconn is not None:
            await self._wconn.close()
            self._wconn = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # ------------------------------------------------------------------ leases

    def _writer_options(self) -> dict[str, Any]:
        """A node paused in the middle of a commit holds its leases' rows FOR SHARE, which would block the
        takeover for as long as it is paused: the server ends such a transaction after one TTL."""
        if not self.partitions:
            return {}
        return {
            "options": self._options(f"-c idle_in_transaction_session_timeout={self.lease_ttl_ms}"),
            "application_name": _writer_name(self.node_id),
        }

    def _lease_options(self) -> dict[str, Any]:
        # Taking a lease waits for a row lock at most this long; the caller tries again later.
        return {"options": self._options(f"-c lock_timeout={max(100, self.lease_ttl_ms // 3)}")}

    def _options(self, extra: str) -> str:
        """`extra` after the URL's own server options (e.g. a search_path), which a bare one would replace."""
        from psycopg.conninfo import conninfo_to_dict

        own = conninfo_to_dict(self.conninfo).get("options")
        return f"{own} {extra}" if own else extra

    async def _lease_conn(self) -> psycopg.AsyncConnection[Any]:
        import psycopg

        if self._lconn is None or self._lconn.broken or self._lconn.closed:
            self._lconn = await psycopg.AsyncConnection.connect(
                self.conninfo, autocommit=True, **self._lease_options()
            )
        return self._lconn

    async def try_acquire(self, partitions: Iterable[int]) -> list[int]:
        """Take the leases of `partitions` that are free, expired or already ours; returns those taken.
        Taking one bumps its epoch, which fences any earlier holder (including an earlier run of us)."""
        import psycopg

        conn = await self._lease_conn()
        taken = []
        for p in partitions:
            try:
                cur = await conn.execute(
                    _ACQUIRE_SQL, {"p": p, "owner": self.node_id, "ttl": self.lease_ttl_ms}
                )
            except psycopg.errors.LockNotAvailable:
                await self._end_stuck_commits(conn, p)
                continue
            row = await cur.fetchone()
            if row is not None:
                self.epochs[p] = int(row[0])
                self.lost.discard(p)
                taken.append(p)
        if taken and self._reader is not None:
            self._reader.clear()  # another node may have written these partitions meanwhile
        return taken

    async def _end_stuck_commits(self, conn: psycopg.AsyncConnection[Any], partition: int) -> None:
        """The lease row is locked by a commit of its former owner that has been open longer than a TTL
        (a node paused mid-commit: the server cannot tell). Once the lease has expired, that commit can only
        fail the fence: end its session so that the row is free. Needs the same database role (or
        pg_signal_backend) on every node."""
        cur = await conn.execute(
            "SELECT owner FROM partition_leases WHERE partition = %s AND expires_at < now()", (partition,)
        )
        row = await cur.fetchone()
        if row is None:
            return
        cur = await conn.execute(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND xact_start < now() - %s * interval '1 millisecond'",
            (_writer_name(str(row[0])), self.lease_ttl_ms),
        )
        ended = [int(r[0]) for r in await cur.fetchall()]
        if ended:
            log.warning("ended stuck commit session(s) %s of %s (partition %d)", ended, row[0], partition)

    async def _acquire_all(self) -> None:
        deadline = None if self._acquire_timeout_s is None else time.monotonic() + self._acquire_timeout_s
        while True:
            await self.try_acquire(p for p in self.partitions if p not in self.epochs)
            missing = [p for p in self.partitions if p not in self.epochs]
            if not missing:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"partitions {missing} are held by another node")
            log.info("waiting for the leases of partitions %s (held by another node)", missing)
            if self.epochs:
                await self.renew_leases()
            # Poll faster than the TTL: a lease handed back by a stopping node is taken within this time.
            await asyncio.sleep(min(self.lease_ttl_ms / 3000, 0.25))

    async def renew_leases(self) -> None:
        held = sorted(self.epochs)
        if not held:
            return
        cur = await (await self._lease_conn()).execute(
            _RENEW_SQL,
            {
                "ttl": self.lease_ttl_ms,
                "owner": self.node_id,
                "parts": held,
                "epochs": [self.epochs[p] for p in held],
            },
        )
        renewed = {int(r[0]) for r in await cur.fetchall()}
        gone = set(held) - renewed
        if gone:
            self._lose(gone)

    async def release_leases(self) -> None:
        """Hand the leases back (a standby takes over at once instead of after the TTL); commits fail from
        now on, as after a lost lease, until the leases are acquired again."""
        if self._lconn is None or not self.epochs:
            return
        held = sorted(self.epochs)
        epochs = [self.epochs[p] for p in held]
        self.lost.update(held)
        self.epochs.clear()
        conn = await self._lease_conn()
        await conn.execute(_RELEASE_SQL, {"owner": self.node_id, "parts": held, "epochs": epochs})

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ttl_ms / 3000)
            try:
                await self.renew_leases()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The database is unreachable: keep trying; commits fail meanwhile, and the fence decides.
                log.exception("renewing partition leases failed")

    def _lose(self, partitions: set[int]) -> None:
        for p in partitions:
            self.epochs.pop(p, None)
        self.lost |= partitions
        error = LeaseLost(partitions)
        log.error("%s: this node stops processing them", error)
        if self._on_lease_lost is not None:
            self._on_lease_lost(error)

    # ------------------------------------------------------------------ reads and commits

    def _require_reader(self) -> PostgresReader:
        if self._reader is None:
            raise RuntimeError("storage is not open")
        return self._reader

    def begin(self) -> Transaction:
        return BufferedTransaction(self._require_reader())

    def reader(self) -> Transaction:
        return BufferedTransaction(self._require_reader())

    @property
    def read_round_trips(self) -> int:
        return self._require_reader().round_trips

    async def commit(self, txn: Transaction) -> None:
        ops = list(txn.writes)
        if not ops:
            return
        if self._writer is None:
            raise RuntimeError("storage is not open")
        if self.lost:
            raise LeaseLost(self.lost)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(ops, fut))
        await fut

    async def _writer_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._commit_batch(batch)

    async def _commit_batch(self, batch: list[_Pending]) -> None:
        import psycopg

        assert self._wconn is not None and self._reader is not None
        if self._wconn.broken or self._wconn.closed:
            try:
                self._wconn = await psycopg.AsyncConnection.connect(self.conninfo, **self._writer_options())
            except psycopg.OperationalError as e:
                for p in batch:
                    if not p.fut.done():
                        p.fut.set_exception(StorageUnavailable(f"cannot reconnect to PostgreSQL: {e}"))
                return
        conn = self._wconn
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            if self.lost:
                raise LeaseLost(self.lost)
            held = dict(self.epochs)
            async with conn.pipeline(), conn.transaction():
                fence = conn.cursor()
                if held:
                    await fence.execute(_FENCE_SQL, (sorted(held),))
                async with conn.cursor() as cur:
                    for sql, params in _statements(op for p in batch for op in p.ops):
                        await cur.executemany(sql, params)
                if held:
                    rows = await fence.fetchall()
                    current = {int(p): (owner, int(epoch)) for p, owner, epoch in rows}
                    gone = {p for p, e in held.items() if current.get(p) != (self.node_id, e)}
                    if gone:
                        self._lose(gone)
                        raise LeaseLost(gone)
        except asyncio.CancelledError:
            self._reader.clear()
            for p in batch:
                if not p.fut.done():
                    p.fut.set_exception(RuntimeError("storage closed during commit"))
            raise
        except psycopg.OperationalError as e:
            error = StorageUnavailable(f"PostgreSQL unavailable, nothing was acknowledged: {e}")
            self._reader.clear()  # COMMIT may or may not have happened: forget what we believed
        except BaseException as e:
            error = e
            self._reader.clear()
        if error is None:
            for p in batch:
                self._reader.apply(p.ops)
            elapsed = time.perf_counter() - started
            self.stats.commits += 1
            self.stats.transactions += len(batch)
            self.stats.max_batch = max(self.stats.max_batch, len(batch))
            self.stats.total_seconds += elapsed
            if len(self.stats.batch_sizes) < 10_000:
                self.stats.batch_sizes.append(len(batch))
        for p in batch:
            if p.fut.done():
                continue
            if error is None:
                p.fut.set_result(None)
            else:
                p.fut.set_exception(error)

    # ------------------------------------------------------------------ SQL introspection

    def snapshot(self, *, now_ms: int | None = None) -> PostgresSnapshot:
        return PostgresSnapshot(self.conninfo, now_ms=now_ms)


__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "LeaseLost", "PostgresStorage", "migrate"]
