"""Contract of the storage interface: every backend must pass these (PostgreSQL with and without its
read cache)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pyrestate.server.core_api import Failure, HandlerType, ServiceType, Success
from pyrestate.server.storage import sqlite as sqlite_backend
from pyrestate.server.storage.api import Storage
from pyrestate.server.storage.datadir import DataDirError, DataDirLocked, DataLoss
from pyrestate.server.storage.memory import MemoryStorage
from pyrestate.server.storage.postgres import PostgresStorage
from pyrestate.server.storage.records import (
    InvocationStatus,
    JournalEntry,
    Promise,
    ResponseSink,
    Status,
    Target,
    Timer,
    TimerKind,
    Waiting,
)
from pyrestate.server.storage.sqlite import SCHEMA_VERSION, SqliteStorage


@pytest.fixture(params=["memory", "sqlite", "postgres", "postgres-nocache"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    s: Storage
    if request.param == "memory":
        s = MemoryStorage()
    elif request.param == "sqlite":
        s = SqliteStorage(tmp_path / "db.sqlite3")
    else:
        url = request.getfixturevalue("pg_url")
        s = PostgresStorage(url, cache=request.param == "postgres")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def _status(iid: str = "inv_1a", **kw: object) -> InvocationStatus:
    base = InvocationStatus(
        invocation_id=iid,
        status=Status.INVOKED,
        target=Target("Counter", "add", "k", ServiceType.VIRTUAL_OBJECT, HandlerType.EXCLUSIVE),
        created_at=1,
        modified_at=2,
        sinks=(ResponseSink("inv_1b", 3),),
        waiting=Waiting((1, 2), (1,), ("n",)),
        output=Failure(409, "x", (("a", "b"),)),
    )
    return base.with_(**kw)


async def test_status_roundtrip_and_delete(storage: Storage) -> None:
    txn = storage.begin()
    st = _status()
    txn.put_invocation_status(st)
    assert txn.get_invocation_status("inv_1a") == st  # reads its own writes
    assert storage.reader().get_invocation_status("inv_1a") is None  # not committed yet
    await storage.commit(txn)
    assert storage.reader().get_invocation_status("inv_1a") == st
    done = st.with_(status=Status.COMPLETED, output=Success(b"\x00\x01", "application/json"))
    txn = storage.begin()
    txn.put_invocation_status(done)
    txn.put_invocation_status(_status("inv_1b"))
    await storage.commit(txn)
    assert storage.reader().get_invocation_status("inv_1a") == done
    assert [s.invocation_id for s in storage.reader().all_invocation_statuses()] == ["inv_1a", "inv_1b"]
    txn = storage.begin()
    txn.delete_invocation_status("inv_1a")
    await storage.commit(txn)
    assert storage.reader().get_invocation_status("inv_1a") is None


async def test_journal_order_byte_exact_and_prefix_delete(storage: Storage) -> None:
    entries = [
        JournalEntry(0x0400, b"\x0a\x00input"),
        JournalEntry(0x8011, bytes(range(256))),
        JournalEntry(0x0401, b""),
    ]
    txn = storage.begin()
    for i, e in reversed(list(enumerate(entries))):  # insertion order must not matter
        txn.put_journal_entry("inv_1a", i, e)
    txn.put_journal_entry("inv_1b", 0, JournalEntry(0x0400, b"other"))
    await storage.commit(txn)
    assert storage.reader().get_journal("inv_1a") == entries
    txn = storage.begin()
    txn.delete_journal("inv_1a")
    assert txn.get_journal("inv_1a") == []
    txn.put_journal_entry("inv_1a", 0, JournalEntry(0x0400, b"again"))  # re-created after the delete
    assert txn.get_journal("inv_1a") == [JournalEntry(0x0400, b"again")]
    await storage.commit(txn)
    assert storage.reader().get_journal("inv_1a") == [JournalEntry(0x0400, b"again")]
    assert storage.reader().get_journal("inv_1b") == [JournalEntry(0x0400, b"other")]


async def test_state_family(storage: Storage) -> None:
    txn = storage.begin()
    txn.put_state("Counter", "k", b"b", b"2")
    txn.put_state("Counter", "k", b"a", b"1")
    txn.put_state("Counter", "k2", b"a", b"x")
    await storage.commit(txn)
    r = storage.reader()
    assert r.get_all_state("Counter", "k") == [(b"a", b"1"), (b"b", b"2")]
    assert r.get_state("Counter", "k", b"a") == b"1"
    txn = storage.begin()
    txn.delete_all_state("Counter", "k")
    txn.put_state("Counter", "k", b"c", b"3")
    txn.delete_state("Counter", "k2", b"a")
    assert txn.get_all_state("Counter", "k") == [(b"c", b"3")]
    await storage.commit(txn)
    r = storage.reader()
    assert r.get_all_state("Counter", "k") == [(b"c", b"3")]
    assert r.get_all_state("Counter", "k2") == []


async def test_inbox_fifo_and_locks(storage: Storage) -> None:
    txn = storage.begin()
    for seq, iid in [(3, "c"), (1, "a"), (2, "b")]:
        txn.push_inbox("Counter", "k", seq, iid)
    txn.put_lock("Counter", "k", "x")
    await storage.commit(txn)
    r = storage.reader()
    assert r.peek_inbox("Counter", "k") == (1, "a")
    assert r.list_inbox("Counter", "k") == [(1, "a"), (2, "b"), (3, "c")]
    assert r.get_lock("Counter", "k") == "x"
    txn = storage.begin()
    txn.delete_inbox("Counter", "k", 1)
    txn.delete_lock("Counter", "k")
    assert txn.peek_inbox("Counter", "k") == (2, "b")
    await storage.commit(txn)
    assert storage.reader().peek_inbox("Counter", "k") == (2, "b")
    assert storage.reader().get_lock("Counter", "k") is None
    assert storage.reader().peek_inbox("Counter", "other") is None


async def test_timers_promises_outbox_fsm_schema(storage: Storage) -> None:
    t1 = Timer(200, TimerKind.SLEEP, "inv_1a", 1, 2)
    t2 = Timer(100, TimerKind.INVOKE, "inv_1b", 0, 1)
    txn = storage.begin()
    txn.put_timer(t1)
    txn.put_timer(t2)
    txn.put_promise("Wf", "w1", "p", Promise(True, Success(b"v"), ()))
    txn.put_promise("Wf", "w1", "q", Promise(False, None, (ResponseSink("inv_1a", 4),)))
    txn.put_outbox(1, 5, b"five")
    txn.put_outbox(1, 2, b"two")
    txn.put_fsm(1, "seq", 41)
    txn.put_deployment("dp_1", b"{}")
    txn.put_service("Counter", b'{"a":1}')
    await storage.commit(txn)
    r = storage.reader()
    assert r.timers_between(-1, 1 << 62, 1 << 30) == [t2, t1]  # ordered by fire time
    assert r.get_promise("Wf", "w1", "q") == Promise(False, None, (ResponseSink("inv_1a", 4),))
    assert r.list_outbox(1) == [(2, b"two"), (5, b"five")]
    assert r.get_fsm(1, "seq") == 41 and r.get_fsm(2, "seq") is None
    assert r.all_deployments() == [("dp_1", b"{}")] and r.all_services() == [("Counter", b'{"a":1}')]
    txn = storage.begin()
    txn.delete_timer(t2)
    txn.delete_promises("Wf", "w1")
    txn.delete_outbox(1, 2)
    await storage.commit(txn)
    r = storage.reader()
    assert r.timers_between(-1, 1 << 62, 1 << 30) == [t1]
    assert r.get_promise("Wf", "w1", "p") is None
    assert r.list_outbox(1) == [(5, b"five")]


async def test_subscriptions_and_dedup_sequence_numbers(storage: Storage) -> None:
    txn = storage.begin()
    txn.put_subscription("sub_1b", b'{"b":1}')
    txn.put_subscription("sub_1a", b'{"a":1}')
    txn.put_dedup_seq(3, "sub_1a-orders-0", 41)
    txn.put_dedup_seq(3, "sub_1a-orders-1", 7)
    assert txn.get_dedup_seq(3, "sub_1a-orders-0") == 41  # reads its own writes
    await storage.commit(txn)
    r = storage.reader()
    assert r.all_subscriptions() == [("sub_1a", b'{"a":1}'), ("sub_1b", b'{"b":1}')]
    assert r.get_dedup_seq(3, "sub_1a-orders-0") == 41 and r.get_dedup_seq(3, "sub_1a-orders-1") == 7
    assert r.get_dedup_seq(4, "sub_1a-orders-0") is None  # per partition
    txn = storage.begin()
    txn.delete_subscription("sub_1a")
    txn.put_dedup_seq(3, "sub_1a-orders-0", 42)
    await storage.commit(txn)
    r = storage.reader()
    assert r.all_subscriptions() == [("sub_1b", b'{"b":1}')]
    assert r.get_dedup_seq(3, "sub_1a-orders-0") == 42


async def test_kafka_clusters(storage: Storage) -> None:
    txn = storage.begin()
    txn.put_kafka_cluster("west", b'{"w":1}')
    txn.put_kafka_cluster("east", b'{"e":1}')
    assert txn.all_kafka_clusters() == [("east", b'{"e":1}'), ("west", b'{"w":1}')]  # its own writes
    await storage.commit(txn)
    assert storage.reader().all_kafka_clusters() == [("east", b'{"e":1}'), ("west", b'{"w":1}')]
    txn = storage.begin()
    txn.delete_kafka_cluster("east")
    txn.put_kafka_cluster("west", b'{"w":2}')
    await storage.commit(txn)
    assert storage.reader().all_kafka_clusters() == [("west", b'{"w":2}')]


async def test_flow_control_rule_book_slots_and_queue(storage: Storage) -> None:
    txn = storage.begin()
    txn.put_rule_book(b'{"version":1}')
    txn.put_limit_slot("s", "inv_1a", "a/b")
    txn.put_limit_slot("s", "inv_1b", None)
    txn.put_limit_slot("t", "inv_1c", None)
    txn.push_limit_queue("s", 2, "inv_1e")
    txn.push_limit_queue("s", 1, "inv_1d")
    txn.push_limit_queue("u", 1, "inv_1f")
    assert txn.list_limit_slots("s") == [("inv_1a", "a/b"), ("inv_1b", None)]  # its own writes
    await storage.commit(txn)
    r = storage.reader()
    assert r.get_rule_book() == b'{"version":1}'
    assert r.list_limit_slots("s") == [("inv_1a", "a/b"), ("inv_1b", None)]
    assert r.has_limit_slot("t", "inv_1c") and not r.has_limit_slot("t", "inv_1a")
    assert r.list_limit_queue("s") == [(1, "inv_1d"), (2, "inv_1e")]  # FIFO by sequence number
    assert r.limit_queue_scopes() == ["s", "u"]
    txn = storage.begin()
    txn.delete_limit_slot("s", "inv_1a")
    txn.delete_limit_queue("s", 1)
    txn.put_rule_book(b'{"version":2}')
    await storage.commit(txn)
    r = storage.reader()
    assert r.list_limit_slots("s") == [("inv_1b", None)]
    assert r.list_limit_queue("s") == [(2, "inv_1e")]
    assert r.get_rule_book() == b'{"version":2}'


async def test_sqlite_migrates_a_database_of_the_previous_schema(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    before_kafka = 2  # a data dir written before the Kafka tables existed
    for i in range(before_kafka):
        for stmt in sqlite_backend.MIGRATIONS[i]:
            conn.execute(stmt)
    conn.execute(f"PRAGMA user_version = {before_kafka}")
    conn.close()
    s = SqliteStorage(path)
    await s.open()
    txn = s.begin()
    txn.put_subscription("sub_1a", b"{}")
    txn.put_kafka_cluster("c1", b"{}")
    await s.commit(txn)
    assert s.reader().all_subscriptions() == [("sub_1a", b"{}")]
    assert s.reader().all_kafka_clusters() == [("c1", b"{}")]
    await s.close()


async def test_timers_between_reads_a_range_in_pages(storage: Storage) -> None:
    timers = [Timer(1000 + i // 2, TimerKind.SLEEP, f"inv_{i:03d}", i) for i in range(20)]
    txn = storage.begin()
    for t in reversed(timers):
        txn.put_timer(t)
    await storage.commit(txn)
    r = storage.reader()
    ordered = sorted(timers, key=lambda t: (t.fire_at, t.timer_id))
    assert r.timers_between(0, 10_000, 100) == ordered
    assert r.timers_between(1002, 1004, 100) == [t for t in ordered if 1002 < t.fire_at <= 1004]
    assert r.timers_between(1000, 1009, 3) == ordered[2:5]  # bounds exclusive below, then the limit
    assert r.timers_between(1009, 5000, 10) == []


async def test_concurrent_commits_are_all_durable(storage: Storage) -> None:
    async def one(i: int) -> None:
        txn = storage.begin()
        txn.put_state("S", str(i), b"k", str(i).encode())
        await storage.commit(txn)

    await asyncio.gather(*(one(i) for i in range(200)))
    r = storage.reader()
    assert all(r.get_state("S", str(i), b"k") == str(i).encode() for i in range(200))


async def test_sqlite_group_commit_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    s = SqliteStorage(path)
    await s.open()

    async def one(i: int) -> None:
        txn = s.begin()
        txn.put_journal_entry(f"inv_{i}", 0, JournalEntry(0x0400, b"x"))
        await s.commit(txn)

    await asyncio.gather(*(one(i) for i in range(300)))
    assert s.stats.transactions == 300
    assert s.stats.commits < 300  # grouped: fewer fsyncs than transactions
    await s.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == 300
    conn.close()
    s2 = SqliteStorage(path)  # reopening runs no migration twice and sees the data
    await s2.open()
    assert s2.reader().get_journal("inv_7") == [JournalEntry(0x0400, b"x")]
    await s2.close()


async def test_sqlite_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(DataDirError, match="newer"):
        await SqliteStorage(path).open()


async def test_sqlite_gives_space_of_deleted_rows_back(tmp_path: Path) -> None:
    s = SqliteStorage(tmp_path / "db.sqlite3", reclaim_pages=8)
    await s.open()
    try:
        txn = s.begin()
        for i in range(200):
            txn.put_journal_entry("inv_big", i, JournalEntry(0x0400, bytes(4096)))
        await s.commit(txn)
        conn = sqlite3.connect(tmp_path / "db.sqlite3")
        (full,) = conn.execute("PRAGMA page_count").fetchone()
        txn = s.begin()
        txn.delete_journal("inv_big")
        await s.commit(txn)
        (after,) = conn.execute("PRAGMA page_count").fetchone()
        (free,) = conn.execute("PRAGMA freelist_count").fetchone()
        conn.close()
        assert full > 200 and after < full // 4 and free <= 8
    finally:
        await s.close()


async def test_sqlite_checkpoints_let_the_wal_start_over_under_steady_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpointer thread copies the bulk of the WAL; the writer then catches up with what was appended
    meanwhile, so the WAL starts over instead of growing for as long as writes keep coming."""
    monkeypatch.setattr(sqlite_backend, "CHECKPOINT_EVERY_OPS", 50)
    path = tmp_path / "db.sqlite3"
    s = SqliteStorage(path)
    await s.open()
    try:
        for i in range(600):  # never idle: each commit follows the previous one at once
            txn = s.begin()
            txn.put_state("S", str(i % 37), b"k", bytes(500) + str(i).encode())
            await s.commit(txn)
        # A WAL that starts over is rewritten from its beginning; one that never does grows by a frame
        # (a 4 KiB page) or more per commit: 600 commits, 2.4 MB and up.
        wal = path.with_name(path.name + "-wal").stat().st_size
        assert wal < 1_000_000, wal
        assert s.reader().get_state("S", "5", b"k") == bytes(500) + b"597"
    finally:
        await s.close()


def test_journal_entries_keep_their_append_time_next_to_older_entries() -> None:
    """Entries stored with their append time and entries stored before it was recorded both decode."""
    timed = JournalEntry(0x0400, b"\x0a\x01x", 1_764_000_000_123)
    assert JournalEntry.decode(timed.encode()) == timed
    legacy = JournalEntry(0x8002, b"\x08\x01")
    assert JournalEntry.decode(b"\x80\x02\x08\x01") == legacy  # as versions before append times stored it
    assert JournalEntry.decode(legacy.encode()) == legacy


async def test_sqlite_locks_its_data_dir(tmp_path: Path) -> None:
    first = SqliteStorage(tmp_path / "db.sqlite3")
    await first.open()
    try:
        with pytest.raises(DataDirLocked, match=f"in use by another pyrestate server \\(pid {os.getpid()}"):
            await SqliteStorage(tmp_path / "db.sqlite3").open()
    finally:
        await first.close()
    second = SqliteStorage(tmp_path / "db.sqlite3")  # released on close
    await second.open()
    await second.close()


async def _commit_states(s: SqliteStorage, n: int) -> None:
    for i in range(n):
        txn = s.begin()
        txn.put_state("S", str(i), b"k", b"v")
        await s.commit(txn)


async def test_sqlite_refuses_a_database_older_than_its_commit_mark(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    s = SqliteStorage(path)
    await s.open()
    await _commit_states(s, 3)
    await s.close()
    older = path.read_bytes()
    await s.open()
    await _commit_states(s, 5)
    await s.close()
    path.write_bytes(older)  # e.g. a backup copied over a live data dir
    with pytest.raises(DataLoss, match=r"data loss: 5 acknowledged commits \(5 transactions\) are missing"):
        await SqliteStorage(path).open()
    accepting = SqliteStorage(path, accept_data_loss=True)
    await accepting.open()
    assert accepting.reader().get_state("S", "2", b"k") == b"v"
    await accepting.close()
    reopened = SqliteStorage(path)  # the loss was accepted once: the mark follows the database again
    await reopened.open()
    await reopened.close()
