"""Services the fault tests drive, on the SDK named by PYRESTATE_SDK (official `restate` or `pyrestate.sdk`).

* FaultsCounter: `add(n)` returns the new value (the chaos counter).
* FaultsSet: `add(e)` adds an element, `get` reads them (the Jepsen-lite set).
* FaultsL0/L1/L2 + FaultsHelper: interpreters of random programs (see pyrestate.testing.faults.programs).

Every ctx.run step appends `exec`/`seen` records to the file named by FAULTS_SIDE_FILE, so the test can tell a
step re-executed before its result was recorded (allowed) from a recorded result that changed (forbidden).
"""

import asyncio
import importlib
import json
import os
import uuid
from datetime import timedelta
from typing import Any

from pyrestate.testing.faults.history import BAD, EXEC, SEEN, side_record
from pyrestate.testing.faults.programs import COUNTER, LAYERS, object_name

restate: Any = importlib.import_module(
    "pyrestate.sdk" if os.environ.get("PYRESTATE_SDK") == "pyrestate" else "restate"
)

_SIDE_FILE = os.environ.get("FAULTS_SIDE_FILE", "")


def _record(kind: str, *fields: str) -> None:
    if not _SIDE_FILE:
        return
    # One O_APPEND write per record: lines from concurrent handlers and restarts never interleave.
    fd = os.open(_SIDE_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, side_record(kind, *fields))
    finally:
        os.close(fd)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


# --- chaos counter --------------------------------------------------------------------------------------

counter = restate.VirtualObject("FaultsCounter")


@counter.handler()
async def add(ctx: Any, value: int) -> int:
    new: int = (await ctx.get("value", type_hint=int) or 0) + value
    ctx.set("value", new)
    return new


@counter.handler(kind="shared")
async def get(ctx: Any) -> int:
    value: int = await ctx.get("value", type_hint=int) or 0
    return value


# --- Jepsen-lite set -------------------------------------------------------------------------------------

set_object = restate.VirtualObject("FaultsSet")


@set_object.handler(name="add")
async def set_add(ctx: Any, element: int) -> bool:
    elements: list[int] = await ctx.get("elements", type_hint=list) or []
    if element in elements:
        return False
    ctx.set("elements", [*elements, element])
    return True


@set_object.handler(name="get", kind="shared")
async def set_get(ctx: Any) -> list[int]:
    elements: list[int] = await ctx.get("elements", type_hint=list) or []
    return elements


# --- interpreters ------------------------------------------------------------------------------------------

HELPER = "FaultsHelper"
helper = restate.Service(HELPER)


@helper.handler(name="incrementIndirectly")
async def increment_indirectly(ctx: Any, target: dict[str, Any]) -> None:
    program = {"pid": "indirect", "commands": [{"kind": "increment"}]}
    ctx.generic_send(object_name(target["layer"]), "interpret", _json(program), key=target["key"])


@helper.handler(name="resolveAwakeable")
async def resolve_awakeable(ctx: Any, req: dict[str, str]) -> None:
    ctx.resolve_awakeable(req["id"], req["value"])


@helper.handler()
async def echo(ctx: Any, value: str) -> str:
    return value


_attempts: dict[str, int] = {}  # per process: a flaky step fails its first N attempts in this process


async def _step(token: str, failures: int) -> str:
    n = _attempts[token] = _attempts.get(token, 0) + 1
    if n <= failures:
        raise RuntimeError(f"flaky step {token}, attempt {n}")
    result = uuid.uuid4().hex  # a fresh value per execution: a re-execution cannot hide
    _record(EXEC, token, result)
    # Work after the record widens the window in which a crash forces a re-execution (allowed: the
    # result was not recorded yet), which the test tells apart from a recorded result changing.
    await asyncio.sleep(0.05)
    return result


async def _interpret(ctx: Any, layer: int, program: dict[str, Any]) -> None:
    me = object_name(layer)
    invocation = ctx.request().id
    for i, cmd in enumerate(program["commands"]):
        kind = cmd["kind"]
        where = f"{me}/{ctx.key()} {program['pid']}#{i}"
        if kind == "increment":
            ctx.set(COUNTER, (await ctx.get(COUNTER, type_hint=int) or 0) + 1)
        elif kind == "set":
            ctx.set(cmd["name"], cmd["value"])
        elif kind == "get":
            got = await ctx.get(cmd["name"], type_hint=str)
            if got != cmd["expect"]:
                _record(BAD, f"{where} get {cmd['name']}: {got!r} != {cmd['expect']!r}")
        elif kind == "clear":
            ctx.clear(cmd["name"])
        elif kind == "sleep":
            await ctx.sleep(timedelta(milliseconds=cmd["ms"]))
        elif kind == "echo":
            got = json.loads(await ctx.generic_call(HELPER, "echo", _json(cmd["value"])))
            if got != cmd["value"]:
                _record(BAD, f"{where} echo: {got!r} != {cmd['value']!r}")
        elif kind in ("run", "run_flaky"):
            token = f"{invocation}/{i}"
            value = await ctx.run_typed(
                "step", _step, restate.RunOptions(type_hint=str), token=token, failures=cmd.get("failures", 0)
            )
            _record(SEEN, token, value)
        elif kind == "increment_indirect":
            ctx.generic_send(HELPER, "incrementIndirectly", _json({"layer": layer, "key": ctx.key()}))
        elif kind == "increment_delayed":
            program_of_one = {"pid": f"{program['pid']}#{i}", "commands": [{"kind": "increment"}]}
            ctx.generic_send(
                me,
                "interpret",
                _json(program_of_one),
                key=ctx.key(),
                send_delay=timedelta(milliseconds=cmd["ms"]),
            )
        elif kind in ("awakeable", "increment_awakeable"):
            awakeable_id, fut = ctx.awakeable(type_hint=str)
            expected = f"{invocation}/{i}"
            ctx.generic_send(HELPER, "resolveAwakeable", _json({"id": awakeable_id, "value": expected}))
            got = await fut
            if got != expected:
                _record(BAD, f"{where} awakeable: {got!r} != {expected!r}")
            if kind == "increment_awakeable":
                ctx.set(COUNTER, (await ctx.get(COUNTER, type_hint=int) or 0) + 1)
        elif kind == "call_next":
            await ctx.generic_call(object_name(layer + 1), "interpret", _json(cmd["program"]), key=cmd["key"])
        elif kind == "send_next":
            delay = timedelta(milliseconds=cmd["ms"]) if cmd.get("ms") else None
            ctx.generic_send(
                object_name(layer + 1), "interpret", _json(cmd["program"]), key=cmd["key"], send_delay=delay
            )
        else:
            raise restate.TerminalError(f"unknown command {kind!r}", status_code=400)


def _layer(layer: int) -> Any:
    obj = restate.VirtualObject(object_name(layer))

    @obj.handler(name="interpret")
    async def interpret(ctx: Any, program: dict[str, Any]) -> None:
        await _interpret(ctx, layer, program)

    @obj.handler(name="counter", kind="shared")
    async def read_counter(ctx: Any) -> int:
        value: int = await ctx.get(COUNTER, type_hint=int) or 0
        return value

    return obj


layers = [_layer(n) for n in range(LAYERS)]

app = restate.app(services=[counter, set_object, helper, *layers])
