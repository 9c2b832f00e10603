"""New invocations (`Invoke`, deduplicated by id), their output, and asking another invocation for its
result (attach / get output, answered through the outbox)."""

from __future__ import annotations

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.errors import ErrorCode
from pyrestate.protocol.framing import MessageType
from pyrestate.protocol.ids import InvocationId
from pyrestate.protocol.outcome import read_result
from pyrestate.server.core_api import Failure, Outcome, as_outcome
from pyrestate.server.partition.lifecycle import Apply, notification
from pyrestate.server.partition.model import (
    AlreadyCompleted,
    GetResult,
    InvocationRequest,
    InvocationResponse,
    Invoke,
    Submitted,
    WorkflowAlreadyInvoked,
)
from pyrestate.server.storage.records import InvocationStatus, ResponseSink, Status, Timer, TimerKind

WORKFLOW_ALREADY_INVOKED = Failure(ErrorCode.CONFLICT, "the workflow method was already invoked")
NOT_FOUND = Failure(ErrorCode.NOT_FOUND, "not found")


def on_invoke(a: Apply, cmd: Invoke) -> None:
    req = cmd.request
    existing = a.txn.get_invocation_status(req.invocation_id)
    if existing is not None:
        _on_duplicate(a, existing, req, cmd.reply_token)
        return
    input_cmd = pb.InputCommandMessage()
    for k, v in req.headers:
        input_cmd.headers.add(key=k, value=v)
    input_cmd.value.content = req.body
    st = InvocationStatus(
        invocation_id=req.invocation_id,
        status=Status.SCHEDULED,
        target=req.target,
        created_at=a.ctx.now,
        modified_at=a.ctx.now,
        idempotency_key=req.idempotency_key,
        invoked_by=req.invoked_by,
        invoked_by_id=req.invoked_by_id,
        sinks=(req.sink,) if req.sink is not None else (),
        execution_time=req.execution_time,
        random_seed=InvocationId.parse(req.invocation_id).v5_random_seed(),
        completion_retention_ms=req.completion_retention_ms,
        command_count=1,
        trace=req.trace,
    )
    st = a.append(st, MessageType.INPUT, input_cmd.SerializeToString())
    if req.execution_time is not None and req.execution_time > a.ctx.now:
        a.put(st)
        a.register_timer(Timer(req.execution_time, TimerKind.INVOKE, st.invocation_id, 0, a.ctx.partition))
    else:
        a.enqueue_or_start(st)
    a.reply(cmd.reply_token, Submitted(req.invocation_id, False, req.execution_time))


def _on_duplicate(a: Apply, st: InvocationStatus, req: InvocationRequest, token: int | None) -> None:
    if st.target.workflow_run:
        if req.sink is not None and req.sink.invocation_id is not None:
            a.send_to_invocation(
                req.sink.invocation_id,
                InvocationResponse(req.sink.invocation_id, req.sink.completion_id, WORKFLOW_ALREADY_INVOKED),
            )
        a.reply(token, WorkflowAlreadyInvoked(st.invocation_id))
        return
    if st.status is Status.COMPLETED:
        assert st.output is not None
        if req.sink is not None and req.sink.invocation_id is not None:
            a.send_to_invocation(
                req.sink.invocation_id,
                InvocationResponse(req.sink.invocation_id, req.sink.completion_id, st.output),
            )
        a.reply(token, AlreadyCompleted(st.invocation_id, st.output, st.expires_at))
        return
    if req.sink is not None:
        a.put(st.with_(sinks=(*st.sinks, req.sink)))
    a.reply(token, Submitted(st.invocation_id, True, st.execution_time))


# ------------------------------------------------------------------------------------------------ effects


def on_output(a: Apply, st: InvocationStatus, msg: pb.OutputCommandMessage) -> None:
    written = read_result(msg)
    a.put(st.with_(output=as_outcome(b"" if written is None else written)))


def on_attach_or_get_output(
    a: Apply,
    st: InvocationStatus,
    msg: pb.AttachInvocationCommandMessage | pb.GetInvocationOutputCommandMessage,
) -> None:
    wait = isinstance(msg, pb.AttachInvocationCommandMessage)
    reply_ty = (
        MessageType.ATTACH_INVOCATION_COMPLETION if wait else MessageType.GET_INVOCATION_OUTPUT_COMPLETION
    )
    whose = _result_target(msg)
    if whose is None:
        a.notify(st, reply_ty, notification(completion_id=msg.result_completion_id, outcome=NOT_FOUND))
        return
    a.put(st)
    a.send_to_invocation(whose, GetResult(whose, st.invocation_id, msg.result_completion_id, wait))


def _result_target(
    msg: pb.AttachInvocationCommandMessage | pb.GetInvocationOutputCommandMessage,
) -> str | None:
    """The invocation id an attach / get-output names; None when it cannot name one."""
    try:
        match msg.WhichOneof("target"):
            case "invocation_id":
                return str(InvocationId.parse(msg.invocation_id))
            case "idempotent_request_target":
                t = msg.idempotent_request_target
                key = t.service_key if t.HasField("service_key") else None
                return str(
                    InvocationId.for_idempotent_request(
                        t.service_name, t.handler_name, t.idempotency_key, key
                    )
                )
            case "workflow_target":
                w = msg.workflow_target
                return str(InvocationId.for_workflow_run(w.workflow_name, w.workflow_key))
    except ValueError:
        return None
    return None


def on_get_result(a: Apply, cmd: GetResult) -> None:
    ty = (
        MessageType.ATTACH_INVOCATION_COMPLETION if cmd.wait else MessageType.GET_INVOCATION_OUTPUT_COMPLETION
    )
    st = a.txn.get_invocation_status(cmd.invocation_id)
    answer: Outcome | None
    if st is None:
        answer = NOT_FOUND
    elif st.status is Status.COMPLETED:
        answer = st.output
    elif cmd.wait:
        a.put(st.with_(sinks=(*st.sinks, ResponseSink(cmd.caller, cmd.completion_id, int(ty)))))
        return
    else:
        answer = None  # not completed yet: void
    a.send_to_invocation(cmd.caller, InvocationResponse(cmd.caller, cmd.completion_id, answer, int(ty)))
