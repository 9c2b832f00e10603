"""The storage interface: one Protocol per table family, a transaction that offers them all, a backend.

A transaction buffers its writes and reads its own writes; `Storage.commit` makes a transaction's writes
durable (backends group concurrent commits into one physical transaction) and only then returns. Nothing
may be acknowledged to a client or a deployment before the commit that recorded it has returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from pyrestate.server.core_api import QuerySnapshot, Unavailable
from pyrestate.server.storage.records import InvocationStatus, JournalEntry, Promise, Timer

# Tables of the key/value layer every backend provides: name -> key columns (name, SQL type). Each row has
# one value column `v` (BLOB). Scans return rows in key order.
TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "invocation_status": (("invocation_id", "TEXT"),),
    "journal": (("invocation_id", "TEXT"), ("idx", "INTEGER")),
    "state": (("service", "TEXT"), ("service_key", "TEXT"), ("key", "BLOB")),
    "inbox": (("service", "TEXT"), ("service_key", "TEXT"), ("seq", "INTEGER")),
    "locks": (("service", "TEXT"), ("service_key", "TEXT")),
    "timers": (("fire_at", "INTEGER"), ("timer_id", "TEXT")),
    "promises": (("service", "TEXT"), ("service_key", "TEXT"), ("name", "TEXT")),
    "outbox": (("partition", "INTEGER"), ("seq", "INTEGER")),
    "fsm": (("partition", "INTEGER"), ("name", "TEXT")),
    "deployments": (("id", "TEXT"),),
    "services": (("name", "TEXT"),),
}


class StorageUnavailable(Unavailable):
    """A commit failed because the medium refuses writes (disk full, read-only, I/O error): nothing of it
    was stored, and callers answer 503 instead of acknowledging."""


Key = tuple[str | int | bytes, ...]
# (op, table, key, value): op "put" | "del" | "delprefix"
WriteOp = tuple[str, str, Key, bytes | None]
# Where a transaction's buffered writes stood: (write log length, undo log length).
Savepoint = tuple[int, int]


class KVReader(Protocol):
    """What a backend exposes to read committed data."""

    def get(self, table: str, key: Key) -> bytes | None: ...

    def scan(self, table: str, prefix: Key) -> list[tuple[Key, bytes]]: ...

    def scan_between(self, table: str, after: int, until: int, limit: int) -> list[tuple[Key, bytes]]:
        """At most `limit` rows whose first key column is in (after, until], in key order."""
        ...


# ---------------------------------------------------------------------------------------------- families


class InvocationStatusTable(Protocol):
    def get_invocation_status(self, invocation_id: str) -> InvocationStatus | None: ...

    def put_invocation_status(self, status: InvocationStatus) -> None: ...

    def delete_invocation_status(self, invocation_id: str) -> None: ...

    def all_invocation_statuses(self) -> list[InvocationStatus]: ...


class JournalTable(Protocol):
    def get_journal(self, invocation_id: str) -> list[JournalEntry]: ...

    def put_journal_entry(self, invocation_id: str, index: int, entry: JournalEntry) -> None: ...

    def delete_journal(self, invocation_id: str) -> None: ...


class StateTable(Protocol):
    def get_state(self, service: str, key: str, name: bytes) -> bytes | None: ...

    def get_all_state(self, service: str, key: str) -> list[tuple[bytes, bytes]]: ...

    def put_state(self, service: str, key: str, name: bytes, value: bytes) -> None: ...

    def delete_state(self, service: str, key: str, name: bytes) -> None: ...

    def delete_all_state(self, service: str, key: str) -> None: ...


class InboxTable(Protocol):
    """Durable FIFO of exclusive invocations waiting for a key's lock."""

    def push_inbox(self, service: str, key: str, seq: int, invocation_id: str) -> None: ...

    def peek_inbox(self, service: str, key: str) -> tuple[int, str] | None: ...

    def list_inbox(self, service: str, key: str) -> list[tuple[int, str]]: ...

    def delete_inbox(self, service: str, key: str, seq: int) -> None: ...


class LockTable(Protocol):
    """Which invocation holds the exclusive lock of an object/workflow key."""

    def get_lock(self, service: str, key: str) -> str | None: ...

    def put_lock(self, service: str, key: str, invocation_id: str) -> None: ...

    def delete_lock(self, service: str, key: str) -> None: ...


class TimerTable(Protocol):
    def put_timer(self, timer: Timer) -> None: ...

    def delete_timer(self, timer: Timer) -> None: ...

    def has_timer(self, timer: Timer) -> bool: ...

    def timers_between(self, after_ms: int, until_ms: int, limit: int) -> list[Timer]:
        """Committed timers with after_ms < fire_at <= until_ms, earliest first, at most `limit`."""
        ...


class PromiseTable(Protocol):
    def get_promise(self, service: str, key: str, name: str) -> Promise | None: ...

    def put_promise(self, service: str, key: str, name: str, promise: Promise) -> None: ...

    def delete_promises(self, service: str, key: str) -> None: ...


class OutboxTable(Protocol):
    """Commands addressed to a partition, written atomically with the effects that caused them."""

    def put_outbox(self, partition: int, seq: int, payload: bytes) -> None: ...

    def delete_outbox(self, partition: int, seq: int) -> None: ...

    def list_outbox(self, partition: int) -> list[tuple[int, bytes]]: ...


class FsmTable(Protocol):
    """Small per-partition counters (inbox / outbox sequence numbers)."""

    def get_fsm(self, partition: int, name: str) -> int | None: ...

    def put_fsm(self, partition: int, name: str, value: int) -> None: ...


class SchemaTable(Protocol):
    """Deployments and service schemas, stored as opaque JSON documents."""

    def put_deployment(self, deployment_id: str, doc: bytes) -> None: ...

    def delete_deployment(self, deployment_id: str) -> None: ...

    def all_deployments(self) -> list[tuple[str, bytes]]: ...

    def put_service(self, name: str, doc: bytes) -> None: ...

    def delete_service(self, name: str) -> None: ...

    def all_services(self) -> list[tuple[str, bytes]]: ...


class Transaction(
    InvocationStatusTable,
    JournalTable,
    StateTable,
    InboxTable,
    LockTable,
    TimerTable,
    PromiseTable,
    OutboxTable,
    FsmTable,
    SchemaTable,
    Protocol,
):
    """All table families over one consistent view: committed data plus this transaction's own writes."""

    @property
    def writes(self) -> Sequence[WriteOp]: ...

    def savepoint(self) -> Savepoint:
        """Mark the writes so far; a command that fails half-way is undone back to its mark."""
        ...

    def rollback_to(self, savepoint: Savepoint) -> None:
        """Drop the writes made after `savepoint` and restore what they overwrote in this transaction."""
        ...


class Storage(Protocol):
    def begin(self) -> Transaction:
        """A new transaction reading the committed state."""
        ...

    async def commit(self, txn: Transaction) -> None:
        """Durably apply the transaction's writes (grouped with concurrent commits); returns after fsync."""
        ...

    def reader(self) -> Transaction:
        """A read-only view of committed data (writes to it are never committed)."""
        ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class SnapshotStorage(Protocol):
    """A backend that opens consistent read-only snapshots itself, on a connection of its own (PostgreSQL);
    SQLite's snapshot is opened on the database file instead (`query.source.SqliteSnapshot`)."""

    def snapshot(self, *, now_ms: int | None = None) -> QuerySnapshot: ...
