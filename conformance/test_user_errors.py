"""UserErrors: terminal errors (with metadata) reach the caller; retryable errors are retried."""

from __future__ import annotations

import pytest

from conformance.conftest import Env
from conformance.helpers import new_key

MESSAGE = "Failed with a terminal error"
METADATA = {"errorKey": "errorValue", "other": "x"}


def _assert_terminal(env: Env, handler: str, with_metadata: bool) -> None:
    req: dict[str, object] = {"errorMessage": MESSAGE}
    if with_metadata:
        req["metadata"] = METADATA
    r = env.ingress.call("Failing", handler, req, key=new_key())
    assert r.status_code == 500, r.text
    body = r.json()
    assert body["message"] == MESSAGE
    assert body["code"] == 500
    assert r.headers["x-restate-error-source"] == "invocation"
    if with_metadata:
        assert body.get("metadata") == METADATA


@pytest.mark.parametrize("with_metadata", [False, True], ids=["plain", "metadata"])
def test_invoke_terminally_failing_call(env: Env, with_metadata: bool) -> None:
    _assert_terminal(env, "terminallyFailingCall", with_metadata)


@pytest.mark.parametrize("with_metadata", [False, True], ids=["plain", "metadata"])
def test_fail_several_times(env_h2: Env, with_metadata: bool) -> None:
    for _ in range(3):
        _assert_terminal(env_h2, "terminallyFailingCall", with_metadata)


@pytest.mark.parametrize("with_metadata", [False, True], ids=["plain", "metadata"])
def test_internal_call_failure_propagation(env: Env, with_metadata: bool) -> None:
    _assert_terminal(env, "callTerminallyFailingCall", with_metadata)


@pytest.mark.parametrize("with_metadata", [False, True], ids=["plain", "metadata"])
def test_side_effect_with_terminal_error(env: Env, with_metadata: bool) -> None:
    _assert_terminal(env, "terminallyFailingSideEffect", with_metadata)


def test_set_state_then_fail_should_persist_state(env: Env) -> None:
    key = new_key()
    r = env.ingress.call("Counter", "addThenFail", 1, key=key)
    assert r.status_code == 500
    assert r.json()["message"] == key
    assert env.ingress.call_json("Counter", "get", key=key) == 1


def test_invocation_with_eventual_success(env: Env) -> None:
    assert env.ingress.call_json("Failing", "failingCallWithEventualSuccess", key=new_key()) == 4
