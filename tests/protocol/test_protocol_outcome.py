"""The outcome codec: every message family's result reads back as written, failure metadata included."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.outcome import (
    Failure,
    has_result,
    metadata_dict,
    metadata_of,
    read_result,
    write_result,
)

FAMILIES = [
    pb.OutputCommandMessage,
    pb.ProposeRunCompletionMessage,
    pb.SendSignalCommandMessage,
    pb.CompleteAwakeableCommandMessage,
    pb.CompletePromiseCommandMessage,
    pb.NotificationMessage,
]
texts = st.text(max_size=6)
failures = st.builds(
    Failure, st.integers(0, 2**32 - 1), texts, st.lists(st.tuples(texts, texts), max_size=3).map(tuple)
)


@pytest.mark.parametrize("cls", FAMILIES, ids=lambda c: c.__name__)
@given(result=st.one_of(st.binary(max_size=8), failures))
def test_results_survive_the_wire(cls: type, result: bytes | Failure) -> None:
    msg = cls.FromString(write_result(cls(), result).SerializeToString())
    assert has_result(msg)
    assert read_result(msg) == result


def test_void_is_written_where_the_message_has_one() -> None:
    n = write_result(pb.NotificationMessage(), None)
    assert n.WhichOneof("result") == "void" and has_result(n) and read_result(n) is None
    assert not has_result(write_result(pb.OutputCommandMessage(), None))
    assert not has_result(pb.GetEagerStateCommandMessage())
    assert has_result(write_result(pb.GetEagerStateCommandMessage(), None))


def test_a_notification_carrying_an_invocation_id_has_no_value() -> None:
    n = pb.NotificationMessage(completion_id=1, invocation_id="inv_1x")
    assert read_result(n) is None and not has_result(n)


def test_a_message_without_failure_refuses_one() -> None:
    with pytest.raises(ValueError, match="cannot carry a failure"):
        write_result(pb.GetEagerStateCommandMessage(), Failure(500, "x"))


def test_metadata_keeps_order_and_repeats_on_the_wire() -> None:
    f = Failure(422, "bad", (("b", "1"), ("a", "2"), ("b", "3")))
    m = write_result(pb.OutputCommandMessage(), f)
    assert [(x.key, x.value) for x in m.failure.metadata] == [("b", "1"), ("a", "2"), ("b", "3")]
    assert metadata_dict(f.metadata) == {"b": "3", "a": "2"}
    assert metadata_of({"k": "v"}) == (("k", "v"),) and metadata_of(None) == () and metadata_dict(()) is None
