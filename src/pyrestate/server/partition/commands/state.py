"""Keyed state: the SDK's state commands (exclusive handlers write, keyed handlers read; checked before the
command was appended) and the admin API's replacement of an object's whole state."""

from __future__ import annotations

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.framing import MessageType
from pyrestate.server.partition.lifecycle import Apply, notification
from pyrestate.server.partition.model import PatchState
from pyrestate.server.storage.records import InvocationStatus

StateCommand = (
    pb.SetStateCommandMessage
    | pb.ClearStateCommandMessage
    | pb.ClearAllStateCommandMessage
    | pb.GetLazyStateCommandMessage
    | pb.GetLazyStateKeysCommandMessage
)


def on_state_command(a: Apply, st: InvocationStatus, msg: StateCommand) -> None:
    key = st.target.key
    assert key is not None
    svc = st.target.service
    match msg:
        case pb.SetStateCommandMessage():
            a.txn.put_state(svc, key, msg.key, msg.value.content)
            a.put(st)
        case pb.ClearStateCommandMessage():
            a.txn.delete_state(svc, key, msg.key)
            a.put(st)
        case pb.ClearAllStateCommandMessage():
            a.txn.delete_all_state(svc, key)
            a.put(st)
        case pb.GetLazyStateCommandMessage():
            value = a.txn.get_state(svc, key, msg.key)
            a.notify(
                st,
                MessageType.GET_LAZY_STATE_COMPLETION,
                notification(completion_id=msg.result_completion_id, value=value),
            )
        case pb.GetLazyStateKeysCommandMessage():
            keys = [k for k, _ in a.txn.get_all_state(svc, key)]
            a.notify(
                st,
                MessageType.GET_LAZY_STATE_KEYS_COMPLETION,
                notification(completion_id=msg.result_completion_id, state_keys=keys),
            )


def on_patch_state(a: Apply, cmd: PatchState) -> None:
    a.txn.delete_all_state(cmd.service, cmd.key)
    for k, v in cmd.state:
        a.txn.put_state(cmd.service, cmd.key, k, v)
    a.reply(cmd.reply_token, None)
