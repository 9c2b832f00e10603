"""Workflow promises: get (waits as a listener), peek, complete (answers the listeners through the outbox)."""

from __future__ import annotations

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.errors import ErrorCode
from pyrestate.protocol.framing import MessageType
from pyrestate.protocol.outcome import read_result
from pyrestate.server.core_api import Failure, ServiceType, as_outcome
from pyrestate.server.partition.lifecycle import Apply, notification
from pyrestate.server.partition.model import InvocationResponse
from pyrestate.server.storage.records import InvocationStatus, Promise, ResponseSink

PROMISE_ALREADY_COMPLETED = Failure(ErrorCode.CONFLICT, "promise was already completed")


def on_promise(
    a: Apply,
    st: InvocationStatus,
    msg: pb.GetPromiseCommandMessage | pb.PeekPromiseCommandMessage | pb.CompletePromiseCommandMessage,
) -> None:
    key = st.target.key
    if st.target.service_ty is not ServiceType.WORKFLOW or key is None:
        a.fail_attempt(st, ErrorCode.PROTOCOL_VIOLATION, "promises are only available in workflows", None)
        return
    svc = st.target.service
    promise = a.txn.get_promise(svc, key, msg.key) or Promise()
    cid = msg.result_completion_id
    match msg:
        case pb.GetPromiseCommandMessage():
            if promise.completed:
                a.notify(
                    st,
                    MessageType.GET_PROMISE_COMPLETION,
                    notification(completion_id=cid, outcome=promise.result),
                )
            else:
                a.txn.put_promise(
                    svc,
                    key,
                    msg.key,
                    Promise(False, None, (*promise.listeners, ResponseSink(st.invocation_id, cid))),
                )
                a.put(st)
        case pb.PeekPromiseCommandMessage():
            a.notify(
                st,
                MessageType.PEEK_PROMISE_COMPLETION,
                notification(completion_id=cid, outcome=promise.result if promise.completed else None),
            )
        case pb.CompletePromiseCommandMessage():
            if promise.completed:
                a.notify(
                    st,
                    MessageType.COMPLETE_PROMISE_COMPLETION,
                    notification(completion_id=cid, outcome=PROMISE_ALREADY_COMPLETED),
                )
                return
            result = as_outcome(read_result(msg))
            a.txn.put_promise(svc, key, msg.key, Promise(True, result, ()))
            st = a.notify(st, MessageType.COMPLETE_PROMISE_COMPLETION, notification(completion_id=cid))
            for listener in promise.listeners:
                assert listener.invocation_id is not None
                a.send_to_invocation(
                    listener.invocation_id,
                    InvocationResponse(
                        listener.invocation_id,
                        listener.completion_id,
                        result,
                        MessageType.GET_PROMISE_COMPLETION,
                    ),
                )


# ------------------------------------------------------------------------------------------------ timers
