"""Cancellation (admin API and from a handler) and KillInvocation: call trees die, object keys unlock."""

from __future__ import annotations

import pytest

from conformance.conftest import Env
from conformance.helpers import new_key, proxy_request
from pyrestate.testing import eventually, json_of


def _wait_holder(env: Env, key: str) -> None:
    def held() -> None:
        assert env.ingress.call_json("AwakeableHolder", "hasAwakeable", key=key) is True

    eventually(held)


@pytest.mark.parametrize("operation", ["CALL", "SLEEP", "AWAKEABLE"])
@pytest.mark.parametrize("source", ["admin", "context"])
def test_cancel(env_h2_suspending: Env, operation: str, source: str) -> None:
    env, key = env_h2_suspending, new_key()
    if source == "admin":
        inv = env.ingress.send_json("CancelTestRunner", "startTest", operation, key=key)["invocationId"]
    else:
        req = proxy_request("CancelTestRunner", "startTest", operation, key)
        inv = env.ingress.call_json("Proxy", "oneWayCall", req)
    _wait_holder(env, key)
    json_of(env.ingress.call("AwakeableHolder", "unlock", "cancel", key=key))

    # The runner must still be in flight when the cancel arrives, otherwise nothing is under test.
    def blocked() -> None:
        assert env.ingress.output(inv).status_code == 470

    eventually(blocked)
    if source == "admin":
        assert env.admin.cancel(inv).status_code == 202
    else:
        json_of(env.ingress.call("TestUtilsService", "cancelInvocation", inv))

    # The runner saw a 409 from its callee, recorded it, and finished normally.
    assert env.ingress.attach(inv).status_code == 200
    assert env.ingress.call_json("CancelTestRunner", "verifyTest", key=key) is True
    # The blocking object's key is free again (cancellation reached the whole call tree).
    assert env.ingress.call("CancelTestBlockingService", "isUnlocked", key=key).status_code == 200


def test_kill_invocation(env_h2_suspending: Env) -> None:
    env, key = env_h2_suspending, new_key()
    inv = env.ingress.send_json("KillTestRunner", "startCallTree", key=key)["invocationId"]
    _wait_holder(env, key)
    json_of(env.ingress.call("AwakeableHolder", "unlock", "kill", key=key))

    def blocked() -> None:
        assert env.ingress.output(inv).status_code == 470

    eventually(blocked)
    assert env.admin.kill(inv).status_code == 200
    r = env.ingress.attach(inv)
    assert (r.status_code, r.json()["message"]) == (409, "killed")
    # The singleton's key is unlocked: the recursive call left in its inbox was killed too.
    assert env.ingress.call("KillTestSingleton", "isUnlocked", key=key).status_code == 200
    # Killing a completed invocation is refused.
    assert env.admin.kill(inv).status_code == 409
