"""PostgreSQL-specific behaviour: migrations, group commit, the read cache, leases and fencing, snapshots."""

from __future__ import annotations

import asyncio
import random

import psycopg
import pytest

from pyrestate.server.storage.api import Key, StorageUnavailable
from pyrestate.server.storage.memory import MemoryStorage
from pyrestate.server.storage.postgres import SCHEMA_VERSION, LeaseLost, PostgresStorage
from pyrestate.server.storage.records import JournalEntry
from pyrestate.testing.postgres import PostgresServer
from pyrestate.testing.process import free_port


async def test_group_commit_migrations_and_reopen(pg_url: str) -> None:
    s = PostgresStorage(pg_url)
    await s.open()

    async def one(i: int) -> None:
        txn = s.begin()
        txn.put_journal_entry(f"inv_{i}", 0, JournalEntry(0x0400, b"x"))
        await s.commit(txn)

    await asyncio.gather(*(one(i) for i in range(300)))
    assert s.stats.transactions == 300
    assert s.stats.commits < 300  # grouped: fewer PostgreSQL transactions than logical ones
    await s.close()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert conn.execute("SELECT count(*) FROM journal").fetchone() == (300,)
    s2 = PostgresStorage(pg_url)  # reopening migrates nothing twice and sees the data
    await s2.open()
    assert s2.reader().get_journal("inv_7") == [JournalEntry(0x0400, b"x")]
    await s2.close()


async def test_refuses_newer_schema(pg_url: str) -> None:
    s = PostgresStorage(pg_url)
    await s.open()
    await s.close()
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE schema_version SET version = version + 1")
    with pytest.raises(RuntimeError, match="newer"):
        await PostgresStorage(pg_url).open()


async def test_text_keys_scan_in_byte_order(pg_url: str) -> None:
    # SQLite compares TEXT bytewise; PostgreSQL must not apply a locale's collation.
    s = PostgresStorage(pg_url, cache=False)
    await s.open()
    try:
        txn = s.begin()
        for k in ["b", "B", "a", "_", "é", "A"]:
            txn.put_state("S", k, b"n", b"v")
            txn.put_deployment(k, b"{}")
        await s.commit(txn)
        assert [d for d, _ in s.reader().all_deployments()] == sorted(["b", "B", "a", "_", "é", "A"])
    finally:
        await s.close()


async def test_cache_matches_uncached_reads_under_random_writes(pg_url: str) -> None:
    """Differential: the cached backend answers every read as the in-memory reference does."""
    ref = MemoryStorage()
    pg = PostgresStorage(pg_url, cache_max_entries=60)  # small: clearing the cache is exercised too
    await pg.open()
    rng = random.Random(7)
    try:
        for _ in range(60):
            group = []  # several transactions committed at once land in one PostgreSQL transaction
            for _ in range(rng.randint(1, 3)):
                txns = [ref.begin(), pg.begin()]
                for _ in range(rng.randint(1, 6)):
                    iid, svc_key, i = f"inv_{rng.randint(0, 4)}", str(rng.randint(0, 3)), rng.randint(0, 5)
                    choice = rng.random()
                    for t in txns:
                        if choice < 0.4:
                            t.put_journal_entry(iid, i, JournalEntry(0x0400, bytes([i])))
                        elif choice < 0.5:
                            t.delete_journal(iid)
                        elif choice < 0.8:
                            t.put_state("S", svc_key, bytes([i]), bytes([i, i]))
                        elif choice < 0.9:
                            t.delete_state("S", svc_key, bytes([i]))
                        else:
                            t.delete_all_state("S", svc_key)
                    # reads inside the transaction see its own writes the same way
                    assert txns[0].get_journal(iid) == txns[1].get_journal(iid)
                group.append(txns)
            for ref_txn, _ in group:
                await ref.commit(ref_txn)
            await asyncio.gather(*(pg.commit(pg_txn) for _, pg_txn in group))
            r_ref, r_pg = ref.reader(), pg.reader()
            for n in range(5):
                assert r_ref.get_journal(f"inv_{n}") == r_pg.get_journal(f"inv_{n}")
                assert r_ref.get_all_state("S", str(n)) == r_pg.get_all_state("S", str(n))
                assert r_ref.get_state("S", str(n), b"\x01") == r_pg.get_state("S", str(n), b"\x01")
        assert pg.stats.max_batch > 1
    finally:
        await pg.close()


async def test_cache_serves_repeated_reads_without_round_trips(pg_url: str) -> None:
    s = PostgresStorage(pg_url)
    await s.open()
    try:
        txn = s.begin()
        txn.put_journal_entry("inv_1", 0, JournalEntry(0x0400, b"in"))
        await s.commit(txn)
        before = s.read_round_trips
        for _ in range(50):
            assert len(s.reader().get_journal("inv_1")) == 1
            assert s.reader().get_state("S", "k", b"x") is None
        assert s.read_round_trips - before == 2  # one scan, one negative point read
    finally:
        await s.close()


def _node(url: str, name: str, ttl_ms: int = 600, **kw: object) -> PostgresStorage:
    return PostgresStorage(url, partitions=[0, 1], node_id=name, lease_ttl_ms=ttl_ms, **kw)  # type: ignore[arg-type]


async def _put(s: PostgresStorage, key: str, value: bytes) -> None:
    txn = s.begin()
    txn.put_state("S", key, b"v", value)
    await s.commit(txn)


async def test_standby_takes_over_an_expired_lease_and_fences_the_old_owner(pg_url: str) -> None:
    lost: list[LeaseLost] = []
    a = _node(pg_url, "a", on_lease_lost=lost.append)
    await a.open()
    assert a.epochs == {0: 1, 1: 1}
    b = _node(pg_url, "b")
    b_open = asyncio.create_task(b.open())
    await asyncio.sleep(1.0)  # longer than the TTL: a keeps renewing, so b keeps waiting
    assert not b_open.done()
    await _put(a, "k", b"from-a")

    # a stalls (no renewals, as in a long pause or a network partition): b takes over after the TTL
    assert a._renewer is not None
    a._renewer.cancel()
    await asyncio.wait_for(b_open, 5)
    assert b.epochs == {0: 2, 1: 2}
    assert b.reader().get_state("S", "k", b"v") == b"from-a"

    with pytest.raises(LeaseLost):  # the old owner's commit is rejected inside its transaction…
        await _put(a, "k", b"late-from-a")
    assert lost and lost[0].partitions == [0, 1]
    with pytest.raises(LeaseLost):  # …and it stays stopped
        await _put(a, "other", b"x")
    await _put(b, "k", b"from-b")
    assert b.reader().get_state("S", "k", b"v") == b"from-b"
    assert b.reader().get_state("S", "other", b"v") is None
    await a.close()
    await b.close()


async def test_graceful_close_hands_over_at_once_and_reacquiring_drops_the_cache(pg_url: str) -> None:
    a = _node(pg_url, "a", ttl_ms=60_000)
    await a.open()
    await _put(a, "k", b"1")
    assert a.reader().get_state("S", "k", b"v") == b"1"  # cached
    b = _node(pg_url, "b", ttl_ms=60_000, acquire_timeout_s=5)
    b_open = asyncio.create_task(b.open())
    await asyncio.sleep(0.2)  # time passes, and b does not get the leases a holds
    assert not b_open.done()
    await b.release_leases()  # nothing held yet: a no-op
    await a.release_leases()  # a hands over (what close does), and b gets the leases well within the TTL
    await asyncio.wait_for(b_open, 5)
    await _put(b, "k", b"2")
    await b.close()
    assert await a.try_acquire([0, 1]) == [0, 1]
    assert a.epochs == {0: 3, 1: 3}
    assert a.reader().get_state("S", "k", b"v") == b"2"  # not the stale cached b"1"
    await _put(a, "k", b"3")
    await a.close()


async def test_acquire_timeout_when_another_node_holds_the_leases(pg_url: str) -> None:
    a = _node(pg_url, "a", ttl_ms=60_000)
    await a.open()
    try:
        with pytest.raises(TimeoutError, match=r"\[0, 1\]"):
            await _node(pg_url, "b", ttl_ms=60_000, acquire_timeout_s=0.3).open()
    finally:
        await a.close()


async def test_snapshot_sees_one_committed_state(pg_url: str) -> None:
    s = PostgresStorage(pg_url)
    await s.open()
    try:
        await _put(s, "k1", b"1")
        snap = s.snapshot(now_ms=5)
        rows: list[tuple[Key, bytes]] = snap.scan("state")  # opens the snapshot
        await _put(s, "k2", b"2")
        assert snap.scan("state") == rows and len(rows) == 1
        assert snap.now_ms == 5
        snap.close()
        snap = s.snapshot()
        assert len(snap.scan("state")) == 2
        snap.close()
    finally:
        await s.close()


async def test_reconnects_after_the_server_drops_its_connections(
    pg_url: str, pg_server: PostgresServer
) -> None:
    url = pg_url + "&application_name=dropped"
    s = PostgresStorage(url, cache=False)
    await s.open()
    try:
        await _put(s, "k", b"1")
        pg_server.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'dropped'"
        )
        assert s.reader().get_state("S", "k", b"v") == b"1"  # reads retry on a new connection
        with pytest.raises(StorageUnavailable):
            await _put(s, "k", b"2")  # a commit in flight fails (its outcome is unknown to the caller)…
        await _put(s, "k", b"3")  # …the next one reconnects
        assert s.reader().get_state("S", "k", b"v") == b"3"
    finally:
        await s.close()


async def test_an_unreachable_server_is_reported_as_unavailable(pg_server: PostgresServer) -> None:
    url = pg_server.url(connect_timeout="2").replace(f":{pg_server.port}/", f":{free_port()}/")
    with pytest.raises(StorageUnavailable, match="cannot connect to PostgreSQL"):
        await PostgresStorage(url).open()
