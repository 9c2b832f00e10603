"""The durable codecs round-trip every field of every record they store: the outbox commands and the
storage records. Values are generated from the dataclasses' own fields and type hints, so a field added
later is generated (and must round-trip) without touching this file; a field of a type this file does not
know yet fails loudly in `_strategy`."""

from __future__ import annotations

import dataclasses
import enum
import types
from typing import Any, Union, get_args, get_origin, get_type_hints

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyrestate.server.core_api import InvocationCommand, ServiceType
from pyrestate.server.partition.model import (
    OUTBOX_COMMANDS,
    PROCESS_LOCAL_FIELDS,
    Command,
    InvocationRequest,
    Invoke,
    ManageInvocation,
    NotifySignal,
    command_from_json,
    command_to_json,
)
from pyrestate.server.storage.records import (
    InvocationStatus,
    JournalEntry,
    Promise,
    ResponseSink,
    Target,
    Timer,
    status_from_json,
    status_to_json,
)


def _strategy(tp: Any) -> st.SearchStrategy[Any]:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return st.one_of(*(_strategy(a) for a in get_args(tp)))
    if tp is type(None):
        return st.none()
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(_strategy(args[0]), max_size=3).map(tuple)
        return st.tuples(*(_strategy(a) for a in args))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return records(tp)
    simple: dict[Any, st.SearchStrategy[Any]] = {
        bool: st.booleans(),
        int: st.integers(min_value=-(2**63), max_value=2**64),
        str: st.text(max_size=8),
        bytes: st.binary(max_size=8),
    }
    if tp in simple:
        return simple[tp]
    raise TypeError(f"no strategy for {tp!r}: teach _strategy the new field type")


def records(cls: type, **overrides: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Instances of a record dataclass with every field drawn, defaults included."""
    hints = get_type_hints(cls)
    kwargs = {
        f.name: overrides[f.name] if f.name in overrides else _strategy(hints[f.name])
        for f in dataclasses.fields(cls)
        if f.init
    }
    return st.builds(cls, **kwargs)


def _outbox_command(cls: type) -> st.SearchStrategy[Any]:
    return records(cls, **{name: st.none() for name in PROCESS_LOCAL_FIELDS})


@given(st.one_of(*(_outbox_command(c) for c in OUTBOX_COMMANDS)))
def test_outbox_codec_round_trips_every_field_of_every_command(cmd: Command) -> None:
    assert command_from_json(command_to_json(cmd)) == cmd


def test_the_fields_the_codec_used_to_drop() -> None:
    request = InvocationRequest(
        "inv_1x",
        Target("S", "h", None, ServiceType.SERVICE, None),
        b"",
        sink=ResponseSink("inv_1y", 3, 0x8010),
    )
    for cmd in (
        Invoke(request),
        ManageInvocation("inv_1x", InvocationCommand.RESUME, deployment_id="dp_1y"),
    ):
        assert command_from_json(command_to_json(cmd)) == cmd


def test_reply_tokens_stay_in_the_process() -> None:
    cmd = NotifySignal("inv_1x", 17, None, None, reply_token=5)
    assert command_from_json(command_to_json(cmd)) == dataclasses.replace(cmd, reply_token=None)


def test_outbox_rows_written_before_the_missing_fields_were_kept_still_read() -> None:
    old_invoke = (
        b'{"k":"invoke","id":"inv_1x","target":["S","h",null,"Service",null],"body":"","headers":[],'
        b'"ik":null,"sink":["inv_1y",4],"at":null,"by":"service","by_id":"inv_1y","ret":0}'
    )
    back = command_from_json(old_invoke)
    assert isinstance(back, Invoke) and back.request.sink == ResponseSink("inv_1y", 4)
    assert command_from_json(b'{"k":"manage","id":"inv_1x","cmd":"kill"}') == ManageInvocation(
        "inv_1x", InvocationCommand.KILL
    )


@given(records(InvocationStatus))
def test_invocation_status_round_trips_every_field(status: InvocationStatus) -> None:
    assert status_from_json(status_to_json(status)) == status


@given(records(Promise))
def test_promise_round_trips_every_field(promise: Promise) -> None:
    assert Promise.from_json(promise.to_json()) == promise


@given(records(Timer))
def test_timer_round_trips_every_field(timer: Timer) -> None:
    assert Timer.from_json(timer.to_json()) == timer


@given(
    records(
        JournalEntry,
        ty=st.integers(0, 0xFFFF),  # u16 on disk
        appended_at=st.one_of(st.none(), st.integers(0, 2**64 - 2)),  # u64 epoch ms; all ones means unknown
    )
)
def test_journal_entry_round_trips_every_field(entry: JournalEntry) -> None:
    assert JournalEntry.decode(entry.encode()) == entry


def test_journal_entry_refuses_a_time_it_cannot_store() -> None:
    with pytest.raises(ValueError, match="appended_at"):
        JournalEntry(ty=1, raw=b"", appended_at=2**64 - 1).encode()
