"""Journal entries (protocol messages as stored) to `sys_journal` rows. Pure code.

`entry_json` / `entry_lite_json` follow the shapes Restate 1.7 shows for its journal v2 (e.g.
`{"Command":{"Run":{"completion_id":1,"name":"split task"}}}`), byte payloads as arrays of integers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.framing import MESSAGE_CLASSES, MessageType
from pyrestate.protocol.outcome import Failure, ResultMessage, failure_from_pb, has_result, read_result

# Entry type names as Restate displays them ("Command: Run", "Notification: Signal").
COMMAND_NAMES: dict[MessageType, str] = {
    MessageType.INPUT: "Input",
    MessageType.OUTPUT: "Output",
    MessageType.GET_LAZY_STATE: "GetLazyState",
    MessageType.SET_STATE: "SetState",
    MessageType.CLEAR_STATE: "ClearState",
    MessageType.CLEAR_ALL_STATE: "ClearAllState",
    MessageType.GET_LAZY_STATE_KEYS: "GetLazyStateKeys",
    MessageType.GET_EAGER_STATE: "GetEagerState",
    MessageType.GET_EAGER_STATE_KEYS: "GetEagerStateKeys",
    MessageType.GET_PROMISE: "GetPromise",
    MessageType.PEEK_PROMISE: "PeekPromise",
    MessageType.COMPLETE_PROMISE: "CompletePromise",
    MessageType.SLEEP: "Sleep",
    MessageType.CALL: "Call",
    MessageType.ONE_WAY_CALL: "OneWayCall",
    MessageType.SEND_SIGNAL: "SendSignal",
    MessageType.RUN: "Run",
    MessageType.ATTACH_INVOCATION: "AttachInvocation",
    MessageType.GET_INVOCATION_OUTPUT: "GetInvocationOutput",
    MessageType.COMPLETE_AWAKEABLE: "CompleteAwakeable",
}
NOTIFICATION_NAMES: dict[MessageType, str] = {
    MessageType.GET_LAZY_STATE_COMPLETION: "GetLazyState",
    MessageType.GET_LAZY_STATE_KEYS_COMPLETION: "GetLazyStateKeys",
    MessageType.GET_PROMISE_COMPLETION: "GetPromise",
    MessageType.PEEK_PROMISE_COMPLETION: "PeekPromise",
    MessageType.COMPLETE_PROMISE_COMPLETION: "CompletePromise",
    MessageType.SLEEP_COMPLETION: "Sleep",
    MessageType.CALL_COMPLETION: "Call",
    MessageType.CALL_INVOCATION_ID_COMPLETION: "CallInvocationId",
    MessageType.RUN_COMPLETION: "Run",
    MessageType.ATTACH_INVOCATION_COMPLETION: "AttachInvocation",
    MessageType.GET_INVOCATION_OUTPUT_COMPLETION: "GetInvocationOutput",
    MessageType.SIGNAL: "Signal",
}
_PROMISE_COMMANDS = (MessageType.GET_PROMISE, MessageType.PEEK_PROMISE, MessageType.COMPLETE_PROMISE)


@dataclass(frozen=True, slots=True)
class JournalRow:
    index: int
    entry_type: str
    raw: bytes
    name: str | None = None  # commands only ("" when the user gave none)
    completed: bool | None = None  # commands with a result notification
    invoked_id: str | None = None
    invoked_target: str | None = None
    sleep_wakeup_at: int | None = None
    promise_name: str | None = None
    entry_json: str | None = None
    entry_lite_json: str | None = None


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _bytes(b: bytes) -> list[int]:
    return list(b)


def _text(b: bytes) -> str:
    return b.decode("utf-8", "replace")


def _failure(f: Failure) -> dict[str, Any]:
    return {"code": f.code, "message": f.message}


def _result(msg: ResultMessage) -> tuple[Any, str] | None:
    """(full, lite) forms of a message's result; None when it carries none."""
    if not has_result(msg):
        return None
    match read_result(msg):
        case bytes() as value:
            return {"Success": _bytes(value)}, "Success"
        case Failure() as f:
            return {"Failure": _failure(f)}, "Failure"
        case None:
            return "Void", "Void"


def _target(service: str, handler: str, key: str) -> tuple[str, dict[str, Any]]:
    """(display, json) of an invocation target; keyed targets print service/key/handler."""
    if key:
        return f"{service}/{key}/{handler}", {
            "VirtualObject": {"name": service, "key": key, "handler": handler}
        }
    return f"{service}/{handler}", {"Service": {"name": service, "handler": handler, "scope": None}}


def _command(ty: MessageType, m: Any, row: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Full and lite JSON bodies of a command; fills row fields (promise_name, invoked_target, …)."""
    name = m.entry_name if ty is MessageType.SEND_SIGNAL else m.name
    row["name"] = name
    match ty:
        case MessageType.INPUT:
            headers = [{"name": h.key, "value": h.value} for h in m.headers]
            return {"headers": headers, "payload": _bytes(m.value.content), "name": name}, {}
        case MessageType.OUTPUT:
            r = _result(m)
            res, res_lite = r if r is not None else (None, None)
            return {"result": res, "name": name}, {"result": res_lite}
        case MessageType.GET_EAGER_STATE:
            r = _result(m)
            res, res_lite = r if r is not None else (None, None)
            key = _text(m.key)
            return {"key": key, "result": res, "name": name}, {"key": key, "result": res_lite}
        case MessageType.GET_EAGER_STATE_KEYS:
            keys = [_text(k) for k in m.value.keys]
            return {"state_keys": keys, "name": name}, {"state_keys": keys}
        case MessageType.SET_STATE:
            key = _text(m.key)
            return {"key": key, "value": _bytes(m.value.content), "name": name}, {"key": key}
        case MessageType.GET_LAZY_STATE | MessageType.CLEAR_STATE:
            body: dict[str, Any] = {"key": _text(m.key)}
            if ty is MessageType.GET_LAZY_STATE:
                body["completion_id"] = m.result_completion_id
            return {**body, "name": name}, body
        case MessageType.GET_PROMISE | MessageType.PEEK_PROMISE | MessageType.COMPLETE_PROMISE:
            row["promise_name"] = m.key
            body = {"key": m.key, "completion_id": m.result_completion_id}
            promise = dict(body)
            if ty is MessageType.COMPLETE_PROMISE:
                r = _result(m)
                if r is not None:
                    promise["value"] = r[0]
            return {**promise, "name": name}, body
        case MessageType.SLEEP:
            row["sleep_wakeup_at"] = m.wake_up_time
            body = {"wake_up_time": m.wake_up_time, "completion_id": m.result_completion_id}
            return {**body, "name": name}, body
        case MessageType.CALL | MessageType.ONE_WAY_CALL:
            display, target = _target(m.service_name, m.handler_name, m.key)
            row["invoked_target"] = display
            request: dict[str, Any] = {
                "invocation_target": target,
                "parameter": _bytes(m.parameter),
                "headers": [{"name": h.key, "value": h.value} for h in m.headers],
                "idempotency_key": m.idempotency_key if m.HasField("idempotency_key") else None,
            }
            call_lite: dict[str, Any] = {
                "invocation_target": target,
                "invocation_id_completion_id": m.invocation_id_notification_idx,
            }
            call: dict[str, Any] = {
                "request": request,
                "invocation_id_completion_id": m.invocation_id_notification_idx,
            }
            if ty is MessageType.CALL:
                call["result_completion_id"] = call_lite["result_completion_id"] = m.result_completion_id
            else:
                call["invoke_time"] = call_lite["invoke_time"] = m.invoke_time
            return {**call, "name": name}, call_lite
        case MessageType.SEND_SIGNAL:
            sig = {"Index": m.idx} if m.WhichOneof("signal_id") == "idx" else {"Name": m.name}
            r = _result(m)
            body = {"target_invocation_id": m.target_invocation_id, "signal_id": sig}
            return {**body, "result": None if r is None else r[0], "name": name}, body
        case MessageType.RUN:
            body = {"completion_id": m.result_completion_id, "name": name}
            return body, body
        case MessageType.ATTACH_INVOCATION | MessageType.GET_INVOCATION_OUTPUT:
            which = m.WhichOneof("target")
            tgt: Any = m.invocation_id if which == "invocation_id" else None
            if which is not None and which != "invocation_id":
                sub = getattr(m, which)
                tgt = {f.name: v for f, v in sub.ListFields()}
            body = {"target": tgt, "completion_id": m.result_completion_id}
            return {**body, "name": name}, body
        case MessageType.COMPLETE_AWAKEABLE:
            r = _result(m)
            body = {"id": m.awakeable_id}
            return {**body, "result": None if r is None else r[0], "name": name}, body
    return {"name": name}, {}


def _notification(
    ty: MessageType, m: pb.NotificationMessage
) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """Full and lite JSON of a notification, and the invocation id it carries (CallInvocationId)."""
    which_result = m.WhichOneof("result")
    full_result: Any
    lite_result: str
    invocation_id: str | None = None
    match which_result:
        case "value":
            full_result, lite_result = {"Success": _bytes(m.value.content)}, "Success"
        case "failure":
            full_result, lite_result = {"Failure": _failure(failure_from_pb(m.failure))}, "Failure"
        case "invocation_id":
            invocation_id = m.invocation_id
            full_result, lite_result = None, "InvocationId"
        case "state_keys":
            full_result, lite_result = {"StateKeys": [_text(k) for k in m.state_keys.keys]}, "StateKeys"
        case _:
            full_result, lite_result = "Void", "Void"
    which_id = m.WhichOneof("id")
    if ty is MessageType.SIGNAL or which_id in ("signal_id", "signal_name"):
        sid = {"Index": m.signal_id} if which_id == "signal_id" else {"Name": m.signal_name}
        lite_id = {"SignalIndex": m.signal_id} if which_id == "signal_id" else {"SignalName": m.signal_name}
        full = {"Signal": {"id": sid, "result": full_result}}
        return full, {"ty": "Signal", "id": lite_id, "result": lite_result}, None
    kind = NOTIFICATION_NAMES.get(ty, "Unknown")
    body: dict[str, Any] = {"completion_id": m.completion_id}
    if invocation_id is not None:
        body["invocation_id"] = invocation_id
    else:
        body["result"] = full_result
    lite = {"ty": {"Completion": kind}, "id": {"CompletionId": m.completion_id}, "result": lite_result}
    return {"Completion": {kind: body}}, lite, invocation_id


def journal_rows(entries: list[tuple[int, int, bytes]]) -> list[JournalRow]:
    """Rows of one invocation's journal from (index, message type, protobuf payload), in index order.

    A command is `completed` once the notification for its result has been journaled, and a call shows
    the id of the invocation it started once the engine journaled it.
    """
    decoded: list[tuple[int, int, bytes, MessageType | None, Any]] = []
    completion_ids: set[int] = set()
    call_ids: dict[int, str] = {}
    for index, ty_raw, raw in entries:
        try:
            ty: MessageType | None = MessageType(ty_raw)
        except ValueError:
            ty = None
        msg: Any = None
        if ty is not None and ty in MESSAGE_CLASSES:
            msg = MESSAGE_CLASSES[ty]()
            try:
                msg.ParseFromString(raw)
            except DecodeError:
                msg = None
        if isinstance(msg, pb.NotificationMessage) and msg.WhichOneof("id") == "completion_id":
            completion_ids.add(msg.completion_id)
            if msg.WhichOneof("result") == "invocation_id":
                call_ids[msg.completion_id] = msg.invocation_id
        decoded.append((index, ty_raw, raw, ty, msg))

    rows: list[JournalRow] = []
    for index, ty_raw, raw, ty, msg in decoded:
        fields: dict[str, Any] = {}
        full: Any
        lite: Any
        if ty is None or msg is None:
            entry_type = f"Unknown: 0x{ty_raw:04x}"
            full = lite = None
        elif ty in COMMAND_NAMES:
            kind = COMMAND_NAMES[ty]
            entry_type = f"Command: {kind}"
            body, lite_body = _command(ty, msg, fields)
            full, lite = {"Command": {kind: body}}, {"Command": {kind: lite_body}}
            completion = getattr(msg, "result_completion_id", None)
            if ty in (MessageType.CALL, MessageType.ONE_WAY_CALL):
                invoked = call_ids.get(msg.invocation_id_notification_idx)
                if invoked is not None:
                    fields["invoked_id"] = invoked
                    body["request"]["invocation_id"] = invoked
                    lite_body["invocation_id"] = invoked
            if completion:  # 0: the command has no result notification
                fields["completed"] = completion in completion_ids
        elif isinstance(msg, pb.NotificationMessage):
            n_full, n_lite, _ = _notification(ty, msg)
            kind = n_lite["ty"]["Completion"] if isinstance(n_lite["ty"], dict) else n_lite["ty"]
            entry_type = f"Notification: {kind}"
            full, lite = {"Notification": n_full}, {"Notification": n_lite}
        else:
            entry_type = f"Unknown: 0x{ty_raw:04x}"
            full = lite = None
        rows.append(
            JournalRow(
                index=index,
                entry_type=entry_type,
                raw=raw,
                entry_json=None if full is None else _dumps(full),
                entry_lite_json=None if lite is None else _dumps(lite),
                **fields,
            )
        )
    return rows
