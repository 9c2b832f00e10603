"""Signals and awakeables: an SDK command sends one (to any partition, through the outbox); a delivered
signal is appended as a notification, and signal 1 cancels."""

from __future__ import annotations

import contextlib

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.framing import MessageType
from pyrestate.protocol.ids import parse_awakeable_id
from pyrestate.protocol.outcome import read_result
from pyrestate.server.core_api import as_outcome
from pyrestate.server.partition.commands.admin import CANCEL_SIGNAL, cancel
from pyrestate.server.partition.lifecycle import Apply, notification
from pyrestate.server.partition.model import NotifySignal
from pyrestate.server.storage.records import InvocationStatus, Status


def on_send_signal(a: Apply, st: InvocationStatus, msg: pb.SendSignalCommandMessage) -> None:
    a.put(st)
    result = as_outcome(read_result(msg))
    target = msg.target_invocation_id
    sid = msg.idx if msg.WhichOneof("signal_id") == "idx" else None
    name = msg.name if msg.WhichOneof("signal_id") == "name" else None
    with contextlib.suppress(ValueError):  # an unparsable target id: nothing to deliver to
        a.send_to_invocation(target, NotifySignal(target, sid, name, result))


def on_complete_awakeable(a: Apply, st: InvocationStatus, msg: pb.CompleteAwakeableCommandMessage) -> None:
    a.put(st)
    try:
        target_id, idx = parse_awakeable_id(msg.awakeable_id)
    except ValueError:
        return
    res = as_outcome(read_result(msg))
    a.send_to_invocation(str(target_id), NotifySignal(str(target_id), idx, None, res))


def on_signal(a: Apply, cmd: NotifySignal) -> None:
    st = a.txn.get_invocation_status(cmd.invocation_id)
    if st is None:
        a.reply(cmd.reply_token, None)
        return
    if cmd.signal_id == CANCEL_SIGNAL and st.status is not Status.COMPLETED:
        cancel(a, st)
    elif st.alive:
        a.notify(
            st,
            MessageType.SIGNAL,
            notification(signal_id=cmd.signal_id, signal_name=cmd.signal_name, outcome=cmd.result),
        )
    a.reply(cmd.reply_token, None)
