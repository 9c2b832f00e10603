"""The invoker: runs invocation attempts against deployments and reports what happens as effects.

One attempt = one HTTP exchange. The attempt replays the stored journal after a Start message, then (bidi)
forwards notifications committed meanwhile while reading the SDK's commands. An inactivity timeout closes
the request side (the SDK then suspends); the abort timeout bounds the time after that. Effects go to the
partition in the order they were read, tagged with the attempt's epoch.

This module schedules attempts (urgent and background queues, concurrency limits, retries' delays) and
reports their effects; what an attempt sends and reads on its stream is in attempt.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote

from pyrestate.protocol.errors import ErrorCode, MessageTooLarge, ProtocolError
from pyrestate.protocol.framing import encode_raw
from pyrestate.protocol.versions import DEFAULT_SERVER_MAX_VERSION, invocation_content_type, negotiate
from pyrestate.server import metrics, tracing
from pyrestate.server.core_api import DeploymentRecord, ServiceSchema
from pyrestate.server.deployments import AddressPolicy, DeniedAddress
from pyrestate.server.invoker.attempt import Attempt, AttemptFailure, exchange, first, start_payload
from pyrestate.server.invoker.identity import RequestSigner
from pyrestate.server.invoker.transport import DeploymentClient, TransportError
from pyrestate.server.partition.model import (
    AttemptEnded,
    AttemptFailed,
    Effect,
    InvokerEffect,
    PinDeployment,
    Suspend,
)
from pyrestate.server.storage.api import Storage
from pyrestate.server.storage.records import InvocationStatus, Status

log = logging.getLogger(__name__)

# V7 needs the future-tree suspension and run acks; until then new invocations use at most V6, as the
# official server does without its experimental flag.
SERVER_MAX_PROTOCOL = DEFAULT_SERVER_MAX_VERSION


class Registry:
    """What the invoker needs to know about the schema (implemented by the engine)."""

    def lookup_service(self, name: str) -> ServiceSchema | None:
        raise NotImplementedError

    def get_deployment_record(self, deployment_id: str) -> DeploymentRecord | None:
        raise NotImplementedError


LAUNCHES_PER_TURN = 64


@dataclass(frozen=True, slots=True)
class InvokerConfig:
    """The invoker's parameters; their defaults are the server's (`server.config.ServerConfig`)."""

    inactivity_timeout_ms: int
    abort_timeout_ms: int
    concurrency_per_deployment: int
    # While the ingress is busy (a request in the last `ingress_busy_s`), at most this many attempts of
    # invocations nobody waits on (sent ones) run at once; more queue up and start as these end. A flood of
    # /send then cannot take the core from accepting: the backlog runs when the load allows.
    background_concurrency: int
    ingress_busy_s: float
    # A background attempt that heard nothing from its deployment for this long stops counting against the
    # limit (it waits on something else: a slow step, a promise), so slow handlers cannot hold the queue up.
    background_slot_s: float
    disable_eager_state: bool
    signer: RequestSigner | None  # request identity; None: requests go unsigned
    address_policy: AddressPolicy
    # A larger message from a deployment fails the invocation at once (Restate's message-size-limit).
    message_size_limit: int
    # A longer object key (UTF-8 bytes) fails the invocation before it is sent: the key travels
    # percent-encoded in a request header, and deployment servers bound the size of headers.
    key_size_limit: int
    # The highest service protocol offered to deployments (V7 only when switched on).
    max_protocol_version: int = SERVER_MAX_PROTOCOL


class Invoker:
    def __init__(
        self,
        storage: Storage,
        registry: Registry,
        submit: Callable[[InvokerEffect], None],
        config: InvokerConfig,
    ) -> None:
        self._storage = storage
        self._registry = registry
        self._submit = submit
        self._config = config
        self._attempts: dict[str, Attempt] = {}
        self._clients: dict[str, DeploymentClient] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._delayed: dict[str, asyncio.TimerHandle] = {}
        # Starts not launched yet, in arrival order (invocation id -> epoch): urgent ones (someone waits on
        # the result) all at the next turn of the loop, background ones within `background_concurrency`.
        self._urgent: dict[str, int] = {}
        self._background: dict[str, int] = {}
        self._background_running = 0
        self._ingress_at = -1e9  # loop time the last ingress request was accepted
        self._ingress_accepting = 0
        self._quiet_check_pending = False
        self._drain_scheduled = False
        self._closed = False

    # ------------------------------------------------------------------ actions

    def start_attempt(
        self, invocation_id: str, epoch: int, delay_ms: int = 0, *, background: bool = False
    ) -> None:
        if self._closed:
            return
        handle = self._delayed.pop(invocation_id, None)
        if handle is not None:
            handle.cancel()
        if delay_ms > 0:
            loop = asyncio.get_running_loop()
            self._delayed[invocation_id] = loop.call_later(
                delay_ms / 1000, self._enqueue, invocation_id, epoch, background
            )
        else:
            self._enqueue(invocation_id, epoch, background)

    def _enqueue(self, invocation_id: str, epoch: int, background: bool) -> None:
        # Launched on a later turn of the loop: the request that caused the start (a /send, a call) is
        # answered first. `_launch` reads the journal then, so nothing committed meanwhile is missed.
        self._delayed.pop(invocation_id, None)
        self._urgent.pop(invocation_id, None)
        self._background.pop(invocation_id, None)
        (self._background if background else self._urgent)[invocation_id] = epoch
        self._schedule_drain()

    def _schedule_drain(self) -> None:
        if self._drain_scheduled or self._closed:
            return
        if self._urgent or (self._background and self._background_running < self._background_limit()):
            self._drain_scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        if self._closed:
            return
        urgent, self._urgent = self._urgent, {}
        for iid, epoch in urgent.items():
            self._launch(iid, epoch)
        background = self._background
        limit = self._background_limit()
        # A bounded number per turn of the loop: each launch reads status and journal, and starting a whole
        # backlog in one callback would stall everything else for tens of milliseconds.
        budget = LAUNCHES_PER_TURN
        while background and self._background_running < limit and budget:
            iid = next(iter(background))
            self._launch(iid, background.pop(iid), background=True)
            budget -= 1
        if not budget:
            self._schedule_drain()

    @contextlib.contextmanager
    def ingress_accepting(self) -> Iterator[None]:
        """An ingress request is being accepted (until its invocation is stored): background attempts yield
        to the ingress while any is, and for `ingress_busy_s` after the last. Counting the ones in flight,
        not only arrivals, matters: during a slow commit no request arrives (every client waits on one), and
        an idle-looking ingress would let the whole backlog start at once and starve it afterwards."""
        self._ingress_accepting += 1
        try:
            yield
        finally:
            self._ingress_accepting -= 1
            self._ingress_at = asyncio.get_running_loop().time()
            if not self._ingress_accepting and self._background and not self._quiet_check_pending:
                # Re-checked once the quiet period is over, when nothing else would start the backlog (one
                # pending check at a time, not one per request).
                self._quiet_check_pending = True
                asyncio.get_running_loop().call_later(self._config.ingress_busy_s, self._quiet_check)

    def _quiet_check(self) -> None:
        self._quiet_check_pending = False
        if self._ingress_accepting:
            return  # the request being accepted schedules the next check when it is done
        loop = asyncio.get_running_loop()
        left = self._ingress_at + self._config.ingress_busy_s - loop.time()
        if left > 0:  # another request ended meanwhile: its quiet period is not over yet
            self._quiet_check_pending = True
            loop.call_later(left, self._quiet_check)
            return
        self._schedule_drain()

    def _background_limit(self) -> int:
        if (
            self._ingress_accepting
            or asyncio.get_running_loop().time() - self._ingress_at < self._config.ingress_busy_s
        ):
            return self._config.background_concurrency
        return self._config.concurrency_per_deployment

    def _slot_expired(self, att: Attempt, due: float) -> None:
        """Release the slot of an attempt whose deployment went quiet. Not when the loop itself stalled (a
        slow commit, a garbage collection): then the attempt had no chance to hear anything, and releasing
        every slot at once would start the whole backlog exactly when the process is overloaded."""
        if att.slot is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        slot_s = self._config.background_slot_s
        if not att.opened or now - due > slot_s / 2:
            delay = slot_s  # waiting for a stream, or the loop stalled: look again a period later
        elif now - att.heard_at < slot_s:
            delay = att.heard_at + slot_s - now  # heard from lately: quiet for a whole period yet?
        else:
            self._release(att)
            return
        att.slot = loop.call_later(delay, self._slot_expired, att, now + delay)

    def _release(self, att: Attempt) -> None:
        if att.slot is None:
            return
        att.slot.cancel()
        att.slot = None
        self._background_running -= 1
        self._schedule_drain()

    def forward(self, invocation_id: str, epoch: int, index: int, ty: int, raw: bytes) -> None:
        att = self._attempts.get(invocation_id)
        if att is not None and att.epoch == epoch and index >= att.known_entries:
            att.outbound.put_nowait(encode_raw(ty, raw))

    def abort(self, invocation_id: str) -> None:
        handle = self._delayed.pop(invocation_id, None)
        if handle is not None:
            handle.cancel()
        self._urgent.pop(invocation_id, None)
        self._background.pop(invocation_id, None)
        att = self._attempts.pop(invocation_id, None)
        if att is not None and att.task is not None:
            att.task.cancel()

    def abort_all(self) -> None:
        """Stop every attempt and pending retry without reporting anything (the caller restarts them)."""
        for handle in self._delayed.values():
            handle.cancel()
        self._delayed.clear()
        self._urgent.clear()
        self._background.clear()
        attempts = list(self._attempts.values())
        self._attempts.clear()
        for att in attempts:
            if att.task is not None:
                att.task.cancel()

    @property
    def running(self) -> int:
        return len(self._attempts)

    @property
    def in_flight(self) -> int:
        """Invocations with an attempt running, queued, or waiting for its retry."""
        queued = self._delayed.keys() | self._urgent.keys() | self._background.keys()
        return len(self._attempts.keys() | queued)

    async def close(self) -> None:
        self._closed = True
        for handle in self._delayed.values():
            handle.cancel()
        self._delayed.clear()
        self._urgent.clear()
        self._background.clear()
        tasks = [a.task for a in self._attempts.values() if a.task is not None]
        self._attempts.clear()
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        for c in self._clients.values():
            with contextlib.suppress(Exception):
                await c.aclose()
        self._clients.clear()

    def forget_deployment(self, deployment_id: str) -> None:
        client = self._clients.pop(deployment_id, None)
        if client is not None:
            asyncio.get_running_loop().create_task(client.aclose())

    # ------------------------------------------------------------------ attempt

    def _launch(self, invocation_id: str, epoch: int, *, background: bool = False) -> None:
        reader = self._storage.reader()
        st = reader.get_invocation_status(invocation_id)
        if st is None or st.epoch != epoch or st.status is not Status.INVOKED:
            return
        old = self._attempts.pop(invocation_id, None)
        if old is not None and old.task is not None:
            old.task.cancel()
        # Journal read synchronously with registering the attempt: every notification committed later is
        # forwarded (index >= known_entries), every earlier one is in the replay.
        journal = reader.get_journal(invocation_id)
        state: list[tuple[bytes, bytes]] | None = None
        if st.target.key is not None:
            state = reader.get_all_state(st.target.service, st.target.key)
        att = Attempt(invocation_id, epoch, len(journal), service=st.target.service)
        if st.trace is not None and tracing.sink is not None:
            if epoch == 1 and st.deployment_id is None:  # the first attempt: the invocation starts
                tracing.sink.invocation_start(st)
            att.span = tracing.sink.attempt(st, epoch)
        self._attempts[invocation_id] = att
        metrics.attempts.labels(att.service).inc()
        if st.retry_count:
            metrics.retries.labels(att.service).inc()
        loop = asyncio.get_running_loop()
        att.task = loop.create_task(
            self._run(att, st, [(e.ty, e.raw) for e in journal], state), name=f"attempt-{invocation_id}"
        )
        if background:
            self._background_running += 1
            att.heard_at = loop.time()
            slot_s = self._config.background_slot_s
            att.slot = loop.call_later(slot_s, self._slot_expired, att, att.heard_at + slot_s)
            # A done callback, not `finally`: a task cancelled before its first step never runs its body.
            att.task.add_done_callback(lambda _: self._release(att))

    def _emit(self, att: Attempt, effect: Effect) -> None:
        if isinstance(effect, AttemptFailed):
            metrics.attempt_failures.labels(att.service, str(effect.code)).inc()
        if att.span is not None:
            _trace_effect(att.span, effect)
        if att.pin is not None:
            # Applied in the same batch as what the deployment answered first: one commit less per
            # invocation. Until then nothing depends on it (a lost pin is chosen again by the next attempt).
            pin, att.pin = att.pin, None
            self._submit(InvokerEffect(att.invocation_id, att.epoch, pin))
        self._submit(InvokerEffect(att.invocation_id, att.epoch, effect))

    async def _run(
        self,
        att: Attempt,
        st: InvocationStatus,
        journal: list[tuple[int, bytes]],
        state: list[tuple[bytes, bytes]] | None,
    ) -> None:
        try:
            try:
                await self._attempt(att, st, journal, state)
            except AttemptFailure as f:
                self._emit(att, AttemptFailed(f.code, f.message, f.delay_ms, f.terminal))
            except TransportError as e:
                self._emit(att, AttemptFailed(ErrorCode.UNAVAILABLE, f"transport error: {e}"))
            except MessageTooLarge as e:
                message = (
                    f"message size limit exceeded: the deployment sent a {e.type_name} message of {e.size} "
                    f"bytes, over the limit of {e.limit} bytes (message-size-limit); not retried"
                )
                self._emit(att, AttemptFailed(ErrorCode.INTERNAL, message, terminal=True))
            except ProtocolError as e:
                self._emit(att, AttemptFailed(ErrorCode.PROTOCOL_VIOLATION, f"protocol violation: {e}"))
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.exception("attempt of %s crashed", att.invocation_id)
                self._emit(att, AttemptFailed(ErrorCode.INTERNAL, f"internal error: {e!r}"))
        finally:
            if self._attempts.get(att.invocation_id) is att:
                del self._attempts[att.invocation_id]
            if att.span is not None:
                att.span.end()

    def _client(self, dp: DeploymentRecord) -> DeploymentClient:
        client = self._clients.get(dp.id)
        if client is None:
            client = DeploymentClient(
                dp.uri,
                use_http_11=dp.use_http_11,
                additional_headers=dp.additional_headers,
                signer=self._config.signer,
            )
            self._clients[dp.id] = client
        return client

    def _choose(self, att: Attempt, st: InvocationStatus) -> tuple[DeploymentRecord, int, ServiceSchema]:
        svc = self._registry.lookup_service(st.target.service)
        if svc is None:
            raise AttemptFailure(ErrorCode.NOT_FOUND, f"service '{st.target.service}' not found")
        dp = None
        if st.deployment_id is not None:
            dp = self._registry.get_deployment_record(st.deployment_id)
        if dp is None:
            dp = self._registry.get_deployment_record(svc.deployment_id)
        if dp is None:
            raise AttemptFailure(ErrorCode.UNAVAILABLE, f"no deployment for service '{st.target.service}'")
        version = st.protocol_version
        if version is None:
            negotiated = negotiate(
                dp.min_protocol_version, dp.max_protocol_version, self._config.max_protocol_version
            )
            if negotiated is None:
                raise AttemptFailure(
                    ErrorCode.INTERNAL,
                    f"deployment {dp.id} supports protocol versions "
                    f"{dp.min_protocol_version}..{dp.max_protocol_version} only",
                )
            version = int(negotiated)
        if st.deployment_id is None or st.protocol_version is None:
            att.pin = PinDeployment(dp.id, version)
        return dp, version, svc

    async def _attempt(
        self,
        att: Attempt,
        st: InvocationStatus,
        journal: list[tuple[int, bytes]],
        state: list[tuple[bytes, bytes]] | None,
    ) -> None:
        key = st.target.key
        if key is not None and len(key.encode()) > self._config.key_size_limit:
            raise AttemptFailure(
                400,
                f"the object key is {len(key.encode())} bytes long, over the limit of "
                f"{self._config.key_size_limit} bytes (key-size-limit); not retried",
                terminal=True,
            )
        dp, version, svc = self._choose(att, st)
        handler = svc.handlers.get(st.target.handler)
        inactivity = first(
            handler.inactivity_timeout_ms if handler else None,
            svc.inactivity_timeout_ms,
            self._config.inactivity_timeout_ms,
        )
        abort = first(
            handler.abort_timeout_ms if handler else None, svc.abort_timeout_ms, self._config.abort_timeout_ms
        )
        lazy = bool(
            first(
                handler.enable_lazy_state if handler else None,
                svc.enable_lazy_state,
                self._config.disable_eager_state,
            )
        )
        request_response = dp.use_http_11 or dp.protocol_mode == "REQUEST_RESPONSE" or inactivity == 0

        payload = start_payload(st, journal, state, version, lazy)

        ct = invocation_content_type(version)
        headers = [
            ("content-type", ct),
            ("accept", ct),
            ("x-restate-invocation-id", st.invocation_id),
        ]
        if st.target.key is not None:
            headers.append(("x-restate-service-key", quote(st.target.key, safe="")))
        if att.span is not None:
            headers.append(("traceparent", att.span.traceparent))
            att.span.deployment(dp.id, dp.uri, version)
        limit = self._limits.setdefault(dp.id, asyncio.Semaphore(self._config.concurrency_per_deployment))
        async with limit:
            try:  # checked again here: a name may resolve elsewhere than when it was registered
                await self._config.address_policy.check(dp.uri)
            except DeniedAddress as e:
                raise AttemptFailure(403, e.message) from None
            client = self._client(dp)
            stream = await client.open_stream(
                "POST", f"/invoke/{st.target.service}/{st.target.handler}", headers
            )
            att.opened = True
            att.heard_at = asyncio.get_running_loop().time()
            try:
                await exchange(
                    att,
                    stream,
                    payload,
                    request_response,
                    inactivity / 1000,
                    abort / 1000,
                    ct,
                    self._config.message_size_limit,
                    lambda effect: self._emit(att, effect),
                )
            finally:
                await stream.aclose()


def _trace_effect(span: tracing.AttemptSpan, effect: Effect) -> None:
    match effect:
        case AttemptEnded():
            span.ended()
        case Suspend():
            span.suspended()
        case AttemptFailed(code=code, message=message):
            span.failed(code, message)
        case _:
            pass
