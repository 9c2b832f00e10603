"""`WorkerCore`: the `ServerCore` one worker process serves. Any worker accepts any request; each is
answered by the owner of its target's partition (this process, or another one over `Node`). Schema changes
go through worker 0, which commits them and pushes the whole schema to the others."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pyrestate.protocol.ids import InvocationId, parse_awakeable_id, partition_key_for_key
from pyrestate.server.cluster import subscriptions
from pyrestate.server.cluster.layout import Layout
from pyrestate.server.cluster.node import Node, OutboxKey
from pyrestate.server.cluster.query import UnionSnapshot
from pyrestate.server.core_api import (
    CommandOutcome,
    DeploymentRecord,
    DeploymentRegistration,
    IngressInvocation,
    InvocationCommand,
    InvocationQuery,
    InvocationResult,
    Outcome,
    QuerySnapshot,
    RegistrationResult,
    SendReceipt,
    ServicePatch,
    ServiceSchema,
)
from pyrestate.server.engine.core import EngineCore
from pyrestate.server.flow_limits import Delete, Rule, RuleBook, Upsert
from pyrestate.server.partition.context import partition_of, partition_of_key
from pyrestate.server.partition.model import Command, Deliver
from pyrestate.server.storage.schema_codec import (
    deployment_from_json,
    deployment_to_json,
    service_from_json,
    service_to_json,
)

log = logging.getLogger(__name__)

SCHEMA_WORKER = 0
SOURCE_MASK = 0xFFFF  # outbox sequence numbers carry their source partition in the low 16 bits

# (version, [deployment documents], [service documents], rule book, [Kafka cluster documents],
#  [subscription documents])
SchemaSnapshot = tuple[int, list[bytes], list[bytes], bytes, list[bytes], list[bytes]]


class WorkerCore:
    def __init__(
        self, engine: EngineCore, layout: Layout, me: int, sockdir: Path, db_paths: list[Path]
    ) -> None:
        self.engine = engine
        self.layout = layout
        self.me = me
        self.owners = layout.owners()
        self.partitions = layout.partitions
        self.local = layout.range_of(me)
        self.db_paths = db_paths
        engine.local_partitions = self.local
        engine.outbound = self._outbound
        engine.on_committed = self._on_committed
        # Remote messages dropped with a failed commit are unacknowledged: have their senders send again
        # from the oldest, before anything newer can move the high-water mark past them.
        engine.on_commit_failure = self._on_commit_failure
        self.node = Node(
            me,
            layout,
            sockdir,
            handle_request=self._handle,
            on_deliver=self._on_deliver,
            on_acked=self._on_acked,
        )
        self._schema_version = 0
        self._schema_lock = asyncio.Lock()
        self._acked: list[OutboxKey] = []
        self._deleting: asyncio.Task[None] | None = None
        e = engine
        self._methods: dict[str, Callable[..., Awaitable[Any]]] = {
            "call": lambda inv, iid: e.call(inv, invocation_id=iid),
            "send": lambda inv, iid: e.send(inv, invocation_id=iid),
            "attach": e.attach,
            "get_output": e.get_output,
            "complete_awakeable": e.complete_awakeable,
            "set_state": e.set_state,
            "invocation_command": lambda iid, cmd, dp: e.invocation_command(iid, cmd, deployment_id=dp),
            "restart_as_new": lambda iid, i, dp: e.restart_as_new(iid, from_index=i, deployment=dp),
            "register_deployment": self.register_deployment,
            "delete_deployment": self.delete_deployment,
            "update_deployment": self.update_deployment,
            "update_service": self.update_service,
            "upsert_rules": self.upsert_rules,
            "delete_rules": self.delete_rules,
            "schema": self._apply_schema,
            "get_schema": self._get_schema,
        }
        self.subscriptions = subscriptions.attach(self, SCHEMA_WORKER)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.engine.start()
        await self.node.start()
        if self.me == SCHEMA_WORKER:
            self._schema_version = time.time_ns()
            return
        # Schema changes made while this worker was down: worker 0 has them all.
        try:
            snapshot = await self.node.call(SCHEMA_WORKER, "get_schema", connect_timeout=15.0)
        except Exception as e:
            log.warning("could not read the schema from worker %d (%s); using this worker's copy", 0, e)
        else:
            await self._apply_schema(snapshot)

    async def stop(self) -> None:
        if self.engine.subscriptions is not None:
            await self.engine.subscriptions.stop()  # while the owners can still take in-flight records
        await self.node.stop()
        await self.engine.stop()

    @property
    def in_flight(self) -> int:
        """This worker's invocations with an attempt running or due (its stop line reports them)."""
        return self.engine.in_flight

    # ------------------------------------------------------------------ routing

    def _owner_of(self, invocation_id: str) -> int:
        return self.owners[partition_of(invocation_id, self.partitions)]

    async def _handle(self, method: str, args: tuple[Any, ...]) -> Any:
        return await self._methods[method](*args)

    def lookup_service(self, name: str) -> ServiceSchema | None:
        return self.engine.lookup_service(name)

    def list_services(self) -> list[ServiceSchema]:
        return self.engine.list_services()

    async def call(self, invocation: IngressInvocation) -> InvocationResult:
        invocation, iid = self.engine.invocation_id_for(invocation)
        w = self._owner_of(iid)
        if w == self.me:
            return await self.engine.call(invocation, invocation_id=iid)
        result: InvocationResult = await self.node.call(w, "call", invocation, iid)
        return result

    async def send(self, invocation: IngressInvocation) -> SendReceipt:
        invocation, iid = self.engine.invocation_id_for(invocation)
        w = self._owner_of(iid)
        if w == self.me:
            return await self.engine.send(invocation, invocation_id=iid)
        receipt: SendReceipt = await self.node.call(w, "send", invocation, iid)
        return receipt

    async def attach(self, query: InvocationQuery) -> InvocationResult:
        w = self._owner_of(self.engine._query_id(query))
        if w == self.me:
            return await self.engine.attach(query)
        result: InvocationResult = await self.node.call(w, "attach", query)
        return result

    async def get_output(self, query: InvocationQuery) -> InvocationResult:
        w = self._owner_of(self.engine._query_id(query))
        if w == self.me:
            return await self.engine.get_output(query)
        result: InvocationResult = await self.node.call(w, "get_output", query)
        return result

    async def complete_awakeable(self, awakeable_id: str, outcome: Outcome) -> None:
        try:
            target, _ = parse_awakeable_id(awakeable_id)
        except ValueError:
            return await self.engine.complete_awakeable(awakeable_id, outcome)  # its BadRequest
        w = self._owner_of(str(target))
        if w == self.me:
            return await self.engine.complete_awakeable(awakeable_id, outcome)
        await self.node.call(w, "complete_awakeable", awakeable_id, outcome)
        return None

    async def invocation_command(
        self, invocation_id: str, command: InvocationCommand, *, deployment_id: str | None = None
    ) -> CommandOutcome:
        try:
            w = self._owner_of(str(InvocationId.parse(invocation_id)))
        except ValueError:
            w = self.me  # the engine answers with its BadRequest
        if w == self.me:
            return await self.engine.invocation_command(invocation_id, command, deployment_id=deployment_id)
        outcome: CommandOutcome = await self.node.call(
            w, "invocation_command", invocation_id, command, deployment_id
        )
        return outcome

    async def restart_as_new(
        self, invocation_id: str, *, from_index: int | None = None, deployment: str | None = None
    ) -> str:
        try:
            w = self._owner_of(str(InvocationId.parse(invocation_id)))
        except ValueError:
            w = self.me  # the engine answers with its BadRequest
        if w == self.me:
            return await self.engine.restart_as_new(
                invocation_id, from_index=from_index, deployment=deployment
            )
        new_id: str = await self.node.call(w, "restart_as_new", invocation_id, from_index, deployment)
        return new_id

    async def set_state(self, service: str, key: str, new_state: Mapping[str, bytes]) -> None:
        w = self.owners[partition_of_key(partition_key_for_key(key), self.partitions)]
        if w == self.me:
            return await self.engine.set_state(service, key, new_state)
        await self.node.call(w, "set_state", service, key, dict(new_state))
        return None

    # ------------------------------------------------------------------ outbox between workers

    def _outbound(self, partition: int, seq: int, command: Command) -> None:
        self.node.send_outbox(partition, seq, command)

    def _on_deliver(self, partition: int, seq: int, command: Command) -> None:
        if partition not in self.local:
            log.error(
                "message %d for partition %d reached worker %d, which does not own it",
                seq,
                partition,
                self.me,
            )
            return
        self.engine._submit(partition, Deliver(seq, command, remote=True))

    def _on_committed(self, batch: list[tuple[int, Command]]) -> None:
        acks: dict[int, list[OutboxKey]] = defaultdict(list)
        for partition, cmd in batch:
            if type(cmd) is Deliver and cmd.remote:
                acks[self.owners[cmd.seq & SOURCE_MASK]].append((partition, cmd.seq))
        for w, keys in acks.items():
            self.node.ack(w, keys)

    def _on_commit_failure(self) -> None:
        self.node.drop_incoming()

    def _on_acked(self, keys: list[OutboxKey]) -> None:
        # The receiver committed them: their rows can go, in one commit per burst.
        self._acked.extend(keys)
        if self._deleting is None:
            self._deleting = asyncio.get_running_loop().create_task(self._delete_acked())

    async def _delete_acked(self) -> None:
        try:
            while self._acked:
                keys, self._acked = self._acked, []
                txn = self.engine.storage.begin()
                for partition, seq in keys:
                    txn.delete_outbox(partition, seq)
                try:
                    await self.engine.storage.commit(txn)
                except Exception:  # kept rows are sent again after a restart; the receiver drops them
                    log.exception("could not delete %d acknowledged outbox rows", len(keys))
        finally:
            self._deleting = None

    # ------------------------------------------------------------------ schema (through worker 0)

    async def register_deployment(self, registration: DeploymentRegistration) -> RegistrationResult:
        if self.me != SCHEMA_WORKER:
            result: RegistrationResult = await self.node.call(
                SCHEMA_WORKER, "register_deployment", registration
            )
            return result
        async with self._schema_lock:
            out = await self.engine.register_deployment(registration)
            if not registration.dry_run:
                await self._push_schema()
            return out

    async def delete_deployment(self, deployment_id: str) -> None:
        if self.me != SCHEMA_WORKER:
            await self.node.call(SCHEMA_WORKER, "delete_deployment", deployment_id)
            return
        async with self._schema_lock:
            await self.engine.delete_deployment(deployment_id)
            await self._push_schema()

    async def update_deployment(
        self, deployment_id: str, registration: DeploymentRegistration
    ) -> DeploymentRecord:
        if self.me != SCHEMA_WORKER:
            record: DeploymentRecord = await self.node.call(
                SCHEMA_WORKER, "update_deployment", deployment_id, registration
            )
            return record
        async with self._schema_lock:
            out = await self.engine.update_deployment(deployment_id, registration)
            if not registration.dry_run:
                await self._push_schema()
            return out

    async def update_service(self, name: str, patch: ServicePatch) -> ServiceSchema:
        if self.me != SCHEMA_WORKER:
            svc: ServiceSchema = await self.node.call(SCHEMA_WORKER, "update_service", name, patch)
            return svc
        async with self._schema_lock:
            out = await self.engine.update_service(name, patch)
            await self._push_schema()
            return out

    def rule_book(self) -> RuleBook:
        return self.engine.rule_book()

    async def upsert_rules(self, entries: Sequence[Upsert]) -> list[Rule]:
        if self.me != SCHEMA_WORKER:
            rules: list[Rule] = await self.node.call(SCHEMA_WORKER, "upsert_rules", entries)
            return rules
        async with self._schema_lock:
            out = await self.engine.upsert_rules(entries)
            await self._push_schema()
            return out

    async def delete_rules(self, entries: Sequence[Delete]) -> list[str]:
        if self.me != SCHEMA_WORKER:
            removed: list[str] = await self.node.call(SCHEMA_WORKER, "delete_rules", entries)
            return removed
        async with self._schema_lock:
            out = await self.engine.delete_rules(entries)
            await self._push_schema()
            return out

    async def list_deployments(self) -> list[DeploymentRecord]:
        return await self.engine.list_deployments()

    async def get_deployment(self, deployment_id: str) -> DeploymentRecord:
        return await self.engine.get_deployment(deployment_id)

    async def _get_schema(self) -> SchemaSnapshot:
        e = self.engine
        return (
            self._schema_version,
            [deployment_to_json(d) for d in e._deployments.values()],
            [service_to_json(s) for s in e._services.values()],
            e.rule_book().to_bytes(),
            *e.subscriptions.documents(),
        )

    async def _push_schema(self) -> None:
        self._schema_version = max(self._schema_version + 1, time.time_ns())
        await self.node.broadcast("schema", await self._get_schema())

    async def _apply_schema(self, snapshot: SchemaSnapshot) -> None:
        version, deployment_docs, service_docs, rule_book, cluster_docs, sub_docs = snapshot
        async with self._schema_lock:
            if version <= self._schema_version:
                return
            e = self.engine
            deployments = {d.id: d for d in map(deployment_from_json, deployment_docs)}
            services = {s.name: s for s in map(service_from_json, service_docs)}
            txn = e.storage.begin()
            for dp_id in e._deployments.keys() - deployments.keys():
                txn.delete_deployment(dp_id)
            for name in e._services.keys() - services.keys():
                txn.delete_service(name)
            for dp_id, doc in zip(deployments, deployment_docs, strict=True):
                txn.put_deployment(dp_id, doc)
            for name, doc in zip(services, service_docs, strict=True):
                txn.put_service(name, doc)
            txn.put_rule_book(rule_book)
            subscriptions.store_schema(e, txn, cluster_docs, sub_docs)
            await e.storage.commit(txn)
            changed = [d for d, rec in e._deployments.items() if deployments.get(d) != rec]
            e._deployments = deployments
            e._services = services
            for dp_id in changed:
                e.invoker.forget_deployment(dp_id)
            e.adopt_rules(RuleBook.from_bytes(rule_book))
            e.subscriptions.adopt(cluster_docs, sub_docs)
            self._schema_version = version

    # ------------------------------------------------------------------ introspection

    def query_snapshot(self) -> QuerySnapshot:
        """Every worker's database, read as one (each file on its own read transaction)."""
        return UnionSnapshot(self.db_paths, now_ms=self.engine.clock.now_ms())
