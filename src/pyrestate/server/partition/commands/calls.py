"""Calls and one-way sends to other invocations (the callee's `Invoke` goes through the outbox), and the
callee's response coming back."""

from __future__ import annotations

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.framing import MessageType
from pyrestate.protocol.ids import InvocationId, partition_key_for_key
from pyrestate.server.core_api import ServiceType
from pyrestate.server.partition.lifecycle import Apply, notification
from pyrestate.server.partition.model import InvocationRequest, InvocationResponse, Invoke
from pyrestate.server.storage.records import InvocationStatus, ResponseSink, Target
from pyrestate.server.tracing import callee_trace


def on_call(a: Apply, st: InvocationStatus, msg: pb.CallCommandMessage | pb.OneWayCallCommandMessage) -> None:
    svc = a.ctx.schema.lookup_service(msg.service_name)
    handler = svc.handlers.get(msg.handler_name) if svc is not None else None
    assert svc is not None and handler is not None  # checked before the command was appended
    keyed = svc.ty is not ServiceType.SERVICE
    key = msg.key if keyed else None
    ikey = msg.idempotency_key if msg.HasField("idempotency_key") and msg.idempotency_key else None
    scope = msg.scope if msg.HasField("scope") and msg.scope else None
    limit_key = msg.limit_key if scope is not None and msg.HasField("limit_key") else None
    target = Target(svc.name, handler.name, key, svc.ty, handler.ty, scope, limit_key)
    callee_id = InvocationId.for_call(
        InvocationId.parse(st.invocation_id),
        st.journal_length - 1,  # the call command, just appended
        svc.name,
        handler.name,
        timestamp_ms=a.ctx.now,
        key=key,
        idempotency_key=ikey,
        workflow_run=target.workflow_run,
    )
    if scope is not None and key is None and ikey is None:
        # As Restate places a scoped service invocation: everything in a scope shares its partition key.
        callee_id = InvocationId(partition_key_for_key(scope), callee_id.uuid)
    callee = str(callee_id)
    one_way = isinstance(msg, pb.OneWayCallCommandMessage)
    headers = tuple((h.key, h.value) for h in msg.headers)
    request = InvocationRequest(
        invocation_id=callee,
        target=target,
        body=msg.parameter,
        headers=headers,
        idempotency_key=ikey,
        sink=None if one_way else ResponseSink(st.invocation_id, msg.result_completion_id),  # type: ignore[union-attr]
        execution_time=msg.invoke_time if one_way and msg.invoke_time > a.ctx.now else None,  # type: ignore[union-attr]
        invoked_by="service",
        invoked_by_id=st.invocation_id,
        completion_retention_ms=a.ctx.completion_retention(target, ikey is not None),
        trace=(
            None if st.trace is None else callee_trace(st.trace, st.invocation_id, st.epoch, callee, one_way)
        ),
    )
    a.send_to_invocation(callee, Invoke(request))
    a.notify(
        st,
        MessageType.CALL_INVOCATION_ID_COMPLETION,
        notification(completion_id=msg.invocation_id_notification_idx, invocation_id=callee),
    )


def on_response(a: Apply, cmd: InvocationResponse) -> None:
    st = a.txn.get_invocation_status(cmd.invocation_id)
    if st is None or not st.alive:
        return
    a.notify(st, cmd.notification_ty, notification(completion_id=cmd.completion_id, outcome=cmd.outcome))
