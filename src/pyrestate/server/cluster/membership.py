"""Nodes on one PostgreSQL database: who is alive, and which node owns which partition group.

Membership is a table of heartbeats (`cluster_nodes`); a node is live while its heartbeat is younger than
the lease TTL, measured by the database clock so that the nodes' clocks do not matter. The owner of each
partition group is a pure function of the sorted live node ids (`assign`), so every node computes the same
map from the same membership without talking to the others. Ownership is *exercised* through the partition
leases of `storage.postgres` (an epoch checked in every commit): the map only says which node should try
to hold them, and a node whose view is stale cannot commit for a group another node holds.

Tables are created with IF NOT EXISTS rather than as a storage migration: only nodes started with
`--node-bind` use them, and a one-node server never needs them.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg


def group_ranges(partitions: int, groups: int) -> list[range]:
    """Contiguous, near-equal partition ranges, one per group."""
    g = max(1, min(groups, partitions))
    return [range(i * partitions // g, (i + 1) * partitions // g) for i in range(g)]


def _rank(node: str, group: int) -> bytes:
    return hashlib.sha256(f"{node}/{group}".encode()).digest()


def assign(groups: int, nodes: Sequence[str]) -> list[str | None]:
    """Owner of every group: balanced (each node gets ⌊G/N⌋ or ⌈G/N⌉ groups) and sticky (a node joining or
    leaving moves few groups besides its own share). Each group prefers nodes in the order of a hash of
    (node, group) (rendezvous hashing); groups are placed in order, each to the first preferred node with
    room left. Deterministic in the set of nodes, whatever their order."""
    live = sorted(set(nodes))
    if not live:
        return [None] * groups
    base, extra = divmod(groups, len(live))
    # Which nodes may take one more than `base`: the first `extra` in a fixed, node-derived order.
    by_hash = sorted(live, key=lambda n: hashlib.sha256(n.encode()).digest())
    room = {n: base + (1 if i < extra else 0) for i, n in enumerate(by_hash)}
    owners: list[str | None] = []
    for g in range(groups):
        for n in sorted(live, key=lambda n: _rank(n, g)):
            if room[n] > 0:
                room[n] -= 1
                owners.append(n)
                break
    return owners


@dataclass(frozen=True, slots=True)
class Member:
    node_id: str
    address: str


_SETUP = [
    "CREATE TABLE IF NOT EXISTS cluster_nodes (node_id text PRIMARY KEY, address text NOT NULL,"
    " heartbeat_at timestamptz NOT NULL)",
    "CREATE TABLE IF NOT EXISTS cluster_secret (id integer PRIMARY KEY, secret bytea NOT NULL)",
]
_HEARTBEAT = """
INSERT INTO cluster_nodes (node_id, address, heartbeat_at) VALUES (%s, %s, now())
ON CONFLICT (node_id) DO UPDATE SET address = EXCLUDED.address, heartbeat_at = EXCLUDED.heartbeat_at
"""
_LIVE = """
SELECT node_id, address FROM cluster_nodes
 WHERE heartbeat_at > now() - %s * interval '1 millisecond' ORDER BY node_id
"""
# A fingerprint of the schema documents: a node that missed a change notice sees it on its next beat.
_SCHEMA_PRINT = """
SELECT md5(coalesce((SELECT string_agg(md5(v), '' ORDER BY id) FROM deployments), '')
        || coalesce((SELECT string_agg(md5(v), '' ORDER BY name) FROM services), '')
        || coalesce((SELECT string_agg(md5(v), '' ORDER BY name) FROM limit_rules), ''))
"""


async def setup(conn: psycopg.AsyncConnection[Any]) -> bytes:
    """Create the membership tables if needed; returns the cluster secret (made by the first node)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (0x7079_6E6F_6465,))
        for sql in _SETUP:
            await conn.execute(sql)
        await conn.execute(
            "INSERT INTO cluster_secret (id, secret) VALUES (1, %s) ON CONFLICT (id) DO NOTHING",
            (secrets.token_bytes(32),),
        )
        cur = await conn.execute("SELECT secret FROM cluster_secret WHERE id = 1")
        row = await cur.fetchone()
    assert row is not None
    return bytes(row[0])


async def heartbeat(conn: psycopg.AsyncConnection[Any], me: Member, ttl_ms: int) -> tuple[list[Member], str]:
    """Record that `me` is alive; returns the live members (me included) and the schema fingerprint."""
    await conn.execute(_HEARTBEAT, (me.node_id, me.address))
    live = await live_members(conn, ttl_ms)
    cur = await conn.execute(_SCHEMA_PRINT)
    row = await cur.fetchone()
    return live, str(row[0]) if row is not None else ""


async def live_members(conn: psycopg.AsyncConnection[Any], ttl_ms: int) -> list[Member]:
    """The members whose heartbeat is younger than the TTL, as the database sees them now."""
    cur = await conn.execute(_LIVE, (ttl_ms,))
    return [Member(str(n), str(a)) for n, a in await cur.fetchall()]


async def leave(conn: psycopg.AsyncConnection[Any], node_id: str) -> None:
    """A stopping node says so: the others rebalance at once instead of after the TTL."""
    await conn.execute("DELETE FROM cluster_nodes WHERE node_id = %s", (node_id,))


__all__ = ["Member", "assign", "group_ranges", "heartbeat", "leave", "live_members", "setup"]
