"""Durable timers: a sleep registers one; a fired timer wakes a sleep, starts a delayed invocation, or cleans
up a completed one (journal, status, a workflow's state and promises) when its retention ends."""

from __future__ import annotations

from typing import assert_never

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.framing import MessageType
from pyrestate.server.partition.lifecycle import Apply, backing_off, notification
from pyrestate.server.storage.records import InvocationStatus, Status, Timer, TimerKind


def on_sleep(a: Apply, st: InvocationStatus, msg: pb.SleepCommandMessage) -> None:
    a.put(st)
    a.register_timer(
        Timer(
            msg.wake_up_time,
            TimerKind.SLEEP,
            st.invocation_id,
            msg.result_completion_id,
            a.ctx.partition,
        )
    )


def on_timer(a: Apply, timer: Timer) -> None:
    if not a.txn.has_timer(timer):
        return  # already fired and applied (or removed)
    a.txn.delete_timer(timer)
    st = a.txn.get_invocation_status(timer.invocation_id)
    if st is None:
        return
    match timer.kind:
        case TimerKind.SLEEP:
            if st.alive:
                a.notify(st, MessageType.SLEEP_COMPLETION, notification(completion_id=timer.completion_id))
        case TimerKind.INVOKE:
            if st.status is Status.SCHEDULED:
                a.enqueue_or_start(st)
        case TimerKind.RETRY:
            # Stale when a retry-now, pause or kill came first.
            if backing_off(st) and st.next_retry_at == timer.fire_at:
                a.start(st.with_(next_retry_at=None))
        case TimerKind.JOURNAL_CLEANUP:
            if st.status is Status.COMPLETED:
                a.txn.delete_journal(st.invocation_id)
        case TimerKind.CLEANUP:
            if st.status is Status.COMPLETED:
                a.txn.delete_invocation_status(st.invocation_id)
                a.txn.delete_journal(st.invocation_id)
                if st.target.workflow_run and st.target.key is not None:
                    a.txn.delete_all_state(st.target.service, st.target.key)
                    a.txn.delete_promises(st.target.service, st.target.key)
        case _:
            assert_never(timer.kind)


# ------------------------------------------------------------------------------------------------ responses
