"""One attempt on the wire: the Start message and replay, the bidirectional exchange with its timeouts, and
each message the deployment sends turned into an effect. The invoker (service.py) decides when an attempt runs
and where its effects go; this module only talks to the stream it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.errors import ErrorCode, ProtocolError
from pyrestate.protocol.framing import FrameDecoder, MessageType, encode_message, encode_raw
from pyrestate.protocol.ids import InvocationId
from pyrestate.protocol.outcome import read_result
from pyrestate.server import tracing
from pyrestate.server.core_api import as_outcome
from pyrestate.server.invoker.transport import InvocationStream
from pyrestate.server.partition.model import (
    AttemptEnded,
    AttemptFailed,
    Effect,
    PinDeployment,
    ProposeRun,
    SdkCommand,
    Suspend,
)
from pyrestate.server.storage.records import InvocationStatus, Waiting


@dataclass
class Attempt:
    """One running attempt: what the invoker tracks of it, and what its exchange reads and updates."""

    invocation_id: str
    epoch: int
    known_entries: int
    outbound: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    slot: asyncio.TimerHandle | None = None  # set while the attempt counts as a running background one
    heard_at: float = 0.0  # loop time the deployment last sent something (or the stream opened)
    opened: bool = False  # its stream is open: waiting for a free stream before that is not being quiet
    pin: PinDeployment | None = None  # reported with the attempt's first other effect
    service: str = ""  # the target service, for the metrics
    span: tracing.AttemptSpan | None = None  # only while tracing is on and the invocation is traced


class AttemptFailure(Exception):
    """Ends an attempt with a failure that is not the deployment's own (reported as `AttemptFailed`)."""

    def __init__(
        self, code: int, message: str, delay_ms: int | None = None, *, terminal: bool = False
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.delay_ms = delay_ms
        self.terminal = terminal


def start_payload(
    st: InvocationStatus,
    journal: list[tuple[int, bytes]],
    state: list[tuple[bytes, bytes]] | None,
    version: int,
    lazy: bool,
) -> bytes:
    """The Start message (eager state unless `lazy`, the fields of protocol `version`), then the journal."""
    start = pb.StartMessage()
    iid = InvocationId.parse(st.invocation_id)
    start.id = iid.to_bytes()
    start.debug_id = st.invocation_id
    start.known_entries = len(journal)
    if st.target.key is not None:
        start.key = st.target.key
    if state is not None and not lazy:
        for k, v in state:
            start.state_map.add(key=k, value=v)
    else:
        start.partial_state = True
    if st.retry_count:
        start.retry_count_since_last_stored_entry = st.retry_count
        since = st.last_entry_at or st.running_at or st.created_at
        start.duration_since_last_stored_entry = max(0, int(time.time() * 1000) - since)
    if version >= 6:
        start.random_seed = st.random_seed
    if version >= 7:  # Restate 1.7 sends the key the ingress gave (its generated ULID included)
        if st.idempotency_key is not None:
            start.idempotency_key = st.idempotency_key
        if st.target.scope is not None:
            start.scope = st.target.scope
        if st.target.limit_key is not None:
            start.limit_key = st.target.limit_key
    return encode_message(start) + b"".join(encode_raw(ty, raw) for ty, raw in journal)


async def exchange(
    att: Attempt,
    stream: InvocationStream,
    payload: bytes,
    request_response: bool,
    inactivity_s: float,
    abort_s: float,
    ct: str,
    message_size_limit: int,
    emit: Callable[[Effect], None],
) -> None:
    """Send the replay, then forward notifications while reading the deployment's messages until one ends
    the attempt. The request side is closed after `inactivity_s` without traffic in either direction
    (the SDK then suspends); from then on the deployment has `abort_s` to finish."""
    await stream.send(payload)
    request_open = not request_response
    if not request_open:
        await stream.end_request()
    loop = asyncio.get_running_loop()
    last_activity = loop.time()
    closed_at = last_activity

    async def pump() -> None:
        nonlocal last_activity
        while True:
            frame = await att.outbound.get()
            await stream.send(frame)
            last_activity = loop.time()

    pump_task = loop.create_task(pump()) if request_open else None
    try:
        try:
            status, resp_headers = await asyncio.wait_for(stream.response_head(), abort_s)
        except TimeoutError:
            raise AttemptFailure(
                ErrorCode.INTERNAL,
                f"abort timeout: the deployment sent no response headers within {abort_s:g}s",
            ) from None
        if status != 200:
            raise AttemptFailure(
                status if status >= 400 else ErrorCode.INTERNAL, f"deployment answered HTTP {status}"
            )
        got_ct = next((v for k, v in resp_headers if k.lower() == "content-type"), None)
        if got_ct is not None and got_ct.split(";")[0].strip() != ct:
            raise AttemptFailure(
                ErrorCode.INTERNAL, f"deployment answered with content-type {got_ct!r}, expected {ct!r}"
            )
        decoder = FrameDecoder(message_size_limit)
        recv: asyncio.Future[bytes | None] = asyncio.ensure_future(stream.receive())
        try:
            while True:
                now = loop.time()
                timeout = (
                    (last_activity + inactivity_s - now) if request_open else (closed_at + abort_s - now)
                )
                done, _ = await asyncio.wait({recv}, timeout=max(0.0, timeout))
                if not done:
                    now = loop.time()
                    if request_open and now >= last_activity + inactivity_s:
                        request_open = False
                        closed_at = now
                        if pump_task is not None:
                            pump_task.cancel()
                        await stream.end_request()
                    elif not request_open and now >= closed_at + abort_s:
                        raise AttemptFailure(
                            ErrorCode.INTERNAL, "abort timeout: the deployment did not finish in time"
                        )
                    continue
                chunk = recv.result()
                if chunk is None:
                    decoder.close()
                    raise AttemptFailure(
                        ErrorCode.INTERNAL,
                        "the deployment closed the stream without End, Suspension or Error",
                    )
                last_activity = att.heard_at = loop.time()
                for frame in decoder.feed(chunk):
                    if handle_message(att, frame.type, frame.message, frame.raw, emit):
                        return
                recv = asyncio.ensure_future(stream.receive())
        finally:
            if not recv.done():
                recv.cancel()
                with contextlib.suppress(BaseException):
                    await recv
    finally:
        if pump_task is not None:
            pump_task.cancel()
            with contextlib.suppress(BaseException):
                await pump_task


def handle_message(
    att: Attempt, ty: MessageType, message: object, raw: bytes, emit: Callable[[Effect], None]
) -> bool:
    """Turn one SDK message into an effect; True when it ends the attempt."""
    if ty.is_command:
        if att.span is not None:
            att.span.command(ty.name)
        emit(SdkCommand(int(ty), raw))
        return False
    match message:
        case pb.ProposeRunCompletionMessage():
            written = read_result(message)
            result = as_outcome(b"" if written is None else written)
            emit(ProposeRun(message.result_completion_id, result))
            return False
        case pb.SuspensionMessage():
            emit(Suspend(waiting(message)))
            return True
        case pb.ErrorMessage():
            text = message.message
            if message.stacktrace:
                text = f"{text}\n{message.stacktrace}"
            delay = message.next_retry_delay if message.HasField("next_retry_delay") else None
            behavior = message.behavior  # V7: the handler asks to pause, or to fail for good
            emit(
                AttemptFailed(
                    message.code or ErrorCode.INTERNAL,
                    text,
                    delay,
                    terminal=behavior == pb.FAIL,
                    pause=behavior == pb.PAUSE,
                )
            )
            return True
        case pb.EndMessage():
            emit(AttemptEnded())
            return True
        case pb.AwaitingOnMessage():
            return False
        case _:
            raise ProtocolError(f"unexpected message {ty.name} from the deployment")


def waiting(message: pb.SuspensionMessage) -> Waiting:
    """What a suspension waits for: V5/V6 lists, or (V7) the leaves of the awaited future tree. Any
    leaf resumes the invocation; the SDK suspends again if its combinator is not satisfied yet."""
    completions = list(message.waiting_completions)
    signals = list(message.waiting_signals)
    names = list(message.waiting_named_signals)
    if message.HasField("awaiting_on"):
        pending = [message.awaiting_on]
        while pending:
            future = pending.pop()
            completions.extend(future.waiting_completions)
            signals.extend(future.waiting_signals)
            names.extend(future.waiting_named_signals)
            pending.extend(future.nested_futures)
    return Waiting(tuple(completions), tuple(signals), tuple(names))


def first(*values: int | bool | None) -> int:
    """The first value that is set: a handler's, else its service's, else the server's."""
    for v in values:
        if v is not None:
            return int(v)
    return 0
