"""`EngineCore`: the `ServerCore` implementation wiring storage, partitions, invoker and timers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
from collections.abc import Callable
from typing import Any, assert_never

from pyrestate.protocol.ids import (
    InvocationId,
    new_ulid,
    parse_awakeable_id,
    partition_key_for_key,
)
from pyrestate.server import metrics, tracing
from pyrestate.server.config import ServerConfig
from pyrestate.server.core_api import (
    BadRequest,
    ById,
    ByIdempotencyKey,
    ByWorkflow,
    DeploymentRecord,
    IngressInvocation,
    InvocationQuery,
    InvocationResult,
    NotFound,
    NotReady,
    Outcome,
    SendReceipt,
    ServiceSchema,
    ServiceType,
    SubmitStatus,
    Success,
    Unavailable,
)
from pyrestate.server.deployments import address_policy
from pyrestate.server.engine.invocation_admin import InvocationAdmin
from pyrestate.server.engine.schema_admin import SchemaAdmin
from pyrestate.server.flow_limits import RuleBook
from pyrestate.server.invoker.identity import load_signer
from pyrestate.server.invoker.service import Invoker, InvokerConfig
from pyrestate.server.partition.commands.invocation import WORKFLOW_ALREADY_INVOKED
from pyrestate.server.partition.context import ApplyContext, Policies, partition_of
from pyrestate.server.partition.model import (
    AbortAttempt,
    Action,
    AlreadyCompleted,
    Command,
    Deliver,
    ForwardNotification,
    Ingest,
    IngressResponse,
    InvocationRequest,
    Invoke,
    NotifySignal,
    RegisterTimer,
    Reply,
    ReviewLimits,
    SendToPartition,
    StartAttempt,
    Submitted,
    TimerFired,
    WorkflowAlreadyInvoked,
    command_from_json,
)
from pyrestate.server.partition.processor import CommandLoop, PartitionProcessor
from pyrestate.server.storage.api import Storage
from pyrestate.server.storage.factory import create_storage
from pyrestate.server.storage.records import InvocationStatus, Status, Target, Timer
from pyrestate.server.storage.schema_codec import (
    deployment_from_json,
    service_from_json,
)
from pyrestate.server.timers.service import Clock, TimerService, WallClock

log = logging.getLogger(__name__)

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid_text() -> str:
    """A ULID in its canonical 26-character Crockford base32 text (Restate's generated idempotency keys)."""
    n = new_ulid()
    return "".join(_CROCKFORD[(n >> (5 * i)) & 31] for i in range(25, -1, -1))


class EngineCore(SchemaAdmin, InvocationAdmin):
    """Lifecycle, ingress and the plumbing between partitions, invoker and timers; the admin operations
    come from the `SchemaAdmin` and `InvocationAdmin` mixins."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        clock: Clock | None = None,
        storage: Storage | None = None,
        shared_storage: bool = False,
        subscriptions: bool = True,
    ) -> None:
        """`storage`: one opened by the caller instead of the configured one. `shared_storage`: it also holds
        the partitions outside `local_partitions`, processed by other engines (nodes on PostgreSQL), so
        this engine recovers, fires and reviews only its own."""
        self.config = config
        self.clock = clock or WallClock()
        self.storage: Storage = storage or create_storage(
            config.storage,
            sqlite_path=config.database_path,
            partitions=config.partitions,
            node_id=config.node_id,
            accept_data_loss=config.accept_data_loss,
            lock_note=config.lock_note,
        )
        self.shared_storage = shared_storage
        self._run_subscriptions = subscriptions
        self._services: dict[str, ServiceSchema] = {}
        self._deployments: dict[str, DeploymentRecord] = {}
        self._partitions: list[PartitionProcessor] = []
        self._tokens: dict[int, asyncio.Future[Any]] = {}
        self._token_ids = itertools.count(1)
        self._waiters: dict[str, list[asyncio.Future[Outcome]]] = {}
        self._schema_lock = asyncio.Lock()
        self._rules = RuleBook()
        self._policies = Policies(
            retry=config.retry_policy,
            idempotency_retention_ms=config.idempotency_retention_ms,
            workflow_completion_retention_ms=config.workflow_completion_retention_ms,
            journal_retention_ms=config.journal_retention_ms,
        )
        self.invoker = Invoker(
            self.storage,
            self,
            lambda effect: self._submit(partition_of(effect.invocation_id, self.config.partitions), effect),
            InvokerConfig(
                inactivity_timeout_ms=config.inactivity_timeout_ms,
                abort_timeout_ms=config.abort_timeout_ms,
                concurrency_per_deployment=config.concurrency_per_deployment,
                background_concurrency=config.background_concurrency,
                ingress_busy_s=config.ingress_busy_s,
                background_slot_s=config.background_slot_s,
                disable_eager_state=config.disable_eager_state,
                signer=load_signer(config.request_identity_private_key_pem_file),
                address_policy=address_policy(config.deployment_allow, config.deployment_deny),
                message_size_limit=config.message_size_limit,
                key_size_limit=config.key_size_limit,
                max_protocol_version=7 if config.experimental_enable_protocol_v7 else 6,
            ),
        )
        self.timers = TimerService(self.clock, self._fire_timer, self._load_timers)
        self._started = False
        # Bumped when a failed commit dropped queued commands: ingestion begun before must start over.
        self.ingest_epoch = 0
        self.subscriptions: Any = None  # subscriptions.service.SubscriptionService, once started
        # Set by a worker of a multi-process server: one worker consumes, routing records to their owners.
        self.subscription_ingest: Any = None
        self.run_consumers = True
        # Set by a worker of a multi-process server (pyrestate.server.cluster): outbox messages to
        # partitions outside `local_partitions` go to `outbound`, and `on_committed` sees every batch.
        self.local_partitions: range | None = None
        self.outbound: Callable[[int, int, Command], None] | None = None
        self.on_committed: Callable[[list[tuple[int, Command]]], None] | None = None
        self.on_commit_failure: Callable[[], None] | None = None

    # ================================================================== lifecycle

    async def start(self) -> None:
        await self.storage.open()
        reader = self.storage.reader()
        for _, doc in reader.all_deployments():
            dp = deployment_from_json(doc)
            self._deployments[dp.id] = dp
        for _, doc in reader.all_services():
            svc = service_from_json(doc)
            self._services[svc.name] = svc
        self._rules = RuleBook.from_bytes(reader.get_rule_book())
        # One command loop for all partitions: a batch spanning many partitions is one commit.
        shared = CommandLoop(
            self.storage,
            self._context,
            self._perform,
            self._fail_token,
            self._recover_after_commit_failure,
            on_committed=self.on_committed,
        )
        self._partitions = [
            PartitionProcessor(p, self.storage, self._context, self._perform, self._fail_token, shared)
            for p in range(self.config.partitions)
        ]
        resumed = self._recover_from_storage()
        if resumed:
            log.info("resuming %d invocation(s) that were in flight", resumed)
        for p in self._partitions:
            p.start()
        self.timers.start()
        self._started = True
        metrics.gauges.partitions_owned = lambda: len(self.local_partitions or self._partitions)
        metrics.gauges.timers_in_memory = lambda: len(self.timers)
        metrics.gauges.attempts_running = lambda: self.invoker.running
        if not self._run_subscriptions:
            return
        from pyrestate.server.subscriptions.service import SubscriptionService

        self.subscriptions = SubscriptionService(
            self,
            self.config.kafka_clusters,
            ingest=self.subscription_ingest,
            run_consumers=self.run_consumers,
        )
        await self.subscriptions.start()

    def _mine(self, partition: int) -> bool:
        """Whether this engine processes `partition` (with a shared store, others process the rest)."""
        local = self.local_partitions
        return not self.shared_storage or local is None or partition in local

    @property
    def in_flight(self) -> int:
        """Invocations with an attempt running or due (what a stop interrupts and the next start resumes)."""
        return self.invoker.in_flight

    def _recover_from_storage(self) -> int:
        """Rebuild the in-memory view from committed data: undelivered outbox messages first (they were
        committed before anything still queued), then timers, then an attempt for every invocation that
        was running. Used at start and after a failed commit."""
        reader = self.storage.reader()
        for p in self._partitions:
            for seq, payload in reader.list_outbox(p.partition):
                # In a shared store, a message this engine neither sent nor receives is another's concern.
                if self._mine(p.partition) or self._mine(seq & 0xFFFF):
                    self._deliver(p.partition, seq, command_from_json(payload))
        self.timers.reload()
        for p in self._partitions:
            if self._mine(p.partition):
                p.submit(ReviewLimits())  # waiting invocations that fit now (rules changed before a crash)
        now = self.clock.now_ms()
        started = 0
        n = self.config.partitions
        for st in reader.all_invocation_statuses():
            if st.status is Status.INVOKED and self._mine(partition_of(st.invocation_id, n)):
                # A retry whose back-off was pending keeps it: the next attempt time is stored.
                delay = max(0, st.next_retry_at - now) if st.next_retry_at is not None else 0
                self.invoker.start_attempt(st.invocation_id, st.epoch, delay)
                started += 1
        return started

    def _recover_after_commit_failure(self) -> None:
        # Running attempts may have sent commands that were never stored: stop them all, then restart
        # from storage. Their replacements replay the committed journal, like after a crash.
        self.ingest_epoch += 1
        self.invoker.abort_all()
        if self.on_commit_failure is not None:
            self.on_commit_failure()
        try:
            self._recover_from_storage()
        except Exception:  # storage unreadable too: the next failing commit will try again
            log.exception("recovery after a failed commit could not read storage")

    async def stop(self) -> None:
        if not self._started:
            return
        if self.subscriptions is not None:
            await self.subscriptions.stop()  # before the partitions: in-flight records settle first
        self._started = False
        metrics.gauges.detach()
        await self.timers.stop()
        await self.invoker.close()
        for p in self._partitions:
            await p.stop()
        for fut in self._tokens.values():
            if not fut.done():
                fut.set_exception(Unavailable("server shutting down"))
        for futs in self._waiters.values():
            for fut in futs:
                if not fut.done():
                    fut.set_exception(Unavailable("server shutting down"))
        await self.storage.close()

    # ================================================================== plumbing

    def _context(self, partition: int) -> ApplyContext:
        limits = self._rules if self.config.experimental_enable_vqueues else None
        return ApplyContext(
            partition, self.config.partitions, self.clock.now_ms(), self, self._policies, limits
        )

    def _submit(self, partition: int, command: Command) -> None:
        self._partitions[partition].submit(command)

    def _deliver(self, partition: int, seq: int, command: Command) -> None:
        """A committed outbox message: applied here, or handed to the owner process of its partition."""
        local = self.local_partitions
        if self.outbound is not None and local is not None and partition not in local:
            self.outbound(partition, seq, command)
            return
        # From another engine's partition (a shared store): its sender may send it too, de-duplicate.
        self._partitions[partition].submit(Deliver(seq, command, remote=not self._mine(seq & 0xFFFF)))

    def _new_token(self) -> tuple[int, asyncio.Future[Any]]:
        token = next(self._token_ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._tokens[token] = fut
        return token, fut

    async def _request(self, partition: int, make: Any) -> Any:
        if not self._started:
            raise Unavailable("the engine is not running")
        token, fut = self._new_token()
        try:
            self._submit(partition, make(token))
            return await fut
        finally:
            self._tokens.pop(token, None)

    def _fail_token(self, token: int, error: BaseException) -> None:
        fut = self._tokens.get(token)
        if fut is not None and not fut.done():
            fut.set_exception(Unavailable(f"could not apply the request: {error}"))

    def _perform(self, action: Action) -> None:
        match action:
            case StartAttempt(invocation_id=i, epoch=e, delay_ms=d):
                # Nobody waits on a sent invocation: it queues behind the ingress under load.
                self.invoker.start_attempt(i, e, d, background=i not in self._waiters)
            case ForwardNotification(invocation_id=i, epoch=e, index=idx, ty=ty, raw=raw):
                self.invoker.forward(i, e, idx, ty, raw)
            case AbortAttempt(invocation_id=i):
                self.invoker.abort(i)
            case RegisterTimer(timer=t):
                self.timers.add(t)
            case IngressResponse(invocation_id=i, outcome=o, traced=traced):
                if traced is not None and tracing.sink is not None:
                    tracing.sink.invocation_end(traced, o)
                for fut in self._waiters.pop(i, []):
                    if not fut.done():
                        fut.set_result(o)
            case Reply(token=t, value=v):
                token_fut = self._tokens.get(t)
                if token_fut is not None and not token_fut.done():
                    token_fut.set_result(v)
            case SendToPartition(partition=p, seq=s, command=c):
                self._deliver(p, s, c)
            case _:
                assert_never(action)

    def _load_timers(self, after_ms: int, until_ms: int, limit: int) -> list[Timer]:
        return self.storage.reader().timers_between(after_ms, until_ms, limit)

    def _fire_timer(self, timer: Any) -> None:
        if not self._mine(timer.partition % self.config.partitions):
            return  # a shared store's timer of another engine's partition: that engine fires it
        metrics.timers_fired.inc()
        metrics.timer_lateness.observe(max(0, self.clock.now_ms() - timer.fire_at) / 1000)
        self._submit(timer.partition % self.config.partitions, TimerFired(timer))

    def _add_waiter(self, invocation_id: str) -> asyncio.Future[Outcome]:
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(invocation_id, []).append(fut)
        return fut

    def _drop_waiter(self, invocation_id: str, fut: asyncio.Future[Outcome]) -> None:
        futs = self._waiters.get(invocation_id)
        if futs is not None:
            with contextlib.suppress(ValueError):
                futs.remove(fut)
            if not futs:
                del self._waiters[invocation_id]

    # ================================================================== ingress

    def _target(self, invocation: IngressInvocation) -> tuple[ServiceSchema, Target]:
        t = invocation.target
        svc = self._services.get(t.service)
        if svc is None:
            raise NotFound(f"service '{t.service}' not found")
        handler = svc.handlers.get(t.handler)
        if handler is None:
            raise NotFound(f"handler '{t.service}/{t.handler}' not found")
        keyed = svc.ty is not ServiceType.SERVICE
        if keyed and t.key is None:
            raise BadRequest(f"service '{t.service}' needs a key")
        limit_key = t.limit_key if t.scope is not None else None
        return svc, Target(
            svc.name, handler.name, t.key if keyed else None, svc.ty, handler.ty, t.scope, limit_key
        )

    def invocation_id_for(self, invocation: IngressInvocation) -> tuple[IngressInvocation, str]:
        """The id an ingress invocation gets, and the invocation with its idempotency key filled in (a
        generated one when absent), so that whichever process applies it derives the same id."""
        ikey, iid = self._id_for(invocation, self._target(invocation)[1])
        if ikey is not None and ikey != invocation.idempotency_key:
            invocation = dataclasses.replace(invocation, idempotency_key=ikey)
        return invocation, iid

    @staticmethod
    def _id_for(invocation: IngressInvocation, target: Target) -> tuple[str | None, str]:
        """(idempotency key, invocation id); no key for a workflow run."""
        if target.workflow_run:
            return None, str(InvocationId.for_workflow_run(target.service, target.key or ""))
        ikey = invocation.idempotency_key or new_ulid_text()
        iid = InvocationId.for_idempotent_request(target.service, target.handler, ikey, target.key)
        if target.scope is not None and target.key is None:
            # As Restate places a scoped service invocation: the scope is its partition key.
            iid = InvocationId(partition_key_for_key(target.scope), iid.uuid)
        return ikey, str(iid)

    def _request_for(
        self, invocation: IngressInvocation, delay_ms: int | None, iid: str | None = None
    ) -> InvocationRequest:
        _, target = self._target(invocation)
        ikey: str | None
        if iid is None:
            ikey, iid = self._id_for(invocation, target)
        else:  # routed here by a worker that derived both (`invocation_id_for`)
            ikey = None if target.workflow_run else invocation.idempotency_key
        ctx = self._context(0)
        now = self.clock.now_ms()
        return InvocationRequest(
            invocation_id=iid,
            target=target,
            body=invocation.body,
            headers=invocation.headers,
            idempotency_key=ikey,
            execution_time=now + delay_ms if delay_ms else None,
            invoked_by="ingress",
            completion_retention_ms=ctx.completion_retention(target, ikey is not None),
            trace=invocation.trace,
        )

    def _with_content_type(self, target_service: str, handler: str, outcome: Outcome) -> Outcome:
        if isinstance(outcome, Success):
            svc = self._services.get(target_service)
            h = svc.handlers.get(handler) if svc is not None else None
            if h is not None and (outcome.value or h.output_set_content_type_if_empty):
                return Success(outcome.value, h.output_content_type)
            return Success(outcome.value, None)
        return outcome

    async def call(
        self, invocation: IngressInvocation, *, invocation_id: str | None = None
    ) -> InvocationResult:
        req = self._request_for(invocation, None, invocation_id)
        iid = req.invocation_id
        waiter = self._add_waiter(iid)
        try:
            with self.invoker.ingress_accepting():
                reply = await self._request(
                    partition_of(iid, self.config.partitions), lambda token: Invoke(req, token)
                )
            t = req.target
            match reply:
                case AlreadyCompleted(outcome=o, expires_at=exp):
                    return InvocationResult(iid, self._with_content_type(t.service, t.handler, o), exp)
                case WorkflowAlreadyInvoked():
                    return InvocationResult(iid, WORKFLOW_ALREADY_INVOKED)
                case Submitted():
                    outcome = await waiter
                    return InvocationResult(iid, self._with_content_type(t.service, t.handler, outcome))
                case _:
                    raise RuntimeError(f"unexpected reply {reply!r}")
        finally:
            self._drop_waiter(iid, waiter)

    def ingest(
        self,
        invocation: IngressInvocation,
        make_id: Callable[[ServiceType], str],
        subscription_id: str,
        producer: str,
        seq: int,
        epoch: int,
    ) -> asyncio.Future[Any]:
        """Submit a subscription's record at once, so that a producer's records reach their partitions in
        `seq` order; the future resolves (Submitted or Duplicate) after the commit that recorded it."""
        if not self._started or epoch != self.ingest_epoch:
            raise Unavailable("ingestion must start over from the last committed offsets")
        _, target = self._target(invocation)
        iid = make_id(target.service_ty)
        req = InvocationRequest(
            invocation_id=iid,
            target=target,
            body=invocation.body,
            headers=invocation.headers,
            invoked_by="subscription",
            invoked_by_id=subscription_id,
            completion_retention_ms=self._context(0).completion_retention(target, False),
        )
        token, fut = self._new_token()
        fut.add_done_callback(lambda _: self._tokens.pop(token, None))
        self._submit(partition_of(iid, self.config.partitions), Ingest(req, producer, seq, token))
        return fut

    async def send(self, invocation: IngressInvocation, *, invocation_id: str | None = None) -> SendReceipt:
        req = self._request_for(invocation, invocation.delay_ms, invocation_id)
        with self.invoker.ingress_accepting():
            reply = await self._request(
                partition_of(req.invocation_id, self.config.partitions), lambda token: Invoke(req, token)
            )
        match reply:
            case Submitted(previously_accepted=prev, execution_time=et):
                status = SubmitStatus.PREVIOUSLY_ACCEPTED if prev else SubmitStatus.ACCEPTED
                return SendReceipt(req.invocation_id, status, et)
            case AlreadyCompleted() | WorkflowAlreadyInvoked():
                return SendReceipt(req.invocation_id, SubmitStatus.PREVIOUSLY_ACCEPTED)
            case _:
                raise RuntimeError(f"unexpected reply {reply!r}")

    def _query_id(self, query: InvocationQuery) -> str:
        match query:
            case ById(invocation_id=text):
                try:
                    return str(InvocationId.parse(text))
                except ValueError as e:
                    raise BadRequest(f"bad invocation id '{text}': {e}") from None
            case ByIdempotencyKey(service=s, handler=h, idempotency_key=k, key=key):
                return str(InvocationId.for_idempotent_request(s, h, k, key))
            case ByWorkflow(workflow=w, key=key):
                return str(InvocationId.for_workflow_run(w, key))

    def _status(self, iid: str) -> InvocationStatus | None:
        return self.storage.reader().get_invocation_status(iid)

    def _completed_result(self, st: InvocationStatus) -> InvocationResult:
        assert st.output is not None
        return InvocationResult(
            st.invocation_id,
            self._with_content_type(st.target.service, st.target.handler, st.output),
            st.expires_at,
        )

    async def attach(self, query: InvocationQuery) -> InvocationResult:
        iid = self._query_id(query)
        waiter = self._add_waiter(iid)
        try:
            st = self._status(iid)
            if st is None:
                raise NotFound("invocation not found")
            if st.status is Status.COMPLETED:
                return self._completed_result(st)
            outcome = await waiter
            return InvocationResult(
                iid, self._with_content_type(st.target.service, st.target.handler, outcome)
            )
        finally:
            self._drop_waiter(iid, waiter)

    async def get_output(self, query: InvocationQuery) -> InvocationResult:
        iid = self._query_id(query)
        st = self._status(iid)
        if st is None:
            raise NotFound("invocation not found")
        if st.status is not Status.COMPLETED:
            raise NotReady("the invocation exists but has not completed yet")
        return self._completed_result(st)

    async def complete_awakeable(self, awakeable_id: str, outcome: Outcome) -> None:
        try:
            target, index = parse_awakeable_id(awakeable_id)
        except ValueError as e:
            raise BadRequest(f"bad awakeable id '{awakeable_id}': {e}") from None
        iid = str(target)
        await self._request(
            partition_of(iid, self.config.partitions),
            lambda token: NotifySignal(iid, index, None, outcome, token),
        )


def create_core(config: ServerConfig) -> EngineCore:
    """The engine `pyrestate server` runs."""
    return EngineCore(config)


__all__ = ["EngineCore", "create_core"]
