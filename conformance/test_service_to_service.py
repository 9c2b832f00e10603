"""ServiceToServiceCommunication and CallOrdering: durable calls and sends made from handlers."""

from __future__ import annotations

import json
import time

import pytest

from conformance.conftest import Env
from conformance.helpers import new_key, proxy_request, to_bytes_list
from pyrestate.testing import eventually, json_of


def _counter(env: Env, key: str) -> int:
    value: int = env.ingress.call_json("Counter", "get", key=key)
    return value


def test_regular_call(env: Env) -> None:
    req = proxy_request("TestUtilsService", "uppercaseEcho", "hello world")
    assert env.ingress.call_json("Proxy", "call", req) == to_bytes_list("HELLO WORLD")


def test_one_way_call(env: Env) -> None:
    key = new_key()
    invocation_id = env.ingress.call_json("Proxy", "oneWayCall", proxy_request("Counter", "add", 2, key))
    assert invocation_id.startswith("inv_")

    def done() -> None:
        assert _counter(env, key) == 2

    eventually(done)
    # The callee's invocation id is real: its output is retrievable.
    assert json_of(env.ingress.output(invocation_id)) == {"oldValue": 0, "newValue": 2}


def test_one_way_call_with_idempotency_key(env_h2: Env) -> None:
    env, key, idem = env_h2, new_key(), new_key()
    req = proxy_request("Counter", "add", 1, key, idempotencyKey=idem)
    first = env.ingress.call_json("Proxy", "oneWayCall", req)
    second = env.ingress.call_json("Proxy", "oneWayCall", req)
    assert first == second

    def done() -> None:
        assert json_of(env.ingress.attach_by_key("Counter", "add", idem, key=key, output=True)) == {
            "oldValue": 0,
            "newValue": 1,
        }

    eventually(done)
    assert _counter(env, key) == 1


def test_call_with_idempotency_key(env_h2: Env) -> None:
    env, key, idem = env_h2, new_key(), new_key()
    req = proxy_request("Counter", "add", 1, key, idempotencyKey=idem)
    expected = to_bytes_list({"oldValue": 0, "newValue": 1})
    results = [env.ingress.call_json("Proxy", "call", req) for _ in range(2)]
    assert [json.loads(bytes(r)) for r in results] == [json.loads(bytes(expected))] * 2
    assert _counter(env, key) == 1


def test_one_way_call_with_delay(env_h2: Env) -> None:
    env, key, delay_ms, sends = env_h2, new_key(), 1500, 5
    start = time.monotonic()
    for _ in range(sends):
        req = proxy_request("Counter", "add", 1, key, delayMillis=delay_ms)
        env.ingress.call_json("Proxy", "oneWayCall", req)
    if time.monotonic() - start < delay_ms / 1000 - 0.3:
        assert _counter(env, key) == 0, "a delayed send ran before its delay"

    def all_landed() -> None:
        assert _counter(env, key) == sends

    eventually(all_landed, timeout=30, interval=0.05)
    elapsed = time.monotonic() - start
    assert elapsed >= delay_ms / 1000
    # Delays run concurrently and only then enter the key's inbox; serialized delays would take 5 x 1.5 s.
    assert elapsed < delay_ms / 1000 * 3


@pytest.mark.parametrize(
    "one_way",
    [[True, False, False], [False, True, False], [True, True, False]],
    ids=["send-call-call", "call-send-call", "send-send-call"],
)
def test_call_ordering(env: Env, one_way: list[bool]) -> None:
    key = new_key()
    calls = [
        {
            "proxyRequest": proxy_request("ListObject", "append", str(i), key),
            "oneWayCall": ow,
            "awaitAtTheEnd": not ow,
        }
        for i, ow in enumerate(one_way)
    ]
    env.ingress.call_json("Proxy", "manyCalls", calls)
    assert env.ingress.call_json("ListObject", "clear", key=key) == ["0", "1", "2"]
