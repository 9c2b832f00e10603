"""Running Kafka subscriptions: the admin operations, and one consumer group member per subscription.

Exactly-once ingestion: each record is submitted to the partition of its invocation as an `Ingest` command
carrying (producer = "{group}-{topic}-{partition}", seq = offset). The partition records the seq in the same
commit that enqueues the invocation and drops a record at or below the recorded seq. A Kafka offset is
committed only after every record before it was committed (or dropped), so after a crash the group resumes
at or before the first record not yet stored, and the redelivered ones are dropped. Records of one Kafka
partition are submitted in offset order, which keeps a virtual object key's records in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pyrestate.server.core_api import (
    IngressInvocation,
    InvocationTarget,
    NotFound,
    ServiceSchema,
    ServiceType,
    Unavailable,
)
from pyrestate.server.subscriptions.model import (
    KafkaCluster,
    KafkaRecord,
    Subscription,
    SubscriptionError,
    decode_cluster,
    decode_subscription,
    invocation_id_for,
    new_subscription_id,
    object_key,
    parse_cluster_request,
    parse_cluster_update,
    parse_request,
    producer_id,
    record_headers,
)

log = logging.getLogger(__name__)

# Records of one Kafka partition submitted and not yet committed; above it the partition is paused.
MAX_IN_FLIGHT_PER_PARTITION = 512
RESTART_BACKOFF_S = 1.0
POLL_TIMEOUT_MS = 200


class IngestTarget(Protocol):
    """Where a consumer's records go: the engine itself, or (several workers) a router to each record's
    partition owner. Records submitted under an `ingest_epoch` other than the current one are refused."""

    @property
    def ingest_epoch(self) -> int: ...

    def ingest(
        self,
        invocation: IngressInvocation,
        make_id: Any,
        subscription_id: str,
        producer: str,
        seq: int,
        epoch: int,
    ) -> asyncio.Future[Any]: ...


class IngestEngine(IngestTarget, Protocol):
    """What the subscriptions need of the engine."""

    storage: Any

    def list_services(self) -> list[ServiceSchema]: ...


@runtime_checkable
class SubscriptionAdmin(Protocol):
    """What the admin API serves `/subscriptions` and `/kafka-clusters` from."""

    @property
    def clusters(self) -> Mapping[str, KafkaCluster]: ...

    def list(self, sink: str | None = None, source: str | None = None) -> list[Subscription]: ...

    def get(self, subscription_id: str) -> Subscription | None: ...

    async def create(self, body: object) -> Subscription: ...

    async def delete(self, subscription_id: str) -> None: ...

    async def create_cluster(self, body: object) -> KafkaCluster: ...

    async def update_cluster(self, name: str, body: object) -> KafkaCluster: ...

    async def delete_cluster(self, name: str, force: bool) -> None: ...


def _now_rfc3339() -> str:
    """The time as the official server writes `created_at`: UTC, milliseconds in nine digits."""
    ms = time.time_ns() // 1_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}000000Z"


def _refuse_file_cluster(cluster: KafkaCluster) -> None:
    if cluster.configured_in_file:
        raise SubscriptionError(
            409,
            f"kafka cluster '{cluster.name}' cannot be updated, because it was defined in the restate "
            "configuration file. Update the configuration file directly, or remove the configuration file",
        )


class SubscriptionService:
    """The subscriptions and clusters of one engine's storage. `run_consumers` False keeps them as data
    only (a worker other than the one consuming for the whole server); `ingest` is where records go."""

    def __init__(
        self,
        engine: IngestEngine,
        clusters: Sequence[KafkaCluster],
        *,
        ingest: IngestTarget | None = None,
        run_consumers: bool = True,
    ) -> None:
        self._engine = engine
        self._ingest = ingest or engine
        self._run_consumers = run_consumers
        self._file_clusters = list(clusters)
        # The config file's clusters, then those registered through the admin API (stored).
        self.clusters = {c.name: c for c in clusters}
        self._subs: dict[str, Subscription] = {}
        self._consumers: dict[str, SubscriptionConsumer] = {}

    async def start(self) -> None:
        reader = self._engine.storage.reader()
        self._load(
            [doc for _, doc in reader.all_kafka_clusters()], [doc for _, doc in reader.all_subscriptions()]
        )
        for sub in self._subs.values():
            self._run(sub)

    def _load(self, cluster_docs: Sequence[bytes], subscription_docs: Sequence[bytes]) -> None:
        self.clusters = {c.name: c for c in self._file_clusters}
        for doc in cluster_docs:
            cluster = decode_cluster(doc)
            if cluster.name in self.clusters:  # as the official server: the config file's cluster wins
                log.warning(
                    "Kafka cluster %r is registered and in the config file: the file's is used", cluster.name
                )
                continue
            self.clusters[cluster.name] = cluster
        self._subs = {s.id: s for s in map(decode_subscription, subscription_docs)}

    def documents(self) -> tuple[list[bytes], list[bytes]]:
        """The stored clusters (registered through the admin API) and subscriptions, as stored."""
        clusters = [c.encode() for c in self.clusters.values() if not c.configured_in_file]
        return clusters, [s.encode() for s in self._subs.values()]

    def adopt(self, cluster_docs: Sequence[bytes], subscription_docs: Sequence[bytes]) -> None:
        """Take another worker's (already stored) subscriptions and clusters as this one's. Only for a
        service that runs no consumers."""
        assert not self._run_consumers
        self._load(cluster_docs, subscription_docs)

    async def stop(self) -> None:
        consumers = list(self._consumers.values())
        self._consumers.clear()
        await asyncio.gather(*(c.stop() for c in consumers), return_exceptions=True)

    def _run(self, sub: Subscription) -> None:
        if not self._run_consumers:
            return
        cluster = self.clusters.get(sub.cluster)
        if cluster is None:
            log.warning(
                "subscription %s reads from the unknown Kafka cluster %r: not started", sub.id, sub.cluster
            )
            return
        consumer = SubscriptionConsumer(self._ingest, sub, cluster)
        self._consumers[sub.id] = consumer
        consumer.start()

    async def _stop_consumers(self, subs: list[Subscription]) -> None:
        consumers = [c for s in subs if (c := self._consumers.pop(s.id, None)) is not None]
        await asyncio.gather(*(c.stop() for c in consumers), return_exceptions=True)

    def _subscriptions_of(self, cluster: str) -> list[Subscription]:
        return [s for s in self._subs.values() if s.cluster == cluster]

    # ------------------------------------------------------------------ admin

    def list(self, sink: str | None = None, source: str | None = None) -> list[Subscription]:
        subs = sorted(self._subs.values(), key=lambda s: s.id, reverse=True)
        return [
            s for s in subs if (sink is None or s.sink == sink) and (source is None or s.source == source)
        ]

    def get(self, subscription_id: str) -> Subscription | None:
        return self._subs.get(subscription_id)

    async def create(self, body: object) -> Subscription:
        services = {s.name: s for s in self._engine.list_services()}
        sub = parse_request(
            body, subscription_id=new_subscription_id(), services=services, clusters=self.clusters
        )
        txn = self._engine.storage.begin()
        txn.put_subscription(sub.id, sub.encode())
        await self._engine.storage.commit(txn)
        self._subs[sub.id] = sub
        self._run(sub)
        return sub

    async def create_cluster(self, body: object) -> KafkaCluster:
        cluster = parse_cluster_request(body, _now_rfc3339())
        existing = self.clusters.get(cluster.name)
        if existing is not None and existing.configured_in_file:
            raise SubscriptionError(
                409,
                f"kafka cluster '{cluster.name}' conflicts with static configuration. Cluster names in "
                "schema registry cannot override statically configured clusters.",
            )
        if existing is not None:
            raise SubscriptionError(409, f"kafka cluster '{cluster.name}' already exists in schema registry")
        await self._store_cluster(cluster)
        # Subscriptions left without their cluster (deleted with force) read again from the new one.
        for sub in self._subscriptions_of(cluster.name):
            if sub.id not in self._consumers:
                self._run(sub)
        return cluster

    async def update_cluster(self, name: str, body: object) -> KafkaCluster:
        current = self.clusters.get(name)
        if current is None:
            raise SubscriptionError(404, f"not found in the schema registry: kafka cluster '{name}'")
        _refuse_file_cluster(current)
        cluster = parse_cluster_update(current, body)
        await self._store_cluster(cluster)
        # Consumers restart with the new properties, from the committed offsets.
        subs = self._subscriptions_of(name)
        await self._stop_consumers(subs)
        for sub in subs:
            self._run(sub)
        return cluster

    async def delete_cluster(self, name: str, force: bool) -> None:
        current = self.clusters.get(name)
        if current is None:
            raise SubscriptionError(404, f"not found in the schema registry: kafka cluster named '{name}'")
        _refuse_file_cluster(current)
        subs = sorted(self._subscriptions_of(name), key=lambda s: s.id)
        if subs and not force:
            raise SubscriptionError(
                409,
                f"Removing the kafka cluster '{name}' leads to subscription '{subs[0].id}' being orphan. "
                "Remove the subscription first, or use the 'force' flag.",
            )
        txn = self._engine.storage.begin()
        txn.delete_kafka_cluster(name)
        await self._engine.storage.commit(txn)
        del self.clusters[name]
        await self._stop_consumers(subs)  # the subscriptions stay, idle until the cluster is back

    async def _store_cluster(self, cluster: KafkaCluster) -> None:
        txn = self._engine.storage.begin()
        txn.put_kafka_cluster(cluster.name, cluster.encode())
        await self._engine.storage.commit(txn)
        self.clusters[cluster.name] = cluster

    async def delete(self, subscription_id: str) -> None:
        if subscription_id not in self._subs:
            raise SubscriptionError(
                404, f"not found in the schema registry: subscription with id '{subscription_id}'"
            )
        txn = self._engine.storage.begin()
        txn.delete_subscription(subscription_id)
        await self._engine.storage.commit(txn)
        del self._subs[subscription_id]
        consumer = self._consumers.pop(subscription_id, None)
        if consumer is not None:
            await consumer.stop()


@dataclass
class _Pending:
    """A Kafka partition's submitted records, oldest first: (offset, future of its commit)."""

    records: deque[tuple[int, asyncio.Future[Any]]] = field(default_factory=deque)
    committed: int = -1  # offset of the last record known stored
    acked: int = -1  # offset committed to Kafka (the next record to read is acked + 1)
    paused: bool = False


class SubscriptionConsumer:
    """One member of the subscription's consumer group, restarted from the committed offsets after any
    failure (broker gone, engine commit failure)."""

    def __init__(self, target: IngestTarget, sub: Subscription, cluster: KafkaCluster) -> None:
        self._engine = target
        self.sub = sub
        self._cluster = cluster
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._supervise(), name=f"kafka-{self.sub.id}")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _supervise(self) -> None:
        while not self._stopping:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("subscription %s: consumer failed (%s); restarting", self.sub.id, e)
            await asyncio.sleep(RESTART_BACKOFF_S)

    def _consumer_config(self) -> dict[str, Any]:
        opts = dict(self.sub.options)
        reset = opts.get("auto.offset.reset", "latest")
        return {
            "bootstrap_servers": self._cluster.bootstrap_servers,
            "group_id": self.sub.group_id,
            "client_id": self.sub.client_id,
            "enable_auto_commit": False,
            "auto_offset_reset": {
                "smallest": "earliest",
                "beginning": "earliest",
                "largest": "latest",
                "end": "latest",
            }.get(reset, reset),
            "session_timeout_ms": int(opts.get("session.timeout.ms", "10000")),
            "heartbeat_interval_ms": int(opts.get("heartbeat.interval.ms", "3000")),
        }

    async def _consume(self) -> None:
        from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

        pending: dict[Any, _Pending] = {}
        consumer = AIOKafkaConsumer(**self._consumer_config())
        epoch = self._engine.ingest_epoch

        async def settle(final: bool) -> None:
            """Collect the stored records of each partition in order and commit their offsets to Kafka."""
            offsets: dict[Any, int] = {}
            for tp, p in pending.items():
                while p.records:
                    offset, fut = p.records[0]
                    if not fut.done():
                        if not final:
                            break
                        await asyncio.wait([fut])
                    fut.result()  # a refused record (engine restarted ingestion) restarts the consumer
                    p.records.popleft()
                    p.committed = offset
                if p.committed > p.acked:
                    offsets[tp] = p.committed + 1
                if p.paused and len(p.records) < MAX_IN_FLIGHT_PER_PARTITION // 2:
                    consumer.resume(tp)
                    p.paused = False
            if offsets:
                await consumer.commit(offsets)
                for tp, next_offset in offsets.items():
                    pending[tp].acked = next_offset - 1

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                # Another member takes these over from the committed offsets: store and commit first.
                with contextlib.suppress(Exception):
                    await settle(final=True)
                for tp in revoked:
                    pending.pop(tp, None)

            async def on_partitions_assigned(self, assigned: Any) -> None:
                log.info("subscription %s: assigned %s", outer.sub.id, sorted(str(tp) for tp in assigned))

        outer = self
        consumer.subscribe([self.sub.topic], listener=Listener())
        await consumer.start()
        try:
            while True:
                waiting = any(p.records for p in pending.values())
                batches = await consumer.getmany(
                    timeout_ms=20 if waiting else POLL_TIMEOUT_MS, max_records=500
                )
                for tp, recs in batches.items():
                    p = pending.setdefault(tp, _Pending())
                    for rec in recs:
                        fut = self._submit(rec, epoch)
                        p.records.append((rec.offset, fut))
                    if len(p.records) >= MAX_IN_FLIGHT_PER_PARTITION and not p.paused:
                        consumer.pause(tp)  # back-pressure: read on once the partition's records are stored
                        p.paused = True
                await settle(final=False)
        finally:
            if self._engine.ingest_epoch == epoch:
                with contextlib.suppress(Exception):
                    await settle(final=True)
            await consumer.stop()

    def _submit(self, rec: Any, epoch: int) -> asyncio.Future[Any]:
        sub = self.sub
        record = KafkaRecord(
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            key=rec.key,
            value=rec.value,
            timestamp_ms=rec.timestamp if rec.timestamp is not None and rec.timestamp >= 0 else None,
        )
        invocation = IngressInvocation(
            target=InvocationTarget(sub.service, sub.handler, object_key(record)),
            body=record.value or b"",
            headers=record_headers(sub, record),
        )

        def make_id(ty: ServiceType) -> str:
            return invocation_id_for(sub, record, ty)

        try:
            return self._engine.ingest(
                invocation,
                make_id,
                sub.id,
                producer_id(sub.group_id, record.topic, record.partition),
                record.offset,
                epoch,
            )
        except NotFound as e:  # the handler was removed: keep the record until it is back
            raise Unavailable(f"record {record.topic}/{record.partition}@{record.offset}: {e}") from None
