"""RunRetry (SDK-side retry policy of ctx.run) and RunFlush (a run result is acknowledged before use)."""

from __future__ import annotations

from conformance.conftest import Env
from conformance.helpers import new_key


def test_run_retry_with_success(env: Env) -> None:
    assert env.ingress.call_json("Failing", "sideEffectSucceedsAfterGivenAttempts", 3, key=new_key()) == 3


def test_run_retry_executed_only_once(env: Env) -> None:
    assert env.ingress.call_json("Failing", "sideEffectFailsAfterGivenAttempts", 1, key=new_key()) == 1


def test_run_retry_with_exhausted_attempts(env: Env) -> None:
    assert env.ingress.call_json("Failing", "sideEffectFailsAfterGivenAttempts", 3, key=new_key()) == 3


def test_run_flush_always_suspending(env_suspending: Env) -> None:
    # Every run suspends the invocation until its result is stored, so the final attempt only replays them.
    assert env_suspending.ingress.call_json("TestUtilsService", "countExecutedSideEffects", 3) == 0


def test_run_flush_control_without_suspension(env_h2: Env) -> None:
    # The same handler on a bidi stream that never suspends executes every run in one attempt.
    assert env_h2.ingress.call_json("TestUtilsService", "countExecutedSideEffects", 3) == 3
