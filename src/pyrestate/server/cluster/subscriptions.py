"""Kafka subscriptions of `pyrestate server --workers N`.

Subscriptions and Kafka clusters are schema: changed through worker 0, stored in its file and pushed with
the rest of the schema to every worker (`WorkerCore._push_schema`), so any worker answers the admin API.

Worker 0 alone runs the consumers: one group member per subscription in the whole server. Each record
becomes an `Ingest` applied by the owner of its partition, which records (producer, offset) in its own
commit; the Kafka offset is committed after that commit is acknowledged. Records for another worker travel
on one ordered stream per destination (`ClusterIngest` → `IngestReceiver`): batches numbered from 0, applied
in that order. The receiver refuses every batch after a gap (a batch lost with a connection, a restart of
either side, a failed commit there), and the sender fails the stream's records and starts a new ingest
epoch, so the consumers start over from the committed offsets. The records a partition applied are thus
always a prefix of what was sent to it in offset order, and its deduplication drops exactly the
redelivered ones.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyrestate.server.core_api import IngressInvocation, NotFound, ServiceType, Unavailable
from pyrestate.server.partition.context import partition_of
from pyrestate.server.subscriptions.model import (
    KafkaCluster,
    Subscription,
    decode_cluster,
    decode_subscription,
)

if TYPE_CHECKING:
    from pyrestate.server.cluster.router import WorkerCore
    from pyrestate.server.engine.core import EngineCore
    from pyrestate.server.subscriptions.service import SubscriptionService

log = logging.getLogger(__name__)

CONSUMING_WORKER = 0
KEPT_STREAMS = 64  # incoming streams remembered (older ones are long replaced: their senders moved on)

# One forwarded record: (invocation, invocation id, subscription id, producer, seq)
Forwarded = tuple[IngressInvocation, str, str, str, int]

_CHANGES = frozenset({"create", "delete", "create_cluster", "update_cluster", "delete_cluster"})


def attach(core: WorkerCore, schema_worker: int) -> ClusterSubscriptions:
    """Wire the subscriptions into a worker: its engine keeps them as data only unless this is the
    consuming worker, whose records go through `ClusterIngest`."""
    engine = core.engine
    engine.run_consumers = core.me == CONSUMING_WORKER
    engine.subscription_ingest = ClusterIngest(core)
    receiver = IngestReceiver(engine)
    admin = ClusterSubscriptions(core, schema_worker)
    core._methods["ingest"] = receiver.receive
    core._methods["subscriptions"] = admin.serve
    return admin


# ------------------------------------------------------------------------------------------------ admin


class ClusterSubscriptions:
    """The admin API's view: reads from this worker's copy, changes through the schema worker."""

    def __init__(self, core: WorkerCore, schema_worker: int) -> None:
        self._core = core
        self._schema_worker = schema_worker

    @property
    def _local(self) -> SubscriptionService:
        service: SubscriptionService = self._core.engine.subscriptions
        return service

    @property
    def clusters(self) -> Mapping[str, KafkaCluster]:
        return self._local.clusters

    def list(self, sink: str | None = None, source: str | None = None) -> list[Subscription]:
        return self._local.list(sink=sink, source=source)

    def get(self, subscription_id: str) -> Subscription | None:
        return self._local.get(subscription_id)

    async def create(self, body: object) -> Subscription:
        sub: Subscription = await self._change("create", body)
        return sub

    async def delete(self, subscription_id: str) -> None:
        await self._change("delete", subscription_id)

    async def create_cluster(self, body: object) -> KafkaCluster:
        cluster: KafkaCluster = await self._change("create_cluster", body)
        return cluster

    async def update_cluster(self, name: str, body: object) -> KafkaCluster:
        cluster: KafkaCluster = await self._change("update_cluster", name, body)
        return cluster

    async def delete_cluster(self, name: str, force: bool) -> None:
        await self._change("delete_cluster", name, force)

    async def serve(self, op: str, args: tuple[Any, ...]) -> Any:
        """A change forwarded by another worker."""
        if op not in _CHANGES:
            raise ValueError(f"unknown subscription change {op!r}")
        return await self._change(op, *args)

    async def _change(self, op: str, *args: Any) -> Any:
        core = self._core
        if core.me != self._schema_worker:
            return await core.node.call(self._schema_worker, "subscriptions", op, args)
        async with core._schema_lock:
            out = await getattr(self._local, op)(*args)
            await core._push_schema()
            return out


def store_schema(
    engine: EngineCore, txn: Any, cluster_docs: Sequence[bytes], sub_docs: Sequence[bytes]
) -> None:
    """Write another worker's subscriptions and clusters in place of this one's, in `txn`."""
    reader = engine.storage.reader()
    clusters = {decode_cluster(d).name: d for d in cluster_docs}
    subs = {decode_subscription(d).id: d for d in sub_docs}
    for name, _ in reader.all_kafka_clusters():
        if name not in clusters:
            txn.delete_kafka_cluster(name)
    for sub_id, _ in reader.all_subscriptions():
        if sub_id not in subs:
            txn.delete_subscription(sub_id)
    for name, doc in clusters.items():
        txn.put_kafka_cluster(name, doc)
    for sub_id, doc in subs.items():
        txn.put_subscription(sub_id, doc)


# ------------------------------------------------------------------------------------------------ records


@dataclass
class _OutStream:
    id: str
    next: int = 0
    buffer: list[tuple[Forwarded, asyncio.Future[Any]]] = field(default_factory=list)


class ClusterIngest:
    """The consuming worker's `IngestTarget`: a record for a local partition goes to the engine, one for
    another worker joins that worker's stream (batched per event-loop turn)."""

    def __init__(self, core: WorkerCore) -> None:
        self._core = core
        self._epoch = 0
        self._engine_epoch = core.engine.ingest_epoch
        self._streams: dict[int, _OutStream] = {}
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def ingest_epoch(self) -> int:
        if self._core.engine.ingest_epoch != self._engine_epoch:
            self._renew("a commit failed here")
        return self._epoch

    def _renew(self, why: str) -> None:
        """Start a new epoch: records of the old one not yet sent fail, and consumers start over."""
        self._epoch += 1
        self._engine_epoch = self._core.engine.ingest_epoch
        streams, self._streams = self._streams, {}
        failure = Unavailable(f"record forwarding starts over: {why}")
        for st in streams.values():
            for _, fut in st.buffer:
                if not fut.done():
                    fut.set_exception(failure)
            st.buffer.clear()

    def ingest(
        self,
        invocation: IngressInvocation,
        make_id: Callable[[ServiceType], str],
        subscription_id: str,
        producer: str,
        seq: int,
        epoch: int,
    ) -> asyncio.Future[Any]:
        if epoch != self.ingest_epoch:
            raise Unavailable("ingestion must start over from the last committed offsets")
        core = self._core
        svc = core.engine.lookup_service(invocation.target.service)
        if svc is None:
            raise NotFound(f"service '{invocation.target.service}' not found")
        iid = make_id(svc.ty)
        w = core.owners[partition_of(iid, core.partitions)]
        if w == core.me:
            return core.engine.ingest(
                invocation, lambda _: iid, subscription_id, producer, seq, self._engine_epoch
            )
        st = self._streams.get(w)
        if st is None:
            st = self._streams[w] = _OutStream(os.urandom(12).hex())
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        st.buffer.append(((invocation, iid, subscription_id, producer, seq), fut))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._flush_scheduled = False
        loop = asyncio.get_running_loop()
        for w, st in self._streams.items():
            if not st.buffer:
                continue
            batch, st.buffer = st.buffer, []
            index, st.next = st.next, st.next + 1
            # Tasks start in creation order, so a stream's batches leave in index order.
            task = loop.create_task(self._forward(w, st.id, index, batch, self._epoch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _forward(
        self, w: int, stream: str, index: int, batch: list[tuple[Forwarded, asyncio.Future[Any]]], epoch: int
    ) -> None:
        try:
            await self._core.node.call(w, "ingest", stream, index, [r for r, _ in batch])
        except Exception as e:
            # Later batches of this stream are refused by the receiver: every consumer starts over.
            if epoch == self._epoch:
                log.info("records to worker %d not taken (%s); consumers start over", w, e)
                self._renew(f"worker {w}: {e}")
            failure = Unavailable(f"records to worker {w} not taken: {e}")
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(failure)
        else:
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()


@dataclass
class _InStream:
    next: int
    epoch: int  # the engine's ingest epoch when the stream began: a failed commit since ends the stream


def _fixed_id(iid: str) -> Callable[[ServiceType], str]:
    return lambda _: iid


def _quiet(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


class IngestReceiver:
    """The owner's end of the streams: each batch is submitted at once, in stream order, and answered
    after the commit that recorded every record of it."""

    def __init__(self, engine: EngineCore) -> None:
        self._engine = engine
        self._streams: OrderedDict[str, _InStream] = OrderedDict()

    async def receive(self, stream: str, index: int, records: list[Forwarded]) -> None:
        e = self._engine
        st = self._streams.get(stream)
        if st is None and index == 0:
            st = self._streams[stream] = _InStream(0, e.ingest_epoch)
            while len(self._streams) > KEPT_STREAMS:
                self._streams.popitem(last=False)
        if st is None or st.next != index or st.epoch != e.ingest_epoch:
            if st is not None:
                st.next = -1  # nothing more of this stream is applied
            raise Unavailable(f"records of stream {stream} after a gap: the consumer must start over")
        st.next += 1
        futs: list[asyncio.Future[Any]] = []
        try:
            for invocation, iid, sub_id, producer, seq in records:
                futs.append(e.ingest(invocation, _fixed_id(iid), sub_id, producer, seq, st.epoch))
        except Exception:
            st.next = -1
            for fut in futs:
                fut.add_done_callback(_quiet)
            raise
        await asyncio.gather(*futs)
