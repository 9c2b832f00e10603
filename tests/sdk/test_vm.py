"""Message-in/message-out tests of the pure state machine, compared with frames the official SDK sends."""

from __future__ import annotations

from typing import Any

import pytest

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.framing import MessageType, decode_all, encode_message
from pyrestate.sdk._vm import (
    VM,
    AnyCompleted,
    CancelSignalReceived,
    ExecuteRun,
    Failure,
    InvocationIdResult,
    RunRetryConfig,
    StateKeysResult,
    Suspended,
    Value,
    VMError,
    VMState,
    Void,
    WaitExternal,
)

RAW_ID = bytes.fromhex("9ce9d775bb749ca5c68fcf0e11bb10a69feedd71870fdf64")


def start(known: int = 1, **kw: Any) -> bytes:
    msg = pb.StartMessage(
        id=RAW_ID, debug_id="inv_1edxKhxhwJ7634laE2cVU0XE4EPOfEpJGe", known_entries=known, **kw
    )
    return encode_message(msg)


def input_cmd(value: bytes = b'"x"') -> bytes:
    return encode_message(pb.InputCommandMessage(value=pb.Value(content=value)))


def notif(mtype: MessageType, **kw: Any) -> bytes:
    return encode_message(pb.NotificationMessage(**kw), mtype)


def vm_with(*frames: bytes, version: int = 6, close: bool = False) -> VM:
    vm = VM(version)
    vm.feed(b"".join(frames))
    if close:
        vm.notify_input_closed()
    assert vm.is_ready_to_execute()
    vm.sys_input()
    return vm


def out(vm: VM) -> list[tuple[MessageType, Any]]:
    return [(f.type, f.message) for f in decode_all(vm.take_output())]


def test_plain_handler_output_and_end() -> None:
    vm = VM(6)
    vm.feed(start(partial_state=True, random_seed=42))
    assert not vm.is_ready_to_execute()
    vm.feed(input_cmd(b'{"a": 1}'))
    inv = vm.sys_input()
    assert inv.input == b'{"a": 1}' and inv.random_seed == 42
    assert vm.state is VMState.PROCESSING
    vm.sys_write_output(Value(b'"done"'))
    vm.sys_end()
    frames = out(vm)
    assert [t for t, _ in frames] == [MessageType.OUTPUT, MessageType.END]
    assert frames[0][1] == pb.OutputCommandMessage(value=pb.Value(content=b'"done"'))
    assert vm.state is VMState.CLOSED


def test_none_output_is_an_empty_value_present_on_the_wire() -> None:
    vm = vm_with(start(), input_cmd())
    vm.sys_write_output(Value(b""))
    frames = decode_all(vm.take_output())
    assert frames[0].message.HasField("value")  # type: ignore[attr-defined]


def test_v5_seed_is_derived_from_the_id() -> None:
    import hashlib

    vm = VM(5)
    vm.feed(start() + input_cmd())
    assert vm.sys_input().random_seed == int.from_bytes(hashlib.sha256(RAW_ID).digest()[:8], "big")


def test_eager_state_matches_capture() -> None:
    # Counter.add on a fresh key: GetEagerState(void), SetState, Output, End (capture request #12).
    vm = vm_with(start(key="c1"), input_cmd(b"5"))
    h = vm.sys_state_get("count")
    assert vm.is_completed(h) and vm.take_result(h) == Void()
    vm.sys_state_set("count", b"5")
    vm.sys_write_output(Value(b"5"))
    vm.sys_end()
    frames = out(vm)
    get = pb.GetEagerStateCommandMessage(key=b"count")
    get.void.SetInParent()
    assert frames == [
        (MessageType.GET_EAGER_STATE, get),
        (MessageType.SET_STATE, pb.SetStateCommandMessage(key=b"count", value=pb.Value(content=b"5"))),
        (MessageType.OUTPUT, pb.OutputCommandMessage(value=pb.Value(content=b"5"))),
        (MessageType.END, pb.EndMessage()),
    ]


def test_eager_state_value_from_state_map() -> None:
    vm = vm_with(
        start(key="c1", state_map=[pb.StartMessage.StateEntry(key=b"count", value=b"7")]), input_cmd()
    )
    h = vm.sys_state_get("count")
    assert vm.take_result(h) == Value(b"7")
    assert out(vm) == [
        (
            MessageType.GET_EAGER_STATE,
            pb.GetEagerStateCommandMessage(key=b"count", value=pb.Value(content=b"7")),
        )
    ]


def test_lazy_state_when_partial() -> None:
    vm = vm_with(start(partial_state=True, key="k"), input_cmd())
    h = vm.sys_state_get("count")
    assert not vm.is_completed(h)
    assert out(vm) == [
        (MessageType.GET_LAZY_STATE, pb.GetLazyStateCommandMessage(key=b"count", result_completion_id=1))
    ]
    assert isinstance(vm.do_progress([h]), WaitExternal)
    vm.feed(notif(MessageType.GET_LAZY_STATE_COMPLETION, completion_id=1, value=pb.Value(content=b"3")))
    assert isinstance(vm.do_progress([h]), AnyCompleted)
    assert vm.take_result(h) == Value(b"3")


def test_state_keys_eager_sorted_and_lazy() -> None:
    entries = [pb.StartMessage.StateEntry(key=k, value=b"1") for k in (b"b", b"a")]
    vm = vm_with(start(key="k", state_map=entries), input_cmd())
    h = vm.sys_state_get_keys()
    assert vm.take_result(h) == StateKeysResult(["a", "b"])
    vm2 = vm_with(start(key="k", partial_state=True), input_cmd())
    h2 = vm2.sys_state_get_keys()
    assert out(vm2) == [
        (MessageType.GET_LAZY_STATE_KEYS, pb.GetLazyStateKeysCommandMessage(result_completion_id=1))
    ]
    vm2.feed(
        notif(
            MessageType.GET_LAZY_STATE_KEYS_COMPLETION,
            completion_id=1,
            state_keys=pb.StateKeys(keys=[b"z", b"y"]),
        )
    )
    assert isinstance(vm2.do_progress([h2]), AnyCompleted)
    assert vm2.take_result(h2) == StateKeysResult(["y", "z"])


def test_clear_all_makes_state_complete() -> None:
    vm = vm_with(start(key="k", partial_state=True), input_cmd())
    vm.sys_state_clear_all()
    h = vm.sys_state_get("x")
    assert vm.take_result(h) == Void()
    assert [t for t, _ in out(vm)] == [MessageType.CLEAR_ALL_STATE, MessageType.GET_EAGER_STATE]


def test_run_bidi_matches_capture() -> None:
    # Echo/withRun: Run(1,'step') · ProposeRunCompletion(1, value) · RunCompletionNotif · Output, End.
    vm = vm_with(start(partial_state=True), input_cmd())
    h, replayed = vm.sys_run("step")
    assert not replayed
    assert isinstance(vm.do_progress([h]), ExecuteRun)
    assert isinstance(vm.do_progress([h]), WaitExternal)  # the closure is executing
    vm.propose_run_completion(h, Value(b'"side-effect(x1)"'))
    assert out(vm) == [
        (MessageType.RUN, pb.RunCommandMessage(result_completion_id=1, name="step")),
        (
            MessageType.PROPOSE_RUN_COMPLETION,
            pb.ProposeRunCompletionMessage(result_completion_id=1, value=b'"side-effect(x1)"'),
        ),
    ]
    assert isinstance(vm.do_progress([h]), WaitExternal)  # V6: waits for the stored notification
    vm.feed(notif(MessageType.RUN_COMPLETION, completion_id=1, value=pb.Value(content=b'"side-effect(x1)"')))
    assert isinstance(vm.do_progress([h]), AnyCompleted)
    assert vm.take_result(h) == Value(b'"side-effect(x1)"')


def test_run_request_response_suspends_after_proposal() -> None:
    vm = vm_with(start(partial_state=True), input_cmd(), close=True)
    h, _ = vm.sys_run("step")
    assert isinstance(vm.do_progress([h]), ExecuteRun)
    vm.propose_run_completion(h, Value(b"1"))
    assert isinstance(vm.do_progress([h]), Suspended)
    frames = out(vm)
    assert [t for t, _ in frames] == [
        MessageType.RUN,
        MessageType.PROPOSE_RUN_COMPLETION,
        MessageType.SUSPENSION,
    ]
    assert frames[-1][1] == pb.SuspensionMessage(waiting_completions=[1], waiting_signals=[1])


def test_run_replayed_with_result_is_not_executed() -> None:
    vm = vm_with(
        start(known=3),
        input_cmd(),
        encode_message(pb.RunCommandMessage(result_completion_id=1, name="step")),
        notif(MessageType.RUN_COMPLETION, completion_id=1, value=pb.Value(content=b"42")),
    )
    assert vm.state is VMState.REPLAYING
    h, replayed = vm.sys_run("step")
    assert replayed
    assert vm.state is VMState.PROCESSING
    assert isinstance(vm.do_progress([h]), AnyCompleted)
    assert vm.take_result(h) == Value(b"42")
    assert out(vm) == []


def test_run_replayed_without_result_executes_again() -> None:
    vm = vm_with(
        start(known=2, retry_count_since_last_stored_entry=1),
        input_cmd(),
        encode_message(pb.RunCommandMessage(result_completion_id=1, name="flaky-step")),
    )
    h, replayed = vm.sys_run("flaky-step")
    assert not replayed
    assert isinstance(vm.do_progress([h]), ExecuteRun)


def test_run_retryable_failure_emits_error_with_related_command() -> None:
    vm = vm_with(start(partial_state=True), input_cmd())
    h, _ = vm.sys_run("flaky-step")
    vm.do_progress([h])
    vm.propose_run_completion_transient(h, Failure(500, "ValueError('x')"), "tb", 3, RunRetryConfig())
    frames = out(vm)
    assert frames[0][0] is MessageType.RUN
    err = frames[1][1]
    assert frames[1][0] is MessageType.ERROR
    assert (err.code, err.related_command_index, err.related_command_name, err.related_command_type) == (
        500,
        1,
        "flaky-step",
        0x0411,
    )
    assert not err.HasField("next_retry_delay")  # no run policy: the invocation policy decides
    assert vm.state is VMState.CLOSED


def test_run_retry_policy_sets_delay_and_gives_up_after_max_attempts() -> None:
    cfg = RunRetryConfig(max_attempts=3, initial_interval_ms=100, interval_factor=2.0)
    vm = vm_with(
        start(known=2, retry_count_since_last_stored_entry=1),
        input_cmd(),
        encode_message(pb.RunCommandMessage(result_completion_id=1, name="r")),
    )
    h, _ = vm.sys_run("r")
    vm.do_progress([h])
    vm.propose_run_completion_transient(h, Failure(500, "boom"), "", 1, cfg)
    err = out(vm)[-1][1]
    assert err.next_retry_delay == 200  # second attempt failed: 100 * 2^1
    vm = vm_with(
        start(known=2, retry_count_since_last_stored_entry=2),
        input_cmd(),
        encode_message(pb.RunCommandMessage(result_completion_id=1, name="r")),
    )
    h, _ = vm.sys_run("r")
    vm.do_progress([h])
    vm.propose_run_completion_transient(h, Failure(500, "boom"), "", 1, cfg)
    assert out(vm) == [
        (
            MessageType.PROPOSE_RUN_COMPLETION,
            pb.ProposeRunCompletionMessage(
                result_completion_id=1, failure=pb.Failure(code=500, message="boom")
            ),
        )
    ]


def test_sleep_suspension_matches_capture() -> None:
    # Sleepy/sleep with the input closed: Sleep(wake_up_time, 1) · Suspension([1], [1]).
    vm = vm_with(start(partial_state=True), input_cmd(b"5"))
    h = vm.sys_sleep(1795545386060)
    assert isinstance(vm.do_progress([h]), WaitExternal)
    vm.notify_input_closed()
    assert isinstance(vm.do_progress([h]), Suspended)
    assert out(vm) == [
        (MessageType.SLEEP, pb.SleepCommandMessage(wake_up_time=1795545386060, result_completion_id=1)),
        (MessageType.SUSPENSION, pb.SuspensionMessage(waiting_completions=[1], waiting_signals=[1])),
    ]


def test_sleep_replay_ignores_wake_up_time() -> None:
    vm = vm_with(
        start(known=3),
        input_cmd(),
        encode_message(pb.SleepCommandMessage(wake_up_time=1000, result_completion_id=1)),
        notif(MessageType.SLEEP_COMPLETION, completion_id=1, void=pb.Void()),
    )
    h = vm.sys_sleep(999999)
    assert isinstance(vm.do_progress([h]), AnyCompleted)
    assert out(vm) == []


def test_call_allocates_two_ids_and_send_one() -> None:
    # fan-out capture: after a Run (id 1), calls use idx 2/4/6 and results 3/5/7; OneWayCall idx follows.
    vm = vm_with(start(partial_state=True), input_cmd())
    vm.sys_run("r")
    ids = [vm.sys_call("worker", "runSubtask", b'"a"') for _ in range(3)]
    send = vm.sys_send("PaymentTracker", "expire", b"", key="pay-1", invoke_time_ms=1795545207398)
    frames = out(vm)
    calls = [m for t, m in frames if t is MessageType.CALL]
    assert [(c.invocation_id_notification_idx, c.result_completion_id) for c in calls] == [
        (2, 3),
        (4, 5),
        (6, 7),
    ]
    ow = frames[-1][1]
    assert ow == pb.OneWayCallCommandMessage(
        service_name="PaymentTracker",
        handler_name="expire",
        invoke_time=1795545207398,
        key="pay-1",
        invocation_id_notification_idx=8,
    )
    vm.feed(notif(MessageType.CALL_INVOCATION_ID_COMPLETION, completion_id=2, invocation_id="inv_1abc"))
    assert isinstance(vm.do_progress([ids[0][0]]), AnyCompleted)
    assert vm.take_result(ids[0][0]) == InvocationIdResult("inv_1abc")
    assert not vm.is_completed(send)


def test_call_with_idempotency_key_and_headers() -> None:
    vm = vm_with(start(), input_cmd())
    vm.sys_call("S", "h", b"{}", key="k", idempotency_key="idem", headers=[("x-a", "1")])
    call = out(vm)[0][1]
    assert call.idempotency_key == "idem" and call.key == "k"
    assert [(h.key, h.value) for h in call.headers] == [("x-a", "1")]


def test_notifications_resolve_in_journal_order() -> None:
    vm = vm_with(start(), input_cmd())
    a = vm.sys_sleep(1)
    b = vm.sys_sleep(2)
    vm.feed(
        notif(MessageType.SLEEP_COMPLETION, completion_id=2, void=pb.Void())
        + notif(MessageType.SLEEP_COMPLETION, completion_id=1, void=pb.Void())
    )
    assert isinstance(vm.do_progress([a, b]), AnyCompleted)
    assert vm.is_completed(b) and not vm.is_completed(a)  # first in order wins the race
    assert isinstance(vm.do_progress([a, b], "all"), AnyCompleted)
    assert vm.is_completed(a)


def test_awakeable_signal_index_and_id() -> None:
    # Awk/wait: the awakeable itself emits no command; the id ends with the u32 index 17 ("AAAAEQ").
    vm = vm_with(start(), input_cmd(), close=True)
    awk_id, h = vm.sys_awakeable()
    assert awk_id.startswith("sign_1") and awk_id.endswith("AAAAEQ") and len(awk_id) == 44
    assert out(vm) == []
    assert isinstance(vm.do_progress([h]), Suspended)
    assert out(vm) == [(MessageType.SUSPENSION, pb.SuspensionMessage(waiting_signals=[17, 1]))]


def test_awakeable_resolution_and_rejection() -> None:
    vm = vm_with(start(), input_cmd())
    _, h = vm.sys_awakeable()
    _, h2 = vm.sys_awakeable()
    vm.feed(
        notif(MessageType.SIGNAL, signal_id=17, value=pb.Value(content=b"1"))
        + notif(MessageType.SIGNAL, signal_id=18, failure=pb.Failure(code=500, message="nope, rejected"))
    )
    vm.do_progress([h, h2], "all")
    assert vm.take_result(h) == Value(b"1")
    assert vm.take_result(h2) == Failure(500, "nope, rejected")


def test_complete_awakeable_and_named_signals() -> None:
    vm = vm_with(start(), input_cmd())
    vm.sys_complete_awakeable("sign_1abc", Value(b"1"))
    vm.sys_send_signal("inv_1x", "go", Value(b"2"))
    vm.sys_cancel_invocation("inv_1y")
    h = vm.sys_signal("go")
    frames = out(vm)
    assert frames[0] == (
        MessageType.COMPLETE_AWAKEABLE,
        pb.CompleteAwakeableCommandMessage(awakeable_id="sign_1abc", value=pb.Value(content=b"1")),
    )
    assert frames[1][1] == pb.SendSignalCommandMessage(
        target_invocation_id="inv_1x", name="go", value=pb.Value(content=b"2")
    )
    cancel = pb.SendSignalCommandMessage(target_invocation_id="inv_1y", idx=1)
    cancel.void.SetInParent()
    assert frames[2][1] == cancel
    vm.feed(notif(MessageType.SIGNAL, signal_name="go", value=pb.Value(content=b"ok")))
    assert isinstance(vm.do_progress([h]), AnyCompleted)
    vm.notify_input_closed()
    h2 = vm.sys_signal("later")
    assert isinstance(vm.do_progress([h2]), Suspended)
    assert out(vm)[-1][1] == pb.SuspensionMessage(waiting_signals=[1], waiting_named_signals=["later"])


def test_promises() -> None:
    vm = vm_with(start(key="w1"), input_cmd())
    g = vm.sys_get_promise("approval")
    p = vm.sys_peek_promise("approval")
    c = vm.sys_complete_promise("approval", Value(b'"alice"'))
    frames = out(vm)
    assert frames == [
        (MessageType.GET_PROMISE, pb.GetPromiseCommandMessage(key="approval", result_completion_id=1)),
        (MessageType.PEEK_PROMISE, pb.PeekPromiseCommandMessage(key="approval", result_completion_id=2)),
        (
            MessageType.COMPLETE_PROMISE,
            pb.CompletePromiseCommandMessage(
                key="approval", completion_value=pb.Value(content=b'"alice"'), result_completion_id=3
            ),
        ),
    ]
    vm.feed(
        notif(
            MessageType.COMPLETE_PROMISE_COMPLETION,
            completion_id=3,
            failure=pb.Failure(code=409, message="promise was already completed"),
        )
    )
    vm.do_progress([c])
    assert vm.take_result(c) == Failure(409, "promise was already completed")
    assert not vm.is_completed(g) and not vm.is_completed(p)


def test_attach_and_get_output() -> None:
    vm = vm_with(start(), input_cmd())
    vm.sys_attach_invocation("inv_1a")
    vm.sys_get_invocation_output("inv_1b")
    assert out(vm) == [
        (
            MessageType.ATTACH_INVOCATION,
            pb.AttachInvocationCommandMessage(invocation_id="inv_1a", result_completion_id=1),
        ),
        (
            MessageType.GET_INVOCATION_OUTPUT,
            pb.GetInvocationOutputCommandMessage(invocation_id="inv_1b", result_completion_id=2),
        ),
    ]


def test_cancel_signal_races_every_await() -> None:
    # cancel of a suspended sleeper (h1 capture): replay Input, Sleep, Signal(1) -> cancellation surfaces.
    vm = vm_with(
        start(known=3),
        input_cmd(),
        encode_message(pb.SleepCommandMessage(wake_up_time=1, result_completion_id=1)),
        notif(MessageType.SIGNAL, signal_id=1, void=pb.Void()),
        close=True,
    )
    h = vm.sys_sleep(5)
    assert isinstance(vm.do_progress([h]), CancelSignalReceived)
    # after delivery the cancel no longer races, and a further suspension does not list it
    assert isinstance(vm.do_progress([h]), Suspended)
    assert out(vm) == [(MessageType.SUSPENSION, pb.SuspensionMessage(waiting_completions=[1]))]


def test_completed_result_beats_later_cancel() -> None:
    vm = vm_with(start(), input_cmd())
    h = vm.sys_sleep(5)
    vm.feed(
        notif(MessageType.SLEEP_COMPLETION, completion_id=1, void=pb.Void())
        + notif(MessageType.SIGNAL, signal_id=1, void=pb.Void())
    )
    assert isinstance(vm.do_progress([h]), AnyCompleted)


def test_mismatch_emits_570_naming_both_commands() -> None:
    vm = vm_with(
        start(known=2),
        input_cmd(),
        encode_message(pb.SetStateCommandMessage(key=b"a", value=pb.Value(content=b"1"))),
    )
    with pytest.raises(VMError) as e:
        vm.sys_sleep(10)
    assert e.value.code == 570
    frames = out(vm)
    assert len(frames) == 1 and frames[0][0] is MessageType.ERROR
    err = frames[0][1]
    assert err.code == 570
    assert err.related_command_index == 1
    assert err.related_command_type == MessageType.SET_STATE
    assert "SET_STATE" in err.message and "SLEEP" in err.message
    assert vm.state is VMState.CLOSED


def test_mismatch_on_same_type_different_payload() -> None:
    vm = vm_with(
        start(known=2),
        input_cmd(),
        encode_message(
            pb.CallCommandMessage(
                service_name="A", handler_name="h", invocation_id_notification_idx=1, result_completion_id=2
            )
        ),
    )
    with pytest.raises(VMError):
        vm.sys_call("B", "h", b"")
    assert out(vm)[0][1].code == 570


def test_replay_accepts_lazy_state_where_eager_is_asked() -> None:
    vm = vm_with(
        start(known=4, key="k", state_map=[pb.StartMessage.StateEntry(key=b"x", value=b"1")]),
        input_cmd(),
        encode_message(pb.GetLazyStateCommandMessage(key=b"x", result_completion_id=1)),
        notif(MessageType.GET_LAZY_STATE_COMPLETION, completion_id=1, value=pb.Value(content=b"9")),
        encode_message(pb.GetEagerStateCommandMessage(key=b"y", value=pb.Value(content=b"2"))),
    )
    h = vm.sys_state_get("x")
    vm.do_progress([h])
    assert vm.take_result(h) == Value(b"9")
    h2 = vm.sys_state_get("y")
    assert vm.take_result(h2) == Value(b"2")  # taken from the journal, not the state map
    assert vm.state is VMState.PROCESSING
    assert out(vm) == []


def test_input_closed_before_journal_is_an_error() -> None:
    vm = VM(6)
    vm.feed(start(known=2) + input_cmd())
    with pytest.raises(VMError):
        vm.notify_input_closed()
    assert out(vm)[0][1].code == 571


def test_first_message_must_be_start() -> None:
    vm = VM(6)
    with pytest.raises(VMError):
        vm.feed(input_cmd())


def test_failure_metadata_on_v6() -> None:
    vm = VM(6)
    vm.feed(start() + input_cmd())
    vm.sys_input()
    vm.sys_write_output(Failure(422, "bad", (("k", "v"),)))
    [(mtype, msg)] = out(vm)
    assert mtype is MessageType.OUTPUT
    assert [(m.key, m.value) for m in msg.failure.metadata] == [("k", "v")]


def test_failure_metadata_on_v5_is_an_unsupported_feature() -> None:
    vm = VM(5)
    vm.feed(start() + input_cmd())
    vm.sys_input()
    vm.sys_write_output(Failure(422, "no metadata"))  # without metadata V5 is fine
    with pytest.raises(VMError) as err:
        vm.sys_write_output(Failure(422, "bad", (("k", "v"),)))
    assert err.value.code == 573
    frames = out(vm)
    assert [t for t, _ in frames] == [MessageType.OUTPUT, MessageType.ERROR]
    assert frames[1][1].code == 573
    assert "terminal error metadata" in frames[1][1].message and "'V6'" in frames[1][1].message
    assert vm.closed


def test_run_failure_metadata_on_v5_is_an_unsupported_feature() -> None:
    vm = VM(5)
    vm.feed(start() + input_cmd())
    vm.sys_input()
    handle, _ = vm.sys_run("step")
    with pytest.raises(VMError):
        vm.propose_run_completion(handle, Failure(400, "x", (("a", "b"),)))
    frames = out(vm)
    assert [t for t, _ in frames] == [MessageType.RUN, MessageType.ERROR]
    assert frames[1][1].code == 573


def test_error_message_for_handler_exception() -> None:
    vm = vm_with(start(), input_cmd())
    vm.notify_error("ValueError('x')", "Traceback", 500, next_retry_delay_ms=250)
    err = out(vm)[0][1]
    assert (err.code, err.message, err.stacktrace, err.next_retry_delay) == (
        500,
        "ValueError('x')",
        "Traceback",
        250,
    )
