"""`NodeCore`: one node of a cluster of `pyrestate server --storage postgresql://… --node-bind …` processes.

Every node serves ingress and admin for the whole cluster. Partitions are cut into a fixed number of
groups (`membership.group_ranges`); `membership.assign` maps groups to live nodes. For each group it is
assigned, a node runs one `EngineCore` over a `PostgresStorage` holding that group's leases; the lease
epoch is checked in every commit, so a node that lost a group (paused past its lease, cut off) cannot
commit for it. A group that moves is stopped on its old node (releasing the leases) and started on the new
one, which recovers it from the shared database like a restarted server.

Requests go to the owner of their partition: the local group engine, or another node over TCP
(`node_link.Transport`: framed pickles, after both ends proved they hold the cluster secret stored in the
database). A request refused because its target moved is retried against the new owner; `call` and `send`
carry an idempotency key (generated when the client gave none), so retrying them after an ambiguous failure
is safe. Schema changes run under a cluster-wide lock and are pushed to every node (`node_schema`).

Messages between groups. The outbox rows are keyed by destination partition and shared, so a group
engine recovers every message addressed to it from the database, and the receiver's commit deletes the
row. Besides, the sender pushes each committed message to the destination's owner and keeps it until
acknowledged (after the receiver's commit). The receiver applies a message from another group at most once
per (source partition, sequence number), reading the high-water mark in the same transaction: that is
sound as long as a receiver sees one source's messages in order. Hence: every push of a destination goes
through one ordered stream; a receiver that cannot take a message (the group is not running there) ignores
that destination on that link until the sender, told by a nack, resends everything unacknowledged for it
from the oldest; a change of owner does the same towards the new owner; and a node that takes over a
group pushes the group's unacknowledged messages found in the database before anything it commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from pyrestate.protocol.ids import InvocationId, parse_awakeable_id, partition_key_for_key
from pyrestate.server import metrics
from pyrestate.server.cluster import membership
from pyrestate.server.cluster.membership import Member
from pyrestate.server.cluster.node_link import NotOwner, Transport
from pyrestate.server.cluster.node_schema import NodeSchema
from pyrestate.server.cluster.wire import Frame, Link, answer
from pyrestate.server.config import ServerConfig
from pyrestate.server.core_api import (
    BadRequest,
    ById,
    CommandOutcome,
    IngressInvocation,
    InvocationCommand,
    InvocationQuery,
    InvocationResult,
    NotFound,
    Outcome,
    SendReceipt,
    Unavailable,
)
from pyrestate.server.engine.core import EngineCore
from pyrestate.server.partition.context import partition_of, partition_of_key
from pyrestate.server.partition.model import Command, Deliver
from pyrestate.server.storage.postgres import LeaseLost, PostgresStorage

log = logging.getLogger(__name__)

SOURCE_MASK = 0xFFFF  # outbox sequence numbers carry their source partition in the low 16 bits
RESEND_AFTER_S = 3.0  # unacknowledged this long: push again
NACK_RETRY_S = 0.3


_OPS: dict[str, Callable[..., Awaitable[Any]]] = {
    "call": lambda e, inv, iid: e.call(inv, invocation_id=iid),
    "send": lambda e, inv, iid: e.send(inv, invocation_id=iid),
    "attach": lambda e, q: e.attach(q),
    "get_output": lambda e, q: e.get_output(q),
    "complete_awakeable": lambda e, aid, o: e.complete_awakeable(aid, o),
    "set_state": lambda e, svc, key, st: e.set_state(svc, key, st),
    "invocation_command": lambda e, iid, cmd, dp: e.invocation_command(iid, cmd, deployment_id=dp),
    "restart_as_new": lambda e, iid, i, dp: e.restart_as_new(iid, from_index=i, deployment=dp),
}


class NodeCore(NodeSchema):
    def __init__(self, config: ServerConfig) -> None:
        assert config.node_bind is not None
        self.config = config
        self.me = config.node_id or socket.gethostname()
        self.ttl_ms = config.lease_ttl_ms
        self.partitions = config.partitions
        self.ranges = membership.group_ranges(config.partitions, config.partition_groups)
        self.group_of = [g for g, r in enumerate(self.ranges) for _ in r]
        # Schema (deployments, services, rules) and id derivation: an engine that processes no partition.
        self.front = EngineCore(
            config,
            storage=PostgresStorage(config.storage, node_id=self.me),
            shared_storage=True,
            subscriptions=False,
        )
        self.front.local_partitions = range(0)
        self.engines: dict[int, EngineCore] = {}
        self._starting: dict[int, asyncio.Task[None]] = {}
        self._stopping: dict[int, asyncio.Task[None]] = {}
        self.owners: list[str | None] = [None] * len(self.ranges)
        self.live: list[str] = []
        self._schema_print = ""
        self._schema_lock = asyncio.Lock()
        self._conn: Any = None  # membership heartbeats
        self._schema_conn: Any = None  # the cross-node schema lock
        self._unknown_reload_at = 0.0
        self._beat: asyncio.Task[None] | None = None
        self._resender: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.transport: Transport | None = None
        self.address = ""
        # Outbox messages pushed to other groups, unacknowledged: destination -> seq -> command, in order.
        self._pending: dict[int, dict[int, Command]] = defaultdict(dict)
        self._sent_to: dict[int, str | None] = {}  # the node (this one included) the stream went to
        self._progress: dict[int, float] = {}
        self._rejected: set[tuple[int, int]] = set()  # (id of incoming link, destination) ignored
        self._stopped = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        import psycopg

        await self.front.storage.open()
        self.front.reload_schema()
        self._conn = await psycopg.AsyncConnection.connect(self.config.storage, autocommit=True)
        self._schema_conn = await psycopg.AsyncConnection.connect(self.config.storage, autocommit=True)
        secret = await membership.setup(self._conn)
        self.transport = Transport(self.me, secret, self._on_frame, self._on_connected, self._on_link_lost)
        assert self.config.node_bind is not None
        host, port = await self.transport.listen(self.config.node_bind)
        if self.config.advertised_url:
            self.address = self.config.advertised_url
        else:
            shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
            self.address = f"tcp://{shown}:{port}"
        log.info(
            "node %s: inter-node transport on %s (%d partition groups)",
            self.me,
            self.address,
            len(self.ranges),
        )
        await self._tick()
        self._beat = asyncio.get_running_loop().create_task(self._beat_loop(), name="node-heartbeat")
        self._resender = asyncio.get_running_loop().create_task(self._resend_loop(), name="outbox-resend")

    async def stop(self) -> None:
        self._stopped = True
        for task in (self._beat, self._resender, *self._starting.values()):
            if task is not None:
                task.cancel()
        with contextlib.suppress(Exception):
            await membership.leave(self._conn, self.me)
        await asyncio.gather(*(self._stop_group(g) for g in list(self.engines)), return_exceptions=True)
        await asyncio.gather(*self._stopping.values(), return_exceptions=True)
        if self.transport is not None:
            await self.transport.close()
        for conn in (self._conn, self._schema_conn):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
        await self.front.storage.close()

    @property
    def in_flight(self) -> int:
        return sum(e.in_flight for e in self.engines.values())

    # ------------------------------------------------------------------ membership and ownership

    async def _beat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("node heartbeat failed")
                with contextlib.suppress(Exception):
                    import psycopg

                    if self._conn.broken or self._conn.closed:
                        self._conn = await psycopg.AsyncConnection.connect(
                            self.config.storage, autocommit=True
                        )

    async def _tick(self) -> None:
        members, schema_print = await membership.heartbeat(
            self._conn, Member(self.me, self.address), self.ttl_ms
        )
        assert self.transport is not None
        self.transport.addresses = {m.node_id: m.address for m in members if m.node_id != self.me}
        if schema_print != self._schema_print:
            if self._schema_print:
                self._reload_schema()
            self._schema_print = schema_print
        live = sorted(m.node_id for m in members)
        if live != self.live:
            log.info("live nodes: %s", ", ".join(live))
            self.live = live
        owners = membership.assign(len(self.ranges), live)
        if owners != self.owners:
            mine = [g for g, o in enumerate(owners) if o == self.me]
            log.info("partition groups of this node: %s", mine)
            self.owners = owners
            self._readdress()
        self._reconcile()

    def _reconcile(self) -> None:
        for g, owner in enumerate(self.owners):
            if owner == self.me:
                if g not in self.engines and g not in self._starting and g not in self._stopping:
                    self._starting[g] = self._spawn(self._start_group(g))
            else:
                task = self._starting.get(g)
                if task is not None:
                    task.cancel()
                if g in self.engines and g not in self._stopping:
                    self._stopping[g] = self._spawn(self._stop_group(g))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _start_group(self, g: int) -> None:
        storage = PostgresStorage(
            self.config.storage,
            partitions=self.ranges[g],
            node_id=self.me,
            lease_ttl_ms=self.ttl_ms,
            on_lease_lost=lambda e: self._lease_lost(g, e),
        )
        engine = EngineCore(self.config, storage=storage, shared_storage=True, subscriptions=False)
        engine.local_partitions = self.ranges[g]
        engine.outbound = self._outbound
        engine.on_committed = self._on_committed
        try:
            try:
                await engine.start()  # waits for the leases while the former owner still holds them
            except asyncio.CancelledError:
                await storage.close()
                raise
            except Exception:
                log.exception("could not start partition group %d", g)
                await storage.close()
                return
            if self._stopped or self.owners[g] != self.me:
                await engine.stop()
                return
            self.engines[g] = engine
            engine.reload_schema()  # a change pushed while it was starting did not reach it
            self._set_gauges()
            log.info("partition group %d (partitions %s) runs here", g, self.ranges[g])
            for d in self.ranges[g]:
                if self._pending.get(d):
                    self._push(d, force=True)
        finally:
            self._starting.pop(g, None)

    async def _stop_group(self, g: int) -> None:
        engine = self.engines.pop(g, None)
        try:
            if engine is None:
                return
            # Its unacknowledged messages are in the database: the next owner pushes them.
            for d in list(self._pending):
                pending = self._pending[d]
                for seq in [s for s in pending if self.group_of[s & SOURCE_MASK] == g]:
                    del pending[seq]
            await engine.stop()
            self._set_gauges()
            log.info("partition group %d handed over", g)
        except Exception:
            log.exception("stopping partition group %d failed", g)
        finally:
            self._stopping.pop(g, None)
            if not self._stopped:
                self._reconcile()

    def _set_gauges(self) -> None:
        """The node's gauges sum its group engines (each engine registers only its own when it starts)."""
        engines = self.engines
        metrics.gauges.partitions_owned = lambda: sum(len(self.ranges[g]) for g in engines)
        metrics.gauges.timers_in_memory = lambda: sum(len(e.timers) for e in engines.values())
        metrics.gauges.attempts_running = lambda: sum(e.invoker.running for e in engines.values())

    def _lease_lost(self, g: int, error: LeaseLost) -> None:
        log.error("partition group %d: %s", g, error)
        if g in self.engines and g not in self._stopping:
            self._stopping[g] = self._spawn(self._stop_group(g))

    # ------------------------------------------------------------------ routing

    def _deadline(self) -> float:
        # Long enough for a dead owner's leases to expire and the group to start elsewhere.
        return time.monotonic() + 3 * self.ttl_ms / 1000 + 5.0

    async def _local(self, partition: int, method: str, args: tuple[Any, ...]) -> Any:
        engine = self.engines.get(self.group_of[partition])
        if engine is None or not engine._started:
            raise NotOwner(f"partition {partition} is not processed by node {self.me}")
        if method in ("call", "send") and engine.lookup_service(args[0].target.service) is None:
            self._reread_for_unknown()  # the sending node knows it (its ingress checked)
        return await _OPS[method](engine, *args)

    async def _route(self, partition: int, method: str, *args: Any, ambiguous_ok: bool = False) -> Any:
        """Run `method` on the owner of `partition`, waiting through a change of owner. `ambiguous_ok`:
        the request is idempotent, so it is retried also when its outcome is unknown."""
        deadline = self._deadline()
        while True:
            owner = self.owners[self.group_of[partition]]
            try:
                if owner == self.me:
                    return await self._local(partition, method, args)
                if owner is None:
                    raise NotOwner("no live node owns the partition yet")
                assert self.transport is not None
                return await self.transport.call(owner, "op", partition, method, args)
            except Unavailable as e:
                if not (isinstance(e, NotOwner) or ambiguous_ok) or time.monotonic() > deadline:
                    raise
                log.debug("retrying %s on partition %d: %s", method, partition, e)
            await asyncio.sleep(0.1)

    async def call(self, invocation: IngressInvocation) -> InvocationResult:
        invocation, iid = self.front.invocation_id_for(invocation)
        p = partition_of(iid, self.partitions)
        if invocation.idempotency_key is not None:
            result: InvocationResult = await self._route(p, "call", invocation, iid, ambiguous_ok=True)
            return result
        # A workflow run: a second `call` would answer "already invoked", so after an ambiguous failure
        # attach to the run if it was recorded.
        deadline = self._deadline()
        while True:
            try:
                result = await self._route(p, "call", invocation, iid)
                return result
            except Unavailable:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.1)
            with contextlib.suppress(NotFound):
                result = await self._route(p, "attach", ById(iid), ambiguous_ok=True)
                return result

    async def send(self, invocation: IngressInvocation) -> SendReceipt:
        invocation, iid = self.front.invocation_id_for(invocation)
        receipt: SendReceipt = await self._route(
            partition_of(iid, self.partitions), "send", invocation, iid, ambiguous_ok=True
        )
        return receipt

    async def attach(self, query: InvocationQuery) -> InvocationResult:
        p = partition_of(self.front._query_id(query), self.partitions)
        result: InvocationResult = await self._route(p, "attach", query, ambiguous_ok=True)
        return result

    async def get_output(self, query: InvocationQuery) -> InvocationResult:
        p = partition_of(self.front._query_id(query), self.partitions)
        result: InvocationResult = await self._route(p, "get_output", query, ambiguous_ok=True)
        return result

    async def complete_awakeable(self, awakeable_id: str, outcome: Outcome) -> None:
        try:
            target, _ = parse_awakeable_id(awakeable_id)
        except ValueError as e:
            raise BadRequest(f"bad awakeable id '{awakeable_id}': {e}") from None
        await self._route(
            partition_of(str(target), self.partitions), "complete_awakeable", awakeable_id, outcome
        )

    @staticmethod
    def _parse_id(invocation_id: str) -> str:
        try:
            return str(InvocationId.parse(invocation_id))
        except ValueError as e:
            raise BadRequest(f"The request field 'invocation_id' is invalid. Reason: {e}") from None

    async def invocation_command(
        self, invocation_id: str, command: InvocationCommand, *, deployment_id: str | None = None
    ) -> CommandOutcome:
        p = partition_of(self._parse_id(invocation_id), self.partitions)
        out: CommandOutcome = await self._route(
            p, "invocation_command", invocation_id, command, deployment_id
        )
        return out

    async def restart_as_new(
        self, invocation_id: str, *, from_index: int | None = None, deployment: str | None = None
    ) -> str:
        p = partition_of(self._parse_id(invocation_id), self.partitions)
        new_id: str = await self._route(p, "restart_as_new", invocation_id, from_index, deployment)
        return new_id

    async def set_state(self, service: str, key: str, new_state: Mapping[str, bytes]) -> None:
        p = partition_of_key(partition_key_for_key(key), self.partitions)
        await self._route(p, "set_state", service, key, dict(new_state))

    # ------------------------------------------------------------------ frames from other nodes

    def _on_frame(self, link: Link, frame: Frame) -> None:
        kind = frame[0]
        if kind == "q":  # request: (q, id, method, args)
            self._spawn(answer(link, frame[1], self._serve(frame[2], frame[3])))
        elif kind == "d":  # pushed outbox messages: (d, [(destination, seq, command)])
            self._on_deliver(link, frame[1])
        elif kind == "y":  # the sender restarts the stream of a destination from its oldest message
            self._rejected.discard((id(link), frame[1]))
        elif kind == "n":  # the receiver ignored a destination's messages: resend them all, later
            d = frame[1]
            asyncio.get_running_loop().call_later(NACK_RETRY_S, self._push, d, True)
        elif kind == "a":  # acknowledgements: (a, [(destination, seq)])
            self._acked(frame[1])
        elif kind == "h":
            link.peer = None  # an incoming link: answers go back on it, it is not the way to that node

    async def _serve(self, method: str, args: tuple[Any, ...]) -> Any:
        if method == "op":
            return await self._local(args[0], args[1], args[2])
        if method == "schema":
            self._reload_schema()
            return None
        raise BadRequest(f"unknown node request {method!r}")

    def _on_link_lost(self, link: Link) -> None:
        self._rejected = {k for k in self._rejected if k[0] != id(link)}
        node = link.peer
        if node is not None:  # our outgoing link: its streams start over on the next one
            for d, to in self._sent_to.items():
                if to == node:
                    self._sent_to[d] = None

    def _on_connected(self, node: str) -> None:
        for d, pending in self._pending.items():
            if pending and self.owners[self.group_of[d]] == node:
                self._push(d, force=True)

    # ------------------------------------------------------------------ outbox between groups

    def _outbound(self, partition: int, seq: int, command: Command) -> None:
        pending = self._pending[partition]
        if seq in pending:
            return
        if not pending:
            self._progress[partition] = time.monotonic()
        pending[seq] = command
        self._push(partition, items=[(seq, command)])

    def _push(self, d: int, force: bool = False, items: list[tuple[int, Command]] | None = None) -> None:
        """Send destination `d` the given new messages, or (a new stream: another owner, another link,
        `force`) everything unacknowledged for it, oldest first."""
        pending = self._pending.get(d)
        if not pending:
            return
        owner = self.owners[self.group_of[d]]
        restart = force or items is None or self._sent_to.get(d) != owner
        batch = list(pending.items()) if restart else (items or [])
        if owner == self.me:
            engine = self.engines.get(self.group_of[d])
            if engine is None or not engine._started:
                self._sent_to[d] = None  # the group's start pushes them
                return
            self._sent_to[d] = owner
            for seq, cmd in batch:
                engine._submit(d, Deliver(seq, cmd, remote=True))
            return
        link = self.transport.link_to(owner) if owner is not None and self.transport is not None else None
        if link is None:
            self._sent_to[d] = None  # `_on_connected` pushes them
            return
        self._sent_to[d] = owner
        if restart:
            link.send(("y", d))
        link.send(("d", [(d, seq, cmd) for seq, cmd in batch]))

    def _readdress(self) -> None:
        for d, pending in self._pending.items():
            if pending and self._sent_to.get(d) != self.owners[self.group_of[d]]:
                self._push(d, force=True)

    def _on_deliver(self, link: Link, items: list[tuple[int, int, Command]]) -> None:
        for d, seq, cmd in items:
            key = (id(link), d)
            if key in self._rejected:
                continue  # until the sender starts this destination's stream over
            engine = self.engines.get(self.group_of[d])
            if engine is None or not engine._started:
                self._rejected.add(key)
                link.send(("n", d))
                continue
            engine._submit(d, Deliver(seq, cmd, remote=True))

    def _on_committed(self, batch: list[tuple[int, Command]]) -> None:
        acks: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for partition, cmd in batch:
            if type(cmd) is Deliver and cmd.remote:
                owner = self.owners[self.group_of[cmd.seq & SOURCE_MASK]]
                if owner is not None:
                    acks[owner].append((partition, cmd.seq))
        for node, keys in acks.items():
            if node == self.me:
                self._acked(keys)
            elif self.transport is not None:
                link = self.transport.link_to(node)
                if link is not None:  # a lost acknowledgement is harmless: the sender resends, we dedup
                    link.send(("a", keys))

    def _acked(self, keys: list[tuple[int, int]]) -> None:
        now = time.monotonic()
        for d, seq in keys:
            pending = self._pending.get(d)
            if pending is not None and pending.pop(seq, None) is not None:
                self._progress[d] = now

    async def _resend_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for d, pending in list(self._pending.items()):
                if pending and now - self._progress.get(d, 0.0) > RESEND_AFTER_S:
                    self._progress[d] = now
                    self._push(d, force=True)


def create_node_core(config: ServerConfig) -> NodeCore:
    return NodeCore(config)


__all__ = ["NodeCore", "create_node_core"]
