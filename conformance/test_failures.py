"""Process failures: SleepWithFailures (the SDK endpoint dies mid-sleep) and KillRuntime / StopRuntime
(the server dies or stops mid-flight and restarts on the same data dir and ports)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from conformance.conftest import Env
from conformance.helpers import new_key, wait_journaled
from pyrestate.testing import Ingress, eventually, json_of

VOCI = "VirtualObjectCommandInterpreter"
SLEEP_MS = 2000


@pytest.fixture(scope="module")
def env_own_app(env_factory: Callable[..., Env]) -> Env:
    """A runtime and an SDK process of its own: the SDK process gets killed here."""
    return env_factory("sdk-failures", own_app=True)


@pytest.mark.parametrize("hard", [True, False], ids=["kill", "terminate"])
def test_sleep_and_restart_service_endpoint(env_own_app: Env, hard: bool) -> None:
    env, key = env_own_app, new_key()
    t0 = time.monotonic()
    inv = env.ingress.send_json(VOCI, "interpretCommands",
                                {"commands": [{"type": "awaitOne", "command": {"type": "sleep",
                                                                               "timeoutMillis": SLEEP_MS}}]},
                                key=key)["invocationId"]
    wait_journaled(env.admin, inv, "Command: Sleep")  # the endpoint dies mid-sleep, not before it
    env.app.restart(hard=hard)
    r = env.ingress.attach(inv)
    assert json_of(r) == "sleep"
    assert time.monotonic() - t0 >= SLEEP_MS / 1000


@pytest.fixture(scope="module")
def env_restartable(env_factory: Callable[..., Env]) -> Env:
    """A runtime of its own (shared SDK app): this one gets killed and restarted."""
    return env_factory("restartable")


def _fresh_client(env: Env) -> None:
    # Pooled connections to the previous server process are dead; start over.
    env.ingress.close()
    env.ingress = Ingress(env.runtime.ingress_url)


def _restart_keeps_state(env: Env, hard: bool) -> None:
    key = new_key()
    assert env.ingress.call_json("Counter", "add", 1, key=key, retry_for=30) == {"oldValue": 0, "newValue": 1}
    env.runtime.restart(hard=hard)
    _fresh_client(env)
    assert env.ingress.call_json("Counter", "add", 2, key=key, retry_for=30) == {"oldValue": 1, "newValue": 3}


def test_kill_runtime_retains_state(env_restartable: Env) -> None:
    _restart_keeps_state(env_restartable, hard=True)


def test_stop_runtime_retains_state(env_restartable: Env) -> None:
    _restart_keeps_state(env_restartable, hard=False)


@pytest.mark.parametrize("hard", [True, False], ids=["kill", "stop"])
def test_runtime_restart_mid_sleep(env_restartable: Env, hard: bool) -> None:
    """A durable timer registered before the crash still fires after the restart."""
    env, key = env_restartable, new_key()
    t0 = time.monotonic()
    inv = env.ingress.send_json(VOCI, "interpretCommands",
                                {"commands": [{"type": "awaitOne", "command": {"type": "sleep",
                                                                               "timeoutMillis": SLEEP_MS}}]},
                                key=key, retry_for=30)["invocationId"]
    wait_journaled(env.admin, inv, "Command: Sleep")  # the sleep and its timer are stored before the crash
    env.runtime.restart(hard=hard)
    _fresh_client(env)

    def done() -> None:
        assert json_of(env.ingress.attach(inv)) == "sleep"

    eventually(done, timeout=30)
    assert time.monotonic() - t0 >= SLEEP_MS / 1000
    assert env.ingress.call_json(VOCI, "getResults", key=key) == ["sleep"]
