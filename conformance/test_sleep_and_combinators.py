"""Sleep, Combinators and Signals through the VirtualObjectCommandInterpreter."""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import pytest

from conformance.conftest import Env
from conformance.helpers import new_key
from pyrestate.testing import AsyncIngress, Ingress, eventually, json_of

VOCI = "VirtualObjectCommandInterpreter"


def interpret(ingress: Ingress, key: str, *commands: dict[str, Any]) -> Any:
    return ingress.call(
        "VirtualObjectCommandInterpreter", "interpretCommands", {"commands": list(commands)}, key=key
    )


def start(ingress: Ingress, key: str, *commands: dict[str, Any]) -> str:
    r = ingress.send_json(VOCI, "interpretCommands", {"commands": list(commands)}, key=key)
    assert r["status"] == "Accepted"
    invocation_id: str = r["invocationId"]
    return invocation_id


def wait_awakeable(ingress: Ingress, key: str, awk: str) -> None:
    def registered() -> None:
        assert ingress.call_json(VOCI, "hasAwakeable", awk, key=key) is True

    eventually(registered)


def sleep(ms: int) -> dict[str, Any]:
    return {"type": "sleep", "timeoutMillis": ms}


def awakeable(k: str) -> dict[str, Any]:
    return {"type": "createAwakeable", "awakeableKey": k}


def signal(name: str) -> dict[str, Any]:
    return {"type": "createSignal", "signalName": name}


def run_returns(v: str) -> dict[str, Any]:
    return {"type": "runReturns", "value": v}


def run_throws(reason: str) -> dict[str, Any]:
    return {"type": "runThrowTerminalException", "reason": reason}


# --- Sleep -----------------------------------------------------------------------------------------------


def test_sleep(env: Env) -> None:
    t0 = time.monotonic()
    r = interpret(env.ingress, new_key(), {"type": "awaitOne", "command": sleep(10)})
    assert json_of(r) == "sleep"
    assert time.monotonic() - t0 >= 0.010


def test_many_sleeps(env_h2: Env) -> None:
    invocations, sleeps = 50, 20
    rng = random.Random(7)

    async def go() -> list[Any]:
        async with AsyncIngress(env_h2.ingress_url) as ingress:
            return await asyncio.gather(
                *[
                    ingress.call_json(
                        VOCI,
                        "interpretCommands",
                        {
                            "commands": [
                                {
                                    "type": "awaitAllCompleted",
                                    "commands": [sleep(rng.randint(10, 50)) for _ in range(sleeps)],
                                }
                            ]
                        },
                        key=new_key(),
                    )
                    for _ in range(invocations)
                ]
            )

    t0 = time.monotonic()
    results = asyncio.run(go())
    assert results == ["|".join(["ok:sleep"] * sleeps)] * invocations
    assert time.monotonic() - t0 < 60


# --- Combinators -----------------------------------------------------------------------------------------


def test_awakeable_or_timeout_using_await_any(env: Env) -> None:
    r = interpret(env.ingress, new_key(), {"type": "awaitAny", "commands": [awakeable("1"), sleep(100)]})
    assert json_of(r) == "sleep"


def test_awakeable_or_timeout_using_awakeable_timeout_command(env: Env) -> None:
    r = interpret(
        env.ingress, new_key(), {"type": "awaitAwakeableOrTimeout", "awakeableKey": "1", "timeoutMillis": 100}
    )
    assert r.status_code == 408, r.text
    assert "await-timeout" in r.json()["message"]


def test_first_successful_completed_awakeable(env: Env) -> None:
    key = new_key()
    inv = start(
        env.ingress,
        key,
        {
            "type": "awaitAnySuccessful",
            "commands": [
                awakeable("1"),
                awakeable("2"),
                awakeable("3"),
                run_throws("e1"),
                run_throws("e2"),
                run_throws("e3"),
            ],
        },
    )
    for k in ("1", "2", "3"):
        wait_awakeable(env.ingress, key, k)
    json_of(env.ingress.call(VOCI, "rejectAwakeable", {"awakeableKey": "2", "reason": "nope"}, key=key))
    json_of(env.ingress.call(VOCI, "resolveAwakeable", {"awakeableKey": "3", "value": "won"}, key=key))
    assert json_of(env.ingress.attach(inv)) == "won"
    # The completion that arrived first after the failures decides; a later one changes nothing.
    assert env.ingress.call_json(VOCI, "getResults", key=key) == ["won"]


def _resolve_signal(env: Env, inv: str, name: str, value: str) -> None:
    json_of(
        env.ingress.call(
            "TestUtilsService", "resolveSignal", {"invocationId": inv, "signalName": name, "value": value}
        )
    )


def _reject_signal(env: Env, inv: str, name: str, reason: str) -> None:
    json_of(
        env.ingress.call(
            "TestUtilsService", "rejectSignal", {"invocationId": inv, "signalName": name, "reason": reason}
        )
    )


def test_signal_first_successful_or_all_failed(env: Env) -> None:
    cmd = {"type": "awaitFirstSucceededOrAllFailed", "commands": [signal("a"), signal("b"), signal("c")]}
    inv = start(env.ingress, new_key(), cmd)
    _reject_signal(env, inv, "a", "ra")
    _resolve_signal(env, inv, "c", "vc")
    assert json_of(env.ingress.attach(inv)) == "vc"


def test_signal_first_successful_or_all_failed_all_fail(env: Env) -> None:
    inv = start(
        env.ingress,
        new_key(),
        {"type": "awaitFirstSucceededOrAllFailed", "commands": [signal("a"), signal("b")]},
    )
    _reject_signal(env, inv, "a", "ra")
    _reject_signal(env, inv, "b", "rb")
    r = env.ingress.attach(inv)
    assert r.status_code == 500
    assert r.json()["message"] in ("all failed: ra|rb", "all failed: rb|ra")


def test_signal_all_successful_or_first_failed(env: Env) -> None:
    inv = start(
        env.ingress,
        new_key(),
        {"type": "awaitAllSucceededOrFirstFailed", "commands": [signal("a"), signal("b")]},
    )
    _resolve_signal(env, inv, "b", "vb")
    _resolve_signal(env, inv, "a", "va")
    assert json_of(env.ingress.attach(inv)) == "va|vb"

    inv = start(
        env.ingress,
        new_key(),
        {"type": "awaitAllSucceededOrFirstFailed", "commands": [signal("a"), signal("b")]},
    )
    _reject_signal(env, inv, "b", "rb")
    r = env.ingress.attach(inv)
    assert (r.status_code, r.json()["message"]) == (500, "rb")


def test_signal_all_completed(env: Env) -> None:
    inv = start(
        env.ingress,
        new_key(),
        {"type": "awaitAllCompleted", "commands": [signal("a"), signal("b"), signal("c")]},
    )
    _resolve_signal(env, inv, "a", "va")
    _reject_signal(env, inv, "b", "rb")
    _resolve_signal(env, inv, "c", "vc")
    assert json_of(env.ingress.attach(inv)) == "ok:va|err:rb|ok:vc"


def test_signal_first_completed(env: Env) -> None:
    cmd = {"type": "awaitFirstCompleted", "commands": [signal("a"), signal("b")]}
    inv = start(env.ingress, new_key(), cmd)
    _resolve_signal(env, inv, "b", "vb")
    assert json_of(env.ingress.attach(inv)) == "vb"


def test_mixed_run_wins_race_against_signal(env: Env) -> None:
    r = interpret(
        env.ingress,
        new_key(),
        {"type": "awaitFirstCompleted", "commands": [signal("never"), run_returns("from-run")]},
    )
    assert json_of(r) == "from-run"


def test_mixed_signal_wins_after_run_fails(env: Env) -> None:
    inv = start(
        env.ingress,
        new_key(),
        {"type": "awaitFirstSucceededOrAllFailed", "commands": [run_throws("boom"), signal("s")]},
    )
    _resolve_signal(env, inv, "s", "from-signal")
    assert json_of(env.ingress.attach(inv)) == "from-signal"


def test_mixed_all_succeeded_run_and_signal(env: Env) -> None:
    inv = start(
        env.ingress,
        new_key(),
        {"type": "awaitAllSucceededOrFirstFailed", "commands": [run_returns("r"), signal("s")]},
    )
    _resolve_signal(env, inv, "s", "v")
    assert json_of(env.ingress.attach(inv)) == "r|v"


def test_mixed_all_completed_run_signal_and_failed_run(env: Env) -> None:
    inv = start(
        env.ingress,
        new_key(),
        {"type": "awaitAllCompleted", "commands": [run_returns("r"), signal("s"), run_throws("boom")]},
    )
    _resolve_signal(env, inv, "s", "v")
    assert json_of(env.ingress.attach(inv)) == "ok:r|ok:v|err:boom"


# --- Signals ---------------------------------------------------------------------------------------------


def test_signal_resolve(env: Env) -> None:
    inv = start(env.ingress, new_key(), {"type": "awaitOne", "command": signal("sig")})
    _resolve_signal(env, inv, "sig", "hello")
    assert json_of(env.ingress.attach(inv)) == "hello"


def test_signal_reject(env: Env) -> None:
    inv = start(env.ingress, new_key(), {"type": "awaitOne", "command": signal("sig")})
    _reject_signal(env, inv, "sig", "rejected!")
    r = env.ingress.attach(inv)
    assert r.status_code == 500
    assert r.json()["message"] == "rejected!"


def test_awakeable_resolve_and_reject_through_ingress(env: Env) -> None:
    key = new_key()
    inv = start(env.ingress, key, {"type": "awaitOne", "command": awakeable("x")})
    wait_awakeable(env.ingress, key, "x")
    awk_id = _awakeable_id(env, key, inv)
    assert env.ingress.resolve_awakeable(awk_id, "via-ingress").status_code == 202
    assert json_of(env.ingress.attach(inv)) == "via-ingress"


def _awakeable_id(env: Env, key: str, inv: str) -> str:
    rows = env.admin.query(
        f"SELECT value_utf8 FROM state WHERE service_name = '{VOCI}' AND service_key = '{key}' "
        "AND key = 'awk-x'"
    )
    assert len(rows) == 1, rows
    value: str = json.loads(rows[0]["value_utf8"])
    assert value.startswith("sign_1")
    return value


@pytest.mark.parametrize("resolve", [True, False], ids=["resolve", "reject"])
def test_awakeable_from_another_handler(env: Env, resolve: bool) -> None:
    key = new_key()
    inv = start(env.ingress, key, {"type": "awaitOne", "command": awakeable("k")})
    wait_awakeable(env.ingress, key, "k")
    if resolve:
        json_of(env.ingress.call(VOCI, "resolveAwakeable", {"awakeableKey": "k", "value": "ok"}, key=key))
        assert json_of(env.ingress.attach(inv)) == "ok"
    else:
        json_of(env.ingress.call(VOCI, "rejectAwakeable", {"awakeableKey": "k", "reason": "denied"}, key=key))
        r = env.ingress.attach(inv)
        assert (r.status_code, r.json()["message"]) == (500, "denied")
