"""State: per-key state on virtual objects (Counter, MapObject), also through a one-way Proxy send."""

from __future__ import annotations

from conformance.conftest import Env
from conformance.helpers import new_key as _key
from conformance.helpers import proxy_request
from pyrestate.testing import eventually


def test_add(env: Env) -> None:
    key = _key()
    assert env.ingress.call_json("Counter", "add", 1, key=key) == {"oldValue": 0, "newValue": 1}
    assert env.ingress.call_json("Counter", "add", 2, key=key) == {"oldValue": 1, "newValue": 3}
    assert env.ingress.call_json("Counter", "get", key=key) == 3


def test_proxy_one_way_add(env: Env) -> None:
    key = _key()
    req = proxy_request("Counter", "add", 1, key)
    ids = {env.ingress.call_json("Proxy", "oneWayCall", req) for _ in range(3)}
    assert len(ids) == 3 and all(i.startswith("inv_") for i in ids)

    def three() -> None:
        assert env.ingress.call_json("Counter", "get", key=key) == 3

    eventually(three)


def test_list_state_and_clear_all(env: Env) -> None:
    k1, k2 = _key(), _key()
    env.ingress.call_json("MapObject", "set", {"key": "my-key-0", "value": "my-value-0"}, key=k1)
    env.ingress.call_json("MapObject", "set", {"key": "my-key-1", "value": "my-value-1"}, key=k1)
    env.ingress.call_json("MapObject", "set", {"key": "my-key-2", "value": "my-value-2"}, key=k2)

    cleared = env.ingress.call_json("MapObject", "clearAll", key=k1)
    assert sorted(cleared, key=lambda e: e["key"]) == [
        {"key": "my-key-0", "value": "my-value-0"},
        {"key": "my-key-1", "value": "my-value-1"},
    ]
    assert env.ingress.call_json("MapObject", "get", "my-key-0", key=k1) == ""
    assert env.ingress.call_json("MapObject", "clearAll", key=k1) == []
    # The other key is untouched.
    assert env.ingress.call_json("MapObject", "get", "my-key-2", key=k2) == "my-value-2"
