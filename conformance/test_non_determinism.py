"""NonDeterminismErrors: a handler that takes another branch on replay must be stopped, not continued.

Runs on the always-suspending profile (every await suspends and replays; one failed attempt kills).
"""

from __future__ import annotations

import time

import pytest

from conformance.conftest import Env
from conformance.helpers import new_key


@pytest.mark.parametrize(
    "handler",
    ["eitherSleepOrCall", "callDifferentMethod", "backgroundInvokeWithDifferentTargets", "setDifferentKey"],
)
def test_non_determinism_is_detected(env_non_determinism: Env, handler: str) -> None:
    env, key = env_non_determinism, new_key()
    r = env.ingress.call("NonDeterministic", handler, key=key)
    # Journal mismatch (570) is the attempt's failure; with max attempts 1 and on-max-attempts=kill the
    # invocation ends with it, and the trailing send to Counter never happens.
    assert r.status_code == 570, r.text
    assert r.json()["code"] == 570
    assert "mismatch" in r.json()["message"].lower()
    # Time passes for the send to arrive, had it been made (it would have been journaled before the
    # failure that ended the invocation): it never is.
    time.sleep(0.3)
    assert env.ingress.call_json("Counter", "get", key=key) == 0


def test_deterministic_control(env_non_determinism: Env) -> None:
    # The same shape of handler without divergence completes and reaches its trailing send.
    env, key = env_non_determinism, new_key()
    assert env.ingress.call_json("Counter", "add", 5, key=key) == {"oldValue": 0, "newValue": 5}
